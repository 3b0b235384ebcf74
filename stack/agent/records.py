"""What the agent writes down about its workers, so that its successor can adopt them.

The records are rewritten (see persist.py) right after every change: a spawn, an exit,
a stop that begins. A new agent started after a crash reads them to find the workers
it may adopt and everything it needs to carry on as if nothing happened: each worker's
identity (pid, start ticks, boot), its slot (watcher, wid, restart count, start time),
the version it runs (so the persisted Assignment does not replace it), its output
pipes and inherited sockets (by fd number and inode, see adoption.py), and a stop in
progress with its SIGKILL deadline. The sockets the agent bound are recorded with
their serial (which the workers' versions name) and inode. Each slot's flapping
state is recorded too (`SlotFlapping`): a worker that keeps crashing must not get a
fresh budget of restarts, nor a slot that flaps or gave up be started at once,
because the agent crashed.

Monotonic times (`started_mono`, `deadline`, a stop's deadline, the starts and retry
time of a slot's flapping) are valid only on the boot that wrote them, which `boot_id`
names: records of another boot prove nothing.
Pure data and its JSON form; no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stack.agent.flapping import FlapPhase, FlapState

VersionKey = tuple[str, tuple[tuple[str, int], ...], int]
"""(process fingerprint, ((socket name, serial), ...), restart token): what a worker
runs. Equal keys mean the same processes (see watcher.Version.key)."""


@dataclass(frozen=True)
class PipeRecord:
    """The read end of one of a worker's output pipes."""

    child_fd: int
    """The fd number of the worker's copy of the read end."""
    inode: int
    fd: int = -1
    """The agent's own fd for it: meaningful only across an exec (same process)."""


@dataclass(frozen=True)
class StopRecord:
    """A graceful stop in progress: the stop signal was sent."""

    reason: int
    """The ExitReason it is stopped for."""
    deadline: float
    """Monotonic time at which it gets SIGKILL."""
    note: str = ""
    children: tuple[tuple[int, int], ...] = ()
    """(pid, start ticks) of its descendants outside its group that got the stop signal
    (stop_children): stopped with it."""


@dataclass(frozen=True)
class WorkerRecord:
    watcher: str
    wid: int
    pid: int
    start_ticks: int
    started_at: float = 0.0
    """Unix time of the spawn."""
    started_mono: float = 0.0
    restarts: int = 0
    """Of its slot, at the time of the record."""
    replacements: int = 0
    """Of its slot, at the time of the record."""
    spawned: int = 0
    version: str = ""
    """The label status shows for its version."""
    version_key: VersionKey | None = None
    """Names the sockets it inherited too, in fd order (3, 4, ...)."""
    deadline: float = 0.0
    """Monotonic time when max_age recycles it; 0: never."""
    out: PipeRecord | None = None
    err: PipeRecord | None = None
    uid: int | None = None
    gid: int | None = None
    stopping: StopRecord | None = None


@dataclass(frozen=True)
class SocketRecord:
    name: str
    serial: int
    inode: int
    fd: int = -1
    """The agent's own fd: meaningful only across an exec."""
    file: tuple[int, int] | None = None
    """A unix socket's file as bound (device, inode): removed when the socket closes."""
    binding: tuple[str | int, ...] = ()
    """Where it listens (model.socket_binding): which of the Assignment's specs it is
    when two versions' sockets share a name; () from an agent that predates it."""


@dataclass(frozen=True)
class SlotFlapping:
    """The flapping state of one worker slot (kept when it is not a fresh one)."""

    watcher: str
    wid: int
    version: str
    """The label of the version it counts for: a slot given another version starts
    afresh (see Watcher.update)."""
    flap: FlapState
    restarts: int = 0
    spawned: int = 0
    replacements: int = 0


@dataclass(frozen=True)
class Records:
    fencing_token: int = 0
    """The highest fencing token seen (assignments with a lower one are refused)."""
    boot_id: str = ""
    workers: tuple[WorkerRecord, ...] = ()
    sockets: tuple[SocketRecord, ...] = field(default=())
    flapping: tuple[SlotFlapping, ...] = ()


# ---- JSON ----


def records_to_json(records: Records) -> dict[str, Any]:
    return {
        "fencing_token": records.fencing_token,
        "boot_id": records.boot_id,
        "workers": [_worker_to_json(w) for w in records.workers],
        "sockets": [
            {
                "name": s.name,
                "serial": s.serial,
                "inode": s.inode,
                "fd": s.fd,
                "file": s.file,
                "binding": list(s.binding),
            }
            for s in records.sockets
        ],
        "flapping": [
            {
                "watcher": f.watcher,
                "wid": f.wid,
                "version": f.version,
                "flap": flap_to_json(f.flap),
                "restarts": f.restarts,
                "spawned": f.spawned,
                "replacements": f.replacements,
            }
            for f in records.flapping
        ],
    }


