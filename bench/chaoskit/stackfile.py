"""The stack the chaos run keeps alive, and what each of its watchers must look like.

Four watchers, one of each kind of placement:

- `webapp`: spread over the fleet, sharing socket `web` (port 8080 on every host), with an
  http health check and rolling changes two at a time: what the client load talks to;
- `sidecar`: `mode = "each"`, its count on every eligible host;
- `lock`: a singleton, at most one in the whole fleet;
- `capped`: spread with `max_per_host = 2`, so part of it may have nowhere to go.

Every worker runs bench/chaoskit/worker.py; the stack's env gives it CHAOS_VERSION, which
an `apply` bumps for one watcher to roll out a new version.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

WORKER = Path(__file__).with_name("worker.py")
SPREAD, EACH, SINGLETON, CAPPED = "spread", "each", "singleton", "capped"
MAX_PER_HOST = 2


@dataclass(frozen=True)
class Rule:
    """How a watcher is placed, and the counts the run scales it between."""

    placement: str
    low: int
    high: int
    initial: int


RULES: Mapping[str, Rule] = {
    "webapp": Rule(SPREAD, 3, 9, 6),
    "sidecar": Rule(EACH, 1, 2, 1),
    "lock": Rule(SINGLETON, 0, 1, 1),
    "capped": Rule(CAPPED, 2, 8, 4),
}
LIMITS: Mapping[str, tuple[int, int]] = {name: (r.low, r.high) for name, r in RULES.items()}
WEB = "webapp"


def render(tag: str, counts: Mapping[str, int], versions: Mapping[str, int]) -> str:
    """The stack file with these counts and versions."""
    python = sys.executable
    parts = ['[sockets.web]\nhost = "0.0.0.0"\nport = 8080\n']
    for name, rule in RULES.items():
        cmd = f"{python} {WORKER} --tag {tag}"
        if name == WEB:
            cmd += " --fd $(circus.sockets.web)"
        lines = [f"[watchers.{name}]", f"cmd = {json.dumps(cmd)}",
                 f"numprocesses = {counts[name]}", "graceful_timeout = 3"]  # fmt: skip
        if name == WEB:
            lines.append('sockets = ["web"]')
        if rule.placement == SINGLETON:
            lines.append("singleton = true")
        lines += [f"[watchers.{name}.env]", f'CHAOS_VERSION = "{versions[name]}"']
        if rule.placement == EACH:
            lines += [f"[watchers.{name}.placement]", 'mode = "each"']
        if rule.placement == CAPPED:
            lines += [f"[watchers.{name}.placement]", f"max_per_host = {MAX_PER_HOST}"]
        if name == WEB:
            lines += [f"[watchers.{name}.health]", 'type = "http"', 'target = "/health"',
                      "interval = 2", "timeout = 3", "retries = 5"]  # fmt: skip
            lines += [f"[watchers.{name}.update]", "max_parallel = 2", "min_uptime = 1"]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)
