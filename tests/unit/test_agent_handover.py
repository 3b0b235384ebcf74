"""What one agent hands to the next: worker records and the exec handover, round trips,
and the handover of an image from before (format 1) read into this one's types."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from stack.agent.flapping import FlapPhase, FlapState
from stack.agent.handover import (
    FORMAT,
    READS,
    Handover,
    HandoverError,
    SlotRecord,
    WatcherRecord,
    from_bytes,
    to_bytes,
)
from stack.agent.health import HealthState
from stack.agent.output import Line
from stack.agent.records import (
    PipeRecord,
    Records,
    SlotFlapping,
    SocketRecord,
    StopRecord,
    WorkerRecord,
    records_from_json,
    records_to_json,
)
from stack.spec.assignment import Assignment, PinnedVersion, WatcherAssignment
from stack.spec.model import SocketSpec, WatcherSpec
from stack.spec.observed import ExitReason, Health, LastExit, ProcessState
from stack.spec.reports import Event, Severity

SAMPLES = Path(__file__).parents[1] / "samples" / "agent"

RUNNING = WorkerRecord(
    watcher="web",
    wid=2,
    pid=4242,
    start_ticks=123456,
    started_at=1_800_000_000.5,
    started_mono=1234.25,
    restarts=3,
    replacements=2,
    spawned=4,
    version="2-0123456789abcdef",
    version_key=("0123456789abcdef", (("api", 1), ("admin", 4)), 2),
    deadline=2000.0,
    out=PipeRecord(child_fd=101, inode=777, fd=101),
    err=PipeRecord(child_fd=102, inode=778, fd=55),
    uid=1000,
    gid=1000,
)
STOPPING = WorkerRecord(
    watcher="web",
    wid=7,
    pid=4300,
    start_ticks=99,
    stopping=StopRecord(
        reason=ExitReason.MAX_AGE,
        deadline=1500.5,
        note="why",
        children=((4310, 1000), (4311, 1002)),
    ),
)
RECORDS = Records(
    fencing_token=9,
    boot_id="3a2b-boot",
    workers=(RUNNING, STOPPING, WorkerRecord("old", 1, 5, 6)),
    sockets=(SocketRecord("api", 1, 8888, 100), SocketRecord("admin", 4, 8889)),
    flapping=(
        SlotFlapping("web", 2, "2-0123456789abcdef", FlapState(starts=(1200.5, 1210.0)), 3, 4),
        SlotFlapping(
            "web",
            3,
            "2-0123456789abcdef",
            FlapState(retries=2, phase=FlapPhase.FLAPPING, retry_at=1300.0, spawn_failures=1),
        ),
        SlotFlapping("old", 1, "", FlapState(phase=FlapPhase.FATAL, fatal_reason="why"), 9, 10, 2),
    ),
)


def test_worker_records_survive_their_json_form_unchanged() -> None:
    text = json.dumps(records_to_json(RECORDS))
    assert records_from_json(json.loads(text)) == RECORDS


def test_records_of_an_older_agent_read_with_defaults() -> None:
    old = {"fencing_token": 3, "workers": [{"watcher": "w", "wid": 1, "pid": 10, "start_ticks": 5}]}
    records = records_from_json(old)
    assert records.fencing_token == 3 and records.boot_id == "" and records.sockets == ()
    assert records.flapping == ()
    (worker,) = records.workers
    assert worker == WorkerRecord("w", 1, 10, 5)
    assert worker.out is None and worker.version_key is None and worker.stopping is None


@pytest.mark.parametrize("doc", [[], {"workers": [{"wid": 1}]}, {"workers": ["x"]}])
def test_malformed_records_raise_value_or_key_errors(doc: object) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        records_from_json(doc)


def _handover() -> Handover:
    crashed = LastExit(3, 0, ExitReason.CRASHED, 1_800_000_001.0, "", False)
    away = LastExit(0, 0, ExitReason.CRASHED, 1_800_000_002.0, "away", True)
    healthy = HealthState(Health.HEALTHY, 0, "last failure")
    return Handover(
        records=RECORDS,
        assignment=Assignment(
            generation=5,
            fencing_token=9,
            watchers=(
                WatcherAssignment(
                    WatcherSpec(name="web", cmd="run"),
                    wids=(2, 3, 4),
                    pinned=(PinnedVersion(WatcherSpec(name="web", cmd="old"), 1, (4,)),),
                    probation=(3,),
                ),
            ),
            sockets=(SocketSpec(name="api", port=8080),),
        ),
        slots=(
            SlotRecord(
                "web",
                2,
                2,
                3,
                4,
                False,
                "",
                "2-0123456789abcdef",
                crashed,
                healthy,
                FlapState(starts=(1.5, 2.5), retries=1),
                replacements=5,
                cause="replacement",
            ),
            SlotRecord("web", 3, 4, 1, 1, True, "spawn error: no", "", away, cause="failure"),
            SlotRecord("web", 4, 5, 0, 0, True),
            SlotRecord(
                "bad",
                1,
                6,
                0,
                0,
                False,
                flap=FlapState(phase=FlapPhase.FATAL, spawn_failures=5, fatal_reason="could not"),
            ),
            SlotRecord(
                "slow", 1, 5, 0, 0, True, flap=FlapState(phase=FlapPhase.FLAPPING, retry_at=99.0)
            ),
        ),
        watchers=(
            WatcherRecord("web", graceful_replace=True),
            WatcherRecord("bad"),
            WatcherRecord("slow"),
        ),
        partials={101: b"half a li", 55: b"\xff\xfe not utf-8"},
        events=(Event(1_800_000_000.0, "spawn", "pid 4242", "h1", "web", 2, Severity.INFO),),
        lines=(Line(1_800_000_003.25, "web", 2, "out", "hello \u00e9"),),
        dropped=17,
        controller="198.18.0.2:7450",
        notify_socket="@stack-notify",
        started_at=1_700_000_000.0,
        reexecs=2,
        version="0.1.0",
        requested_mono=1234.5,
    )


def test_a_handover_survives_its_byte_form_unchanged() -> None:
    handover = _handover()
    assert from_bytes(to_bytes(handover)) == handover


def test_flapping_of_an_image_that_kept_it_per_watcher_is_given_to_each_slot() -> None:
    """An image from before per-slot flapping wrote one state per watcher and none per
    slot: each slot gets the watcher's wait or verdict (not its count of exits)."""
    doc = json.loads(to_bytes(_handover()))
    for slot in doc["slots"]:
        del slot["flap"]
    doc["watchers"] = [
        {"name": "web", "flap": {"exits": [1.5, 2.5], "retries": 1, "phase": "active"}},
        {"name": "bad", "flap": {"phase": "fatal", "retries": 0, "spawn_failures": 6,
                                 "fatal_reason": "could not start after 6 attempts: x"}},
        {"name": "slow", "flap": {"phase": "flapping", "retries": 2, "retry_at": 99.0}},
    ]  # fmt: skip
    flaps = {(s.watcher, s.wid): s.flap for s in from_bytes(json.dumps(doc).encode()).slots}
    assert flaps[("web", 2)] == FlapState(retries=1)
    assert flaps[("bad", 1)].phase is FlapPhase.FATAL
    assert flaps[("bad", 1)].fatal_reason == "could not start after 6 attempts: x"
    assert flaps[("slow", 1)] == FlapState(retries=2, phase=FlapPhase.FLAPPING, retry_at=99.0)


