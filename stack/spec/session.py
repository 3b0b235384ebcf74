"""The messages of an agent's session with the controller, in domain terms.

An agent dials the controller and keeps one stream: its `Hello` first, then
`Observed` reports (also the heartbeat), event and output batches, and replies to
tail requests; the controller answers with a `Welcome`, then Assignments and
commands, or a `Redirect` to the leader. stack.wire.agent turns each into its wire
message and back; the two ends never see protobuf beyond that edge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from stack.spec.assignment import Assignment
from stack.spec.observed import Observed
from stack.spec.reports import Event, LogLine


def _no_labels() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Hello:
    """The first message of a session: who the agent is and what runs there now."""

    host_id: str
    labels: Mapping[str, str] = field(default_factory=_no_labels)
    capacity: int = 0
    """Most processes the host accepts; 0: no limit."""
    version: str = ""
    last_generation: int = 0
    """The generation of the Assignment it runs now."""
    last_fencing_token: int = 0
    observed: Observed = field(default_factory=Observed)
    address: str = ""
    """How the host calls itself (shown by `agents`)."""
    started_at: float = 0.0
    """Unix time the agent process started (kept across re-executions)."""
    reexecuted_at: float = 0.0
    """Unix time it last re-executed itself in place; 0: never."""


@dataclass(frozen=True, slots=True)
class EventBatch:
    """Events an agent ships."""

    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class LogBatch:
    """Output lines an agent ships."""

    lines: tuple[LogLine, ...]


@dataclass(frozen=True, slots=True)
class Reloading:
    """The agent's last message before it re-executes itself in place: it comes back
    at once with every worker, so it is not down (unless it stays silent too long)."""


@dataclass(frozen=True, slots=True)
class TailRequest:
    """The controller asks for the last lines of a watcher's output on a host."""

    request_id: int
    watcher: str
    stream: str = ""
    """"out", "err" or "" for both."""
    lines: int = 0


@dataclass(frozen=True, slots=True)
class TailReply:
    """An agent's answer to a TailRequest."""

    request_id: int
    lines: tuple[LogLine, ...] = ()
    error: str = ""


@dataclass(frozen=True, slots=True)
class Welcome:
    """The controller accepted the session."""

    controller_id: str
    fencing_token: int
    heartbeat_interval: float
    """Seconds between Observed messages at least."""


@dataclass(frozen=True, slots=True)
class SignalCommand:
    """Send a signal to a watcher's processes on a host."""

    watcher: str
    signal: str
    """"HUP", "USR1", "TERM"..."""
    wid: int = 0
    """0: every process of the watcher on the host."""
    children: bool = False
    """The whole process group."""


@dataclass(frozen=True, slots=True)
class Redirect:
    """This controller does not lead: go to the leader ("" while none is known)."""

    leader_address: str


AgentMessage = Hello | Observed | EventBatch | LogBatch | TailReply | Reloading
"""What an agent sends."""


@dataclass(frozen=True, slots=True)
class StatsWanted:
    """Someone looks at the host's figures: sample them at the fast interval for a while."""

    seconds: float


LOOK_SECONDS = 10.0
"""How long one look (a status, a metrics scrape) keeps an agent sampling fast: longer
than the period of a refreshing view or a scraper, so that a steady watcher keeps it."""


ControllerBody = Welcome | Assignment | SignalCommand | TailRequest | Redirect | StatsWanted
"""What the controller sends (with its fencing token, see stack.wire.agent)."""
