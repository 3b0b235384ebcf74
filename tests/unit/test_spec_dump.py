"""Writing stacks back as TOML: what load_stack reads is what dump_stack wrote."""

from __future__ import annotations

import shlex
import signal
import tomllib

from hypothesis import given, settings
from hypothesis import strategies as st

from stack.spec.dump import dump_stack, dump_watcher
from stack.spec.load import (
    COLORS,
    INT32_MAX,
    INT64_MAX,
    RLIMITS,
    ROTATE_WHEN,
    load_stack,
    tcp_port,
)
from stack.spec.model import (
    HOOKS,
    MAX_PROCESSES,
    STREAM_CLASSES,
    FlappingSpec,
    HealthSpec,
    HookSpec,
    PlacementSpec,
    SocketSpec,
    StackSpec,
    StreamSpec,
    UpdateSpec,
    WatcherSpec,
    _frozen_map,
)
from stack.spec.secrets import MASK

NAMES = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-",
    min_size=1,
    max_size=12,
)
TEXT = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\0"), max_size=16
).filter(lambda s: "$(" not in s)
SECONDS = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)
SIGNALS = sorted({sig.name.removeprefix("SIG") for sig in signal.Signals})
UMASKS = st.one_of(st.just(-1), st.integers(0, 0o777))


def _int32(low: int) -> st.SearchStrategy[int]:
    return st.integers(low, INT32_MAX)


@st.composite
def sockets(draw: st.DrawFn, name: str) -> SocketSpec:
    family = draw(st.sampled_from(["AF_INET", "AF_INET6", "AF_UNIX"]))
    fields: dict[str, object] = {}
    if family == "AF_UNIX":
        fields["path"] = draw(TEXT.filter(bool))
        fields["host"] = draw(TEXT)
    elif family == "AF_INET6":
        fields["host"] = draw(st.sampled_from(["::1", "::", "fe80::1", "localhost"]))
    else:
        fields["host"] = draw(st.sampled_from(["127.0.0.1", "0.0.0.0", "10.1.2.3", "localhost"]))
    return SocketSpec(
        name=name,
        family=family,
        port=draw(st.integers(0, 65535)),
        type=draw(st.sampled_from(["SOCK_STREAM", "SOCK_DGRAM"])),
        backlog=draw(_int32(1)),
        umask=draw(UMASKS),
        replace=draw(st.booleans()),
        so_reuseport=draw(st.booleans()),
        blocking=draw(st.booleans()),
        **fields,  # type: ignore[arg-type]
    )


@st.composite
def streams(draw: st.DrawFn) -> StreamSpec:
    """Any stream a stack file can give: each class with only the options it takes."""
    kind = draw(st.sampled_from(STREAM_CLASSES))
    fields: dict[str, object] = {"class_": kind, "filename": draw(TEXT)}
    if kind not in ("WatchedFileStream", "TimedRotatingFileStream"):
        fields["max_bytes"] = draw(st.integers(0, INT64_MAX))
    if kind != "WatchedFileStream":
        fields["backup_count"] = draw(_int32(0))
    if kind == "TimedRotatingFileStream":
        fields["rotate_when"] = draw(st.sampled_from(ROTATE_WHEN))
        fields["rotate_interval"] = draw(_int32(1))
    if kind == "FancyStdoutStream":
        fields["color"] = draw(st.sampled_from(["", *COLORS]))
    return StreamSpec(**fields)  # type: ignore[arg-type]


STREAMS = streams()
COMMAND_LINES = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz-/ '\"", min_size=1, max_size=8), min_size=1
).map(shlex.join)
HOOK_SPECS = st.builds(
    HookSpec,
    cmd=COMMAND_LINES,
    ignore_errors=st.booleans(),
    timeout=SECONDS.filter(lambda x: x > 0),
)
FLAPPING = st.builds(
    FlappingSpec,
    attempts=_int32(1),
    window=SECONDS.filter(lambda x: x > 0),
    retry_in=SECONDS,
    max_retry=_int32(-1),
)

POSITIVE = SECONDS.filter(lambda x: x > 0)
UPDATES = st.builds(UpdateSpec, max_parallel=_int32(1), min_uptime=SECONDS)
LABELS = st.dictionaries(TEXT.filter(lambda s: s and "=" not in s and "," not in s), TEXT)


@st.composite
def placements(draw: st.DrawFn, singleton: bool) -> PlacementSpec:
    modes = ["spread"] if singleton else ["spread", "each"]
    return PlacementSpec(
        mode=draw(st.sampled_from(modes)),
        max_per_host=draw(_int32(0)),
        labels=_frozen_map(draw(LABELS)),
    )


