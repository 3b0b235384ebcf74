"""stackctl's presentation layer: durations, sizes, last exits, flapping notes and JSON shapes
(the status page has tests of its own: test_cli_status_view.py)."""

from __future__ import annotations

import json
import signal

import pytest
from rich.console import Console

from stack.cli import render
from stack.cli.stackfile import socket_urls
from stack.cli.waiting import restarted, scaled_to, start_times, stopped
from stack.v1 import admin_pb2, types_pb2

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.9, "0s"),
        (45, "45s"),
        (60, "1m00s"),
        (192, "3m12s"),
        (3600 + 5 * 60 + 9, "1h05m"),
        (2 * 86400 + 3 * 3600 + 59, "2d03h"),
        (-5, "0s"),
    ],
)
def test_duration_is_short_and_human(seconds: float, text: str) -> None:
    assert render.format_duration(seconds) == text


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (int(12.3 * 1024 * 1024), "12.3 MiB"),
        (3 * 1024**3, "3.0 GiB"),
        (5 * 1024**5, "5120.0 TiB"),
    ],
)
def test_bytes_use_binary_units_with_one_decimal(count: int, text: str) -> None:
    assert render.format_bytes(count) == text


def test_last_seen_is_relative_to_now() -> None:
    assert render.format_ago(NOW - 3, NOW) == "3s ago"
    assert render.format_ago(0, NOW) == "never"


def last_exit(**fields: object) -> types_pb2.LastExit:
    return types_pb2.LastExit(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exit_", "text"),
    [
        (last_exit(code=1, reason=types_pb2.EXIT_REASON_CRASHED, at=NOW), "exit 1 (crashed)"),
        (last_exit(code=0, reason=types_pb2.EXIT_REASON_CRASHED, at=NOW), "exit 0 (crashed)"),
        (
            last_exit(signal=int(signal.SIGKILL), reason=types_pb2.EXIT_REASON_STOPPED, at=NOW),
            "SIGKILL (stopped by user)",
        ),
        (
            last_exit(signal=int(signal.SIGTERM), reason=types_pb2.EXIT_REASON_RESTARTED, at=NOW),
            "SIGTERM (restarted)",
        ),
        (
            last_exit(signal=int(signal.SIGKILL), reason=types_pb2.EXIT_REASON_KILLED, at=NOW),
            "SIGKILL (killed)",
        ),
        (last_exit(code=3, reason=types_pb2.EXIT_REASON_FLAPPING, at=NOW), "exit 3 (flapping)"),
        (
            last_exit(
                reason=types_pb2.EXIT_REASON_SPAWN_ERROR,
                message="[Errno 2] No such file or directory: '/nope'",
                at=NOW,
            ),
            "spawn error: [Errno 2] No such file or directory: '/nope'",
        ),
        (
            last_exit(  # the agent's own wording already says what it is: no second prefix
                reason=types_pb2.EXIT_REASON_SPAWN_ERROR,
                message="spawn error: [Errno 2] No such file or directory: '/nope'",
                at=NOW,
            ),
            "spawn error: [Errno 2] No such file or directory: '/nope'",
        ),
        (last_exit(signal=99, at=NOW), "signal 99"),
        (
            last_exit(  # adopted after an agent crash: not the agent's child
                reason=types_pb2.EXIT_REASON_CRASHED,
                at=NOW,
                code_unknown=True,
                message="exited while the agent was down",
            ),
            "exit status unknown (crashed, exited while the agent was down)",
        ),
        (last_exit(), ""),
        (None, ""),
    ],
)
def test_last_exit_says_code_or_signal_and_why(exit_: types_pb2.LastExit | None, text: str) -> None:
    assert render.format_last_exit(exit_) == text


def watcher_status(**fields: object) -> admin_pb2.WatcherStatus:
    return admin_pb2.WatcherStatus(**fields)  # type: ignore[arg-type]


def test_flapping_note_counts_down_to_the_retry() -> None:
    assert render.flapping_text(NOW + 4.2, NOW) == "flapping, retry in 5s"
    assert render.flapping_text(NOW + 65, NOW) == "flapping, retry in 1m05s"
    assert render.flapping_text(NOW - 1, NOW) == "flapping, retrying now"


