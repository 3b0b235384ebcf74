"""The state one image of the agent hands to the next when it re-executes itself.

On SIGHUP the agent execs its own command line again (see reexec.py): same pid, so its
workers stay its children, and the fds it keeps (sockets, the read ends of the output
pipes) stay open across the exec. Everything else the new image needs is written here
and read back by it: the worker records with the agent's own fds (records.py), the
Assignment it runs, every slot's state (restarts, last exit, health, pending, and
its flapping state), the partial last line of each pipe, and the events
and output lines not yet shipped to the controller. Nothing is rebuilt from guesses.

Monotonic times stay valid: the exec happens on the same boot. Pure data and its
JSON form (bytes in base64); no I/O here. The Assignment and the events are kept in
their plain form (stack.spec.plain), not as wire messages.

Format 2 is this one. Format 1, written by images from before, held the Assignment and
the events as serialized protobuf: it is still read (through the agent's legacy edge,
legacy.py), so that such an image can hand over to this one.

Flapping is counted per slot. Images from before that kept one flapping state per
watcher: what such an image hands over is read as that state given to each of the
watcher's slots, and each watcher's state is still written, summed up from its slots,
for such an image to read.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stack.agent import legacy
from stack.agent.flapping import FlapPhase, FlapState, watcher_summary
from stack.agent.health import HealthState
from stack.agent.output import Line
from stack.agent.records import (
    Records,
    flap_from_json,
    flap_to_json,
    records_from_json,
    records_to_json,
)
from stack.spec.assignment import Assignment
from stack.spec.observed import ExitReason, Health, LastExit
from stack.spec.plain import PlainError, from_plain, to_plain
from stack.spec.reports import Event

FORMAT = 2
"""The handover's format, as this image writes it. An image reads only formats it knows:
the check before an exec refuses a new program that does not read this one (see
reexec.py)."""
READS = (1, 2)
"""The formats this image reads."""


class HandoverError(ValueError):
    """The handover cannot be read; str() says why."""


@dataclass(frozen=True)
class SlotRecord:
    """One worker slot, as `status` shows it, beyond its running process."""

    watcher: str
    wid: int
    state: int
    """A ProcessState value."""
    restarts: int
    spawned: int
    pending: bool
    message: str = ""
    version: str = ""
    last_exit: LastExit | None = None
    health: HealthState = field(default_factory=HealthState)
    flap: FlapState = field(default_factory=FlapState)
    replacements: int = 0
    cause: str = ""
    """What the slot's next start counts as (a StartCause value)."""


@dataclass(frozen=True)
class WatcherRecord:
    name: str
    graceful_replace: bool = False


@dataclass(frozen=True)
class Handover:
    records: Records
    """The workers and sockets, with the agent's own fds."""
    assignment: Assignment | None
    """The Assignment the agent runs (None: none yet)."""
    slots: tuple[SlotRecord, ...] = ()
    watchers: tuple[WatcherRecord, ...] = ()
    partials: Mapping[int, bytes] = field(default_factory=dict)
    """Pipe fd -> the line begun on it and not finished yet."""
    events: tuple[Event, ...] = ()
    """Events not shipped yet."""
    lines: tuple[Line, ...] = ()
    """Output lines not shipped yet."""
    dropped: int = 0
    """Output lines dropped from shipping and not reported yet."""
    controller: str = ""
    """The controller the session dialled last (a leader found through a redirect)."""
    notify_socket: str = ""
    """$NOTIFY_SOCKET of the service manager ("" without one)."""
    started_at: float = 0.0
    """Unix time this agent process first started (kept across re-executions)."""
    reexecs: int = 0
    """Re-executions before this one."""
    version: str = ""
    """The version of the image handing over."""
    requested_mono: float = 0.0
    """Monotonic time the re-execution was asked for (SIGHUP)."""


