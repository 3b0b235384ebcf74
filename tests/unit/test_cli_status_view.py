"""`stackctl status` as text: a line per watcher then its processes, in 80 columns by
default; --summary; -o wide; long messages cut; large watchers grouped."""

from __future__ import annotations

from typing import Any

from stack.cli.status_view import (
    GROUP_ABOVE,
    Layout,
    messages_comment,
    process_messages,
    status_lines,
)
from stack.v1 import admin_pb2, types_pb2

NOW = 1_800_000_000.0
RUNNING = types_pb2.PROCESS_STATE_RUNNING
LONG = "health check http://127.0.0.1:8080/healthz failed: " + "connection refused; " * 6 + "x"


def proc(wid: int, **fields: object) -> types_pb2.ProcessStatus:
    base: dict[str, object] = dict(
        watcher="webapp", wid=wid, pid=1000 + wid, host_id="h1", state=RUNNING,
        started_at=NOW - 192,
    )  # fmt: skip
    base.update(fields)
    return types_pb2.ProcessStatus(**base)  # type: ignore[arg-type]


def watcher(name: str, *processes: types_pb2.ProcessStatus, **fields: object) -> Any:
    base: dict[str, object] = dict(
        name=name, numprocesses=len(processes), active=True, phase=types_pb2.WATCHER_PHASE_ACTIVE,
        running=sum(p.state == RUNNING for p in processes), processes=list(processes),
    )  # fmt: skip
    base.update(fields)
    return admin_pb2.WatcherStatus(**base)  # type: ignore[arg-type]


def reply(*watchers: admin_pb2.WatcherStatus) -> admin_pb2.StatusReply:
    return admin_pb2.StatusReply(watchers=list(watchers))


def crashed(at: float = NOW - 60, code: int = 3) -> types_pb2.LastExit:
    return types_pb2.LastExit(code=code, reason=types_pb2.EXIT_REASON_CRASHED, at=at)


def sample() -> admin_pb2.StatusReply:
    return reply(
        watcher(
            "webapp",
            proc(1, restarts=2, replacements=1, last_exit=crashed(), cpu_percent=1.5,
                 rss_bytes=12 << 20),
            proc(2, message=LONG),
            rollout="rolling out: 1 of 2 replaced, replacing 2",
        ),
        watcher("ticker", proc(1, watcher="ticker", pid=0, state=types_pb2.PROCESS_STATE_STOPPED,
                               last_exit=types_pb2.LastExit(
                                   signal=15, reason=types_pb2.EXIT_REASON_STOPPED, at=NOW - 5)),
                active=False),
    )  # fmt: skip


def test_each_watcher_has_its_summary_line_then_its_processes_in_80_columns() -> None:
    lines = status_lines(sample(), NOW, Layout(width=80))
    assert lines[0] == ("webapp  2/2 running, active, rolling out: 1 of 2 replaced, replacing 2")
    assert lines[1].split() == ["WID", "PID", "STATE", "UPTIME", "RESTARTS", "MESSAGE"]
    assert lines[2].split()[:5] == ["1", "1001", "running", "3m12s", "2"]
    assert lines[2].endswith("exit 3 (crashed), 1m00s ago")  # it failed: say how
    assert lines[3].split()[:5] == ["2", "1002", "running", "3m12s", "0"]
    assert lines[4] == ""
    assert lines[5] == "ticker  0/1 running, stopped"
    assert lines[7].split() == ["1", "-", "stopped", "-", "0", "SIGTERM", "(stopped",
                                "by", "user),", "5s", "ago"]  # fmt: skip
    assert all(len(line) <= 80 for line in lines)


def test_the_host_column_shows_when_the_processes_run_on_several_hosts() -> None:
    status = reply(watcher("webapp", proc(1, host_id="web-1"), proc(2, host_id="web-2")))
    lines = status_lines(status, NOW, Layout())
    assert lines[1].split()[:3] == ["WID", "HOST", "PID"]
    assert [line.split()[1] for line in lines[2:]] == ["web-1", "web-2"]
    assert status_lines(sample(), NOW, Layout(wide=True))[1].split()[:2] == ["WID", "HOST"]


def test_a_long_message_is_cut_with_an_ellipsis_to_the_width_and_whole_in_wide() -> None:
    narrow = status_lines(sample(), NOW, Layout(width=80))[3]
    assert len(narrow) == 80 and narrow.endswith("…")
    assert LONG.startswith(narrow.split("3m12s", 1)[1].split("0  ", 1)[1][:-1])
    wider = status_lines(sample(), NOW, Layout(width=120))[3]
    assert len(wider) == 120
    wide = status_lines(sample(), NOW, Layout(width=80, wide=True))
    assert any(line.endswith(LONG) for line in wide)


def test_wide_shows_every_column_with_restarts_and_replacements_apart() -> None:
    lines = status_lines(sample(), NOW, Layout(wide=True))
    assert lines[1].split() == [
        "WID", "HOST", "PID", "STATE", "UPTIME", "RESTARTS", "REPLACED", "CPU", "MEM",
        "VERSION", "LAST", "EXIT", "MESSAGE",
    ]  # fmt: skip
    assert lines[2].split()[:11] == [
        "1", "h1", "1001", "running", "3m12s", "2", "1", "1.5%", "12.0", "MiB", "-",
    ]  # fmt: skip