def test_watcher_note_keeps_the_servers_flapping_and_fatal_messages() -> None:
    flapping = watcher_status(
        name="w", phase=types_pb2.WATCHER_PHASE_FLAPPING, message="flapping, retry in 5s"
    )
    assert render.watcher_note(flapping, NOW) == "flapping, retry in 5s"
    fatal = watcher_status(
        name="w", phase=types_pb2.WATCHER_PHASE_FATAL, message="gave up after 5 retries"
    )
    assert render.watcher_note(fatal, NOW) == "fatal: gave up after 5 retries"
    already = watcher_status(name="w", phase=types_pb2.WATCHER_PHASE_FATAL, message="fatal: x")
    assert render.watcher_note(already, NOW) == "fatal: x"
    bare = watcher_status(name="w", phase=types_pb2.WATCHER_PHASE_FLAPPING)
    assert render.watcher_note(bare, NOW) == "flapping"


def test_a_process_kept_for_a_new_version_that_cannot_start_says_why() -> None:
    kept = types_pb2.ProcessStatus(
        wid=1, pid=10, state=types_pb2.PROCESS_STATE_RUNNING, blocked="socket web: cannot bind x"
    )
    assert render.process_note(kept, None, NOW) == (
        "kept, its new version cannot start: socket web: cannot bind x"
    )


def test_watcher_note_counts_down_and_keeps_which_workers_flap() -> None:
    some = watcher_status(
        name="w",
        phase=types_pb2.WATCHER_PHASE_FLAPPING,
        retry_at=NOW + 2.5,
        message="worker 2: flapping, retry in 7s; workers 3, 4: fatal: gave up",
    )
    assert render.watcher_note(some, NOW) == (
        "worker 2: flapping, retry in 3s; workers 3, 4: fatal: gave up"
    )
    every = watcher_status(
        name="w",
        phase=types_pb2.WATCHER_PHASE_FLAPPING,
        retry_at=NOW - 1,
        message="flapping, retry in 1s",
    )
    assert render.watcher_note(every, NOW) == "flapping, retrying now"


def process(**fields: object) -> types_pb2.ProcessStatus:
    return types_pb2.ProcessStatus(**fields)  # type: ignore[arg-type]


def sample_status() -> admin_pb2.StatusReply:
    webapp = watcher_status(
        name="webapp",
        numprocesses=2,
        active=True,
        phase=types_pb2.WATCHER_PHASE_ACTIVE,
        running=1,
        pending=1,
        pending_reason="no eligible agent",
        processes=[
            process(
                watcher="webapp", wid=1, pid=4242, host_id="h1",
                state=types_pb2.PROCESS_STATE_RUNNING, started_at=NOW - 192, restarts=2,
                cpu_percent=1.5, rss_bytes=12 * 1024 * 1024, num_fds=7, num_children=1,
                last_exit=last_exit(code=1, reason=types_pb2.EXIT_REASON_CRASHED, at=NOW - 200),
            ),
        ],
    )  # fmt: skip
    ghost = watcher_status(
        name="ghost",
        numprocesses=1,
        active=True,
        phase=types_pb2.WATCHER_PHASE_FLAPPING,
        message="flapping, retry in 7s",
        processes=[
            process(
                watcher="ghost", wid=1, host_id="h2", state=types_pb2.PROCESS_STATE_BACKOFF,
                message="flapping, retry in 7s",
                last_exit=last_exit(
                    reason=types_pb2.EXIT_REASON_SPAWN_ERROR, message="[Errno 2] x"
                ),
            ),
        ],
    )  # fmt: skip
    return admin_pb2.StatusReply(watchers=[webapp, ghost], generation=7)


def test_status_json_has_stable_snake_case_keys_and_enum_names() -> None:
    document = render.status_document(sample_status())
    json.dumps(document)  # plain JSON types only
    assert document["generation"] == 7
    webapp, ghost = document["watchers"]
    assert list(webapp) == [
        "name", "numprocesses", "active", "phase", "message", "running", "pending",
        "pending_reason", "processes", "retry_at", "rollout",
    ]  # fmt: skip
    assert webapp["phase"] == "active" and ghost["phase"] == "flapping"
    (proc,) = webapp["processes"]
    assert proc["state"] == "running"
    assert proc["rss_bytes"] == 12 * 1024 * 1024 and isinstance(proc["rss_bytes"], int)
    assert proc["last_exit"] == {
        "code": 1, "signal": 0, "reason": "crashed", "at": NOW - 200, "message": "",
        "code_unknown": False,
    }  # fmt: skip
    assert ghost["processes"][0]["state"] == "backoff"
    assert ghost["processes"][0]["pid"] == 0


