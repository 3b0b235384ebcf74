"""The event history: bounded, shared fairly between hosts, numbered, kept in the store.

Agents ship their events (spawn, exit, flapping...) and the controller records its own
(apply, scale, agent_up...). Each event gets a sequence number (`seq`) that only grows,
also across restarts and failovers, so that a `stackctl events -f` that lost its
controller resumes after the last event it printed.

Who may fill the history: every source (each agent's host id, and the controller's
own `CONTROLLER_HOST`) has a fair share of it. When the history is full, the oldest event
of the source that holds the most is dropped, so a noisy agent pushes out its own events,
never another host's or the controller's. On top of that each agent may send `rate`
events a second (bursts up to `burst`); the excess is dropped and counted, and one
`events_dropped` event per burst says how many.

The history is kept in the store (its own key range; see `EventStore`) by the leader's
writer task: new events and the removal of dropped ones are written in batches, a
bounded number per second, off the path of admin writes. A new leader loads it and
continues the numbering past a reservation its predecessor stored, so no number is
ever given twice.

The pure parts (`EventHistory`, `EventRate`) take the time as an argument.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from stack.controller.fanout import Fanout
from stack.spec.reports import Event, Severity

log = logging.getLogger(__name__)

CONTROLLER_HOST = ""
"""host_id (and history source) of events the controller records itself."""

MAX_EVENT_HISTORY = 1_000_000
"""The most events a controller may be told to keep (memory, and the new leader's read)."""
RESERVE = 100_000
"""Sequence numbers a leader reserves in the store ahead of the ones it gave: a leader that
dies before writing its last events leaves numbers its successor will not give again."""


# ---- the pure core ----


@dataclass(frozen=True)
class EventNote:
    """An event the controller's decisions ask it to record (see EventLog.note)."""

    kind: str
    message: str
    watcher: str = ""
    severity: Severity = Severity.INFO


class EventHistory:
    """The last events, at most `capacity`, each source with a fair share.

    Events are added in increasing `seq` order. When full, the oldest event of the
    source holding the most events is evicted (the adding source's own when it is
    one of those), so a source that keeps adding only ever evicts its own events once
    it holds the largest share. Every operation is O(1) but reads.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("an event history holds at least one event")
        self.capacity = capacity
        self._events: dict[int, tuple[str, Event]] = {}
        """seq -> (source, event), in seq order (dicts keep insertion order)."""
        self._by_source: dict[str, deque[int]] = {}
        self._counts: dict[int, dict[str, None]] = {}
        """count -> the sources holding that many events, in the order they got there."""
        self._most = 0

    def __len__(self) -> int:
        return len(self._events)

    def add(self, seq: int, source: str, event: Event) -> list[int]:
        """Keep `event` (its seq above every kept one's); return the seqs evicted for it."""
        if self._events and seq <= next(reversed(self._events)):
            raise ValueError(f"event seq {seq} is not above the last kept")
        evicted = []
        while len(self._events) >= self.capacity:
            evicted.append(self._evict(source))
        self._events[seq] = (source, event)
        self._by_source.setdefault(source, deque()).append(seq)
        self._move(source, +1)
        return evicted

    def get(self, seq: int) -> tuple[str, Event] | None:
        """(source, event) of a kept event; None if it is not kept."""
        return self._events.get(seq)

    def counts(self) -> dict[str, int]:
        """source -> events kept of it."""
        return {source: len(seqs) for source, seqs in self._by_source.items()}

    def recent(self, watcher: str = "", lines: int = 0) -> list[Event]:
        """The kept events of one watcher (or all), oldest first; the last `lines` (0: all)."""
        found: list[Event] = []
        for _, event in reversed(self._events.values()):
            if watcher and event.watcher != watcher:
                continue
            found.append(event)
            if len(found) == lines:
                break
        found.reverse()
        return found

    def after(self, seq: int, watcher: str = "") -> list[Event]:
        """The kept events with a higher seq than `seq`, of one watcher (or all), oldest first."""
        found: list[Event] = []
        for kept, (_, event) in reversed(self._events.items()):
            if kept <= seq:
                break
            if not watcher or event.watcher == watcher:
                found.append(event)
        found.reverse()
        return found

    def _evict(self, adding: str) -> int:
        victim = adding
        if len(self._by_source.get(adding, ())) != self._most:
            victim = next(iter(self._counts[self._most]))
        seqs = self._by_source[victim]
        seq = seqs.popleft()
        if not seqs:
            del self._by_source[victim]
        del self._events[seq]
        self._move(victim, -1)
        return seq

    def _move(self, source: str, step: int) -> None:
        """Keep the count buckets and the largest count right after `source` changed by `step`."""
        now = len(self._by_source.get(source, ()))
        before = now - step
        if before:
            bucket = self._counts[before]
            del bucket[source]
            if not bucket:
                del self._counts[before]
        if now:
            self._counts.setdefault(now, {})[source] = None
        if step > 0:
            self._most = max(self._most, now)
        elif before == self._most and before not in self._counts:
            self._most = now


@dataclass
class _Bucket:
    tokens: float
    at: float
    dropped: int = 0
    first_drop: float = 0.0
    last_drop: float = 0.0


@dataclass
class EventRate:
    """Per source, a token bucket: `rate` events a second, bursts of up to `burst`.

    `allow` says whether one more event may pass and counts the ones that may not;
    `summaries` hands out those counts, once per burst of drops: when a source has
    dropped nothing for `quiet` seconds, or every `every` seconds while it goes on.
    """

    rate: float
    burst: float
    quiet: float = 1.0
    every: float = 10.0
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def allow(self, source: str, now: float) -> bool:
        """Whether one more event of `source` may pass."""
        return self.take(source, 1, now) == 1

    def take(self, source: str, count: int, now: float) -> int:
        """How many of `count` events of `source` may pass (the first ones); the rest
        are counted as dropped. One step for a whole batch, however large."""
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._buckets[source] = _Bucket(tokens=self.burst, at=now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        allowed = min(count, int(bucket.tokens))
        bucket.tokens -= allowed
        if allowed < count:
            if not bucket.dropped:
                bucket.first_drop = now
            bucket.dropped += count - allowed
            bucket.last_drop = now
        return allowed

    def summaries(self, now: float) -> list[tuple[str, int]]:
        """(source, events dropped) for each burst of drops to report now; forgets the
        sources with nothing to report and a full bucket."""
        due: list[tuple[str, int]] = []
        for source, bucket in list(self._buckets.items()):
            if bucket.dropped and (
                now - bucket.last_drop >= self.quiet or now - bucket.first_drop >= self.every
            ):
                due.append((source, bucket.dropped))
                bucket.dropped = 0
            full = bucket.tokens + (now - bucket.at) * self.rate >= self.burst
            if not bucket.dropped and full:
                del self._buckets[source]
        return sorted(due)


# ---- the store's records ----


@dataclass(frozen=True)
class StoredEvents:
    """The event history as the store holds it."""

    records: Mapping[int, bytes] = field(default_factory=dict)
    """seq -> the event's record."""
    next_seq: int = 0
    """The reservation: no controller gave a number at or above it (0: none stored)."""


@dataclass(frozen=True)
class EventWrite:
    """One batch of changes to the stored event history, done atomically."""

    puts: Mapping[int, bytes]
    """seq -> record, to write."""
    deletes: Collection[int]
    """seqs to remove (absent ones are fine)."""
    next_seq: int
    """The new reservation."""

    def __len__(self) -> int:
        """Operations in it (the reservation included)."""
        return len(self.puts) + len(self.deletes) + 1


SEVERITY_PREFIX = "SEVERITY_"
"""How a record names a severity: SEVERITY_INFO... (the names the first records had)."""


def encode_event(source: str, event: Event) -> bytes:
    """One event as its store record (JSON, readable in the store)."""
    record = {
        "source": source,
        "at": event.at,
        "host_id": event.host_id,
        "watcher": event.watcher,
        "wid": event.wid,
        "kind": event.kind,
        "message": event.message,
        "severity": SEVERITY_PREFIX + Severity(event.severity).name,
    }
    return json.dumps(record, sort_keys=True).encode()


def decode_event(seq: int, data: bytes) -> tuple[str, Event]:
    """(source, event) from a store record; ValueError (or KeyError) if it is not one."""
    record = json.loads(data)
    severity = str(record["severity"])
    if not severity.startswith(SEVERITY_PREFIX):
        raise ValueError(f"unknown severity {severity!r}")
    event = Event(
        seq=seq,
        at=float(record["at"]),
        host_id=str(record["host_id"]),
        watcher=str(record["watcher"]),
        wid=int(record["wid"]),
        kind=str(record["kind"]),
        message=str(record["message"]),
        severity=Severity[severity.removeprefix(SEVERITY_PREFIX)],
    )
    return str(record["source"]), event


# ---- the controller's event log ----


@dataclass(frozen=True)
class EventSettings:
    """How much history the controller keeps, how fast one agent may add to it, and how
    the leader writes it to the store."""

    capacity: int = 10_000
    """Events kept (in memory and in the store)."""
    agent_rate: float = 100.0
    """Events a second one agent may send on average; the rest are counted and dropped."""
    agent_burst: int = 1_000
    """Events one agent may send at once (a large scale spawns many at a time)."""
    write_interval: float = 0.2
    """Seconds between the writer's batches: at most this much history is lost with
    the leader (events it recorded and had not written yet)."""
    store_rate: int = 500
    """Store operations (event writes and deletions) a second at most, whatever the
    agents send: under a flood the store lags behind memory and catches up after."""


class EventLog:
    """The controller's history, its live followers, and what the store still lacks.

    Store bookkeeping: a kept event is unsaved until a write takes it; an event the
    history drops is deleted from the store unless it never left the unsaved set. One
    writer at a time takes a write and does it, giving it back with `failed` if it may
    not have reached the store.
    """

    def __init__(
        self,
        settings: EventSettings,
        follower_queue: int,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.history = EventHistory(settings.capacity)
        self.rate = EventRate(settings.agent_rate, settings.agent_burst)
        self.fanout: Fanout[Event] = Fanout(follower_queue)
        self._wall = wall
        self.next_seq = 1
        """The number the next event gets."""
        self._unsaved: dict[int, None] = {}
        """Kept events not in the store yet, in seq order."""
        self._stale: dict[int, None] = {}
        """Dropped events that are (or may be) in the store: to delete there."""
        self._retried: set[int] = set()
        """Unsaved events whose last write failed: they may be in the store all the same."""

    # -- adding --

    def record(
        self,
        kind: str,
        message: str,
        watcher: str = "",
        severity: Severity = Severity.INFO,
    ) -> None:
        """Record one of the controller's own events."""
        event = Event(
            at=self._wall(),
            host_id=CONTROLLER_HOST,
            watcher=watcher,
            kind=kind,
            message=message,
            severity=severity,
        )
        self._keep(CONTROLLER_HOST, event)

    def note(self, note: EventNote) -> None:
        """Record an event a decision asked for."""
        self.record(note.kind, note.message, note.watcher, note.severity)

    def admit(self, host_id: str, events: Sequence[Event], now: float) -> Sequence[Event]:
        """The first of the events agent `host_id` sent that its rate lets in; the rest
        are dropped and counted (see `tick`). `now` is monotonic."""
        return events[: self.rate.take(host_id, len(events), now)]

    def add_from_agent(self, host_id: str, event: Event) -> None:
        """Keep an event agent `host_id` sent (one `admit` let in), in that agent's share."""
        self._keep(host_id, event)

    def tick(self, now: float) -> None:
        """Record an `events_dropped` event for each agent whose burst of drops is over
        (see EventRate.summaries); called a few times a second with monotonic `now`."""
        for host_id, dropped in self.rate.summaries(now):
            rate = self.settings.agent_rate
            event = Event(
                at=self._wall(),
                host_id=host_id,
                kind="events_dropped",
                message=f"agent {host_id} sent more than {rate:g} events a second: "
                f"{dropped} dropped",
                severity=Severity.WARNING,
            )
            self._keep(host_id, event)  # in that agent's share, not the controller's

    def _keep(self, source: str, event: Event) -> None:
        event = replace(event, seq=self.next_seq)  # numbers are the controller's to give
        self.next_seq += 1
        for seq in self.history.add(event.seq, source, event):
            if self._unsaved.pop(seq, False) is False or seq in self._retried:
                self._retried.discard(seq)
                self._stale[seq] = None
        self._unsaved[event.seq] = None
        self.fanout.publish(event)

    # -- reading --

    def recent(self, watcher: str = "", lines: int = 0) -> list[Event]:
        """The kept events, oldest first, of one watcher (or all); the last `lines` (0: all)."""
        return self.history.recent(watcher, lines)

    def after(self, seq: int, watcher: str = "") -> list[Event]:
        """The kept events numbered above `seq`, oldest first, of one watcher (or all)."""
        return self.history.after(seq, watcher)

    # -- the store --

    def restore(self, stored: StoredEvents) -> None:
        """Take the history a previous leader stored (this log being new and empty);
        numbering goes on from its reservation. Unreadable records are deleted."""
        for seq, data in sorted(stored.records.items()):
            try:
                source, event = decode_event(seq, data)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("dropping stored event %d: %s", seq, exc)
                self._stale[seq] = None
                continue
            self._stale.update(dict.fromkeys(self.history.add(seq, source, event)))
        last = max(stored.records, default=0)
        self.next_seq = max(self.next_seq, stored.next_seq, last + 1)

    def pending(self) -> int:
        """Store operations not done yet (events to write and to delete)."""
        return len(self._unsaved) + len(self._stale)

    def take_write(self, limit: int) -> EventWrite:
        """Up to `limit` store operations, deletions first, then the oldest unsaved events,
        with a fresh reservation. Taken means done, unless it is given back with `failed`."""
        deletes = list(self._stale)[:limit]
        for seq in deletes:
            del self._stale[seq]
        puts: dict[int, bytes] = {}
        for seq in list(self._unsaved)[: limit - len(deletes)]:
            del self._unsaved[seq]
            self._retried.discard(seq)
            kept = self.history.get(seq)
            assert kept is not None, "an unsaved event is a kept one"
            puts[seq] = encode_event(*kept)
        return EventWrite(puts=puts, deletes=deletes, next_seq=self.next_seq + RESERVE)

    def failed(self, write: EventWrite) -> None:
        """`write` may or may not have reached the store: its operations are due again.
        Its events count as possibly stored: dropped later, they are deleted there (an
        event dropped while the write was out already is; deleting an absent one is fine)."""
        self._stale.update(dict.fromkeys(write.deletes))
        again = [seq for seq in write.puts if self.history.get(seq) is not None]
        self._retried.update(again)
        self._unsaved = dict.fromkeys(sorted([*again, *self._unsaved]))
