"""What one agent may put into the controller: screening its reports, and its rate caps."""

from __future__ import annotations

from stack.controller.containment import AgentLimits, Meter, TokenBucket, screen
from stack.spec.observed import Observed, ProcessState, ProcessStatus, WatcherObserved
from stack.spec.reports import LogLine

RUNNING = ProcessState.RUNNING


def observed(*reports: tuple[str, int], watchers: tuple[str, ...] = ()) -> Observed:
    return Observed(
        generation=3,
        processes=tuple(
            ProcessStatus(watcher=w, wid=wid, pid=100 + wid, state=RUNNING) for w, wid in reports
        ),
        watchers=tuple(WatcherObserved(name=name) for name in watchers),
    )


def line(text: str) -> LogLine:
    return LogLine(at=0.0, host_id="", watcher="web", wid=1, stream="out", text=text)


def may_run(watcher: str, wid: int) -> bool:
    """web workers 1-4 (wid 0: some worker of web)."""
    return watcher == "web" and 0 <= wid <= 4


def test_only_the_workers_a_host_may_run_are_kept_once_each_and_the_rest_counted() -> None:
    report = observed(
        ("web", 1), ("web", 1), ("web", 9), ("db", 1), ("web", 2), ("web", 0), ("web", -3),
        watchers=("web", "db"),
    )  # fmt: skip
    screened = screen(report, may_run, AgentLimits())
    assert [(p.watcher, p.wid) for p in screened.observed.processes] == [("web", 1), ("web", 2)]
    assert [w.name for w in screened.observed.watchers] == ["web"]
    assert (screened.ignored, screened.refused, screened.observed.generation) == (5, False, 3)


def test_a_report_of_more_processes_than_the_cap_is_refused_whole() -> None:
    report = observed(*(("web", 1 + i % 4) for i in range(11)))
    screened = screen(report, may_run, AgentLimits(max_reported_processes=10))
    assert (len(screened.observed.processes), screened.ignored, screened.refused) == (0, 11, True)
    assert screen(observed(("web", 1)), may_run, AgentLimits(max_reported_processes=10)).observed


def test_a_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = TokenBucket(rate=10, burst=20)
    assert bucket.take(20, now=100.0)
    assert not bucket.take(1, now=100.0)
    assert bucket.take(5, now=100.5)  # 0.5 s at 10/s
    assert not bucket.take(1, now=100.5)
    assert bucket.available(now=1000.0) == 20


def test_output_is_capped_in_bytes_whatever_the_length_of_its_lines() -> None:
    meter = Meter(AgentLimits(log_line_rate=1_000, log_byte_rate=2_500))  # bursts of 10 KB
    long = [line("x" * 3_000) for _ in range(5)]
    assert len(meter.lines(long, now=0.0)) == 3  # 3 lines of ~3 KB fit 10 KB
    short = [line("y") for _ in range(5)]
    assert len(meter.lines(short, now=0.0)) == 5  # what is left still takes short lines
    assert len(meter.lines(long, now=0.5)) == 0  # half a second: 1.25 KB more, not a line
    assert len(meter.lines(long, now=10.0)) == 3  # later, 10 KB again
    assert meter.refusals.dropped_log_lines == 2 + 5 + 2


def test_output_is_capped_in_lines_too() -> None:
    meter = Meter(AgentLimits(log_line_rate=3))
    lines = [line("z") for _ in range(5)]
    assert len(meter.lines(lines, now=0.0)) == 3
    assert meter.refusals.dropped_log_lines == 2
