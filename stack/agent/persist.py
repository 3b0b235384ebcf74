"""What the agent keeps on disk: its last Assignment and the workers it runs.

Written atomically (temp file + rename) into the data dir, 0600 (the Assignment holds
the watchers' environment, secrets included), through `safe_files`. The Assignment lets
an agent started while the controller is unreachable run its share at once; the worker records
(watcher, wid, pid, start_ticks) let it stop leftovers of its previous life before it
starts anything, so a restart never leaves duplicates.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from google.protobuf.message import DecodeError

from stack.security.safe_files import read_private, write_atomic
from stack.v1 import agent_pb2

log = logging.getLogger(__name__)

ASSIGNMENT_FILE = "assignment.pb"
STATE_FILE = "agent-state.json"


@dataclass(frozen=True)
class WorkerRecord:
    watcher: str
    wid: int
    pid: int
    start_ticks: int


def save_assignment(data_dir: Path, assignment: agent_pb2.Assignment) -> None:
    write_atomic(data_dir / ASSIGNMENT_FILE, assignment.SerializeToString(), durable=True)


def load_assignment(data_dir: Path) -> agent_pb2.Assignment | None:
    try:
        data = read_private(data_dir / ASSIGNMENT_FILE)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("ignoring %s: %s", data_dir / ASSIGNMENT_FILE, exc)
        return None
    try:
        return agent_pb2.Assignment.FromString(data)
    except DecodeError:
        log.warning("ignoring unreadable %s", data_dir / ASSIGNMENT_FILE)
        return None


def save_state(data_dir: Path, fencing_token: int, workers: list[WorkerRecord]) -> None:
    """The highest fencing token seen and the running workers (no fsync: rewritten often)."""
    doc = {"fencing_token": fencing_token, "workers": [asdict(w) for w in workers]}
    write_atomic(data_dir / STATE_FILE, json.dumps(doc).encode(), durable=False)


def load_state(data_dir: Path) -> tuple[int, list[WorkerRecord]]:
    try:
        doc = json.loads(read_private(data_dir / STATE_FILE))
        workers = [WorkerRecord(**w) for w in doc.get("workers", [])]
        return int(doc.get("fencing_token", 0)), workers
    except FileNotFoundError:
        return 0, []
    except (OSError, ValueError, TypeError) as exc:
        log.warning("ignoring unreadable %s: %s", data_dir / STATE_FILE, exc)
        return 0, []
