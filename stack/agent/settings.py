"""The agent's settings: one frozen dataclass, defaults in one place, filled by the CLI."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from stack.security.local import default_address
from stack.security.tls_files import TlsFiles


def default_data_dir() -> Path:
    """/var/lib/stack-agent as root, else ~/.local/state/stack/agent."""
    if os.geteuid() == 0:
        return Path("/var/lib/stack-agent")
    return Path.home() / ".local" / "state" / "stack" / "agent"


@dataclass(frozen=True)
class AgentSettings:
    """Everything the agent's engine and session need to know about their host."""

    data_dir: Path = field(default_factory=default_data_dir)
    """Persisted assignment, worker records and `logs/` live here."""
    host_id: str = field(default_factory=socket.gethostname)
    """How this host is named in the fleet; stamped on every status, event and log line."""
    controller: str = field(default_factory=default_address)
    """The controller the session dials: unix:PATH (by default the local controller's
    socket), HOST:PORT, or several comma-separated (the controllers of an HA group)."""
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Free-form labels sent in Hello (used by placement)."""
    stats_interval: float = 2.0
    """Seconds between samples of the running workers' cpu and memory while someone
    looks at them (the controller says so: a status, a metrics scrape)."""
    stats_rest_interval: float = 30.0
    """Seconds between those samples while nobody looks."""
    heartbeat_interval: float = 2.0
    """Seconds between Observed messages at least (the controller's Welcome may override)."""
    coalesce_interval: float = 0.1
    """Changes, events and log lines are batched for this long before they are sent."""
    flush_interval: float = 0.2
    """Log files are flushed (and worker records persisted) at least this often."""
    ship_lines: int = 10_000
    """Lines buffered for shipping to the controller; the oldest are dropped beyond."""
    ship_rate: int = 5_000
    """Output lines per second the whole agent ships to the controller at most (bursts
    of one second's worth); the rest are dropped from shipping and counted in a
    `logs_dropped` event. Files keep every line. 0: no cap."""
    max_line_bytes: int = 64 * 1024
    """A longer output line is cut into pieces of this size."""
    reconnect_min: float = 0.2
    """First reconnect backoff in seconds (doubles, with full jitter)."""
    reconnect_max: float = 10.0
    """Reconnect backoff cap in seconds."""
    stale_timeout: float = 10.0
    """Graceful timeout for leftover workers whose watcher is not known any more."""
    metrics_listen: str = ""
    """HOST:PORT (loopback) where /metrics serves this host's series; "" serves none."""
    metrics_per_process: bool = False
    """Series per worker process too (one set per process: mind the cardinality)."""
    log_group: int | None = None
    """A group that may read the output files: they are created 0640 with it. None: the
    files are 0600, readable by root (and the agent's user) alone."""
    tls: TlsFiles | None = None
    """CA, certificate (for this host id) and key for mutual TLS to the controller.

    Re-read at every connection, so rotated files take effect on the next one."""

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"
