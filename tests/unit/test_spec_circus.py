"""A Circus INI file read into a stack the way circusd reads it: one test per feature."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack.spec.errors import SpecError
from stack.spec.foreign import Reading, read_stack_file
from stack.spec.model import FlappingSpec, StreamSpec, WatcherSpec

W = "[watcher:web]\ncmd = run\n"


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def read(text: str, environ: dict[str, str] | None = None, **files: str) -> Reading:
    """circus.ini (and `files`, by relative path) in the current folder, read."""
    for name, content in files.items():
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text(content)
    Path("circus.ini").write_text(text)
    return read_stack_file("circus.ini", environ=environ or {}, node="h")


def watcher(text: str, name: str = "web", **kw: object) -> WatcherSpec:
    return read(text, **kw).stack.watchers[name]  # type: ignore[arg-type]


def notes(reading: Reading) -> list[str]:
    return [str(note) for note in reading.notes]


def fails(text: str, environ: dict[str, str] | None = None, **files: str) -> str:
    with pytest.raises(SpecError) as caught:
        read(text, environ, **files)
    assert "\n" not in str(caught.value)
    return str(caught.value)


@pytest.mark.usefixtures("write")
class TestWatchers:
    @pytest.mark.parametrize("word", ["True", "true", "1", "yes", "On", "YES"])
    def test_circus_true_words(self, word: str) -> None:
        assert watcher(W + f"use_sockets = {word}\n[socket:s]\nport = 1\n").use_sockets

    @pytest.mark.parametrize("word", ["False", "0", "no", "off"])
    def test_circus_false_words(self, word: str) -> None:
        assert not watcher(W + f"respawn = {word}\n").respawn

    def test_a_word_that_is_not_a_boolean_names_its_line(self) -> None:
        assert fails(W + "shell = maybe\n") == (
            "circus.ini: line 3: [watcher:web] shell: must be true or false "
            "(or yes, no, on, off, 1, 0), got 'maybe'"
        )

    def test_options_of_the_same_name_carry_over(self) -> None:
        spec = watcher(
            W + "numprocesses = 3\nwarmup_delay = 0.5\nworking_dir = /srv\nshell = 1\n"
            "uid = www-data\ngid = 33\ncopy_env = 1\nstop_signal = quit\nstop_children = 1\n"
            "max_retry = -1\ngraceful_timeout = 7\npriority = 4\nsingleton = 0\n"
            "close_child_stdin = 0\nmax_age = 60\nmax_age_variance = 5\nrespawn = 0\n"
            "autostart = 0\nsend_hup = 1\nexecutable = /bin/run\nshell_args = -x\n"
            "copy_path = 1\nvirtualenv = /venv\nclose_child_stdout = 1\nclose_child_stderr = 1\n"
            "args = --a 'b c'\n"
        )
        assert (spec.numprocesses, spec.warmup_delay, spec.working_dir, spec.shell) == (
            3, 0.5, "/srv", True)  # fmt: skip
        assert (spec.uid, spec.gid, spec.copy_env, spec.stop_signal, spec.stop_children) == (
            "www-data", "33", True, "QUIT", True)  # fmt: skip
        assert (spec.max_retry, spec.graceful_timeout, spec.priority, spec.singleton) == (
            -1, 7.0, 4, False)  # fmt: skip
        assert (spec.close_child_stdin, spec.max_age, spec.max_age_variance) == (False, 60, 5)
        assert (spec.respawn, spec.autostart, spec.send_hup, spec.executable) == (
            False, False, True, "/bin/run")  # fmt: skip
        assert (spec.shell_args, spec.copy_path, spec.virtualenv) == (("-x",), True, "/venv")
        assert (spec.close_child_stdout, spec.close_child_stderr) == (True, True)
        assert spec.args == ("--a", "b c")

    def test_copy_path_says_what_it_puts_in_pythonpath_instead_of_circusds_sys_path(
        self,
    ) -> None:
        reading = read(W + "copy_env = 1\ncopy_path = 1\n")
        assert reading.stack.watchers["web"].copy_path
        assert [n.text for n in reading.notes] == [
            "puts the workers' working_dir first in their PYTHONPATH, not the agent's own "
            "sys.path (Stack's installation): give the application's virtualenv as virtualenv"
        ]

    def test_an_unknown_option_is_an_error_that_suggests_the_circus_word(self) -> None:
        assert fails(W + "numprocess = 3\n") == (
            "circus.ini: line 3: [watcher:web] numprocess: unknown option "
            "(did you mean numprocesses?)"
        )

    def test_a_value_the_stack_file_refuses_names_the_circus_line(self) -> None:
        assert fails(W + "numprocesses = -3\n") == (
            "circus.ini: line 3: [watcher:web] numprocesses: must be >= 0, got -3"
        )
        assert fails("[watcher:web]\nnumprocesses = 2\n") == (
            "circus.ini: line 1: [watcher:web] cmd: required"
        )

    def test_a_watcher_name_stack_cannot_take_is_refused(self) -> None:
        assert fails("[watcher:my web]\ncmd = run\n") == (
            "circus.ini: line 1: [watcher:my web]: the watcher's name must match "
            "[A-Za-z0-9_.-]{1,64}"
        )

    def test_an_empty_watcher_section_is_ignored_like_circusd_does(self) -> None:
        reading = read(W + "[watcher:nothing]\n")
        assert list(reading.stack.watchers) == ["web"]
        assert notes(reading) == [
            "circus.ini: line 3: [watcher:nothing]: empty: ignored, as circusd does"
        ]

    def test_rlimits_take_any_case_and_empty_means_unlimited(self) -> None:
        spec = watcher(W + "rlimit_NOFILE = 100\nrlimit_core =\n")
        assert dict(spec.rlimits) == {"nofile": 100, "core": -1}
        assert fails(W + "rlimit_nofiles = 1\n") == (
            "circus.ini: line 3: [watcher:web] rlimit_nofiles: unknown resource limit "
            "(did you mean nofile?)"
        )

    def test_python_hooks_are_reported_with_what_to_write_instead(self) -> None:
        reading = read(W + "hooks.before_start = app.hooks.check, true\n")
        assert reading.stack.watchers["web"].hooks == {}
        assert notes(reading) == [
            "circus.ini: line 3: [watcher:web] hooks.before_start: not carried: circusd calls "
            "the Python function app.hooks.check here, and Stack runs commands: write one as "
            '[watchers.web.hooks] before_start = "..."'
        ]

    def test_options_with_no_use_in_stack_are_noted(self) -> None:
        reading = read(W + "virtualenv_py_ver = 3.9\nuse_papa = 1\ncheck_flapping = false\n")
        assert [note.label for note in reading.notes] == [
            "[watcher:web] virtualenv_py_ver", "[watcher:web] use_papa",
            "[watcher:web] check_flapping",
        ]  # fmt: skip


@pytest.mark.usefixtures("write")
class TestStreams:
    @pytest.mark.parametrize(
        ("lines", "expected"),
        [
            ("stdout_stream.class = StdoutStream", StreamSpec(class_="StdoutStream")),
            ("stdout_stream.class = circus.stream.FancyStdoutStream\nstdout_stream.color = blue",
             StreamSpec(class_="FancyStdoutStream", color="blue")),
            ("stdout_stream.class = WatchedFileStream\nstdout_stream.filename = /l/a.log",
             StreamSpec(class_="WatchedFileStream", filename="/l/a.log")),
            ("stdout_stream.class = TimedRotatingFileStream\nstdout_stream.filename = a.log\n"
             "stdout_stream.rotate_when = H\nstdout_stream.rotate_interval = 6",
             StreamSpec(class_="TimedRotatingFileStream", filename="a.log", rotate_when="H",
                        rotate_interval=6)),
            ("stdout_stream.filename = a.log\nstdout_stream.max_bytes = 100\n"
             "stdout_stream.backup_count = 2",
             StreamSpec(filename="a.log", max_bytes=100, backup_count=2)),
        ],
    )  # fmt: skip
    def test_stream_classes_and_options(self, lines: str, expected: StreamSpec) -> None:
        assert watcher(W + lines + "\n").stdout_stream == expected

    def test_a_file_circusd_never_rotated_is_noted(self) -> None:
        reading = read(W + "stderr_stream.filename = err.log\nstderr_stream.time_format = %H\n")
        assert notes(reading) == [
            "circus.ini: line 3: [watcher:web] stderr_stream.filename: circusd never rotated "
            "this file; Stack rotates it at 10 MiB and keeps 5 (max_bytes = 0 never rotates)",
            "circus.ini: line 4: [watcher:web] stderr_stream.time_format: not carried: Stack "
            "stamps every line with its own time format",
        ]

    def test_a_python_stream_class_is_refused(self) -> None:
        assert fails(W + "stdout_stream.class = mine.Stream\n").startswith(
            "circus.ini: line 3: [watcher:web] stdout_stream.class: must be one of FileStream, "
        )


@pytest.mark.usefixtures("write")
class TestSockets:
    def test_socket_options_and_names_in_lower_case_as_circusd_has_them(self) -> None:
        stack = read(
            "[watcher:web]\ncmd = run --fd $(circus.sockets.WEB) --fd ((circus.sockets.Web))\n"
            "use_sockets = 1\n[socket:Web]\nhost = 0.0.0.0\nport = 80\nbacklog = 10\n"
            "so_reuseport = 1\nblocking = yes\ntype = SOCK_DGRAM\n"
        ).stack
        socket = stack.sockets["web"]
        assert (socket.host, socket.port, socket.backlog, socket.type) == (
            "0.0.0.0", 80, 10, "SOCK_DGRAM")  # fmt: skip
        assert socket.so_reuseport and socket.blocking
        assert (
            stack.watchers["web"].cmd == "run --fd $(circus.sockets.web) --fd $(circus.sockets.web)"
        )

    def test_circusd_default_port_is_carried_with_a_note(self) -> None:
        reading = read(W + "[socket:web]\nhost = 127.0.0.1\n")
        assert reading.stack.sockets["web"].port == 8080
        assert "port 8080, circusd's default" in notes(reading)[0]

    def test_a_unix_socket_ignores_host_and_port_like_circusd_and_reads_umask_as_octal(
        self,
    ) -> None:
        reading = read(W + "[socket:s]\npath = /run/s.sock\nhost = x\nport = 9\numask = 117\n")
        socket = reading.stack.sockets["s"]
        assert (socket.family, socket.path, socket.port, socket.umask) == (
            "AF_UNIX", "/run/s.sock", 0, 0o117)  # fmt: skip
        assert [n.text for n in reading.notes] == [
            "ignored, as circusd does: path makes it a unix socket",
            "ignored, as circusd does: path makes it a unix socket",
            "read as octal 0o117, as meant (circusd read it as the decimal 117)",
        ]

    def test_stdin_socket_names_a_socket_in_any_case(self) -> None:
        spec = watcher(W + "stdin_socket = FCGI\n[socket:fcgi]\nport = 9000\n")
        assert spec.stdin_socket == "fcgi"

    def test_an_undefined_socket_names_the_line_that_uses_it(self) -> None:
        assert fails("[watcher:web]\ncmd = run $(circus.sockets.db)\nuse_sockets = 1\n") == (
            "circus.ini: line 2: [watcher:web] cmd: $(circus.sockets.db): undefined socket 'db'"
        )


@pytest.mark.usefixtures("write")
class TestEnvironment:
    def test_env_sections_are_merged_in_file_order(self) -> None:
        stack = read(
            "[watcher:web]\ncmd = a\n[watcher:worker1]\ncmd = b\n[watcher:worker2]\ncmd = c\n"
            "[env]\nA = all\nB = all\n"
            "[env:worker1, worker2]\nB = workers\nC = workers\n"
            "[env:worker*]\nC = glob\n"
            "[env:worker2]\nC = two\n"
        ).stack
        assert dict(stack.watchers["web"].env) == {"A": "all", "B": "all"}
        assert dict(stack.watchers["worker1"].env) == {"A": "all", "B": "workers", "C": "glob"}
        assert dict(stack.watchers["worker2"].env) == {"A": "all", "B": "workers", "C": "two"}

    def test_an_env_section_that_matches_no_watcher_is_noted(self) -> None:
        reading = read(W + "[env:wbe]\nA = 1\n")
        assert notes(reading) == ["circus.ini: line 3: [env:wbe]: matches no watcher: ignored"]

    def test_dollar_variables_in_env_values_come_from_the_environment(self) -> None:
        reading = read(
            W + "[env:web]\nPATH = $PATH:/opt/bin\nEMPTY = x$UNSET\nlower = $path\n",
            environ={"PATH": "/usr/bin", "path": "no"},
        )
        assert dict(reading.stack.watchers["web"].env) == {
            "PATH": "/usr/bin:/opt/bin", "EMPTY": "x", "lower": "$path"}  # fmt: skip
        assert notes(reading) == [
            "circus.ini: line 4: [env:web] PATH: $PATH was taken from stackctl's environment "
            "(circusd used its own)",
            "circus.ini: line 5: [env:web] EMPTY: $UNSET is not set in stackctl's environment: "
            "left empty, as circusd does",
        ]

    def test_circus_env_references_are_expanded_in_any_section(self) -> None:
        reading = read(
            "[watcher:web]\ncmd = run\nworking_dir = $(circus.env.ROOT)/app\n"
            "numprocesses = ((CIRCUS.ENV.COUNT))\n"
            "[socket:web]\nport = $(circus.env.port)\n[env]\nROOT = /srv\n",
            environ={"COUNT": "3", "PORT": "8000"},
        )
        spec = reading.stack.watchers["web"]
        assert (spec.working_dir, spec.numprocesses) == ("/srv/app", 3)
        assert reading.stack.sockets["web"].port == 8000
        assert [n.text for n in reading.notes] == [
            "((CIRCUS.ENV.COUNT)) was taken from stackctl's environment (circusd used its own)",
            "$(circus.env.port) was taken from stackctl's environment (circusd used its own)",
        ]

    def test_references_in_a_command_stay_for_the_worker_when_its_env_has_them(self) -> None:
        reading = read(
            "[watcher:web]\ncmd = run $(circus.env.mode) ((circus.env.HOME)) ((circus.wid))\n"
            "[env:web]\nMODE = fast\n",
            environ={"HOME": "/home/ops"},
        )
        assert reading.stack.watchers["web"].cmd == "run $(circus.env.MODE) /home/ops $(circus.wid)"
        assert notes(reading) == [
            "circus.ini: line 2: [watcher:web] cmd: ((circus.env.HOME)) was taken from "
            "stackctl's environment (circusd used its own)"
        ]

    def test_with_copy_env_the_agents_environment_fills_a_command_reference(self) -> None:
        spec = watcher("[watcher:web]\ncmd = run $(circus.env.HOME)\ncopy_env = 1\n",
                       environ={"HOME": "/home/ops"})  # fmt: skip
        assert spec.cmd == "run $(circus.env.HOME)"


@pytest.mark.usefixtures("write")
class TestIncludes:
    def test_include_and_include_dir_are_read_relative_to_the_including_file(
        self, write: Path
    ) -> None:
        (write / "etc").mkdir()
        (write / "etc" / "circus.ini").write_text(
            "[circus]\ninclude = extra/*.ini missing/*.ini\ninclude_dir = conf.d\n" + W
        )
        for name, text in {
            "etc/extra/b.ini": "[watcher:b]\ncmd = b\n",
            "etc/conf.d/c.ini": "[watcher:c]\ncmd = c\n[watcher:web]\ncmd = ignored\n",
            "etc/conf.d/not-ini.txt": "[watcher:d]\ncmd = d\n",
        }.items():
            (write / name).parent.mkdir(parents=True, exist_ok=True)
            (write / name).write_text(text)
        reading = read_stack_file("etc/circus.ini", environ={}, node="h")
        assert sorted(reading.stack.watchers) == ["b", "c", "web"]
        assert reading.stack.watchers["web"].cmd == "run"  # circusd keeps the first value
        assert notes(reading) == [
            "etc/circus.ini: line 2: [circus] include: 'missing/*.ini' matches no file"
        ]

    def test_a_problem_in_an_included_file_names_that_file_and_line(self) -> None:
        message = fails(
            "[circus]\ninclude = more.ini\n" + W,
            **{"more.ini": "[watcher:b]\ncmd = b\nshell = ?\n"},
        )
        assert message.startswith("more.ini: line 3: [watcher:b] shell: must be true or false")

    def test_a_line_that_is_not_ini_in_an_included_file_names_that_file(self) -> None:
        assert fails(
            "[circus]\ninclude = more.ini\n" + W, **{"more.ini": "[watcher:b]\noops\n"}
        ) == ("more.ini: line 2: expected [section] or key = value, got 'oops'")


@pytest.mark.usefixtures("write")
class TestDaemonAndPlugins:
    def test_daemon_settings_are_ignored_with_a_note_each(self) -> None:
        reading = read(
            "[circus]\nendpoint = tcp://127.0.0.1:5555\npidfile = /run/c.pid\nhttpd = 1\n"
            "warmup_delay = 3\n" + W
        )
        labels = ["endpoint", "pidfile", "httpd", "warmup_delay"]
        assert [n.label for n in reading.notes] == [f"[circus] {key}" for key in labels]
        assert reading.stack.watchers["web"] == WatcherSpec(name="web", cmd="run")

    def test_circusd_umask_is_every_watchers(self) -> None:
        assert watcher("[circus]\numask = 027\n" + W).umask == 0o027

    def test_an_unknown_circus_option_is_an_error(self) -> None:
        assert fails("[circus]\nendpiont = x\n" + W) == (
            "circus.ini: line 2: [circus] endpiont: unknown option (did you mean endpoint?)"
        )

    def test_the_flapping_plugin_gives_every_watcher_its_defaults(self) -> None:
        reading = read(
            W + "flapping.attempts = 5\n[watcher:other]\ncmd = x\n"
            "[plugin:flapping]\nuse = circus.plugins.flapping.Flapping\nattempts = 3\n"
            "window = 2.5\nretry_in = 4\nmax_retry = -1\n"
        )
        assert reading.stack.watchers["other"].flapping == FlappingSpec(3, 2.5, 4, -1)
        assert reading.stack.watchers["web"].flapping == FlappingSpec(5, 2.5, 4, -1)

    def test_other_plugins_are_reported_with_what_to_use_instead(self) -> None:
        reading = read(
            W + "[plugin:watch]\nuse = circus.plugins.watchdog.WatchDog\n"
            "[plugin:mine]\nuse = company.Mine\n[plugin:off]\nuse = company.Off\nactive = 0\n"
        )
        assert [n.text for n in reading.notes] == [
            "the Python plugin circus.plugins.watchdog.WatchDog is not carried (Stack runs no "
            "plugins): give the watcher a [health] check",
            "the Python plugin company.Mine is not carried (Stack runs no plugins): stackctl "
            "events -f -o json streams the events a plugin would read",
            "inactive: ignored",
        ]

    def test_an_unknown_section_is_noted(self) -> None:
        assert notes(read(W + "[logging]\nlevel = 1\n")) == [
            "circus.ini: line 3: [logging]: not a Circus section: ignored"
        ]


@pytest.mark.usefixtures("write")
def test_a_section_that_looks_like_a_typo_is_an_error_that_suggests_the_right_one() -> None:
    assert fails(W + "[watchr:db]\ncmd = db\n") == (
        "circus.ini: line 3: [watchr:db]: unknown section (did you mean [watcher:db]?)"
    )
    assert fails(W + "[circuss]\nendpoint = x\n") == (
        "circus.ini: line 3: [circuss]: unknown section (did you mean [circus]?)"
    )