def records_from_json(doc: Any) -> Records:
    """Records from their JSON form; ValueError (or TypeError) names what is wrong."""
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    return Records(
        fencing_token=int(doc.get("fencing_token", 0)),
        boot_id=str(doc.get("boot_id", "")),
        workers=tuple(_worker_from_json(w) for w in doc.get("workers", [])),
        sockets=tuple(_socket_from_json(s) for s in doc.get("sockets", [])),
        flapping=tuple(
            SlotFlapping(
                watcher=str(f["watcher"]),
                wid=int(f["wid"]),
                version=str(f["version"]),
                flap=flap_from_json(f["flap"]),
                restarts=int(f.get("restarts", 0)),
                spawned=int(f.get("spawned", 0)),
                replacements=int(f.get("replacements", 0)),
            )
            for f in doc.get("flapping", [])
        ),
    )


def flap_to_json(flap: FlapState) -> dict[str, Any]:
    return {
        "starts": list(flap.starts),
        "retries": flap.retries,
        "phase": flap.phase.value,
        "retry_at": flap.retry_at,
        "spawn_failures": flap.spawn_failures,
        "fatal_reason": flap.fatal_reason,
    }


def flap_from_json(doc: Any) -> FlapState:
    return FlapState(
        starts=tuple(float(t) for t in doc.get("starts", [])),
        retries=int(doc.get("retries", 0)),
        phase=FlapPhase(doc.get("phase", FlapPhase.ACTIVE.value)),
        retry_at=float(doc.get("retry_at", 0.0)),
        spawn_failures=int(doc.get("spawn_failures", 0)),
        fatal_reason=str(doc.get("fatal_reason", "")),
    )


def _worker_to_json(w: WorkerRecord) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "watcher": w.watcher,
        "wid": w.wid,
        "pid": w.pid,
        "start_ticks": w.start_ticks,
        "started_at": w.started_at,
        "started_mono": w.started_mono,
        "restarts": w.restarts,
        "replacements": w.replacements,
        "spawned": w.spawned,
        "version": w.version,
        "deadline": w.deadline,
        "uid": w.uid,
        "gid": w.gid,
    }
    if w.version_key is not None:
        fingerprint, sockets, token = w.version_key
        doc["version_key"] = [fingerprint, [list(pair) for pair in sockets], token]
    for name, pipe in (("out", w.out), ("err", w.err)):
        if pipe is not None:
            doc[name] = {"child_fd": pipe.child_fd, "inode": pipe.inode, "fd": pipe.fd}
    if w.stopping is not None:
        stop = w.stopping
        doc["stopping"] = {
            "reason": stop.reason,
            "deadline": stop.deadline,
            "note": stop.note,
            "children": [list(child) for child in stop.children],
        }
    return doc


def _worker_from_json(doc: Any) -> WorkerRecord:
    if not isinstance(doc, dict):
        raise ValueError("a worker record is not a JSON object")
    key = doc.get("version_key")
    version_key: VersionKey | None = None
    if key is not None:
        fingerprint, sockets, token = key
        version_key = (
            str(fingerprint),
            tuple((str(name), int(serial)) for name, serial in sockets),
            int(token),
        )
    stop = doc.get("stopping")
    return WorkerRecord(
        watcher=str(doc["watcher"]),
        wid=int(doc["wid"]),
        pid=int(doc["pid"]),
        start_ticks=int(doc["start_ticks"]),
        started_at=float(doc.get("started_at", 0.0)),
        started_mono=float(doc.get("started_mono", 0.0)),
        restarts=int(doc.get("restarts", 0)),
        replacements=int(doc.get("replacements", 0)),
        spawned=int(doc.get("spawned", 0)),
        version=str(doc.get("version", "")),
        version_key=version_key,
        deadline=float(doc.get("deadline", 0.0)),
        out=_pipe_from_json(doc.get("out")),
        err=_pipe_from_json(doc.get("err")),
        uid=_optional_int(doc.get("uid")),
        gid=_optional_int(doc.get("gid")),
        stopping=None
        if stop is None
        else StopRecord(
            int(stop["reason"]),
            float(stop["deadline"]),
            str(stop.get("note", "")),
            tuple((int(pid), int(ticks)) for pid, ticks in stop.get("children", [])),
        ),
    )


def _socket_from_json(doc: Any) -> SocketRecord:
    file = doc.get("file")
    return SocketRecord(
        name=str(doc["name"]),
        serial=int(doc["serial"]),
        inode=int(doc["inode"]),
        fd=int(doc.get("fd", -1)),
        file=None if file is None else (int(file[0]), int(file[1])),
        binding=tuple(_binding_part(part) for part in doc.get("binding", [])),
    )


def _binding_part(value: Any) -> str | int:
    if isinstance(value, int | str) and not isinstance(value, bool):
        return value
    raise ValueError(f"socket binding: not a string or number: {value!r}")


def _pipe_from_json(doc: Any) -> PipeRecord | None:
    if doc is None:
        return None
    return PipeRecord(int(doc["child_fd"]), int(doc["inode"]), int(doc.get("fd", -1)))


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)
