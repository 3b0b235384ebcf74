"""What the agent's process loads at start: only what every agent needs (a structural
check, not a measure: bench/single_host.py measures the RSS).

The agent's memory is mostly the code it imports, so a module that only some paths need
(the stack file loader, the metrics of `--metrics-listen`, shutil's archive formats) is
imported by those paths, not at start. Each case runs in a fresh interpreter, as the
`stack-agent` script starts one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stack.agent.process import which

ROOT = Path(__file__).resolve().parents[2]
NOT_AT_START = (
    "stack.spec.load", "stack.agent.metrics", "stack.metrics", "shutil", "secrets", "tomllib",
    "difflib", "ssl", "_hashlib", "grpc",
)  # fmt: skip
"""Modules the agent imports only on the path that needs them (or never: see lean.py)."""


def test_the_agent_imports_at_start_none_of_the_modules_only_some_paths_need() -> None:
    probe = (
        "from stack.agent.lean import keep_out_openssl\nkeep_out_openssl()\n"
        "import json, sys\nimport stack.agent.main\n"
        "print(json.dumps(sorted(m for m, v in sys.modules.items() if v is not None)))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout.splitlines()[-1]))
    assert "stack.agent.engine" in loaded, "the probe did not import the agent"
    assert loaded & set(NOT_AT_START) == set()


@pytest.fixture
def path_dir(tmp_path: Path) -> Path:
    """A PATH entry with an executable `tool`, a non-executable `text` and a directory `dir`."""
    (tmp_path / "tool").write_text("#!/bin/sh\n")
    (tmp_path / "tool").chmod(0o755)
    (tmp_path / "text").write_text("")
    (tmp_path / "text").chmod(0o644)
    (tmp_path / "dir").mkdir(mode=0o755)
    return tmp_path


@pytest.mark.parametrize("program", ["tool", "text", "dir", "absent", "sh"])
def test_which_finds_what_shutil_which_finds(path_dir: Path, program: str) -> None:
    path = os.pathsep.join([str(path_dir), "/nonexistent", "/usr/bin", "/bin"])
    assert which(program, path) == shutil.which(program, path=path)


def test_which_searches_the_agents_path_when_given_none(
    path_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(path_dir))
    assert which("tool") == str(path_dir / "tool")