def test_the_message_does_not_repeat_the_last_exit() -> None:
    error = "spawn error: [Errno 2] No such file or directory: './app'"
    spawn_failed = types_pb2.LastExit(reason=types_pb2.EXIT_REASON_SPAWN_ERROR, message=error)
    fatal = proc(
        1, pid=0, state=types_pb2.PROCESS_STATE_FATAL, last_exit=spawn_failed,
        message=f"fatal: could not start after 5 attempts: {error}",
    )  # fmt: skip
    status = reply(watcher("webapp", fatal))
    wide = status_lines(status, NOW, Layout(wide=True))
    assert wide[2].count("No such file") == 1
    assert wide[2].endswith(f"{error}  fatal: could not start after 5 attempts")
    narrow = status_lines(status, NOW, Layout(width=200))
    assert narrow[2].count("No such file") == 1
    assert narrow[2].endswith(f"fatal: could not start after 5 attempts: {error}")
    flapping = proc(
        1, pid=0, state=types_pb2.PROCESS_STATE_BACKOFF, last_exit=spawn_failed,
        message="flapping, retry in 7s",
    )  # fmt: skip
    line = status_lines(reply(watcher("webapp", flapping)), NOW, Layout(width=200))[2]
    assert line.endswith(f"flapping, retry in 7s; {error}")  # why it flaps, once


def test_summary_is_the_watchers_lines_alone() -> None:
    lines = status_lines(sample(), NOW, Layout(summary=True))
    assert lines == [
        "webapp  2/2 running, active, rolling out: 1 of 2 replaced, replacing 2",
        "ticker  0/1 running, stopped",
    ]


def test_the_summary_says_what_is_pending_and_flapping_without_repeating_the_state() -> None:
    flapping = watcher(
        "ghost", proc(1, watcher="ghost", pid=0, state=types_pb2.PROCESS_STATE_BACKOFF),
        phase=types_pb2.WATCHER_PHASE_FLAPPING, retry_at=NOW + 4.2,
        message="flapping, retry in 7s", pending=1, pending_reason="no eligible agent",
        numprocesses=2,
    )  # fmt: skip
    (line,) = status_lines(reply(flapping), NOW, Layout(summary=True, width=100))
    assert line == (
        "ghost  0/2 running, flapping, 1 pending: no eligible agent, flapping, retry in 5s"
    )


def test_a_300_worker_watcher_lists_only_what_has_something_to_say() -> None:
    processes = [proc(wid, host_id=f"h{1 + wid % 3}") for wid in range(1, 301)]
    processes[6] = proc(7, host_id="h2", pid=0, state=types_pb2.PROCESS_STATE_BACKOFF,
                        message="flapping, retry in 3s", restarts=4)  # fmt: skip
    processes[10] = proc(11, restarts=1, last_exit=crashed())
    status = reply(watcher("webapp", *processes))
    lines = status_lines(status, NOW, Layout(width=80))
    assert len(processes) > GROUP_ABOVE
    assert lines[0] == "webapp  299/300 running, active"
    assert [line.split()[0] for line in lines[2:-1]] == ["7", "11"]
    assert lines[-1].startswith("  298 more running: 100 on h1, 99 on h2, 99 on h3; `stackctl")
    assert len(lines[-1]) == 80 and lines[-1].endswith("…")
    (tail,) = [line for line in status_lines(status, NOW, Layout(width=200)) if "more" in line]
    assert tail.endswith("`stackctl status webapp -o wide` lists each")
    assert len(status_lines(status, NOW, Layout(wide=True))) == 2 + 300


def test_colour_only_where_asked_and_never_in_the_widths() -> None:
    plain = status_lines(sample(), NOW, Layout(width=80))
    painted = status_lines(sample(), NOW, Layout(width=80, colour=True))
    assert not any("\x1b" in line for line in plain)
    assert "\x1b[32mrunning\x1b[0m" in painted[2]
    strip = [line.replace("\x1b[0m", "").replace("\x1b[1m", "") for line in painted]
    strip = [s.replace("\x1b[32m", "").replace("\x1b[2m", "") for s in strip]
    assert strip == plain


def test_no_watchers() -> None:
    assert status_lines(reply(), NOW, Layout()) == ["no watchers"]


def test_get_lists_each_process_with_its_whole_message_as_comments_after_the_config() -> None:
    webapp = sample().watchers[0]
    shown = [(p["host_id"], p["wid"], p["state"]) for p in process_messages(webapp, NOW)]
    assert shown == [("h1", 1, "running"), ("h1", 2, "running")]
    assert process_messages(webapp, NOW)[1]["message"] == LONG, "whole, not cut"
    lines = messages_comment(webapp, NOW)
    assert lines[:2] == ["# processes:", "#   HOST  WID  STATE    MESSAGE"]
    assert lines[3] == f"#   h1      2  running  {LONG}"
    assert all(line.startswith("#") for line in lines), "the output stays a stack file"
    hostile = watcher("w", proc(1, message="line\nbreak\x1b[2J"))
    assert messages_comment(hostile, NOW)[2].endswith("line\\nbreak\\x1b[2J")
    assert messages_comment(None, NOW) == messages_comment(watcher("w"), NOW) == [
        "# processes: none"
    ]
