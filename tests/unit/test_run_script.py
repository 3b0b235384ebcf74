"""`./run`'s decisions: the demo installs the project alone, the tests add the development
tools, and neither installs again what is there.

The script runs for real, in a copy of the checkout whose .venv holds stand-ins for
python (which records what pip was asked), stackctl, ruff, mypy and lint-imports: what is
checked is what the script asks for, not pip (installing for real takes minutes and the
network).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECORDER = """#!/bin/sh
echo "$(basename "$0") $*" >> "{log}"
"""


def checkout(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of `run` and pyproject.toml with recording stand-ins; (its dir, the log)."""
    root = tmp_path / "stack"
    bin_dir = root / ".venv" / "bin"
    tools = tmp_path / "tools"
    bin_dir.mkdir(parents=True)
    tools.mkdir()
    shutil.copy(ROOT / "run", root / "run")
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    log = tmp_path / "calls.log"
    for folder, names in ((bin_dir, ("python", "stackctl", "ruff", "mypy", "lint-imports")),
                          (tools, ("ip", "etcd", "zsh", "fish"))):  # fmt: skip
        for name in names:
            path = folder / name
            path.write_text(RECORDER.format(log=log))
            path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return root, log


def run(root: Path, *args: str) -> list[str]:
    """`./run ARGS`; the calls it made, one line each."""
    log = root.parent / "calls.log"
    log.write_text("")
    env = dict(os.environ, PATH=f"{root.parent / 'tools'}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(
        ["./run", *args], cwd=root, capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return log.read_text().splitlines()


def installs(calls: list[str]) -> list[str]:
    return [call for call in calls if " pip install " in call and "--upgrade pip" not in call]


def test_the_demo_installs_the_project_alone_and_the_tests_add_the_development_tools(
    tmp_path: Path,
) -> None:
    root, _ = checkout(tmp_path)
    demo = run(root, "demo")
    (install,) = installs(demo)
    assert install.endswith("-e . --config-settings editable_mode=compat")
    assert demo[-1] == "stackctl up examples/webapp.toml"

    assert installs(run(root, "demo")) == [], "installed already"

    tests = run(root, "test", "-q", "tests/unit/test_x.py")
    (install,) = installs(tests)
    assert install.endswith("-e .[dev] --config-settings editable_mode=compat")
    assert tests[-1] == "python -m pytest -q tests/unit/test_x.py"
    assert "ruff check stack tests bench scripts examples" in tests
    assert "lint-imports --no-cache" in tests, "the import-layer contract is checked"
    assert installs(run(root, "test")) == [] and installs(run(root, "demo")) == []


def test_a_changed_pyproject_installs_again(tmp_path: Path) -> None:
    root, _ = checkout(tmp_path)
    run(root, "test")
    with (root / "pyproject.toml").open("a") as handle:
        handle.write("\n# a change\n")
    (install,) = installs(run(root, "demo"))
    assert " -e . " in install
