"""What one agent may put into the controller: screening its reports, and its rate caps."""

from __future__ import annotations

from stack.controller.containment import (
    REFUSAL_LABELS,
    REFUSALS_EVERY,
    AgentLimits,
    Meter,
    Refusals,
    TokenBucket,
    announce,
    screen,
)
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


def test_the_refusals_told_are_those_the_labels_name_in_their_order() -> None:
    refusals = Refusals(
        ignored_processes=1, refused_reports=2, dropped_events=3, dropped_log_lines=4
    )
    assert refusals.told() == tuple(getattr(refusals, name) for name in REFUSAL_LABELS)


def test_refusals_are_told_at_once_then_at_most_every_ten_seconds() -> None:
    refusals = Refusals(ignored_processes=2)
    first = announce("h1", refusals, (), 0.0, now=100.0)
    assert first is not None and first.note is not None
    assert first.note.message == (
        "agent h1: 2 reports of workers not assigned to it ignored "
        "(stackctl agents -o json counts them)"
    )
    assert (first.counts, first.next_at) == ((2, 0, 0), 100.0 + REFUSALS_EVERY)
    refusals.dropped_log_lines += 5
    assert announce("h1", refusals, first.counts, first.next_at, now=109.999) is None
    later = announce("h1", refusals, first.counts, first.next_at, now=110.0)
    assert later is not None and later.note is not None
    assert "5 output lines over its caps dropped" in later.note.message
    assert announce("h1", refusals, later.counts, later.next_at, now=500.0) is None, "no news"
