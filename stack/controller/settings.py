"""The controller's settings: one frozen dataclass, defaults in one place."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from stack.controller.containment import AgentLimits
from stack.controller.events import EventSettings
from stack.controller.viewers import ViewerLimits
from stack.security.local import SOCKET_NAME
from stack.security.local import default_controller_dir as default_data_dir
from stack.security.tls_files import TlsFiles
from stack.spec.model import MAX_PROCESSES

__all__ = ["ControllerSettings", "default_controller_id", "default_data_dir"]


def default_controller_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class ControllerSettings:
    """How one controller runs. The command line fills these."""

    listen: str = ""
    """HOST:PORT of the TCP port (AgentService and AdminService; port 0 picks one), served
    with mutual TLS, or in plaintext with `insecure`; "" serves the local socket only."""
    data_dir: Path = field(default_factory=default_data_dir)
    """Where the embedded store (controller.db) and, by default, the local socket live."""
    socket: Path | None = None
    """The local socket (see stack.security.local); None: DATA_DIR/controller.sock."""
    socket_group: int | None = None
    """A group whose members may use the local socket too; None: its owner only."""
    agent_timeout: float = 10.0
    """Seconds without any message from an agent before it is marked down."""
    reschedule_after: float = 30.0
    """Seconds an agent may stay down before its share is placed on other agents.

    Counted from when it went down; a short network blip must not move work."""
    heartbeat_interval: float = 2.0
    """Seconds between the agents' Observed messages at least (sent in Welcome), in a
    fleet small enough (see max_heartbeats)."""
    max_heartbeats: float = 500.0
    """Heartbeats a second the whole fleet may send at most: a larger fleet is told a
    longer interval, and its agents' timeout grows with it (see heartbeats.py)."""
    log_level: str = "INFO"
    """Level of the controller's own log on stderr."""
    events: EventSettings = field(default_factory=EventSettings)
    """The event history: how much is kept, per-agent rates, writing it to the store."""
    follower_queue: int = 1000
    """Items a log or event follower may lag behind before it loses some."""
    tail_timeout: float = 3.0
    """Seconds to wait for agents' replies to a log tail."""
    agent_queue: int = 1024
    """Messages queued for one agent before its session is dropped (it reconnects)."""
    store: str = ""
    """Where desired state lives: "" (the embedded SQLite store in data_dir) or
    etcd://HOST:PORT[,HOST:PORT...][/PREFIX] (high availability, with an election)."""
    advertise: str = ""
    """HOST:PORT that agents and stackctl reach this controller at (followers send
    it as the leader's address); "" means the listen address."""
    lease_ttl: float = 5.0
    """Seconds of the leader's etcd lease: a hung leader is replaced within about this."""
    etcd_ca: Path | None = None
    """CA of a TLS-enabled etcd (its members' certificates); None: plaintext etcd."""
    etcd_cert: Path | None = None
    """Our client certificate for etcd (when it requires one)."""
    etcd_key: Path | None = None
    """The key of etcd_cert."""
    controller_id: str = field(default_factory=default_controller_id)
    """This controller's name, sent to agents in Welcome."""
    tls: TlsFiles | None = None
    """CA, certificate and key for mutual TLS on the gRPC port; None serves plaintext."""
    max_processes: int = MAX_PROCESSES
    """Most processes one watcher may ask for (Scale and Apply refuse more): a typo
    such as `scale web 100000` must not fork-bomb the fleet. At most MAX_PROCESSES,
    the stack file loader's own cap."""
    agent_limits: AgentLimits = field(default_factory=AgentLimits)
    """What one agent may send: reported processes, events, output (see containment.py)."""
    viewer_limits: ViewerLimits = field(default_factory=ViewerLimits)
    """What one viewer may make the controller hold: follow streams, tails (viewers.py)."""
    metrics_listen: str = ""
    """HOST:PORT of the metrics page (/metrics); "" serves none."""
    http_listen: str = ""
    """HOST:PORT of the web console (and /metrics); "" serves none."""
    metrics_per_process: bool = False
    """Series per worker process too (one per process: mind the cardinality)."""
    insecure: bool = False
    """Serve the TCP port in plaintext (a warning at start): anyone who can reach it,
    any local user included, could then push work to every agent."""

    @property
    def socket_path(self) -> Path:
        """Where the local socket is served."""
        return self.socket if self.socket is not None else self.data_dir / SOCKET_NAME

    @property
    def store_path(self) -> Path:
        """The SQLite file of the embedded store."""
        return self.data_dir / "controller.db"