def test_status_json_has_the_same_keys_when_values_are_empty() -> None:
    full = render.status_document(sample_status())["watchers"][0]["processes"][0]
    empty = render.to_json(types_pb2.ProcessStatus())
    assert list(empty) == list(full)
    assert empty["last_exit"] is None and empty["state"] == "unspecified"


def test_status_json_keeps_only_the_processes_of_the_asked_host() -> None:
    document = render.status_document(sample_status(), host="h2")
    assert [len(w["processes"]) for w in document["watchers"]] == [0, 1]


def test_stats_totals_add_up_live_processes_only() -> None:
    reply = sample_status()
    reply.watchers[0].processes.append(
        process(watcher="webapp", wid=2, pid=4343, state=types_pb2.PROCESS_STATE_RUNNING,
                cpu_percent=2.5, rss_bytes=1024, num_fds=3, num_children=0)
    )  # fmt: skip
    document = render.stats_document(reply)
    webapp, ghost = document["watchers"]
    assert [p["wid"] for p in webapp["processes"]] == [1, 2]
    assert webapp["total"] == {
        "cpu_percent": 4.0, "rss_bytes": 12 * 1024 * 1024 + 1024, "num_fds": 10, "num_children": 1,
    }  # fmt: skip
    assert ghost["processes"] == [] and ghost["total"]["rss_bytes"] == 0


def test_apply_changes_print_like_a_diff() -> None:
    changes = [
        admin_pb2.Change(op="add", kind="watcher", name="ticker"),
        admin_pb2.Change(op="remove", kind="socket", name="old"),
        admin_pb2.Change(op="change", kind="watcher", name="webapp", details=["cmd: 'a' -> 'b'"]),
        admin_pb2.Change(
            op="scale", kind="watcher", name="webapp", details=["numprocesses: 4 -> 6"]
        ),
    ]
    lines = [line.plain for line in render.change_lines(changes)]
    assert lines == [
        "+ watcher ticker",
        "- socket old",
        "~ watcher webapp",
        "    cmd: 'a' -> 'b'",
        "~ watcher webapp (scale) numprocesses: 4 -> 6",
    ]


@pytest.mark.parametrize(
    ("changes", "applied", "dry_run", "text"),
    [
        (1, True, False, "applied (generation 3)"),
        (1, False, True, "dry run: nothing applied"),
        (0, False, False, "no changes"),
    ],
)
def test_apply_outcome_says_what_happened(
    changes: int, applied: bool, dry_run: bool, text: str
) -> None:
    reply = admin_pb2.ApplyReply(
        changes=[admin_pb2.Change(op="add", kind="watcher", name="w")] * changes,
        applied=applied,
        generation=3,
    )
    assert render.apply_outcome(reply, dry_run) == text


def test_log_line_shows_time_source_and_text_with_the_host_only_when_asked() -> None:
    line = types_pb2.LogLine(at=NOW, host_id="h1", watcher="webapp", wid=2, text="hello")
    stamp = render.format_timestamp(NOW)
    assert render.log_line_text(line, with_host=False).plain == f"{stamp} webapp[2] hello"
    assert render.log_line_text(line, with_host=True).plain == f"{stamp} h1 webapp[2] hello"


def test_event_line_shows_time_host_source_kind_and_message() -> None:
    event = types_pb2.Event(
        at=NOW, host_id="h1", watcher="webapp", wid=3, kind="exit", message="exit 1"
    )
    stamp = render.format_timestamp(NOW)
    assert render.event_text(event).plain == f"{stamp}  h1  webapp[3]  exit  exit 1"
    controller_event = types_pb2.Event(at=NOW, kind="apply", message="applied")
    assert render.event_text(controller_event).plain == f"{stamp}  -  -  apply  applied"


def test_socket_urls_name_every_tcp_socket_of_the_stack() -> None:
    text = """
[sockets.web]
port = 8080
[sockets.any]
host = "0.0.0.0"
port = 9000
[sockets.v6]
host = "::1"
port = 9001
[sockets.unix]
path = "/tmp/x.sock"
[sockets.udp]
port = 53
type = "SOCK_DGRAM"
[sockets.ephemeral]
port = 0
"""
    assert socket_urls(text) == [
        ("web", "http://127.0.0.1:8080"),
        ("any", "http://127.0.0.1:9000"),
        ("v6", "http://[::1]:9001"),
    ]
    assert socket_urls("not [toml") == []


