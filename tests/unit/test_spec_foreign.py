"""Files written for Circus or Supervisor: told apart by what they say, converted into
the stack file `stackctl convert` prints, which loads back into the same stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack.spec.errors import SpecError
from stack.spec.foreign import (
    CIRCUS,
    SUPERVISOR,
    TOML,
    detect_format,
    read_stack_file,
    read_stack_text,
)
from stack.spec.ini import CIRCUS as CIRCUS_DIALECT
from stack.spec.ini import SUPERVISOR as SUPERVISOR_DIALECT
from stack.spec.ini import Dialect, Section, parse
from stack.spec.load import load_stack

SAMPLES = Path(__file__).parent.parent / "samples"
ENVIRON = {
    "HOME": "/home/ops",
    "PATH": "/usr/bin:/bin",
    "WEB_PORT": "8000",
    "BROKER_URL": "redis://localhost/0",
}
"""The environment the samples are converted in (it stands for the daemon's)."""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[watchers.web]\ncmd = "run"\n', TOML),
        ("", TOML),
        ("[circus]\nendpoint = tcp://127.0.0.1:5555\n", CIRCUS),
        ("[watcher:web]\ncmd = run\n", CIRCUS),
        ("  [socket:web]   ; indented, with a comment\nport = 80\n", CIRCUS),
        ("[plugin:flapping]\nuse = x\n", CIRCUS),
        ("[env:web]\nA = 1\n", CIRCUS),
        ("[supervisord]\n", SUPERVISOR),
        ("[program:web]\ncommand=run\n", SUPERVISOR),
        ("[fcgi-program:php]\ncommand=php\n", SUPERVISOR),
        ("[group:g]\nprograms=a\n", SUPERVISOR),
        ("[eventlistener:e]\ncommand=x\n", SUPERVISOR),
        ("[include]\nfiles=a.conf\n", SUPERVISOR),
        ("[unix_http_server]\nfile=/tmp/s.sock\n", SUPERVISOR),
        ("# [program:web] in a comment is not a section\n[watchers.a]\ncmd = 'x'\n", TOML),
        ('[env]\nA = "1"\n', TOML),
    ],
)
def test_the_format_is_told_by_the_sections_a_file_has(text: str, expected: str) -> None:
    assert detect_format(text) == expected


def test_a_file_with_both_circus_and_supervisor_sections_is_refused_in_one_line() -> None:
    with pytest.raises(SpecError) as caught:
        read_stack_text("[watcher:a]\ncmd = x\n\n[program:b]\ncommand=y\n", "mixed.ini")
    assert str(caught.value) == (
        "mixed.ini: mixes Circus sections ([watcher:a], line 1) and Supervisor sections "
        "([program:b], line 4); write one or the other"
    )


