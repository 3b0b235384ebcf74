"""The agent's Assignment on disk: its own JSON format, and the protobuf file of before.

tests/samples/agent/assignment.pb is what an agent from before wrote (a protobuf
message); assignment.json is the same Assignment in this agent's format, pinned: a
renamed domain field shows here as a changed format, which then needs a new format
number and a migration, never a silent change.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stack.agent import persist
from stack.security.safe_files import private_dir
from stack.spec.assignment import Assignment

SAMPLES = Path(__file__).parents[1] / "samples" / "agent"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "agent"
    private_dir(path)
    return path


def test_an_assignment_comes_back_equal_from_the_agents_own_file(data_dir: Path) -> None:
    kept = persist.load_assignment(_with_legacy(data_dir))
    assert kept is not None
    persist.save_assignment(data_dir, kept)
    assert json.loads((data_dir / persist.ASSIGNMENT_FILE).read_bytes())["format"] == 1
    assert persist.load_assignment(data_dir) == kept
    assert (data_dir / persist.ASSIGNMENT_FILE).stat().st_mode & 0o777 == 0o600


def test_the_assignment_of_an_agent_from_before_is_read_from_its_protobuf_file(
    data_dir: Path,
) -> None:
    old = persist.load_assignment(_with_legacy(data_dir))
    assert isinstance(old, Assignment)
    assert (old.generation, [w.spec.name for w in old.watchers]) == (12, ["web", "cron"])
    persist.save_assignment(data_dir, old)  # the next save is in this agent's format
    assert persist.load_assignment(data_dir) == old
    legacy = data_dir / persist.LEGACY_ASSIGNMENT_FILE
    assert legacy.read_bytes() == (SAMPLES / "assignment.pb").read_bytes()  # left as it was


def test_the_format_of_the_agents_file_is_pinned(data_dir: Path) -> None:
    old = persist.load_assignment(_with_legacy(data_dir))
    assert old is not None
    persist.save_assignment(data_dir, old)
    written = json.loads((data_dir / persist.ASSIGNMENT_FILE).read_bytes())
    assert written == json.loads((SAMPLES / "assignment.json").read_bytes())


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"not json", "ignoring unreadable"),
        (b'{"format": 2, "assignment": {}}', "format 2, this agent reads 1"),
        (b'{"format": 1, "assignment": {"watchers": 3}}', "Assignment.watchers: expected a list"),
    ],
)
def test_an_unreadable_assignment_file_is_ignored_with_one_line(
    data_dir: Path, content: bytes, says: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = data_dir / persist.ASSIGNMENT_FILE
    path.write_bytes(content)
    path.chmod(0o600)
    assert persist.load_assignment(data_dir) is None
    assert says in caplog.text


def test_no_assignment_kept_is_none(data_dir: Path) -> None:
    assert persist.load_assignment(data_dir) is None


def _with_legacy(data_dir: Path) -> Path:
    target = data_dir / persist.LEGACY_ASSIGNMENT_FILE
    shutil.copyfile(SAMPLES / "assignment.pb", target)
    target.chmod(0o600)
    return data_dir
