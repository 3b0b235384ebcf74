"""Loading and validating stack files: every bad file gives one exact line."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack.spec.errors import SpecError
from stack.spec.load import load_stack, load_stack_file, parse_signal
from stack.spec.model import (
    FlappingSpec,
    HealthSpec,
    PlacementSpec,
    StreamSpec,
    UpdateSpec,
    WatcherSpec,
)

W = '[watchers.webapp]\ncmd = "run"\n'
S = "[sockets.web]\nport = 8080\n"

BAD_FILES = [
    ("unknown_option", W + 'colour = "red"\n', "watchers.webapp.colour: unknown option"),
    (
        "unknown_section",
        "program = 1\n",
        "program: unknown section (expected [sockets.NAME] or [watchers.NAME])",
    ),
    ("sockets_not_a_table", "sockets = 3\n", "sockets: must be a table, got 3"),
    (
        "watcher_not_a_table",
        "watchers = { webapp = 3 }\n",
        "watchers.webapp: must be a table, got 3",
    ),
    ("missing_cmd", "[watchers.webapp]\nnumprocesses = 2\n", "watchers.webapp.cmd: required"),
    ("blank_cmd", '[watchers.webapp]\ncmd = "  "\n', "watchers.webapp.cmd: must not be empty"),
    (
        "cmd_not_a_string",
        '[watchers.webapp]\ncmd = ["a", "b"]\n',
        'watchers.webapp.cmd: must be a string, got ["a", "b"]',
    ),
    (
        "numprocesses_negative",
        W + "numprocesses = -3\n",
        "watchers.webapp.numprocesses: must be >= 0, got -3",
    ),
    (
        "numprocesses_above_max",
        W + "numprocesses = 10001\n",
        "watchers.webapp.numprocesses: must be <= 10000, got 10001",
    ),
    (
        "numprocesses_string",
        W + 'numprocesses = "four"\n',
        'watchers.webapp.numprocesses: must be an integer, got "four"',
    ),
    (
        "numprocesses_bool",
        W + "numprocesses = true\n",
        "watchers.webapp.numprocesses: must be an integer, got true",
    ),
    (
        "numprocesses_float",
        W + "numprocesses = 2.5\n",
        "watchers.webapp.numprocesses: must be an integer, got 2.5",
    ),
    (
        "graceful_timeout_negative",
        W + "graceful_timeout = -1\n",
        "watchers.webapp.graceful_timeout: must be >= 0, got -1",
    ),
    (
        "graceful_timeout_string",
        W + 'graceful_timeout = "10s"\n',
        'watchers.webapp.graceful_timeout: must be a number, got "10s"',
    ),
    (
        "graceful_timeout_infinite",
        W + "graceful_timeout = inf\n",
        "watchers.webapp.graceful_timeout: must be a finite number, got inf",
    ),
    (
        "warmup_delay_bool",
        W + "warmup_delay = false\n",
        "watchers.webapp.warmup_delay: must be a number, got false",
    ),
    (
        "shell_string",
        W + 'shell = "yes"\n',
        'watchers.webapp.shell: must be true or false, got "yes"',
    ),
    ("shell_int", W + "shell = 1\n", "watchers.webapp.shell: must be true or false, got 1"),
    ("max_retry_below", W + "max_retry = -2\n", "watchers.webapp.max_retry: must be >= -1, got -2"),
    (
        "priority_beyond_int32",
        W + "priority = 3000000000\n",
        "watchers.webapp.priority: must be <= 2147483647, got 3000000000",
    ),
    (
        "umask_too_big",
        W + "umask = 0o1000\n",
        "watchers.webapp.umask: must be <= 0o777, got 0o1000",
    ),
    (
        "umask_not_octal",
        W + 'umask = "rwx"\n',
        'watchers.webapp.umask: must be an octal number like 0o022, got "rwx"',
    ),
    ("uid_negative", W + "uid = -1\n", "watchers.webapp.uid: must be >= 0, got -1"),
    ("gid_bool", W + "gid = true\n", "watchers.webapp.gid: must be a name or a number, got true"),
    (
        "args_number",
        W + "args = 3\n",
        "watchers.webapp.args: must be a string or a list of strings, got 3",
    ),
    (
        "args_item_number",
        W + 'args = ["a", 1]\n',
        "watchers.webapp.args[1]: must be a string, got 1",
    ),
    (
        "args_unbalanced_quote",
        W + 'args = "a \'b"\n',
        "watchers.webapp.args: cannot be split into arguments: No closing quotation",
    ),
    ("rlimit_unknown", W + "rlimit_bogus = 3\n", "watchers.webapp.rlimit_bogus: unknown option"),
    (
        "rlimit_below_unlimited",
        W + "rlimit_nofile = -2\n",
        "watchers.webapp.rlimit_nofile: must be >= -1, got -2",
    ),
    (
        "rlimit_string",
        W + 'rlimit_nofile = "unlimited"\n',
        'watchers.webapp.rlimit_nofile: must be an integer, got "unlimited"',
    ),
    (
        "bad_signal_name",
        W + 'stop_signal = "SIGFOO"\n',
        "watchers.webapp.stop_signal: unknown signal 'SIGFOO'",
    ),
    (
        "bad_signal_number",
        W + "stop_signal = 999\n",
        "watchers.webapp.stop_signal: unknown signal 999",
    ),
    (
        "singleton_with_two",
        W + "singleton = true\nnumprocesses = 2\n",
        "watchers.webapp.numprocesses: must be <= 1 for a singleton watcher, got 2",
    ),
    (
        "undefined_socket",
        W + 'sockets = ["db"]\n',
        "watchers.webapp.sockets: undefined socket 'db'",
    ),
    (
        "socket_listed_twice",
        S + W + 'sockets = ["web", "web"]\n',
        "watchers.webapp.sockets: socket 'web' is listed twice",
    ),
    (
        "sockets_not_a_list",
        S + W + 'sockets = "web"\n',
        'watchers.webapp.sockets: must be a list of socket names, got "web"',
    ),
    (
        "sockets_with_use_sockets_false",
        S + W + 'sockets = ["web"]\nuse_sockets = false\n',
        "watchers.webapp.use_sockets: must be true when sockets are listed",
    ),
    (
        "substitution_of_undefined_socket",
        '[watchers.webapp]\ncmd = "run --fd $(circus.sockets.db)"\n',
        "watchers.webapp.cmd: $(circus.sockets.db): undefined socket 'db'",
    ),
    (
        "substitution_of_socket_not_inherited",
        S + '[watchers.webapp]\ncmd = "run --fd $(circus.sockets.web)"\n',
        "watchers.webapp.cmd: $(circus.sockets.web): socket 'web' is not inherited by the"
        " watcher (set use_sockets = true or list it in sockets)",
    ),
    (
        "substitution_of_socket_not_listed",
        S + '[sockets.db]\nport = 5432\n[watchers.webapp]\ncmd = "run"\nsockets = ["db"]\n'
        'args = ["--fd", "$(stack.sockets.web)"]\n',
        "watchers.webapp.args[1]: $(stack.sockets.web): socket 'web' is not inherited by the"
        " watcher (set use_sockets = true or list it in sockets)",
    ),
    (
        "substitution_unknown",
        '[watchers.webapp]\ncmd = "run $(circus.pid)"\n',
        "watchers.webapp.cmd: unknown substitution $(circus.pid)"
        " (known: sockets.NAME, wid, env.NAME, name)",
    ),
    (
        "substitution_unclosed",
        '[watchers.webapp]\ncmd = "run $(circus.wid"\n',
        "watchers.webapp.cmd: malformed substitution '$(circus.wid'",
    ),
    (
        "substitution_of_env_not_set",
        '[watchers.webapp]\ncmd = "run $(circus.env.PORT)"\n',
        "watchers.webapp.cmd: $(circus.env.PORT): 'PORT' is not set in the watcher's env",
    ),
    (
        "env_value_table",
        W + "[watchers.webapp.env]\nA = { b = 1 }\n",
        'watchers.webapp.env.A: must be a string, got {"b": 1}',
    ),
    ("env_not_a_table", W + 'env = "A=1"\n', 'watchers.webapp.env: must be a table, got "A=1"'),
    (
        "env_name_with_equals",
        W + '[watchers.webapp.env]\n"A=B" = "1"\n',
        "watchers.webapp.env.A=B: invalid environment variable name",
    ),
    (
        "flapping_attempts_zero",
        W + "[watchers.webapp.flapping]\nattempts = 0\n",
        "watchers.webapp.flapping.attempts: must be >= 1, got 0",
    ),
    (
        "flapping_window_zero",
        W + "[watchers.webapp.flapping]\nwindow = 0\n",
        "watchers.webapp.flapping.window: must be > 0, got 0",
    ),
    (
        "flapping_unknown_option",
        W + "[watchers.webapp.flapping]\nretries = 3\n",
        "watchers.webapp.flapping.retries: unknown option (did you mean retry_in?)",
    ),
    (
        "stream_class_unknown",
        W + '[watchers.webapp.stdout_stream]\nclass = "QueueStream"\n',
        "watchers.webapp.stdout_stream.class: must be one of FileStream, WatchedFileStream, "
        'TimedRotatingFileStream, StdoutStream, FancyStdoutStream, got "QueueStream"',
    ),
    (
        "stream_max_bytes_negative",
        W + "[watchers.webapp.stderr_stream]\nmax_bytes = -1\n",
        "watchers.webapp.stderr_stream.max_bytes: must be >= 0, got -1",
    ),
    (
        "stream_unknown_option",
        W + "[watchers.webapp.stderr_stream]\nrefresh_time = 1\n",
        "watchers.webapp.stderr_stream.refresh_time: unknown option",
    ),
    (
        "placement_mode_unknown",
        W + '[watchers.webapp.placement]\nmode = "all"\n',
        'watchers.webapp.placement.mode: must be "spread" or "each", got "all"',
    ),
    (
        "placement_mode_not_a_string",
        W + "[watchers.webapp.placement]\nmode = 1\n",
        "watchers.webapp.placement.mode: must be a string, got 1",
    ),
    (
        "placement_max_per_host_negative",
        W + "[watchers.webapp.placement]\nmax_per_host = -1\n",
        "watchers.webapp.placement.max_per_host: must be >= 0, got -1",
    ),
    (
        "placement_max_per_host_float",
        W + "[watchers.webapp.placement]\nmax_per_host = 1.5\n",
        "watchers.webapp.placement.max_per_host: must be an integer, got 1.5",
    ),
    (
        "placement_labels_not_a_table",
        W + '[watchers.webapp.placement]\nlabels = "role=web"\n',
        'watchers.webapp.placement.labels: must be a table, got "role=web"',
    ),
    (
        "placement_label_value_not_a_string",
        W + "[watchers.webapp.placement]\nlabels = { zone = 3 }\n",
        "watchers.webapp.placement.labels.zone: must be a string, got 3",
    ),
    (
        "placement_label_name_with_equals",
        W + '[watchers.webapp.placement]\nlabels = { "a=b" = "c" }\n',
        "watchers.webapp.placement.labels.a=b: invalid label name (empty, or with '=' or ',')",
    ),
    (
        "placement_unknown_option",
        W + "[watchers.webapp.placement]\nspread = true\n",
        "watchers.webapp.placement.spread: unknown option",
    ),
    (
        "placement_not_a_table",
        W + 'placement = "each"\n',
        'watchers.webapp.placement: must be a table, got "each"',
    ),
    (
        "singleton_with_mode_each",
        W + 'singleton = true\n[watchers.webapp.placement]\nmode = "each"\n',
        'watchers.webapp.placement.mode: must be "spread" for a singleton watcher, got "each"',
    ),
    (
        "update_max_parallel_zero",
        W + "[watchers.webapp.update]\nmax_parallel = 0\n",
        "watchers.webapp.update.max_parallel: must be >= 1, got 0",
    ),
    (
        "update_max_parallel_string",
        W + '[watchers.webapp.update]\nmax_parallel = "2"\n',
        'watchers.webapp.update.max_parallel: must be an integer, got "2"',
    ),
    (
        "update_min_uptime_negative",
        W + "[watchers.webapp.update]\nmin_uptime = -0.5\n",
        "watchers.webapp.update.min_uptime: must be >= 0, got -0.5",
    ),
    (
        "update_unknown_option",
        W + "[watchers.webapp.update]\nmax_surge = 1\n",
        "watchers.webapp.update.max_surge: unknown option",
    ),
    (
        "health_without_type",
        W + "[watchers.webapp.health]\ntarget = 8080\n",
        'watchers.webapp.health.type: required ("tcp", "http" or "exec")',
    ),
    (
        "health_type_unknown",
        W + '[watchers.webapp.health]\ntype = "grpc"\ntarget = 8080\n',
        'watchers.webapp.health.type: must be "tcp", "http" or "exec", got "grpc"',
    ),
    (
        "health_without_target",
        W + '[watchers.webapp.health]\ntype = "tcp"\n',
        "watchers.webapp.health.target: required",
    ),
    (
        "health_tcp_port_zero",
        W + '[watchers.webapp.health]\ntype = "tcp"\ntarget = 0\n',
        "watchers.webapp.health.target: must be >= 1, got 0",
    ),
    (
        "health_tcp_port_too_big",
        W + '[watchers.webapp.health]\ntype = "tcp"\ntarget = 65536\n',
        "watchers.webapp.health.target: must be <= 65535, got 65536",
    ),
    (
        "health_tcp_port_as_string",
        W + '[watchers.webapp.health]\ntype = "tcp"\ntarget = "8080"\n',
        'watchers.webapp.health.target: write a port as an integer, got "8080"',
    ),
    (
        "health_tcp_target_list",
        W + '[watchers.webapp.health]\ntype = "tcp"\ntarget = [80]\n',
        "watchers.webapp.health.target: must be a port or a socket name, got [80]",
    ),
    (
        "health_tcp_undefined_socket",
        W + '[watchers.webapp.health]\ntype = "tcp"\ntarget = "db"\n',
        "watchers.webapp.health.target: undefined socket 'db'",
    ),
    (
        "health_tcp_socket_not_inherited",
        S + W + '[watchers.webapp.health]\ntype = "tcp"\ntarget = "web"\n',
        "watchers.webapp.health.target: socket 'web' is not inherited by the watcher"
        " (set use_sockets = true or list it in sockets)",
    ),
    (
        "health_http_relative_path",
        W + '[watchers.webapp.health]\ntype = "http"\ntarget = "healthz"\n',
        'watchers.webapp.health.target: must be a path starting with "/" or an http:// URL,'
        ' got "healthz"',
    ),
    (
        "health_http_https_url",
        W + '[watchers.webapp.health]\ntype = "http"\ntarget = "https://x/"\n',
        'watchers.webapp.health.target: must be a path starting with "/" or an http:// URL,'
        ' got "https://x/"',
    ),
    (
        "health_http_port_number",
        W + '[watchers.webapp.health]\ntype = "http"\ntarget = 80\n',
        "watchers.webapp.health.target: must be a string, got 80",
    ),
    (
        "health_exec_blank_command",
        W + '[watchers.webapp.health]\ntype = "exec"\ntarget = " "\n',
        "watchers.webapp.health.target: must not be empty",
    ),
    (
        "health_interval_zero",
        W + '[watchers.webapp.health]\ntype = "exec"\ntarget = "true"\ninterval = 0\n',
        "watchers.webapp.health.interval: must be > 0, got 0",
    ),
    (
        "health_timeout_negative",
        W + '[watchers.webapp.health]\ntype = "exec"\ntarget = "true"\ntimeout = -1\n',
        "watchers.webapp.health.timeout: must be > 0, got -1",
    ),
    (
        "health_retries_zero",
        W + '[watchers.webapp.health]\ntype = "exec"\ntarget = "true"\nretries = 0\n',
        "watchers.webapp.health.retries: must be >= 1, got 0",
    ),
    (
        "health_retries_float",
        W + '[watchers.webapp.health]\ntype = "exec"\ntarget = "true"\nretries = 2.0\n',
        "watchers.webapp.health.retries: must be an integer, got 2.0",
    ),
    (
        "health_unknown_option",
        W + '[watchers.webapp.health]\ntype = "exec"\ntarget = "true"\npath = "/"\n',
        "watchers.webapp.health.path: unknown option",
    ),
    (
        "watcher_name_with_space",
        '[watchers."web app"]\ncmd = "run"\n',
        'watchers."web app": name must match [A-Za-z0-9_.-]{1,64}',
    ),
    (
        "watcher_name_too_long",
        "[watchers." + "a" * 65 + ']\ncmd = "run"\n',
        "watchers." + "a" * 65 + ": name must match [A-Za-z0-9_.-]{1,64}",
    ),
    ("toml_syntax_error", W + "numprocesses = = 3\n", "line 3: invalid TOML: Invalid value"),
    ("toml_duplicate_key", W + 'cmd = "again"\n', "line 3: invalid TOML: Cannot overwrite a value"),
    (
        "port_out_of_range",
        "[sockets.web]\nport = 70000\n",
        "sockets.web.port: must be <= 65535, got 70000",
    ),
    (
        "port_string",
        '[sockets.web]\nport = "80"\n',
        'sockets.web.port: must be an integer, got "80"',
    ),
    (
        "family_unknown",
        '[sockets.web]\nfamily = "AF_PACKET"\n',
        'sockets.web.family: must be one of AF_INET, AF_INET6, AF_UNIX, got "AF_PACKET"',
    ),
    (
        "type_unknown",
        '[sockets.web]\ntype = "raw"\n',
        'sockets.web.type: must be one of SOCK_STREAM, SOCK_DGRAM, got "raw"',
    ),
    ("backlog_zero", "[sockets.web]\nbacklog = 0\n", "sockets.web.backlog: must be >= 1, got 0"),
    (
        "unix_socket_without_path",
        '[sockets.web]\nfamily = "unix"\n',
        "sockets.web.path: required for an AF_UNIX socket",
    ),
    (
        "inet_socket_with_path",
        '[sockets.web]\nfamily = "AF_INET"\npath = "/tmp/x.sock"\n',
        "sockets.web.family: must be AF_UNIX when a path is set, got AF_INET",
    ),
    (
        "inet_socket_without_host",
        '[sockets.web]\nhost = ""\n',
        "sockets.web.host: required for an AF_INET socket",
    ),
    (
        "inet6_socket_with_ipv4_host",
        '[sockets.web]\nfamily = "inet6"\nhost = "10.0.0.1"\n',
        'sockets.web.host: not an IPv6 address for an AF_INET6 socket, got "10.0.0.1"',
    ),
    (
        "socket_unknown_option",
        "[sockets.web]\nreuseport = true\n",
        "sockets.web.reuseport: unknown option (did you mean so_reuseport?)",
    ),
    (
        "ipv6_host_in_brackets",
        '[sockets.web]\nfamily = "inet6"\nhost = "[::1]"\n',
        'sockets.web.host: write IPv6 addresses without brackets, got "[::1]"',
    ),
    (
        "socket_name_with_slash",
        '[sockets."a/b"]\nport = 1\n',
        'sockets."a/b": name must match [A-Za-z0-9_.-]{1,64}',
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [case[1:] for case in BAD_FILES],
    ids=[case[0] for case in BAD_FILES],
)
def test_bad_stack_file_gives_one_exact_line(text: str, expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_stack(text, "webapp.toml")
    assert str(caught.value) == f"webapp.toml: {expected}"
    assert "\n" not in str(caught.value)


def test_spec_error_carries_filename_path_and_message() -> None:
    with pytest.raises(SpecError) as caught:
        load_stack(W + "numprocesses = -3\n", "webapp.toml")
    err = caught.value
    assert (err.filename, err.path, err.message) == (
        "webapp.toml",
        "watchers.webapp.numprocesses",
        "must be >= 0, got -3",
    )
    assert isinstance(err, ValueError)


def test_first_problem_in_file_order_is_reported() -> None:
    text = '[watchers.b]\ncmd = "x"\nnumprocesses = -1\n[watchers.a]\ncmd = "x"\nshell = 2\n'
    with pytest.raises(SpecError, match=r"watchers\.b\.numprocesses"):
        load_stack(text)


def test_toml_error_at_end_of_document_names_the_last_line() -> None:
    with pytest.raises(SpecError) as caught:
        load_stack('[watchers.webapp]\ncmd = "run', "x.toml")
    assert str(caught.value).startswith("x.toml: line 2: invalid TOML: ")


def test_issue_example_loads_with_circus_defaults() -> None:
    stack = load_stack(
        '[sockets.web]\nhost = "127.0.0.1"\nport = 8080\n\n'
        "[watchers.webapp]\n"
        'cmd = "python3 -m examples.app --fd $(circus.sockets.web)"\n'
        "numprocesses = 4\nuse_sockets = true\ngraceful_timeout = 10\n\n"
        '[watchers.webapp.env]\nGREETING = "hello"\n\n'
        "[watchers.webapp.flapping]\nattempts = 3\nwindow = 2\n"
    )
    webapp = stack.watchers["webapp"]
    assert webapp == WatcherSpec(
        name="webapp",
        cmd="python3 -m examples.app --fd $(circus.sockets.web)",
        numprocesses=4,
        use_sockets=True,
        graceful_timeout=10.0,
        env=webapp.env,
        flapping=FlappingSpec(attempts=3, window=2.0),
    )
    assert dict(webapp.env) == {"GREETING": "hello"}
    assert (webapp.stop_signal, webapp.max_retry, webapp.respawn) == ("TERM", 5, True)
    assert webapp.flapping.retry_in == 7.0
    assert [s.name for s in stack.sockets_of(webapp)] == ["web"]
    assert stack.sockets["web"].backlog == 2048


def test_options_are_converted_to_the_model_types() -> None:
    stack = load_stack(
        S
        + "[sockets.db]\nport = 5432\n"
        + W
        + 'args = "--name \'my app\' -v"\nuid = 1000\ngid = "staff"\nstop_signal = "sigint"\n'
        'rlimit_nofile = 4096\nrlimit_core = -1\nsockets = ["db", "web"]\numask = "022"\n'
        "warmup_delay = 1\n"
        "[watchers.webapp.env]\nPORT = 8080\nDEBUG = true\nRATIO = 0.5\n"
        '[watchers.webapp.stdout_stream]\nclass = "FileStream"\nfilename = "/tmp/out.log"\n'
        "max_bytes = 1024\nbackup_count = 2\n"
    )
    spec = stack.watchers["webapp"]
    assert spec.args == ("--name", "my app", "-v")
    assert (spec.uid, spec.gid, spec.stop_signal) == ("1000", "staff", "INT")
    assert dict(spec.rlimits) == {"nofile": 4096, "core": -1}
    assert spec.sockets == ("db", "web") and spec.use_sockets
    assert spec.umask == 0o022 and spec.warmup_delay == 1.0
    assert isinstance(spec.warmup_delay, float)
    assert dict(spec.env) == {"PORT": "8080", "DEBUG": "true", "RATIO": "0.5"}
    assert spec.stdout_stream == StreamSpec(filename="/tmp/out.log", max_bytes=1024, backup_count=2)
    assert [s.name for s in stack.sockets_of(spec)] == ["db", "web"]


def test_socket_family_and_type_accept_short_names_and_path_implies_unix() -> None:
    stack = load_stack(
        '[sockets.a]\nfamily = "inet6"\ntype = "dgram"\n'
        '[sockets.b]\npath = "/run/b.sock"\numask = 0o077\nreplace = true\n'
    )
    assert (stack.sockets["a"].family, stack.sockets["a"].type) == ("AF_INET6", "SOCK_DGRAM")
    assert stack.sockets["a"].host == "::1"
    assert stack.sockets["b"].family == "AF_UNIX" and stack.sockets["b"].umask == 0o077


def test_copy_env_allows_env_substitution_of_unlisted_variables() -> None:
    stack = load_stack(
        '[watchers.w]\ncmd = "run $(circus.env.HOME) $(stack.WID)"\ncopy_env = true\n'
    )
    assert stack.watchers["w"].copy_env


def test_env_substitution_of_a_listed_variable_is_valid() -> None:
    stack = load_stack(
        '[watchers.w]\ncmd = "run $(circus.env.PORT)"\n[watchers.w.env]\nPORT = "1"\n'
    )
    assert stack.watchers["w"].cmd == "run $(circus.env.PORT)"


def test_empty_file_is_an_empty_stack() -> None:
    stack = load_stack("# nothing yet\n")
    assert dict(stack.watchers) == {} and dict(stack.sockets) == {}


def test_load_stack_file_names_the_path_as_given(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(W + "numprocesses = -3\n")
    with pytest.raises(SpecError) as caught:
        load_stack_file(path)
    assert str(caught.value) == f"{path}: watchers.webapp.numprocesses: must be >= 0, got -3"


def test_load_stack_file_reports_a_missing_file_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_stack_file(str(tmp_path / "nope.toml"))
    assert str(caught.value) == f"{tmp_path / 'nope.toml'}: no such file"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("TERM", "TERM"), ("SIGTERM", "TERM"), ("term", "TERM"), (15, "TERM"), ("9", "KILL"),
     (" sigquit ", "QUIT"), ("IOT", "ABRT"), ("SIGRTMIN", "RTMIN")],
)  # fmt: skip
def test_parse_signal_normalises_names_and_numbers(value: str | int, expected: str) -> None:
    assert parse_signal(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [("FOO", "unknown signal 'FOO'"), (0, "unknown signal 0"), (999, "unknown signal 999"),
     ("SIG_DFL", "unknown signal 'SIG_DFL'"), ("", "unknown signal ''"),
     (True, "unknown signal True")],
)  # fmt: skip
def test_parse_signal_rejects_unknown_signals(value: str | int, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_signal(value)
    assert str(caught.value) == message


def test_fleet_tables_load_into_the_model() -> None:
    stack = load_stack(
        S
        + W
        + 'sockets = ["web"]\n'
        + '[watchers.webapp.placement]\nmode = "each"\nmax_per_host = 2\n'
        + 'labels = { role = "web", zone = "b" }\n'
        + "[watchers.webapp.update]\nmax_parallel = 3\nmin_uptime = 5\n"
        + '[watchers.webapp.health]\ntype = "tcp"\ntarget = "web"\ninterval = 1\n'
    )
    spec = stack.watchers["webapp"]
    assert (spec.placement.mode, spec.placement.max_per_host) == ("each", 2)
    assert dict(spec.placement.labels) == {"role": "web", "zone": "b"}
    assert spec.update == UpdateSpec(max_parallel=3, min_uptime=5.0)
    assert spec.health == HealthSpec(type="tcp", target="web", interval=1.0)


def test_fleet_tables_default_to_spread_one_at_a_time_and_no_health_check() -> None:
    spec = load_stack(W).watchers["webapp"]
    assert spec.placement == PlacementSpec(mode="spread", max_per_host=0)
    assert dict(spec.placement.labels) == {}
    assert spec.update == UpdateSpec(max_parallel=1, min_uptime=2.0)
    assert spec.health.type == ""


@pytest.mark.parametrize(
    ("table", "target"),
    [
        ('type = "tcp"\ntarget = 8080\n', "8080"),
        ('type = "http"\ntarget = "/healthz"\n', "/healthz"),
        ('type = "http"\ntarget = "http://127.0.0.1:8080/ping"\n', "http://127.0.0.1:8080/ping"),
        ('type = "exec"\ntarget = "check --quick"\n', "check --quick"),
    ],
)
def test_health_targets_of_each_type_are_kept_as_text(table: str, target: str) -> None:
    spec = load_stack(W + "[watchers.webapp.health]\n" + table).watchers["webapp"]
    assert spec.health.target == target
    assert (spec.health.interval, spec.health.timeout, spec.health.retries) == (10.0, 2.0, 3)


def test_health_tcp_target_may_name_a_socket_inherited_through_use_sockets() -> None:
    spec = load_stack(
        S + W + 'use_sockets = true\n[watchers.webapp.health]\ntype = "tcp"\ntarget = "web"\n'
    ).watchers["webapp"]
    assert spec.health.target == "web"


def test_singleton_may_keep_the_default_spread_mode() -> None:
    text = W + 'singleton = true\n[watchers.webapp.placement]\nmode = "spread"\n'
    assert load_stack(text).watchers["webapp"].singleton
