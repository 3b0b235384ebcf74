"""The event history: fair shares per host, per-agent rates, numbering and store bookkeeping."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.controller.events import (
    CONTROLLER_HOST,
    RESERVE,
    EventHistory,
    EventLog,
    EventRate,
    EventSettings,
    StoredEvents,
    decode_event,
    encode_event,
)
from stack.spec.reports import Event, Severity


def event(message: str, watcher: str = "") -> Event:
    return Event(at=0.0, kind="", message=message, watcher=watcher)


def test_a_noisy_source_pushes_out_only_its_own_events() -> None:
    history = EventHistory(capacity=10)
    seq = 0
    for source in ("", "h2", "h3"):
        for n in range(2):
            seq += 1
            history.add(seq, source, event(f"{source or 'controller'} {n}"))
    for n in range(1000):  # 20 s of noise from one agent
        seq += 1
        history.add(seq, "h1", event(f"noise {n}"))
    messages = [e.message for e in history.recent()]
    assert messages[:6] == ["controller 0", "controller 1", "h2 0", "h2 1", "h3 0", "h3 1"]
    assert messages[6:] == ["noise 996", "noise 997", "noise 998", "noise 999"]
    assert history.counts() == {"": 2, "h2": 2, "h3": 2, "h1": 4}


def test_when_everyone_is_busy_each_source_keeps_an_equal_share() -> None:
    history = EventHistory(capacity=9)
    for seq in range(1, 301):
        history.add(seq, ("", "h1", "h2")[seq % 3], event(str(seq)))
    assert history.counts() == {"": 3, "h1": 3, "h2": 3}
    assert [int(e.message) for e in history.recent()] == list(range(292, 301))


@given(st.lists(st.sampled_from(["", "h1", "h2", "h3"]), max_size=300), st.integers(1, 20))
def test_a_source_loses_events_only_while_it_holds_the_largest_share(
    sources: list[str], capacity: int
) -> None:
    history = EventHistory(capacity)
    for seq, source in enumerate(sources, start=1):
        before = history.counts()
        evicted = history.add(seq, source, event(str(seq)))
        after = history.counts()
        assert len(history) == min(seq, capacity)
        assert len(evicted) == (1 if seq > capacity else 0)
        for loser in before:
            if after.get(loser, 0) < before[loser]:
                assert before[loser] == max(before.values()), (before, source)
                assert loser == source or before.get(source, 0) < before[loser]
    # The newest event is always kept, and what is kept is in seq order.
    kept = [int(e.message) for e in history.recent()]
    assert kept == sorted(kept) and (not sources or kept[-1] == len(sources))


def test_recent_and_after_filter_by_watcher_and_count() -> None:
    history = EventHistory(capacity=100)
    for seq in range(1, 11):
        history.add(seq, "", event(str(seq), "web" if seq % 2 else "job"))
    assert [e.message for e in history.recent(lines=3)] == ["8", "9", "10"]
    assert [e.message for e in history.recent("web", 2)] == ["7", "9"]
    assert [e.message for e in history.after(7)] == ["8", "9", "10"]
    assert [e.message for e in history.after(4, "job")] == ["6", "8", "10"]
    assert history.after(10) == []
    with pytest.raises(ValueError, match="not above"):
        history.add(10, "", event("again"))


def test_an_agent_over_its_rate_is_cut_and_one_summary_counts_the_burst() -> None:
    rate = EventRate(rate=10, burst=20)
    allowed = sum(rate.allow("h1", 100.0) for _ in range(50))
    assert allowed == 20  # the burst
    assert rate.summaries(100.5) == []  # still inside the burst of drops
    assert sum(rate.allow("h1", 101.0) for _ in range(50)) == 10  # one second refilled 10
    assert rate.allow("h2", 101.0), "another agent has its own bucket"
    assert rate.summaries(102.0) == [("h1", 70)]
    assert rate.summaries(103.0) == []


def test_a_batch_takes_what_is_left_of_the_burst_in_one_step() -> None:
    rate = EventRate(rate=10, burst=250)
    assert [rate.take("h1", 100, 0.0) for _ in range(4)] == [100, 100, 50, 0]
    assert rate.take("h1", 100, 0.55) == 5
    assert rate.summaries(5.0) == [("h1", 245)]


def test_an_endless_flood_is_summarised_every_ten_seconds() -> None:
    rate = EventRate(rate=1, burst=1)
    summaries = []
    for tick in range(250):  # 25 s, 10 events a second
        now = 1000 + tick / 10
        rate.allow("h1", now)
        summaries += [(now, count) for _, count in rate.summaries(now)]
    assert [round(now) for now, _ in summaries] == [1010, 1020]
    assert sum(count for _, count in summaries) < 250


def test_events_are_numbered_and_their_summary_lands_in_the_agents_share() -> None:
    log = EventLog(EventSettings(capacity=100, agent_rate=1, agent_burst=2), 10, wall=lambda: 5.0)
    log.record("apply", "applied")
    sent = [event(f"e{n}") for n in range(5)]
    admitted = log.admit("h1", sent, now=0.0)
    assert list(admitted) == sent[:2]
    for item in admitted:
        log.add_from_agent("h1", item)
    log.tick(now=2.0)
    shown = log.recent()
    assert [e.seq for e in shown] == [1, 2, 3, 4]
    assert shown[0].host_id == CONTROLLER_HOST
    assert (shown[-1].kind, shown[-1].host_id, shown[-1].severity) == (
        "events_dropped", "h1", Severity.WARNING,
    )  # fmt: skip
    assert "3 dropped" in shown[-1].message
    assert log.history.counts() == {"": 1, "h1": 3}


def test_the_store_gets_each_event_once_and_loses_the_dropped_ones() -> None:
    log = EventLog(EventSettings(capacity=3), 10)
    for n in range(2):
        log.record("k", f"m{n}")
    first = log.take_write(10)
    assert sorted(first.puts) == [1, 2] and list(first.deletes) == []
    assert first.next_seq == 3 + RESERVE
    for n in range(2, 5):
        log.record("k", f"m{n}")  # evicts 1 and 2 (written) for 3..5
    second = log.take_write(10)
    assert sorted(second.deletes) == [1, 2] and sorted(second.puts) == [3, 4, 5]
    log.failed(second)
    log.record("k", "m5")  # evicts 3, which may have reached the store
    third = log.take_write(10)
    assert sorted(third.deletes) == [1, 2, 3] and sorted(third.puts) == [4, 5, 6]
    assert log.pending() == 0


def test_a_write_takes_at_most_its_limit_deletions_first() -> None:
    log = EventLog(EventSettings(capacity=2), 10)
    for n in range(6):
        log.record("k", str(n))
    write = log.take_write(3)
    assert (list(write.deletes), sorted(write.puts)) == ([], [5, 6])  # 1..4 never written
    for n in range(6, 10):
        log.record("k", str(n))
    write = log.take_write(3)
    assert (sorted(write.deletes), sorted(write.puts)) == ([5, 6], [9])
    assert log.pending() == 1


def test_a_restored_history_goes_on_past_the_reservation_and_keeps_its_shares() -> None:
    records = {
        seq: encode_event(source, Event(0.0, "", str(seq), host_id=source, seq=seq))
        for seq, source in [(3, ""), (4, "h1"), (5, "h1"), (6, "h1")]
    }
    records[7] = b"not json"
    log = EventLog(EventSettings(capacity=3), 10)
    log.restore(StoredEvents(records, next_seq=50))
    assert [e.seq for e in log.recent()] == [3, 5, 6]  # h1 gave up its oldest, not ""
    assert log.next_seq == 50
    log.record("leader", "took over")  # h1 holds the most: it gives up 5
    assert [e.seq for e in log.recent()] == [3, 6, 50]
    write = log.take_write(10)
    assert sorted(write.deletes) == [4, 5, 7] and sorted(write.puts) == [50]
    assert write.next_seq == 51 + RESERVE


def test_an_event_record_round_trips() -> None:
    original = Event(
        seq=9, at=1.5, host_id="h1", watcher="w", wid=2, kind="exit", message="\x1b ok",
        severity=Severity.ERROR,
    )  # fmt: skip
    assert decode_event(9, encode_event("h1", original)) == ("h1", original)
    bare = Event(at=0.0, kind="", message="", severity=Severity.UNSPECIFIED)
    assert decode_event(9, encode_event("", bare)) == ("", replace(bare, seq=9))


def test_an_event_record_keeps_the_severity_names_of_the_first_records() -> None:
    record = encode_event("", Event(at=1.0, kind="k", message="m", severity=Severity.WARNING))
    assert b'"severity": "SEVERITY_WARNING"' in record
    with pytest.raises(ValueError, match="unknown severity"):
        decode_event(1, record.replace(b"SEVERITY_WARNING", b"WARNING"))
