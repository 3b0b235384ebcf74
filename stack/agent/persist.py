"""What the agent keeps on disk: its last Assignment and the workers it runs.

Written atomically (temp file + rename) into the data dir, 0600 (the Assignment holds
the watchers' environment, secrets included), through `safe_files`. The Assignment lets
an agent started while the controller is unreachable run its share at once; the worker
records (see records.py) let an agent started after a crash adopt the workers of its
previous life instead of starting new ones, so a restart never leaves duplicates nor
restarts a worker.

Both are the agent's own JSON, not wire messages: `assignment.json` holds
`{"format": 1, "assignment": ...}` in the plain form of stack.spec.plain. An agent from
before kept the Assignment as a protobuf message in `assignment.pb`; when there is no
`assignment.json` yet, that file is read instead (legacy.py), once, and left as it was.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from stack.agent import legacy
from stack.agent.records import Records, records_from_json, records_to_json
from stack.security.safe_files import read_private, write_atomic
from stack.spec.assignment import Assignment
from stack.spec.plain import PlainError, from_plain, to_plain

log = logging.getLogger(__name__)

ASSIGNMENT_FILE = "assignment.json"
ASSIGNMENT_FORMAT = 1
"""The format of ASSIGNMENT_FILE this agent writes and reads."""
LEGACY_ASSIGNMENT_FILE = "assignment.pb"
"""Where agents from before kept their Assignment (a protobuf message)."""
STATE_FILE = "agent-state.json"
FILES = (ASSIGNMENT_FILE, LEGACY_ASSIGNMENT_FILE, STATE_FILE)
"""The files of the data dir the agent owns (kept 0600)."""


def save_assignment(data_dir: Path, assignment: Assignment) -> None:
    doc = {"format": ASSIGNMENT_FORMAT, "assignment": to_plain(assignment)}
    data = json.dumps(doc, separators=(",", ":")).encode()
    write_atomic(data_dir / ASSIGNMENT_FILE, data, durable=True)


def load_assignment(data_dir: Path) -> Assignment | None:
    """The Assignment kept in `data_dir` (None: none, or none readable: logged)."""
    path = data_dir / ASSIGNMENT_FILE
    try:
        data = read_private(path)
    except FileNotFoundError:
        return _load_legacy(data_dir / LEGACY_ASSIGNMENT_FILE)
    except OSError as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != ASSIGNMENT_FORMAT:
            form = doc.get("format") if isinstance(doc, dict) else None
            raise PlainError(f"format {form!r}, this agent reads {ASSIGNMENT_FORMAT}")
        return from_plain(Assignment, doc["assignment"])
    except (ValueError, KeyError) as exc:  # PlainError and JSONDecodeError are ValueErrors
        log.warning("ignoring unreadable %s: %s", path, exc)
        return None


def _load_legacy(path: Path) -> Assignment | None:
    try:
        data = read_private(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None
    try:
        return legacy.assignment_from_bytes(data)
    except ValueError:
        log.warning("ignoring unreadable %s", path)
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