@st.composite
def health_checks(draw: st.DrawFn, usable_sockets: list[str]) -> HealthSpec:
    kind = draw(st.sampled_from(["", "tcp", "http", "exec"]))
    if kind == "":
        return HealthSpec()
    if kind == "tcp":
        names = [name for name in usable_sockets if tcp_port(name) is None]
        ports = st.integers(1, 65535).map(str)
        target = draw(st.one_of(ports, st.sampled_from(names)) if names else ports)
    elif kind == "http":
        target = draw(st.sampled_from(["/", "http://"])) + draw(TEXT)
    else:
        target = draw(TEXT.filter(lambda s: s.strip()))
    return HealthSpec(
        type=kind,
        target=target,
        interval=draw(POSITIVE),
        timeout=draw(POSITIVE),
        retries=draw(_int32(1)),
    )


@st.composite
def watchers(draw: st.DrawFn, name: str, socket_names: list[str]) -> WatcherSpec:
    inherited: list[str] = []
    if socket_names:
        inherited = draw(st.lists(st.sampled_from(socket_names), unique=True))
    use_sockets = bool(inherited) or draw(st.booleans())
    usable = inherited or (socket_names if use_sockets else [])
    cmd = draw(TEXT.filter(lambda s: s.strip()))
    refer: bool = draw(st.booleans())
    if usable and refer:
        cmd += f" --fd $(circus.sockets.{draw(st.sampled_from(usable))})"
    singleton = draw(st.booleans())
    env = draw(st.dictionaries(TEXT.filter(lambda s: s and "=" not in s), TEXT, max_size=3))
    shell = draw(st.booleans())
    copy_env = draw(st.booleans())
    stdin_socket = draw(st.sampled_from(["", *socket_names]))
    respawn = draw(st.booleans())
    return WatcherSpec(
        name=name,
        cmd=cmd + draw(st.sampled_from(["", " $(stack.wid)", " $(circus.name)"])),
        args=tuple(draw(st.lists(TEXT, max_size=3))),
        numprocesses=draw(st.integers(0, 1 if singleton else MAX_PROCESSES)),
        warmup_delay=draw(SECONDS),
        working_dir=draw(TEXT),
        shell=shell,
        uid=draw(TEXT),
        gid=draw(TEXT),
        env=_frozen_map(env),
        copy_env=copy_env,
        rlimits=_frozen_map(
            draw(st.dictionaries(st.sampled_from(RLIMITS), st.integers(-1, INT64_MAX)))
        ),
        stop_signal=draw(st.sampled_from(SIGNALS)),
        stop_children=draw(st.booleans()),
        graceful_timeout=draw(SECONDS),
        respawn=respawn,
        max_retry=draw(_int32(-1)),
        autostart=draw(st.booleans()),
        priority=draw(st.integers(-(2**31), INT32_MAX)),
        singleton=singleton,
        use_sockets=use_sockets,
        sockets=tuple(inherited),
        close_child_stdin=draw(st.booleans()),
        max_age=draw(SECONDS),
        max_age_variance=draw(SECONDS),
        stdout_stream=draw(STREAMS),
        stderr_stream=draw(STREAMS),
        flapping=draw(FLAPPING),
        umask=draw(UMASKS),
        placement=draw(placements(singleton)),
        update=draw(UPDATES),
        health=draw(health_checks(usable)),
        hooks=_frozen_map(draw(st.dictionaries(st.sampled_from(HOOKS), HOOK_SPECS, max_size=3))),
        on_demand=bool(usable or stdin_socket) and draw(st.booleans()),
        send_hup=draw(st.booleans()),
        stdin_socket=stdin_socket,
        executable=draw(st.one_of(st.just(""), TEXT.filter(lambda s: s.strip()))),
        shell_args=tuple(draw(st.lists(TEXT, max_size=2))) if shell else (),
        copy_path=copy_env and draw(st.booleans()),
        virtualenv=draw(TEXT.filter(lambda s: s.strip())) if copy_env else "",
        close_child_stdout=draw(st.booleans()),
        close_child_stderr=draw(st.booleans()),
        autorestart=draw(st.sampled_from(["", "unexpected"])) if respawn else "",
        exitcodes=tuple(draw(st.lists(st.integers(0, 255), min_size=1, max_size=3, unique=True))),
        startsecs=draw(SECONDS),
    )


@st.composite
def stacks(draw: st.DrawFn) -> StackSpec:
    socket_names = draw(st.lists(NAMES, unique=True, max_size=3))
    watcher_names = draw(st.lists(NAMES, unique=True, max_size=3))
    return StackSpec(
        sockets=_frozen_map({name: draw(sockets(name)) for name in socket_names}),
        watchers=_frozen_map({name: draw(watchers(name, socket_names)) for name in watcher_names}),
    )


@settings(max_examples=150, deadline=None, database=None)
@given(stacks())
def test_load_of_dump_gives_back_the_same_stack(stack: StackSpec) -> None:
    assert load_stack(dump_stack(stack)) == stack