def test_scale_wait_is_done_only_with_exactly_n_running_and_none_stopping() -> None:
    def watcher(*states: int) -> admin_pb2.WatcherStatus:
        procs = [process(wid=i + 1, state=s) for i, s in enumerate(states)]
        return watcher_status(name="webapp", numprocesses=2, processes=procs)

    running, stopping = types_pb2.PROCESS_STATE_RUNNING, types_pb2.PROCESS_STATE_STOPPING
    check = scaled_to(2)
    assert check(watcher(running, running)).done
    assert check(watcher(running, running, types_pb2.PROCESS_STATE_STOPPED)).done
    not_yet = check(watcher(running, running, stopping))
    assert not not_yet.done
    assert not_yet.missing == "webapp has 2 of 2 running, 1 still stopping"
    assert check(watcher(running)).missing == "webapp has 1 of 2 running"


def test_stop_wait_is_done_when_no_process_has_a_pid() -> None:
    live = watcher_status(
        name="w", processes=[process(wid=1, pid=10, state=types_pb2.PROCESS_STATE_STOPPING)]
    )
    assert stopped()(live).missing == "w has 1 process still running"
    gone = watcher_status(
        name="w", processes=[process(wid=1, state=types_pb2.PROCESS_STATE_STOPPED)]
    )
    assert stopped()(gone).done
    assert stopped()(gone).missing == "w has none running"


def test_restart_wait_needs_every_process_started_after_the_call() -> None:
    running = types_pb2.PROCESS_STATE_RUNNING
    before = admin_pb2.StatusReply(watchers=[watcher_status(name="w", numprocesses=2, processes=[
        process(wid=1, pid=10, host_id="h", state=running, started_at=100.0),
        process(wid=2, pid=11, host_id="h", state=running, started_at=100.0),
    ])])  # fmt: skip
    check = restarted(start_times(before))
    half = watcher_status(name="w", numprocesses=2, processes=[
        process(wid=1, pid=20, host_id="h", state=running, started_at=101.0),
        process(wid=2, pid=11, host_id="h", state=running, started_at=100.0),
    ])  # fmt: skip
    assert check(half).missing == "w has 1 of 2 replaced"
    assert not check(half).done
    done = watcher_status(name="w", numprocesses=2, processes=[
        process(wid=1, pid=20, host_id="h", state=running, started_at=101.0),
        process(wid=2, pid=21, host_id="h", state=running, started_at=101.5),
    ])  # fmt: skip
    assert check(done).done


def test_an_apply_plan_names_what_it_takes_away() -> None:
    def change(op: str, kind: str, name: str, replaces: bool = False) -> admin_pb2.Change:
        return admin_pb2.Change(op=op, kind=kind, name=name, replaces=replaces)

    gentle = [change("add", "watcher", "new"), change("scale", "watcher", "web"),
              change("change", "watcher", "web"), change("add", "socket", "s2")]  # fmt: skip
    assert render.plan_risks(gentle) == ""
    risky = [
        change("remove", "socket", "old"),
        change("remove", "watcher", "a"),
        change("remove", "watcher", "b"),
        change("change", "watcher", "web", replaces=True),
    ]
    assert render.plan_risks(risky) == (
        "remove watchers a, b and socket old, and replace the workers of watcher web"
    )
    assert render.plan_risks(risky[3:]) == "replace the workers of watcher web"
    assert render.plan_risks(risky[:1]) == "remove socket old"


def test_agents_show_their_version_and_when_they_last_re_executed() -> None:
    agents = [
        admin_pb2.AgentInfo(host_id="h1", state="ready", version="0.2.0",
                            last_seen=NOW - 1, reexecuted_at=NOW - 125),
        admin_pb2.AgentInfo(host_id="h2", state="ready", version="0.1.0", last_seen=NOW - 1),
    ]  # fmt: skip
    console = Console(width=200, record=True)
    console.print(render.agents_table(agents, NOW))
    lines = console.export_text().splitlines()
    assert "RE-EXECUTED" in lines[0]
    h1 = next(line for line in lines if line.startswith("h1"))
    h2 = next(line for line in lines if line.startswith("h2"))
    assert "0.2.0" in h1 and "2m05s ago" in h1
    assert "0.1.0" in h2 and "never" in h2
