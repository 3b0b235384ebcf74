"""What stackctl loads at start: only what the command needs (a structural check, not a
timing: bench/cli_speed.py measures the time).

Each case runs in a fresh interpreter and looks at sys.modules afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("grpc", "cryptography", "rich", "typer")


def loaded_after(code: str) -> set[str]:
    """The top-level packages among HEAVY that `code` left in sys.modules."""
    probe = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.splitlines()[-1]))


def run_main(*args: str) -> str:
    """`stackctl ARGS` in-process (main returns or raises SystemExit), swallowing its output."""
    return (
        "import contextlib, io\nfrom stack.cli.main import main\n"
        "out, err = contextlib.redirect_stdout(io.StringIO()), "
        "contextlib.redirect_stderr(io.StringIO())\n"
        f"with out, err:\n    try:\n        main({list(args)!r})\n    except SystemExit:\n"
        "        pass\n"
    )


def nowhere(tmp_path: Path) -> str:
    """A controller address where nothing listens (a command then fails after dialing)."""
    return f"unix:{tmp_path / 'none.sock'}"


def test_importing_stackctl_loads_neither_grpc_cryptography_rich_nor_typer() -> None:
    assert loaded_after("import stack.cli.main") == set()


def test_the_typer_app_loads_no_grpc_cryptography_or_rich_before_a_command_runs() -> None:
    assert loaded_after("import stack.cli.app") == {"typer"}


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("scale", "--help"),
        ("certs", "issue", "-h"),
        ("--version",),
        ("completion", "bash"),
        ("__complete", "bash", "sta", "stackctl sta"),
    ],
)
def test_help_version_and_completion_load_nothing_heavy(args: tuple[str, ...]) -> None:
    assert loaded_after(run_main(*args)) == set()


def test_status_loads_grpc_only(tmp_path: Path) -> None:
    assert loaded_after(run_main("--controller", nowhere(tmp_path), "status")) == {"grpc"}


def test_status_as_yaml_with_options_after_it_loads_grpc_only(tmp_path: Path) -> None:
    args = ("status", "-o", "yaml", "--controller", nowhere(tmp_path))
    assert loaded_after(run_main(*args)) == {"grpc"}


def test_a_command_that_never_talks_to_the_controller_loads_no_grpc(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    loaded = loaded_after(run_main("certs", "init", "--dir", str(tls), "--controller-name", "x"))
    assert (tls / "ca.crt").is_file()
    assert loaded == {"cryptography"}


def test_a_command_without_tls_files_loads_no_cryptography_and_no_typer(tmp_path: Path) -> None:
    args = ("--controller", nowhere(tmp_path), "scale", "w", "2", "--wait")
    assert loaded_after(run_main(*args)) == {"grpc"}


def test_typer_loads_only_to_judge_a_command_line_that_is_not_plain(tmp_path: Path) -> None:
    assert "typer" in loaded_after(run_main("--controller", nowhere(tmp_path), "scale", "w"))
    assert "typer" in loaded_after(run_main("stauts"))


def test_apply_of_a_file_with_a_typo_fails_before_grpc_loads(tmp_path: Path) -> None:
    typo = tmp_path / "typo.toml"
    typo.write_text('[watchers.w]\ncmd = "sleep 1"\nnumprocesess = 2\n')
    assert loaded_after(run_main("--controller", nowhere(tmp_path), "apply", str(typo))) == set()