def test_an_image_that_keeps_flapping_per_watcher_reads_a_summary_of_the_slots() -> None:
    doc = json.loads(to_bytes(_handover()))
    by_name = {w["name"]: w["flap"] for w in doc["watchers"]}
    assert by_name["web"]["phase"] == "active"
    assert by_name["bad"]["phase"] == "fatal" and by_name["bad"]["fatal_reason"] == "could not"
    assert by_name["slow"]["phase"] == "flapping" and by_name["slow"]["retry_at"] == 99.0


def test_an_empty_handover_round_trips() -> None:
    empty = Handover(records=Records(), assignment=None)
    assert from_bytes(to_bytes(empty)) == empty


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"not json", "unreadable handover"),
        (b"[]", "not a JSON object"),
        (json.dumps({"format": FORMAT + 1}).encode(), f"format {FORMAT + 1}"),
        (json.dumps({"format": FORMAT}).encode(), "unreadable handover"),
        (json.dumps({"format": FORMAT, "records": {}, "assignment": "!!"}).encode(), "unreadable"),
    ],
)
def test_an_unreadable_handover_is_one_clear_error(data: bytes, says: str) -> None:
    with pytest.raises(HandoverError, match=says):
        from_bytes(data)


def test_an_exit_reason_number_comes_back_as_that_reason_or_fails() -> None:
    doc = json.loads(to_bytes(_handover()))
    assert doc["slots"][0]["last_exit"][2] == ExitReason.CRASHED
    assert from_bytes(json.dumps(doc).encode()) == _handover()
    doc["slots"][0]["last_exit"][2] = 999
    with pytest.raises(HandoverError, match="999"):
        from_bytes(json.dumps(doc).encode())


