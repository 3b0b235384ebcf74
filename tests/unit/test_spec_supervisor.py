"""A supervisord.conf read into a stack the way supervisord reads it: one test per feature."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack.spec.errors import SpecError
from stack.spec.foreign import Reading, read_stack_file
from stack.spec.model import StreamSpec, WatcherSpec

P = "[program:web]\ncommand=/srv/web\n"


@pytest.fixture(autouse=True)
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def read(text: str, environ: dict[str, str] | None = None, **files: str) -> Reading:
    """supervisord.conf (and `files`, by relative path) in the current folder, read."""
    for name, content in files.items():
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text(content)
    Path("supervisord.conf").write_text(text)
    return read_stack_file("supervisord.conf", environ=environ or {}, node="web-1")


def watcher(text: str, name: str = "web", **kw: object) -> WatcherSpec:
    return read(text, **kw).stack.watchers[name]  # type: ignore[arg-type]


def texts(reading: Reading) -> list[str]:
    """The notes about something the file says (not the one about the whole file)."""
    return [note.text for note in reading.notes if note.origin is not None]


def fails(text: str, environ: dict[str, str] | None = None, **files: str) -> str:
    with pytest.raises(SpecError) as caught:
        read(text, environ, **files)
    assert "\n" not in str(caught.value)
    return str(caught.value)


# -- [program:x] ---------------------------------------------------------------------


def test_a_bare_program_gets_supervisords_defaults_written_out() -> None:
    spec = watcher(P)
    assert spec == WatcherSpec(
        name="web",
        cmd="/srv/web",
        copy_env=True,
        autorestart="unexpected",
        startsecs=1.0,
        max_retry=4,
        graceful_timeout=10.0,
    )


def test_program_options_map_to_stack_options() -> None:
    spec = watcher(
        P + "directory=/srv\nuser=www-data\numask=002\nautostart=false\nstartsecs=3\n"
        "stopsignal=QUIT\nstopwaitsecs=25\nstopasgroup=true\nkillasgroup=true\n"
        "exitcodes=0,2,75\n"
    )
    assert (spec.working_dir, spec.uid, spec.umask, spec.autostart, spec.startsecs) == (
        "/srv", "www-data", 0o002, False, 3.0)  # fmt: skip
    assert (spec.stop_signal, spec.graceful_timeout, spec.stop_children, spec.exitcodes) == (
        "QUIT", 25.0, True, (0, 2, 75))  # fmt: skip


@pytest.mark.parametrize(
    ("given", "stack"),
    [("999", 0), ("100", 899), ("1", 998), ("1000", -1), ("-5", 1004)],
)
def test_priority_is_turned_around(given: str, stack: int) -> None:
    assert watcher(P + f"priority={given}\n").priority == stack


@pytest.mark.parametrize(
    ("value", "respawn", "autorestart"),
    [("unexpected", True, "unexpected"), ("true", True, ""), ("false", False, ""),
     ("Yes", True, ""), ("0", False, "")],
)  # fmt: skip
def test_autorestart(value: str, respawn: bool, autorestart: str) -> None:
    spec = watcher(P + f"autorestart={value}\n")
    assert (spec.respawn, spec.autorestart) == (respawn, autorestart)


def test_no_expected_exit_code_means_every_exit_restarts() -> None:
    reading = read(P + "exitcodes=\n")
    spec = reading.stack.watchers["web"]
    assert (spec.respawn, spec.autorestart) == (True, "")
    assert (
        texts(reading)[0] == "no exit code is expected, so every exit restarts: autorestart = true"
    )


@pytest.mark.parametrize(("retries", "max_retry"), [("0", 1), ("3", 4), ("10", 11)])
def test_startretries_are_retries_after_the_first_start(retries: str, max_retry: int) -> None:
    assert watcher(P + f"startretries={retries}\n").max_retry == max_retry


def test_log_files_sizes_and_backups() -> None:
    spec = watcher(
        P + "stdout_logfile=/var/log/web.out\nstdout_logfile_maxbytes=1KB\n"
        "stdout_logfile_backups=3\nstderr_logfile=/var/log/web.err\n"
        "stderr_logfile_maxbytes=2gb\n"
    )
    assert spec.stdout_stream == StreamSpec(filename="/var/log/web.out", max_bytes=1024,
                                            backup_count=3)  # fmt: skip
    assert spec.stderr_stream == StreamSpec(filename="/var/log/web.err", max_bytes=2 * 1024**3)


def test_log_file_none_sends_the_stream_to_dev_null_and_auto_keeps_stacks_file() -> None:
    spec = watcher(P + "stdout_logfile=NONE\nstderr_logfile=AUTO\n")
    assert spec.close_child_stdout and not spec.close_child_stderr
    assert spec.stderr_stream == StreamSpec()


def test_redirect_stderr_and_event_options_are_reported() -> None:
    reading = read(
        P + "redirect_stderr=true\nstderr_logfile=/ignored\nstdout_events_enabled=true\n"
        "stdout_syslog=true\nserverurl=AUTO\nkillasgroup=false\n"
    )
    assert reading.stack.watchers["web"].stderr_stream == StreamSpec()
    assert [note.label for note in reading.notes] == [
        "",
        "[program:web] redirect_stderr",
        "[program:web] stdout_events_enabled",
        "[program:web] stdout_syslog",
        "[program:web] serverurl",
        "[program:web] killasgroup",
    ]


def test_an_unknown_option_is_an_error_that_suggests_the_supervisor_word() -> None:
    assert fails(P + "numproc=2\n") == (
        "supervisord.conf: line 3: [program:web] numproc: unknown option (did you mean numprocs?)"
    )


def test_a_program_without_a_command_is_an_error() -> None:
    assert fails("[program:web]\nnumprocs=1\n") == (
        "supervisord.conf: line 1: [program:web]: command: required"
    )


def test_a_value_the_stack_file_refuses_names_the_supervisor_line() -> None:
    assert fails(P + "stopsignal=BOGUS\n") == (
        "supervisord.conf: line 3: [program:web] stopsignal: unknown signal 'BOGUS'"
    )
    assert fails(P + "startsecs=soon\n") == (
        "supervisord.conf: line 3: [program:web] startsecs: must be a number, got 'soon'"
    )


# -- expansions ----------------------------------------------------------------------


def test_environment_pairs_are_split_as_supervisord_splits_them() -> None:
    spec = watcher(P + 'environment=A="1",B="with, a comma",C=plain,D=/a/b:c\n')
    assert dict(spec.env) == {"A": "1", "B": "with, a comma", "C": "plain", "D": "/a/b:c"}
    assert fails(P + "environment=A\n") == (
        "supervisord.conf: line 3: [program:web] environment: expected KEY=value pairs "
        "separated by commas, got 'A'"
    )


def test_supervisord_environment_is_every_programs_and_env_names_expand() -> None:
    reading = read(
        '[supervisord]\nenvironment=ROOT="/srv",PATH="/opt/bin:%(ENV_PATH)s"\n'
        "[program:web]\ncommand=%(ENV_ROOT)s/web --home %(ENV_HOME)s\n"
        'environment=ROOT="/mine",EXTRA="%(ENV_ROOT)s/x"\n',
        environ={"PATH": "/usr/bin", "HOME": "/home/ops"},
    )
    spec = reading.stack.watchers["web"]
    assert spec.cmd == "/mine/web --home /home/ops"
    assert dict(spec.env) == {"ROOT": "/mine", "PATH": "/opt/bin:/usr/bin", "EXTRA": "/srv/x"}
    taken = [n for n in texts(reading) if "taken from" in n]
    assert taken == [
        "%(ENV_PATH)s was taken from stackctl's environment (supervisord used its own)",
        "%(ENV_HOME)s was taken from stackctl's environment (supervisord used its own)",
    ]


def test_here_program_group_and_host_names_expand(here: Path) -> None:
    spec = watcher(
        "[program:web]\ncommand=%(here)s/bin/%(program_name)s --group %(group_name)s "
        "--host %(host_node_name)s --n %(numprocs)d --pct 100%%\n"
        "[group:front]\nprograms=web\n"
    )
    assert spec.cmd == f"{here}/bin/web --group front --host web-1 --n 1 --pct 100%"


def test_here_is_the_folder_of_the_file_the_value_is_written_in(here: Path) -> None:
    stack = read(
        "[include]\nfiles=conf.d/*.conf\n" + P,
        **{"conf.d/a.conf": "[program:a]\ncommand=%(here)s/a\n"},
    ).stack
    assert stack.watchers["a"].cmd == f"{here}/conf.d/a"


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("%(nope)s", "%(nope)s cannot be expanded (known: group_name, here, host_node_name, "
         "numprocs, process_num, program_name and ENV_ of each environment variable)"),
        ("100%", "badly formatted (incomplete format); write %% for a %"),
        ("%(ENV_UNSET)s", "%(ENV_UNSET)s cannot be expanded"),
    ],
)  # fmt: skip
def test_an_expansion_that_cannot_be_made_names_its_line(command: str, message: str) -> None:
    assert fails(f"[program:web]\ncommand={command}\n").startswith(
        f"supervisord.conf: line 2: [program:web] command: {message}"
    )


# -- processes and workers ------------------------------------------------------------


def test_numbered_processes_that_run_the_same_thing_are_one_watchers_workers() -> None:
    reading = read(
        "[program:q]\ncommand=/srv/q\nprocess_name=%(program_name)s_%(process_num)02d\n"
        "numprocs=4\nstdout_logfile=/var/log/q-%(process_num)d.log\n"
    )
    assert list(reading.stack.watchers) == ["q"]
    spec = reading.stack.watchers["q"]
    assert (spec.numprocesses, spec.stdout_stream.filename) == (4, "/var/log/q.stdout.log")
    assert texts(reading)[:2] == [
        "its processes q_00 ... q_03 are the workers 1 ... 4 of watcher q",
        "one file for all the workers (/var/log/q.stdout.log), each line tagged with its "
        "worker: supervisord wrote one per process",
    ]


def test_a_process_number_that_is_the_worker_id_is_written_as_the_worker_id() -> None:
    spec = watcher(
        "[program:web]\ncommand=/srv/web --shard %(process_num)d\n"
        "process_name=web%(process_num)s\nnumprocs=3\nnumprocs_start=1\n"
    )
    assert (spec.cmd, spec.numprocesses) == ("/srv/web --shard $(circus.wid)", 3)


@pytest.mark.parametrize(
    ("options", "names", "commands", "why"),
    [
        ("numprocs=2", ["w0", "w1"], ["/srv/w 0", "/srv/w 1"],
         "they count from 0 where a worker id ($(circus.wid)) counts from 1"),
        ("numprocs=2\nnumprocs_start=8", ["w8", "w9"], ["/srv/w 8", "/srv/w 9"],
         "they count from 8 where a worker id ($(circus.wid)) counts from 1"),
    ],
)  # fmt: skip
def test_processes_numbered_unlike_worker_ids_become_a_watcher_each(
    options: str, names: list[str], commands: list[str], why: str
) -> None:
    reading = read(
        f"[program:w]\ncommand=/srv/w %(process_num)d\nprocess_name=w%(process_num)d\n{options}\n"
    )
    assert sorted(reading.stack.watchers) == names
    assert [reading.stack.watchers[n].cmd for n in names] == commands
    assert all(reading.stack.watchers[n].numprocesses == 1 for n in names)
    assert texts(reading)[0] == (
        f"one watcher per process ({', '.join(names)}), since %(process_num) makes their "
        f"command differ and {why}"
    )


def test_padded_numbers_or_numbers_in_the_environment_also_split() -> None:
    padded = read(
        "[program:w]\ncommand=/srv/w --port 80%(process_num)02d\nprocess_name=w%(process_num)d\n"
        "numprocs=2\nnumprocs_start=1\n"
    )
    assert sorted(padded.stack.watchers) == ["w1", "w2"]
    assert padded.stack.watchers["w1"].cmd == "/srv/w --port 8001"
    assert texts(padded)[0].endswith("it is written in a way a worker id ($(circus.wid)) is not")
    env = read(
        "[program:w]\ncommand=/srv/w\nprocess_name=w%(process_num)d\nnumprocs=2\n"
        "numprocs_start=1\nenvironment=SLOT=%(process_num)d\n"
    )
    assert dict(env.stack.watchers["w2"].env) == {"SLOT": "2"}
    assert texts(env)[0].endswith(
        "makes their environment differ and a worker id can only be written in a command, "
        "as $(circus.wid)"
    )


def test_numprocs_without_process_num_in_the_name_is_refused_as_supervisord_does() -> None:
    assert fails(P + "numprocs=2\n") == (
        "supervisord.conf: line 1: [program:web] process_name: must have %(process_num) when "
        "numprocs > 1"
    )


def test_a_split_that_would_name_two_watchers_alike_is_refused() -> None:
    message = fails(
        "[program:b]\ncommand=y\n[program:a]\ncommand=x %(process_num)d\n"
        "process_name=b%(process_num)d\nnumprocs=2\n[program:b0]\ncommand=z\n"
    )
    assert message == "supervisord.conf: line 7: [program:b0]: a second watcher named 'b0'"


def test_a_process_name_stack_cannot_take_is_refused() -> None:
    assert fails(
        "[program:a]\ncommand=x %(process_num)d\nprocess_name=a@%(process_num)d\nnumprocs=2\n"
    ) == "supervisord.conf: line 1: [program:a]: the watcher's name 'a@0' must match " + (
        "[A-Za-z0-9_.-]{1,64}"
    )


# -- fcgi, groups, includes and the rest ------------------------------------------------


def test_fcgi_program_socket_is_each_workers_stdin() -> None:
    reading = read(
        "[fcgi-program:php]\ncommand=php-cgi\nsocket=unix:///run/php.sock\nsocket_mode=0666\n"
        "socket_backlog=64\n[fcgi-program:tcp]\ncommand=app\nsocket=tcp://0.0.0.0:9000\n"
    )
    php, tcp = reading.stack.sockets["php"], reading.stack.sockets["tcp"]
    assert (php.family, php.path, php.umask, php.backlog) == ("AF_UNIX", "/run/php.sock", 0o111, 64)
    assert (tcp.host, tcp.port) == ("0.0.0.0", 9000)
    assert reading.stack.watchers["php"].stdin_socket == "php"
    assert reading.stack.watchers["tcp"].stdin_socket == "tcp"


@pytest.mark.parametrize(
    ("socket", "message"),
    [
        ("socket=unix://run/php.sock", "socket: unix socket path 'run/php.sock' is not absolute"),
        ("socket=udp://x:1", "socket: must be tcp://HOST:PORT or unix:///PATH, got 'udp://x:1'"),
        (
            "socket=tcp://x:1\nsocket_mode=0600",
            "socket_mode: only for a unix socket (unix:///PATH)",
        ),
    ],
)
def test_a_bad_fcgi_socket_is_refused(socket: str, message: str) -> None:
    assert fails(f"[fcgi-program:php]\ncommand=php\n{socket}\n").endswith(message)


def test_groups_are_reported_with_the_watchers_their_programs_became() -> None:
    reading = read(P + "[program:db]\ncommand=db\n[group:all]\nprograms=web,db\npriority=5\n")
    assert texts(reading)[:2] == [
        "Stack has no groups: its programs are the watchers web, db; stackctl start, stop and "
        "restart take them together (web db)",
        "not carried: each watcher keeps its program's priority",
    ]
    assert fails(P + "[group:all]\nprograms=web,nope\n") == (
        "supervisord.conf: line 4: [group:all] programs: names unknown program 'nope'"
    )


def test_include_files_are_read_relative_to_the_main_file(here: Path) -> None:
    (here / "etc").mkdir()
    (here / "etc" / "supervisord.conf").write_text("[include]\nfiles = conf.d/*.conf nope/*\n")
    (here / "etc" / "conf.d").mkdir()
    (here / "etc" / "conf.d" / "a.conf").write_text("[program:a]\ncommand=a\n")
    reading = read_stack_file("etc/supervisord.conf", environ={}, node="h")
    assert list(reading.stack.watchers) == ["a"]
    assert "'nope/*' matches no file" in texts(reading)


def test_later_values_win_as_in_supervisord() -> None:
    assert watcher(P + "command=/srv/other\n").cmd == "/srv/other"


def test_supervisord_user_directory_and_umask_are_every_programs_default() -> None:
    stack = read(
        "[supervisord]\nuser=site\ndirectory=/srv\numask=077\n"
        + P
        + "[program:db]\ncommand=db\nuser=postgres\ndirectory=/var/db\numask=022\n"
    ).stack
    web, db = stack.watchers["web"], stack.watchers["db"]
    assert (web.uid, web.working_dir, web.umask) == ("site", "/srv", 0o077)
    assert (db.uid, db.working_dir, db.umask) == ("postgres", "/var/db", 0o022)


def test_what_has_no_equivalent_is_reported_once_per_item() -> None:
    reading = read(
        "[unix_http_server]\nfile=/tmp/s.sock\n[inet_http_server]\nport=:9001\n"
        "[supervisorctl]\nserverurl=x\n[rpcinterface:supervisor]\nx=y\n"
        "[eventlistener:mail]\ncommand=m\nevents=TICK_5\n[ctlplugin:p]\nx=y\n"
        "[supervisord]\nlogfile=/l\npidfile=/p\nminfds=4096\n[bogus]\nx=1\n" + P
    )
    assert [note.label for note in reading.notes] == [
        "", "[unix_http_server]", "[inet_http_server]", "[supervisorctl]",
        "[rpcinterface:supervisor]", "[eventlistener:mail]", "[ctlplugin:p]",
        "[supervisord] logfile", "[supervisord] pidfile", "[supervisord] minfds", "[bogus]",
    ]  # fmt: skip
    assert list(reading.stack.watchers) == ["web"]


def test_an_unknown_supervisord_option_is_an_error() -> None:
    assert fails("[supervisord]\nlogfiel=/l\n" + P) == (
        "supervisord.conf: line 2: [supervisord] logfiel: unknown option (did you mean logfile?)"
    )


def test_a_section_that_looks_like_a_typo_is_an_error_that_suggests_the_right_one() -> None:
    assert fails(P + "[programs:db]\ncommand=db\n") == (
        "supervisord.conf: line 3: [programs:db]: unknown section (did you mean [program:db]?)"
    )
    assert fails("[supervisor]\nlogfile=/l\n" + P) == (
        "supervisord.conf: line 1: [supervisor]: unknown section (did you mean [supervisord]?)"
    )


def test_an_fcgi_program_split_into_watchers_shares_its_one_socket() -> None:
    stack = read(
        "[fcgi-program:php]\ncommand=php-cgi --slot %(process_num)d\nsocket=tcp://127.0.0.1:9000\n"
        "process_name=php%(process_num)d\nnumprocs=2\n"
    ).stack
    assert list(stack.sockets) == ["php"]
    assert [w.stdin_socket for w in stack.watchers.values()] == ["php", "php"]
    assert sorted(stack.watchers) == ["php0", "php1"]


def test_a_bad_variable_of_supervisords_environment_names_that_line() -> None:
    assert fails('[supervisord]\nenvironment=A="1",B="x\x00y"\n' + P) == (
        "supervisord.conf: line 2: [supervisord] environment B: must not contain a NUL character"
    )