@pytest.mark.parametrize(
    ("name", "text", "kind"),
    [
        ("web.toml", "[watcher:web]\ncmd = sleep 9\n", CIRCUS),
        ("web.conf", "[watcher:web]\ncmd = sleep 9\n", CIRCUS),
        ("web.ini", "[program:web]\ncommand=sleep 9\n", SUPERVISOR),
        ("web.ini", '[watchers.web]\ncmd = "sleep 9"\n', TOML),
        ("web", "[program:web]\ncommand=sleep 9\n", SUPERVISOR),
    ],
)
def test_a_file_is_read_by_its_content_whatever_its_name(
    tmp_path: Path, name: str, text: str, kind: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    reading = read_stack_file(path, environ={}, node="h")
    assert reading.format == kind
    assert reading.stack.watchers["web"].cmd == "sleep 9"


SAMPLE_FILES = [
    ("circus", "docs.ini"),
    ("circus", "site.ini"),
    ("supervisor", "sample.conf"),
    ("supervisor", "site.conf"),
]


@pytest.mark.parametrize(("folder", "name"), SAMPLE_FILES)
def test_each_sample_converts_to_its_expected_stack_file(
    folder: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = SAMPLES / folder
    monkeypatch.chdir(here)
    reading = read_stack_file(name, environ=ENVIRON, node="web-1")
    expected = (here / (name.rsplit(".", 1)[0] + ".expected.toml")).read_text()
    assert reading.toml() == expected.replace("{HERE}", str(here))


@pytest.mark.parametrize(("folder", "name"), SAMPLE_FILES)
def test_each_conversion_loads_back_into_the_same_stack(
    folder: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(SAMPLES / folder)
    reading = read_stack_file(name, environ=ENVIRON, node="web-1")
    assert load_stack(reading.toml()) == reading.stack
    assert reading.notes, "every sample has something that is not carried"
    comments = [line for line in reading.toml().splitlines() if line.startswith("# ")]
    assert all(f"# {note}" in comments for note in reading.notes)


def test_a_stack_file_is_read_as_it_is() -> None:
    reading = read_stack_text('[watchers.web]\ncmd = "run"\n', "web.toml")
    assert (reading.format, reading.notes) == (TOML, ())
    assert reading.toml() == '[watchers.web]\ncmd = "run"\nnumprocesses = 1\n'


# -- the INI syntax of each daemon ---------------------------------------------------


def sections(text: str, dialect: Dialect) -> dict[str, dict[str, str]]:
    found: dict[str, Section] = {}
    parse(text, "f.ini", dialect, found)
    return {name: {k: o.value for k, o in s.options.items()} for name, s in found.items()}


@pytest.mark.parametrize(
    ("text", "circus", "supervisor"),
    [
        ("[a]\nk = v ; note\n", {"k": "v"}, {"k": "v"}),
        ("[a]\nk = v;not a note\n", {"k": "v;not a note"}, {"k": "v;not a note"}),
        ("[a]\nk = v # note\n", {"k": "v # note"}, {"k": "v"}),
        ("[a]\n# comment\n; comment\nk: v\n", {"k": "v"}, {"k": "v"}),
        ("[a]\nk = first\n  second\n\n  third\n", {"k": "first\nsecond\nthird"},
         {"k": "first\nsecond\nthird"}),
        ("[a]\nKey = v\n", {"Key": "v"}, {"key": "v"}),
        ("[a]\nk = 1\nk = 2\n", {"k": "1"}, {"k": "2"}),
        ('[a]\nk = ""\n', {"k": ""}, {"k": '""'}),
        ("[a]\nk = a=b\n", {"k": "a=b"}, {"k": "a=b"}),
        ("[a]\nk =\n", {"k": ""}, {"k": ""}),
    ],
)  # fmt: skip
def test_each_daemon_reads_comments_case_and_repeats_its_own_way(
    text: str, circus: dict[str, str], supervisor: dict[str, str]
) -> None:
    assert sections(text, CIRCUS_DIALECT) == {"a": circus}
    assert sections(text, SUPERVISOR_DIALECT) == {"a": supervisor}


def test_sections_of_the_same_name_are_merged() -> None:
    text = "[a]\nx = 1\n[b]\ny = 2\n[a]\nz = 3\n"
    assert sections(text, CIRCUS_DIALECT) == {"a": {"x": "1", "z": "3"}, "b": {"y": "2"}}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("k = v\n", "line 1: an option before any [section]"),
        ("[a]\njust words\n", "line 2: expected [section] or key = value, got 'just words'"),
        ("[a]\n= v\n", "line 2: expected [section] or key = value, got '= v'"),
        ("[]\n", "line 1: a section needs a name: [name]"),
        ("[a\nk = v\n", "line 1: expected [section] or key = value, got '[a'"),
    ],
)
def test_a_line_that_is_not_ini_is_named_with_its_number(text: str, message: str) -> None:
    for kind in ("circus.ini", "supervisord.conf"):
        marker = "[watcher:x]\ncmd = y\n" if kind == "circus.ini" else "[program:x]\ncommand=y\n"
        with pytest.raises(SpecError) as caught:
            read_stack_text(text + marker, kind, environ={}, node="h")
        assert str(caught.value) == f"{kind}: {message}"
