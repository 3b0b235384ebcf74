"""Shell completion: what may come next after the words typed (the command table, fixed
choices, and names the controller knows), and the scripts of bash, zsh and fish driving
the real stackctl. Names from a real controller: tests/integration/test_e2e_cli.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stack.cli.cmdline import CommandLine
from stack.cli.completion import Completion, complete, respond

STACKCTL = Path(sys.executable).with_name("stackctl")
NAMES = {"watcher": [("webapp", "4/4 running"), ("worker", "1/1 running")],
         "host": [("web-1", "ready")]}  # fmt: skip


def fake_controller(kind: str, line: CommandLine) -> list[tuple[str, str]]:
    return NAMES[kind]


def values(words: str, current: str = "") -> list[str]:
    found = complete(words.split(), current, fake_controller)
    return [":" + found.files] if found.files else [value for value, _ in found.values]


def test_commands_and_groups_after_the_program() -> None:
    assert values("stackctl", "sta") == ["status", "stats", "start"]
    assert "certs" in values("stackctl") and "completion" in values("stackctl")
    assert values("stackctl certs") == ["init", "issue"]
    assert values("stackctl -o json", "ag") == ["agents"]


def test_options_of_the_command_and_the_global_ones() -> None:
    scale = values("stackctl scale webapp", "--")
    assert scale[:2] == ["--wait", "--timeout"]
    assert "--controller" in scale and "--output" in scale and "--help" in scale
    assert values("stackctl", "--ver") == ["--version"]
    assert values("stackctl logs webapp", "--st") == ["--stream"]


def test_values_of_options_fixed_choices_files_and_names() -> None:
    assert values("stackctl status -o") == ["text", "wide", "json", "yaml"]
    assert values("stackctl logs webapp --stream", "e") == ["err"]
    assert values("stackctl --tls-dir") == [":dir"]
    assert values("stackctl apply") == [":file"]
    assert values("stackctl events --watcher", "w") == ["webapp", "worker"]
    assert values("stackctl status --host") == ["web-1"]
    assert values("stackctl logs webapp", "--output=j") == ["--output=json"]


def test_arguments_by_their_place() -> None:
    assert values("stackctl scale", "w") == ["webapp", "worker"]
    assert values("stackctl scale webapp") == []  # N is not a name
    assert values("stackctl stop webapp") == ["webapp", "worker"]  # WATCHER...
    assert values("stackctl drain") == ["web-1"]
    assert values("stackctl logs -n 5") == ["webapp", "worker"]  # 5 is -n's value
    assert values("stackctl completion") == ["bash", "zsh", "fish"]
    assert values("stackctl agents") == []


def test_zsh_and_fish_get_descriptions_bash_only_the_words() -> None:
    found = Completion([("status", "Show it."), ("yaml", "")])
    assert found.lines("zsh") == ["status\tShow it.", "yaml"]
    assert found.lines("bash") == ["status", "yaml"]
    assert Completion(files="file").lines("fish") == [":file"]


def test_bash_gets_back_only_what_follows_its_own_word_break() -> None:
    # bash splits `--output=js` at `=`: its current word is `js`
    assert respond(["bash", "js", "stackctl status --output=js"]) == ["json"]
    # an open quote is read as a shell would once closed
    assert respond(["bash", '"sta', 'stackctl "sta']) == ["status", "stats", "start"]


def test_no_controller_means_no_names_and_no_noise(tmp_path: Path) -> None:
    env = dict(os.environ, STACK_CONTROLLER=f"unix:{tmp_path / 'none.sock'}")
    proc = subprocess.run(
        [sys.executable, "-m", "stack.cli.main", "__complete", "bash", "", "stackctl scale "],
        capture_output=True, text=True, env=env, timeout=30,
    )  # fmt: skip
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


# -- the scripts in the real shells ------------------------------------------------------


def shell(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (./run test installs it as root)")
    if not STACKCTL.exists():
        pytest.skip(f"no stackctl program beside {sys.executable} (./run test installs it)")
    return found


def run_shell(argv: list[str], script: str, tmp_path: Path) -> list[str]:
    env = dict(os.environ, PATH=f"{STACKCTL.parent}{os.pathsep}{os.environ['PATH']}",
               STACK_CONTROLLER=f"unix:{tmp_path / 'none.sock'}", HOME=str(tmp_path))  # fmt: skip
    proc = subprocess.run(
        [*argv, script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


BASH = """\
source <(stackctl completion bash)
complete_line() {
    COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}
    read -ra COMP_WORDS <<< "$COMP_LINE"
    [[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")
    COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
    COMPREPLY=()
    _stackctl_complete
    echo "${COMPREPLY[*]}"
}
complete_line "stackctl sta"
complete_line "stackctl status -o "
complete_line "stackctl logs webapp --str"
complete_line "stackctl apply sta"
"""


def test_bash_completes_through_the_real_stackctl(tmp_path: Path) -> None:
    bash = shell("bash")
    (tmp_path / "stack.toml").write_text("")
    script = tmp_path / "t.bash"
    script.write_text(BASH)
    assert run_shell([bash, "--norc"], str(script), tmp_path) == [
        "status stats start", "text wide json yaml", "--stream", "stack.toml",
    ]  # fmt: skip


ZSH = """\
compdef() { : }
_describe() { print -r -- "${(j:|:)${(P)${@[-1]}}}" }
_files() { print -r -- "files $*" }
source <(stackctl completion zsh)
words=(stackctl sta); CURRENT=2; _stackctl
words=(stackctl status -o ""); CURRENT=4; _stackctl
words=(stackctl apply ""); CURRENT=3; _stackctl
"""


def test_zsh_completes_with_descriptions_through_the_real_stackctl(tmp_path: Path) -> None:
    zsh = shell("zsh")
    script = tmp_path / "t.zsh"
    script.write_text(ZSH)
    lines = run_shell([zsh, "-f"], str(script), tmp_path)
    assert lines[0].startswith("status:Show each watcher") and "|stats:" in lines[0]
    assert lines[1:] == ["text|wide|json|yaml", "files "]


FISH = """\
stackctl completion fish | source
complete -C "stackctl sta"
complete -C "stackctl status -o y"
"""


def test_fish_completes_with_descriptions_through_the_real_stackctl(tmp_path: Path) -> None:
    fish = shell("fish")
    script = tmp_path / "t.fish"
    script.write_text(FISH)
    lines = run_shell([fish, "--no-config"], str(script), tmp_path)
    assert [line.split("\t")[0] for line in lines] == ["start", "stats", "status", "yaml"]
    assert lines[2].startswith("status\tShow each watcher")