def to_bytes(handover: Handover) -> bytes:
    doc = {
        "format": FORMAT,
        "records": records_to_json(handover.records),
        "assignment": None if handover.assignment is None else to_plain(handover.assignment),
        "slots": [_slot_to_json(slot) for slot in handover.slots],
        "watchers": [
            {
                "name": w.name,
                "flap": flap_to_json(_watcher_flap(w.name, handover.slots)),
                "graceful_replace": w.graceful_replace,
            }
            for w in handover.watchers
        ],
        "partials": {str(fd): _b64(data) for fd, data in handover.partials.items()},
        "events": [to_plain(event) for event in handover.events],
        "lines": [list(line) for line in handover.lines],
        "dropped": handover.dropped,
        "controller": handover.controller,
        "notify_socket": handover.notify_socket,
        "started_at": handover.started_at,
        "reexecs": handover.reexecs,
        "version": handover.version,
        "requested_mono": handover.requested_mono,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def from_bytes(data: bytes) -> Handover:
    """The handover written by `to_bytes`; HandoverError when it cannot be read."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise HandoverError("not a JSON object")
        form = doc.get("format")
        if form not in READS:
            raise HandoverError(f"format {form!r}, this agent reads {_formats()}")
        watchers = doc.get("watchers", [])
        flaps = {str(w["name"]): flap_from_json(w.get("flap", {})) for w in watchers}
        if form == 1:
            assignment, events = _protobuf_parts(doc)
        else:
            plain = doc.get("assignment")
            assignment = None if plain is None else from_plain(Assignment, plain)
            events = tuple(from_plain(Event, event) for event in doc.get("events", []))
        return Handover(
            records=records_from_json(doc["records"]),
            assignment=assignment,
            slots=tuple(_slot_from_json(slot, flaps) for slot in doc.get("slots", [])),
            watchers=tuple(
                WatcherRecord(str(w["name"]), bool(w.get("graceful_replace"))) for w in watchers
            ),
            partials={int(fd): _unb64(data) for fd, data in doc.get("partials", {}).items()},
            events=events,
            lines=tuple(
                Line(float(at), str(watcher), int(wid), str(stream), str(text))
                for at, watcher, wid, stream, text in doc.get("lines", [])
            ),
            dropped=int(doc.get("dropped", 0)),
            controller=str(doc.get("controller", "")),
            notify_socket=str(doc.get("notify_socket", "")),
            started_at=float(doc.get("started_at", 0.0)),
            reexecs=int(doc.get("reexecs", 0)),
            version=str(doc.get("version", "")),
            requested_mono=float(doc.get("requested_mono", 0.0)),
        )
    except HandoverError:
        raise
    except PlainError as exc:
        raise HandoverError(f"unreadable handover: {exc}") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise HandoverError(f"unreadable handover: {exc!r}") from None


def _formats() -> str:
    return " and ".join(str(form) for form in READS)


def _protobuf_parts(doc: dict[str, Any]) -> tuple[Assignment | None, tuple[Event, ...]]:
    """The Assignment and the events of a format 1 handover, which held them as
    serialized protobuf messages (base64)."""
    raw = _unb64(doc.get("assignment", ""))
    assignment = legacy.assignment_from_bytes(raw) if raw else None
    events = tuple(legacy.event_from_bytes(_unb64(event)) for event in doc.get("events", []))
    return assignment, events


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)


def _watcher_flap(name: str, slots: tuple[SlotRecord, ...]) -> FlapState:
    """One flapping state for the watcher, for an image that keeps one per watcher."""
    summary = watcher_summary({s.wid: s.flap for s in slots if s.watcher == name}, 0.0)
    return FlapState(
        retries=summary.retries,
        phase=summary.phase,
        retry_at=summary.retry_at,
        fatal_reason=summary.message.removeprefix("fatal: ")
        if summary.phase is FlapPhase.FATAL
        else "",
    )


def _slot_to_json(slot: SlotRecord) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "watcher": slot.watcher,
        "wid": slot.wid,
        "state": slot.state,
        "restarts": slot.restarts,
        "replacements": slot.replacements,
        "cause": slot.cause,
        "spawned": slot.spawned,
        "pending": slot.pending,
        "message": slot.message,
        "version": slot.version,
        "health": [int(slot.health.health), slot.health.failures, slot.health.message],
        "flap": flap_to_json(slot.flap),
    }
    last = slot.last_exit
    if last is not None:
        doc["last_exit"] = [
            last.code, last.signal, int(last.reason), last.at, last.message, last.code_unknown,
        ]  # fmt: skip
    return doc


def _slot_from_json(doc: Any, flaps: Mapping[str, FlapState]) -> SlotRecord:
    """A slot; one from an image that kept flapping per watcher gets its watcher's
    wait or verdict, not its count of exits (which was the whole watcher's)."""
    last = doc.get("last_exit")
    watcher = str(doc["watcher"])
    # (an older image's exit times are not read: they were the whole watcher's)
    flap = flap_from_json(doc["flap"]) if "flap" in doc else flaps.get(watcher, FlapState())
    health, failures, message = doc.get("health", [int(Health.STARTING), 0, ""])
    return SlotRecord(
        watcher=watcher,
        wid=int(doc["wid"]),
        state=int(doc["state"]),
        restarts=int(doc["restarts"]),
        replacements=int(doc.get("replacements", 0)),
        cause=str(doc.get("cause", "")),
        spawned=int(doc["spawned"]),
        pending=bool(doc["pending"]),
        message=str(doc.get("message", "")),
        version=str(doc.get("version", "")),
        last_exit=None
        if last is None
        else LastExit(
            code=int(last[0]),
            signal=int(last[1]),
            reason=ExitReason(int(last[2])),
            at=float(last[3]),
            message=str(last[4]),
            code_unknown=bool(last[5]),
        ),
        health=HealthState(Health(int(health)), int(failures), str(message)),
        flap=flap,
    )
