"""What one agent hands to the next: worker records and the exec handover, round trips."""

from __future__ import annotations

import json

import pytest

from stack.agent.flapping import FlapPhase, FlapState
from stack.agent.handover import (
    FORMAT,
    Handover,
    HandoverError,
    SlotRecord,
    WatcherRecord,
    from_bytes,
    to_bytes,
)
from stack.agent.health import Health, HealthState
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
from stack.agent.wire import LastExit, exit_reason
from stack.v1 import types_pb2

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
    stopping=StopRecord(reason=types_pb2.EXIT_REASON_MAX_AGE, deadline=1500.5, note="why"),
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
    crashed = LastExit(3, 0, types_pb2.EXIT_REASON_CRASHED, 1_800_000_001.0, "", False)
    away = LastExit(0, 0, types_pb2.EXIT_REASON_CRASHED, 1_800_000_002.0, "away", True)
    healthy = HealthState(Health.HEALTHY, 0, "last failure")
    return Handover(
        records=RECORDS,
        assignment=b"\x08\x05\x10\x09",
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
        events=(types_pb2.Event(kind="spawn", wid=2, message="pid 4242").SerializeToString(),),
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
    empty = Handover(records=Records(), assignment=b"")
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
    assert exit_reason(types_pb2.EXIT_REASON_UNHEALTHY) == types_pb2.EXIT_REASON_UNHEALTHY
    with pytest.raises(ValueError):
        exit_reason(999)
