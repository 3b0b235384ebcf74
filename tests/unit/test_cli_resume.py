"""Where a follow picks up after losing its controller: no event or line twice, none lost."""

from __future__ import annotations

from stack.cli.resume import LAST_SEQ_KEY, RESUME_TAIL, EventCursor, LogCursor
from stack.loglines import SeenLines, millisecond
from stack.v1 import types_pb2


def event(seq: int) -> types_pb2.Event:
    return types_pb2.Event(seq=seq, message=str(seq))


def test_an_events_follow_resumes_after_the_last_event_it_printed() -> None:
    cursor = EventCursor("web", lines=20)
    first = cursor.request()
    assert (first.lines, first.after_seq, first.watcher, first.follow) == (20, 0, "web", True)
    cursor.opened({LAST_SEQ_KEY: "41"})
    assert [cursor.accept(event(seq)) for seq in (40, 41, 42)] == [True, True, True]
    again = cursor.request()
    assert (again.after_seq, again.lines) == (42, 0)
    # What the new leader sends again (its follower joined before it read the history).
    assert [cursor.accept(event(seq)) for seq in (41, 42, 43, 43, 44)] == [
        False, False, True, False, True,
    ]  # fmt: skip


def test_an_events_follow_that_printed_nothing_resumes_after_where_it_opened() -> None:
    cursor = EventCursor("", lines=20)
    cursor.opened({LAST_SEQ_KEY: "7"})
    assert cursor.request().after_seq == 7
    cursor.opened({LAST_SEQ_KEY: "100"})  # the first opening is the one that counts
    assert cursor.request().after_seq == 7
    never = EventCursor("", lines=5)
    assert never.request().lines == 5 and never.request().after_seq == 0


def line(host: str, at: float, text: str, wid: int = 1) -> types_pb2.LogLine:
    return types_pb2.LogLine(host_id=host, watcher="w", wid=wid, stream="out", at=at, text=text)


def test_a_line_read_back_from_a_file_has_the_millisecond_of_the_live_line() -> None:
    for at in (1_800_000_000.1234567, 1_800_000_000.999, 1_700_000_000.0015, 5.0):
        from_file = millisecond(at) / 1000  # what the agent's file keeps of it
        assert millisecond(from_file) == millisecond(at)


def test_a_logs_follow_resumes_with_a_tail_and_drops_what_it_printed_host_by_host() -> None:
    cursor = LogCursor("w", lines=0, host="")
    assert cursor.request().lines == 0 and cursor.request().since == 0
    printed = [
        line("h1", 100.0012, "a"),
        line("h1", 100.0014, "same"),
        line("h1", 100.0016, "same"),  # two equal lines in h1's last millisecond
        line("h2", 99.5, "b"),
    ]
    assert all(cursor.accept(item) for item in printed)
    request = cursor.request()
    assert request.lines == RESUME_TAIL and request.follow
    assert request.since <= 99.5
    # The tail from the new leader: times truncated to the millisecond, as in the files.
    tail = [
        line("h2", 99.4, "older"),
        line("h2", 99.5, "b"),
        line("h1", 100.001, "a"),
        line("h1", 100.001, "same"),
        line("h1", 100.001, "same"),
        line("h1", 100.001, "same"),  # a third equal line in that millisecond: new
        line("h2", 99.9, "new on h2"),
        line("h1", 100.002, "new on h1"),
    ]
    shown = [item.text for item in tail if cursor.accept(item)]
    assert shown == ["same", "new on h2", "new on h1"]
    # Live lines afterwards are all new, also equal ones in one millisecond.
    assert cursor.accept(line("h1", 100.0021, "new on h1"))


def test_a_second_reconnection_remembers_every_line_printed_before_it() -> None:
    cursor = LogCursor("w", lines=10)
    assert cursor.accept(line("h1", 5.0001, "x")) and cursor.accept(line("h1", 5.0002, "x"))
    cursor.request()
    assert not cursor.accept(line("h1", 5.0, "x"))  # the tail's copy of the first
    cursor.request()  # lost again before the second came back
    assert [cursor.accept(line("h1", 5.0, "x")) for _ in range(3)] == [False, False, True]


def test_live_lines_that_the_tail_had_are_repeats_per_host_and_new_ones_are_not() -> None:
    sent = SeenLines()
    for item in (line("h1", 10.001, "a"), line("h1", 10.002, "b"), line("h2", 12.5, "c")):
        sent.note(item)
    replay = sent.replay()
    live = [
        line("h1", 10.0011, "a"),  # the tail's last lines, live (full precision)
        line("h3", 1.0, "another host, nothing in the tail"),  # older than any tail end
        line("h1", 10.0023, "b"),
        line("h1", 10.0029, "b"),  # the same text again in that millisecond: new
        line("h2", 12.5004, "c"),
        line("h2", 12.6, "d"),
        line("h2", 12.4, "c"),  # after a new line of h2, every later one is new
    ]
    assert [replay.repeats(item) for item in live] == [True, False, True, False, True, False, False]
