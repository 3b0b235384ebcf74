"""The options Circus and Supervisor users rely on, in the stack file: each loads into
the model, is checked, is written back, crosses the wire, and changes the workers'
fingerprint only when it is an option of the process."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings

from stack.spec.diff import diff_stacks, needs_new_processes
from stack.spec.dump import dump_stack
from stack.spec.errors import SpecError
from stack.spec.load import load_stack
from stack.spec.model import HookSpec, StackSpec, StreamSpec, WatcherSpec, _frozen_map
from stack.spec.pending import PENDING_OPTIONS, pending_options
from stack.v1 import types_pb2 as pb
from stack.wire.spec import watcher_from_proto, watcher_to_proto
from tests.unit.test_spec_dump import stacks

W = '[watchers.web]\ncmd = "run"\n'
S = "[sockets.web]\nport = 8080\n"


def watcher(text: str, name: str = "web") -> WatcherSpec:
    return load_stack(text).watchers[name]


# -- each option loads ---------------------------------------------------------------


def test_hooks_take_a_command_line_or_a_table() -> None:
    spec = watcher(
        W + "[watchers.web.hooks]\n"
        'before_start = "migrate --check"\n'
        'after_reap = { cmd = "notify $STACK_WID", ignore_errors = true, timeout = 5 }\n'
    )
    assert dict(spec.hooks) == {
        "before_start": HookSpec(cmd="migrate --check"),
        "after_reap": HookSpec(cmd="notify $STACK_WID", ignore_errors=True, timeout=5.0),
    }
    assert HookSpec(cmd="x").timeout == 30.0


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        (S + W + "use_sockets = true\non_demand = true\n", "on_demand", True),
        (W + "send_hup = true\n", "send_hup", True),
        (S + W + 'stdin_socket = "web"\n', "stdin_socket", "web"),
        (W + 'executable = "/usr/bin/python3"\n', "executable", "/usr/bin/python3"),
        (W + 'shell = true\nshell_args = "a b"\n', "shell_args", ("a", "b")),
        (W + 'shell = true\nshell_args = ["a b"]\n', "shell_args", ("a b",)),
        (W + "copy_env = true\ncopy_path = true\n", "copy_path", True),
        (W + 'copy_env = true\nvirtualenv = "/srv/venv"\n', "virtualenv", "/srv/venv"),
        (W + "close_child_stdout = true\n", "close_child_stdout", True),
        (W + "close_child_stderr = true\n", "close_child_stderr", True),
        (W + 'autorestart = "unexpected"\n', "autorestart", "unexpected"),
        (W + "exitcodes = [0, 2]\n", "exitcodes", (0, 2)),
        (W + "startsecs = 1.5\n", "startsecs", 1.5),
        (W + "startsecs = 2\n", "startsecs", 2.0),
    ],
)
def test_each_new_option_loads_into_the_model(text: str, field: str, value: object) -> None:
    assert getattr(watcher(text), field) == value


@pytest.mark.parametrize(
    ("line", "respawn", "autorestart"),
    [
        ("autorestart = true", True, ""),
        ("autorestart = false", False, ""),
        ('autorestart = "unexpected"', True, "unexpected"),
        ("respawn = false\nautorestart = false", False, ""),
        ('respawn = true\nautorestart = "unexpected"', True, "unexpected"),
    ],
)
def test_autorestart_true_and_false_are_respawn_and_unexpected_restarts_only_bad_exits(
    line: str, respawn: bool, autorestart: str
) -> None:
    spec = watcher(W + line + "\n")
    assert (spec.respawn, spec.autorestart) == (respawn, autorestart)


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("", StreamSpec()),
        ('class = "StdoutStream"', StreamSpec(class_="StdoutStream")),
        ('class = "circus.stream.StdoutStream"', StreamSpec(class_="StdoutStream")),
        ('class = "stack.FileStream"', StreamSpec()),
        (
            'class = "FancyStdoutStream"\ncolor = "Green"',
            StreamSpec(class_="FancyStdoutStream", color="green"),
        ),
        (
            'class = "WatchedFileStream"\nfilename = "/var/log/a.log"',
            StreamSpec(class_="WatchedFileStream", filename="/var/log/a.log"),
        ),
        (
            'class = "TimedRotatingFileStream"\nrotate_when = "midnight"\nbackup_count = 7',
            StreamSpec(class_="TimedRotatingFileStream", rotate_when="MIDNIGHT", backup_count=7),
        ),
        (
            'class = "TimedRotatingFileStream"\nrotate_when = "w6"\nrotate_interval = 2',
            StreamSpec(class_="TimedRotatingFileStream", rotate_when="W6", rotate_interval=2),
        ),
    ],
)
def test_stream_classes_and_their_options(table: str, expected: StreamSpec) -> None:
    spec = watcher(W + "[watchers.web.stdout_stream]\n" + table + "\n")
    assert spec.stdout_stream == expected


BAD = [
    (W + "[watchers.web.hooks]\nbefore_strat = \"x\"\n",
     "watchers.web.hooks.before_strat: unknown hook (did you mean before_start?)"),
    (W + "[watchers.web.hooks]\nbefore_reap = \"x\"\n",
     "watchers.web.hooks.before_reap: unknown hook (did you mean after_reap?)"),
    (W + "[watchers.web.hooks]\nafter_stop = 3\n",
     "watchers.web.hooks.after_stop: must be a command line or a table with cmd, got 3"),
    (W + "[watchers.web.hooks]\nafter_stop = \"  \"\n",
     "watchers.web.hooks.after_stop: must not be empty"),
    (W + "[watchers.web.hooks]\nafter_stop = \"say 'hi\"\n",
     "watchers.web.hooks.after_stop: cannot be split into arguments: No closing quotation"),
    (W + "[watchers.web.hooks]\nafter_stop = { ignore_errors = true }\n",
     "watchers.web.hooks.after_stop.cmd: required"),
    (W + "[watchers.web.hooks]\nafter_stop = { cmd = \"x\", timeout = 0 }\n",
     "watchers.web.hooks.after_stop.timeout: must be > 0, got 0"),
    (W + "[watchers.web.hooks]\nafter_stop = { cmd = \"x\", ignore_error = true }\n",
     "watchers.web.hooks.after_stop.ignore_error: unknown option (did you mean ignore_errors?)"),
    (W + "on_demand = true\n",
     "watchers.web.on_demand: needs a socket to wait on (use_sockets, sockets or stdin_socket)"),
    (W + "on_demand = 1\n", "watchers.web.on_demand: must be true or false, got 1"),
    (W + 'stdin_socket = "db"\n', "watchers.web.stdin_socket: undefined socket 'db'"),
    (W + 'stdin_socket = ""\n', "watchers.web.stdin_socket: must not be empty"),
    (W + 'executable = ""\n', "watchers.web.executable: must not be empty"),
    (W + 'shell_args = "-e"\n', "watchers.web.shell_args: only used with shell = true"),
    (W + "copy_path = true\n", "watchers.web.copy_path: needs copy_env = true"),
    (W + 'virtualenv = "/v"\n', "watchers.web.virtualenv: needs copy_env = true"),
    (W + 'autorestart = "always"\n',
     'watchers.web.autorestart: must be true, false or "unexpected", got "always"'),
    (W + "autorestart = 1\n",
     'watchers.web.autorestart: must be true, false or "unexpected", got 1'),
    (W + "respawn = false\nautorestart = true\n",
     "watchers.web.autorestart: contradicts respawn = false (write only one of them)"),
    (W + 'respawn = false\nautorestart = "unexpected"\n',
     "watchers.web.autorestart: contradicts respawn = false (write only one of them)"),
    (W + "exitcodes = []\n",
     "watchers.web.exitcodes: must be a list of exit codes like [0, 2], got []"),
    (W + "exitcodes = 0\n",
     "watchers.web.exitcodes: must be a list of exit codes like [0, 2], got 0"),
    (W + "exitcodes = [0, 256]\n", "watchers.web.exitcodes[1]: must be <= 255, got 256"),
    (W + "exitcodes = [2, 2]\n", "watchers.web.exitcodes: exit code 2 is listed twice"),
    (W + "startsecs = -1\n", "watchers.web.startsecs: must be >= 0, got -1"),
    (W + '[watchers.web.stdout_stream]\nclass = "StdoutStreem"\n',
     "watchers.web.stdout_stream.class: must be one of FileStream, WatchedFileStream, "
     'TimedRotatingFileStream, StdoutStream, FancyStdoutStream, got "StdoutStreem" '
     "(did you mean StdoutStream?)"),
    (W + '[watchers.web.stdout_stream]\nclass = "my.module.Stream"\n',
     "watchers.web.stdout_stream.class: must be one of FileStream, WatchedFileStream, "
     'TimedRotatingFileStream, StdoutStream, FancyStdoutStream, got "my.module.Stream"'),
    (W + '[watchers.web.stdout_stream]\nclass = "TimedRotatingFileStream"\n',
     "watchers.web.stdout_stream.rotate_when: required for TimedRotatingFileStream"),
    (W + '[watchers.web.stdout_stream]\nclass = "TimedRotatingFileStream"\nrotate_when = "X"\n',
     'watchers.web.stdout_stream.rotate_when: must be S, M, H, D, W0 to W6 or midnight, got "X"'),
    (W + '[watchers.web.stdout_stream]\nclass = "TimedRotatingFileStream"\n'
     'rotate_when = "H"\nmax_bytes = 10\n',
     "watchers.web.stdout_stream.max_bytes: not used by TimedRotatingFileStream "
     "(it rotates by time)"),
    (W + '[watchers.web.stdout_stream]\nclass = "WatchedFileStream"\nbackup_count = 2\n',
     "watchers.web.stdout_stream.backup_count: not used by WatchedFileStream "
     "(another tool rotates its file)"),
    (W + '[watchers.web.stdout_stream]\nrotate_when = "H"\n',
     "watchers.web.stdout_stream.rotate_when: not used by FileStream"),
    (W + '[watchers.web.stdout_stream]\nclass = "StdoutStream"\ncolor = "red"\n',
     "watchers.web.stdout_stream.color: not used by StdoutStream"),
    (W + '[watchers.web.stdout_stream]\nclass = "FancyStdoutStream"\ncolor = "pink"\n',
     "watchers.web.stdout_stream.color: must be one of red, green, yellow, blue, magenta, "
     'cyan, white, got "pink"'),
    (W + '[watchers.web.stdout_stream]\nclass = "TimedRotatingFileStream"\n'
     'rotate_when = "H"\nrotate_interval = 0\n',
     "watchers.web.stdout_stream.rotate_interval: must be >= 1, got 0"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[line.split(":")[0] for _, line in BAD])
def test_a_bad_value_of_a_new_option_gives_one_exact_line(text: str, expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_stack(text, "web.toml")
    assert str(caught.value) == f"web.toml: {expected}"


# -- did you mean --------------------------------------------------------------------

TYPOS = [
    (W + "numprocess = 2\n",
     "watchers.web.numprocess: unknown option (did you mean numprocesses?)"),
    (W + "numprocs = 2\n", "watchers.web.numprocs: unknown option (did you mean numprocesses?)"),
    (W + "rlimit_nofiles = 2\n",
     "watchers.web.rlimit_nofiles: unknown option (did you mean rlimit_nofile?)"),
    (W + "Graceful_Timeout = 2\n",
     "watchers.web.Graceful_Timeout: unknown option (did you mean graceful_timeout?)"),
    (W + "colour = 2\n", "watchers.web.colour: unknown option"),
    (W + "command = \"x\"\n", "watchers.web.command: unknown option (did you mean cmd?)"),
    (W + "directory = \"/\"\n",
     "watchers.web.directory: unknown option (did you mean working_dir?)"),
    (W + "stopwaitsecs = 2\n",
     "watchers.web.stopwaitsecs: unknown option (did you mean graceful_timeout?)"),
    ("[watcher.web]\ncmd = \"x\"\n", "watcher: unknown section (did you mean watchers?)"),
    ("[socket.web]\nport = 1\n", "socket: unknown section (did you mean sockets?)"),
    (S.replace("port", "prot"), "sockets.web.prot: unknown option (did you mean port?)"),
    (W + "[watchers.web.flapping]\nattempt = 2\n",
     "watchers.web.flapping.attempt: unknown option (did you mean attempts?)"),
    (W + "[watchers.web.placement]\nmax_per_hosts = 2\n",
     "watchers.web.placement.max_per_hosts: unknown option (did you mean max_per_host?)"),
    (W + "[watchers.web.update]\nmax_paralel = 2\n",
     "watchers.web.update.max_paralel: unknown option (did you mean max_parallel?)"),
    (W + "[watchers.web.health]\ntype = \"tcp\"\ntarget = 80\nretry = 2\n",
     "watchers.web.health.retry: unknown option (did you mean retries?)"),
    (W + "[watchers.web.stdout_stream]\nfile_name = \"a\"\n",
     "watchers.web.stdout_stream.file_name: unknown option (did you mean filename?)"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), TYPOS, ids=[line for _, line in TYPOS])
def test_unknown_options_and_sections_suggest_the_closest_known_one(
    text: str, expected: str
) -> None:
    with pytest.raises(SpecError) as caught:
        load_stack(text, "web.toml")
    assert str(caught.value) == f"web.toml: {expected}"


# -- written back, over the wire -----------------------------------------------------

FULL = (
    '[sockets.web]\nport = 8080\n[sockets.fcgi]\npath = "/run/app.sock"\n'
    '[watchers.web]\ncmd = "run"\nuse_sockets = true\non_demand = true\nsend_hup = true\n'
    'stdin_socket = "fcgi"\nexecutable = "/usr/bin/app"\nshell = true\nshell_args = ["x"]\n'
    'copy_env = true\ncopy_path = true\nvirtualenv = "/srv/venv"\nclose_child_stdout = true\n'
    'close_child_stderr = true\nautorestart = "unexpected"\nexitcodes = [0, 3]\nstartsecs = 1\n'
    '[watchers.web.stdout_stream]\nclass = "TimedRotatingFileStream"\nrotate_when = "D"\n'
    '[watchers.web.stderr_stream]\nclass = "FancyStdoutStream"\ncolor = "cyan"\n'
    '[watchers.web.hooks]\nafter_spawn = "a"\n'
    'before_start = { cmd = "b", ignore_errors = true, timeout = 90 }\n'
)


def test_dump_writes_the_new_options_so_that_they_load_back() -> None:
    stack = load_stack(FULL)
    text = dump_stack(stack)
    assert 'autorestart = "unexpected"\n' in text and "exitcodes = [0, 3]\n" in text
    assert '[watchers.web.stderr_stream]\nclass = "FancyStdoutStream"\ncolor = "cyan"\n' in text
    assert (
        '[watchers.web.hooks]\nbefore_start = {cmd = "b", ignore_errors = true, timeout = 90}\n'
        'after_spawn = "a"\n'
    ) in text
    assert load_stack(text) == stack


def test_a_watcher_crosses_the_wire_unchanged() -> None:
    spec = load_stack(FULL).watchers["web"]
    message = pb.WatcherSpec.FromString(watcher_to_proto(spec).SerializeToString())
    assert watcher_from_proto(message) == spec


@settings(max_examples=100, deadline=None, database=None)
@given(stacks())
def test_any_watcher_crosses_the_wire_unchanged(stack: StackSpec) -> None:
    for spec in stack.watchers.values():
        message = pb.WatcherSpec.FromString(watcher_to_proto(spec).SerializeToString())
        assert watcher_from_proto(message) == spec


def test_a_message_from_before_the_new_options_decodes_to_their_defaults() -> None:
    old = pb.WatcherSpec(name="web", cmd="run", numprocesses=1, respawn=True)
    old.stdout_stream.CopyFrom(pb.StreamSpec(filename="", max_bytes=10, backup_count=5))
    spec = watcher_from_proto(old)
    assert spec.exitcodes == (0,) and spec.hooks == {} and spec.autorestart == ""
    assert spec.stdout_stream.class_ == "FileStream" and spec.stdout_stream.rotate_interval == 1


# -- which changes need new processes ------------------------------------------------

GOLDEN = {
    # Fingerprints computed before the new options existed: a watcher that does not use
    # them must keep its fingerprint, or every running stack would be rolled on upgrade.
    "minimal": ('[watchers.a]\ncmd = "run"\n', "cfbd40573e12ca02"),
    "demo": ((
        "[sockets.web]\nhost = \"127.0.0.1\"\nport = 8080\n[watchers.webapp]\n"
        'cmd = "python3 -m examples.app --fd $(circus.sockets.web)"\nnumprocesses = 4\n'
        "use_sockets = true\ngraceful_timeout = 10\n[watchers.webapp.env]\n"
        'GREETING = "hello"\n[watchers.webapp.flapping]\nattempts = 3\nwindow = 2\n'
    ), "f34dada6b8ea1f8c"),
    "every_old_option": ((
        '[sockets.web]\nport = 8080\n[watchers.full]\ncmd = "app --fd $(circus.sockets.web)"\n'
        'args = ["-v"]\nnumprocesses = 3\nwarmup_delay = 1.5\nworking_dir = "/srv"\n'
        'shell = true\nuid = "www-data"\ngid = "www-data"\ncopy_env = true\n'
        'rlimit_nofile = 4096\nstop_signal = "QUIT"\nstop_children = true\n'
        "graceful_timeout = 12\nrespawn = false\nmax_retry = 3\nautostart = false\n"
        "priority = 7\nuse_sockets = true\nclose_child_stdin = false\nmax_age = 3600\n"
        "max_age_variance = 60\numask = 0o022\n[watchers.full.env]\nA = \"1\"\n"
        '[watchers.full.stdout_stream]\nfilename = "/var/log/full.out"\nmax_bytes = 1000\n'
        'backup_count = 2\n[watchers.full.stderr_stream]\nclass = "FileStream"\n'
        'filename = "/var/log/full.err"\n'
    ), "b2fde8d2c5462cc6"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_a_watcher_without_the_new_options_keeps_its_fingerprint(case: str) -> None:
    text, fingerprint = GOLDEN[case]
    (spec,) = [w for w in load_stack(text).watchers.values()]
    assert spec.process_fingerprint() == fingerprint
    message = pb.WatcherSpec.FromString(watcher_to_proto(spec).SerializeToString())
    assert watcher_from_proto(message).process_fingerprint() == fingerprint


BASE = WatcherSpec(name="w", cmd="run", copy_env=True, shell=True)


@pytest.mark.parametrize(
    ("changes", "replaces"),
    [
        ({"hooks": _frozen_map({"before_start": HookSpec(cmd="x")})}, False),
        ({"on_demand": True}, False),
        ({"send_hup": True}, False),
        ({"autorestart": "unexpected"}, False),
        ({"exitcodes": (0, 1)}, False),
        ({"startsecs": 3.0}, False),
        ({"stdin_socket": "web"}, True),
        ({"executable": "/bin/x"}, True),
        ({"shell_args": ("a",)}, True),
        ({"copy_path": True}, True),
        ({"virtualenv": "/v"}, True),
        ({"close_child_stdout": True}, True),
        ({"close_child_stderr": True}, True),
        ({"stdout_stream": StreamSpec(class_="StdoutStream")}, True),
        ({"stderr_stream": StreamSpec(class_="FancyStdoutStream", color="red")}, True),
    ],
    ids=lambda value: next(iter(value)) if isinstance(value, dict) else str(value),
)
def test_only_options_of_the_process_need_new_processes(
    changes: dict[str, object], replaces: bool
) -> None:
    new = replace(BASE, **changes)  # type: ignore[arg-type]
    assert needs_new_processes(BASE, new) is replaces


def test_a_change_of_the_stdin_socket_replaces_the_workers_that_read_it() -> None:
    text = '[watchers.w]\ncmd = "run"\nstdin_socket = "fcgi"\n'
    old = load_stack('[sockets.fcgi]\npath = "/run/a.sock"\n' + text)
    new = load_stack('[sockets.fcgi]\npath = "/run/b.sock"\n' + text)
    changes = {(c.kind, c.name): c for c in diff_stacks(old, new)}
    assert changes[("watcher", "w")].replaces
    assert changes[("watcher", "w")].details == (
        "uses socket fcgi, which changed (path: '/run/a.sock' -> '/run/b.sock')",
    )


def test_diff_names_stream_class_and_hooks_as_the_file_writes_them() -> None:
    old = load_stack(W)
    new = load_stack(
        W + '[watchers.web.stdout_stream]\nclass = "StdoutStream"\n'
        '[watchers.web.hooks]\nbefore_start = "https://u:pw@h/x"\n'
    )
    (change,) = diff_stacks(old, new)
    assert change.details == (
        "stdout_stream.class: 'FileStream' -> 'StdoutStream'",
        "hooks.before_start: (unset) -> {'cmd': 'https://u:********@h/x', "
        "'ignore_errors': False, 'timeout': 30.0}",
    )


# -- apply says what the agents do not do yet ----------------------------------------


def test_apply_warns_of_each_option_the_agents_do_not_act_on_yet() -> None:
    assert pending_options(load_stack(S + W + "use_sockets = true\n")) == []
    assert pending_options(load_stack(FULL)) == [
        f"watchers.web.{option}: not acted on by this version's agents yet"
        for option in (
            "hooks", "on_demand", "send_hup", "stdin_socket", "executable", "shell_args",
            "copy_path", "virtualenv", "close_child_stdout", "close_child_stderr",
            "autorestart", "exitcodes", "startsecs",
        )
        if option in PENDING_OPTIONS
    ]  # fmt: skip


def test_stream_classes_and_their_options_are_acted_on() -> None:
    assert not [line for line in pending_options(load_stack(FULL)) if "_stream." in line]