def test_this_image_writes_format_2_and_reads_format_1_too() -> None:
    assert json.loads(to_bytes(_handover()))["format"] == FORMAT == 2
    assert READS == (1, 2)


def test_the_handover_of_an_image_from_before_is_read_into_this_ones_types() -> None:
    """tests/samples/agent/handover-format-1.json was written by the image before this
    one (its Assignment and events are protobuf messages): every part of it is taken."""
    old = from_bytes((SAMPLES / "handover-format-1.json").read_bytes())
    assert old.assignment is not None
    assert (old.assignment.generation, old.assignment.fencing_token) == (12, 4)
    web, cron = old.assignment.watchers
    assert (web.spec.name, web.wids, web.restart_token, web.graceful) == ("web", (1, 2, 3), 2, True)
    assert web.spec.health.target == "/health" and web.spec.flapping.retry_in == 5.0
    assert dict(web.spec.env) == {"MODE": "prod"} and web.probation == (2,)
    (pinned,) = web.pinned
    assert pinned.wids == (3,) and pinned.spec.cmd.startswith("bin/web-old")
    assert pinned.sockets == (SocketSpec(name="api", host="0.0.0.0", port=8080),)
    assert (cron.spec.name, cron.active) == ("cron", False)
    assert old.assignment.sockets == pinned.sockets
    assert [(e.kind, e.wid, e.severity) for e in old.events] == [
        ("exit", 1, Severity.WARNING),
        ("assignment_applied", 0, Severity.INFO),
    ]
    states = {slot.wid: ProcessState(slot.state) for slot in old.slots}
    assert states == {1: ProcessState.RUNNING, 2: ProcessState.BACKOFF, 3: ProcessState.STOPPING}
    first = old.slots[0]
    assert (first.restarts, first.replacements, first.health.health) == (1, 2, Health.HEALTHY)
    assert first.last_exit == LastExit(3, 0, ExitReason.CRASHED, 1_800_000_001.0)
    assert old.slots[1].flap.retry_at == 1240.0 and old.slots[1].cause == "failure"
    assert [w.pid for w in old.records.workers] == [4242, 4300]
    assert old.partials == {101: b"half a li"} and old.dropped == 3
    assert from_bytes(to_bytes(old)) == old  # and handed on as format 2, unchanged


def test_a_format_1_handover_whose_protobuf_is_broken_is_one_clear_error() -> None:
    doc = json.loads((SAMPLES / "handover-format-1.json").read_bytes())
    doc["events"] = [base64.b64encode(b"\xff\xff not an event").decode()]
    with pytest.raises(HandoverError, match="unreadable handover"):
        from_bytes(json.dumps(doc).encode())
