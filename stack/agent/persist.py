"""What the agent keeps on disk: its last Assignment and the workers it runs.

Written atomically (temp file + rename) into the data dir, 0600 (the Assignment holds
the watchers' environment, secrets included), through `safe_files`. The Assignment lets
an agent started while the controller is unreachable run its share at once; the worker
records (see records.py) let an agent started after a crash adopt the workers of its
previous life instead of starting new ones, so a restart never leaves duplicates nor
restarts a worker.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from google.protobuf.message import DecodeError

from stack.agent.records import Records, records_from_json, records_to_json
from stack.security.safe_files import read_private, write_atomic
from stack.v1 import agent_pb2

log = logging.getLogger(__name__)

ASSIGNMENT_FILE = "assignment.pb"
STATE_FILE = "agent-state.json"


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


def save_state(data_dir: Path, records: Records) -> None:
    """The highest fencing token seen and the workers (no fsync: rewritten often, and
    only a crash of the agent, not of the host, leaves workers to adopt)."""
    data = json.dumps(records_to_json(records), separators=(",", ":")).encode()
    write_atomic(data_dir / STATE_FILE, data, durable=False)


def load_state(data_dir: Path) -> Records:
    try:
        return records_from_json(json.loads(read_private(data_dir / STATE_FILE)))
    except FileNotFoundError:
        return Records()
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("ignoring unreadable %s: %s", data_dir / STATE_FILE, exc)
        return Records()