def test_dump_writes_only_what_differs_from_defaults_plus_cmd_and_numprocesses() -> None:
    stack = load_stack(
        '[sockets.web]\nport = 8080\n[watchers.webapp]\ncmd = "run"\n'
        "[watchers.webapp.flapping]\nattempts = 3\n"
    )
    assert dump_stack(stack) == (
        "[sockets.web]\nport = 8080\n\n"
        '[watchers.webapp]\ncmd = "run"\nnumprocesses = 1\n\n'
        "[watchers.webapp.flapping]\nattempts = 3\n"
    )


def test_dump_writes_readable_numbers_and_quotes_odd_names() -> None:
    spec = WatcherSpec(
        name="my.app",
        cmd='say "hi"\n',
        graceful_timeout=10.0,
        warmup_delay=0.25,
        umask=0o022,
        env=_frozen_map({"A B": "1"}),
    )
    text = dump_watcher(spec)
    assert text.startswith('[watchers."my.app"]\ncmd = "say \\"hi\\"\\n"\n')
    assert "graceful_timeout = 10\n" in text and "warmup_delay = 0.25\n" in text
    assert "umask = 0o022\n" in text
    assert '[watchers."my.app".env]\n"A B" = "1"\n' in text
    assert load_stack(text).watchers["my.app"] == spec


def test_mask_secrets_hides_values_of_secret_looking_variables() -> None:
    env = {
        "DB_PASSWORD": "hunter2",
        "api_key": "k",
        "GH_TOKEN": "t",
        "MySecret": "s",
        "USER": "bob",
    }
    spec = WatcherSpec(name="w", cmd="run", env=_frozen_map(env))
    masked = tomllib.loads(dump_watcher(spec, mask_secrets=True))["watchers"]["w"]["env"]
    assert masked == {
        "DB_PASSWORD": MASK, "api_key": MASK, "GH_TOKEN": MASK, "MySecret": MASK, "USER": "bob",
    }  # fmt: skip
    plain = tomllib.loads(dump_watcher(spec))["watchers"]["w"]["env"]
    assert plain == env


def test_mask_secrets_applies_to_every_watcher_of_a_stack() -> None:
    stack = load_stack(
        '[watchers.a]\ncmd = "x"\nenv = { TOKEN = "1" }\n'
        '[watchers.b]\ncmd = "y"\nenv = { PASSWORD = "2" }\n'
    )
    text = dump_stack(stack, mask_secrets=True)
    assert '"1"' not in text and '"2"' not in text and text.count(MASK) == 2


def test_empty_stack_dumps_to_empty_text() -> None:
    assert dump_stack(StackSpec()) == ""
    assert load_stack(dump_stack(StackSpec())) == StackSpec()


def test_fleet_tables_are_written_with_only_what_differs() -> None:
    text = (
        '[sockets.web]\nport = 8080\n\n[watchers.webapp]\ncmd = "run"\nnumprocesses = 8\n'
        "use_sockets = true\n\n[watchers.webapp.placement]\nmax_per_host = 3\n"
        'labels = {role = "web"}\n\n[watchers.webapp.update]\nmax_parallel = 2\n\n'
        '[watchers.webapp.health]\ntype = "http"\ntarget = "/healthz"\nretries = 5\n'
    )
    assert dump_stack(load_stack(text)) == text


def test_health_tcp_port_is_written_as_a_number_and_a_socket_as_a_name() -> None:
    port = WatcherSpec(name="w", cmd="run", health=HealthSpec(type="tcp", target="8080"))
    assert '[watchers.w.health]\ntype = "tcp"\ntarget = 8080\n' in dump_watcher(port)
    assert load_stack(dump_watcher(port)).watchers["w"] == port


def test_health_table_is_left_out_without_a_check() -> None:
    assert "health" not in dump_watcher(WatcherSpec(name="w", cmd="run"))


def test_comments_go_above_what_they_are_about_or_the_nearest_thing_written() -> None:
    stack = load_stack(
        '[sockets.web]\nport = 80\n[watchers.w]\ncmd = "run"\n[watchers.w.env]\nA = "1"\n'
    )
    text = dump_stack(
        stack,
        comments={
            (): ["about the file"],
            ("sockets", "web", "port"): ["about the port"],
            ("watchers", "w"): ["about the watcher"],
            ("watchers", "w", "priority"): ["priority is the default: not written"],
            ("watchers", "w", "env", "A"): ["about A"],
            ("watchers", "gone"): ["about a watcher not in the stack"],
            ("watchers", "w", "hooks"): ["a line\nthat would end the comment"],
        },
    )
    assert text == (
        "# about the file\n# about a watcher not in the stack\n\n"
        "[sockets.web]\n# about the port\nport = 80\n\n"
        "# about the watcher\n# priority is the default: not written\n"
        "# a line\\x0athat would end the comment\n"
        '[watchers.w]\ncmd = "run"\nnumprocesses = 1\n\n[watchers.w.env]\n# about A\nA = "1"\n'
    )
    assert load_stack(text) == stack
