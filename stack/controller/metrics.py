"""The controller's metrics: what happens, counted where it happens, and the fleet as it
is, read from the controller's state when a scraper asks.

Counted where they happen (`ControllerMetrics`, plain numbers, see stack.metrics.tally):
rollouts begun, done and halted (the controller records their notes); admin calls by
method and status code (the gRPC interceptor, and the web console's actions); store
commits' duration; output lines each agent shipped; and each host's counters of CPU,
restarts and exits, kept from its successive reports (stack.metrics.fleet.HostAccounts).

Read at scrape time (`read`): desired, pending and state of each watcher; running,
unhealthy and memory of each watcher on each host; the agents, each one's heartbeat
age and dropped output; leadership. It runs on the controller's event loop, like a
Status call, and writes every family with stack.metrics.text; a series whose value did
not change since the last scrape keeps its line (stack.metrics.fleet for the hosts').
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from stack.controller.desired import DesiredWatcher
from stack.controller.events import EventNote
from stack.controller.placement import Placement
from stack.metrics.fleet import NO_TOTALS, FleetRenderer, HostAccounts, HostView
from stack.metrics.tally import LATENCY_BOUNDS, Tally
from stack.metrics.text import Family
from stack.spec.observed import Observed, WatcherPhase

if TYPE_CHECKING:
    from stack.controller.controller import Controller

SCRAPE_LOOK_SECONDS = 60.0
"""How long one scrape keeps the agents sampling fast. Scrapers come back every few
seconds to a minute; at LOOK_SECONDS (10 s) a scrape each second re-asked every agent
every 5 s, 200 messages a second for 1,000 agents, half of what scraping cost the
controller. At 60 s each agent is asked every 30 s, and samples fast for at most a
minute after the last scrape."""

WATCHER_STATES = ("running", "stopped", "flapping", "fatal", "rolling_out", "halted")
AGENT_STATES = ("ready", "draining", "reloading", "down")

DESIRED = Family(
    "stack_watcher_processes_desired", "gauge",
    "Processes the watcher should run across the fleet (0 while it is stopped).",
    ("watcher",),
)  # fmt: skip
PENDING = Family(
    "stack_watcher_processes_pending", "gauge",
    "Processes of the watcher no agent can take (see stackctl status for why).",
    ("watcher",),
)  # fmt: skip
STATE = Family(
    "stack_watcher_state", "gauge",
    "1 for the watcher's state: running, stopped, flapping, fatal, rolling_out or halted "
    "(a rolling change that stopped on a failure); 0 for the others.",
    ("watcher", "state"),
)  # fmt: skip
AGENTS = Family("stack_agents", "gauge", "Agents known to the leader, by state.", ("state",))
AGENT_UP = Family(
    "stack_agent_up", "gauge", "1 while the agent is connected and heard from, 0 when down.",
    ("host",),
)  # fmt: skip
HEARTBEAT_AGE = Family(
    "stack_agent_heartbeat_age_seconds", "gauge",
    "Seconds since the agent's last message (a heartbeat comes every 2 s, longer in a fleet "
    "of over 1,000 agents: see --max-heartbeats-per-second).",
    ("host",),
)  # fmt: skip
LINES_SHIPPED = Family(
    "stack_log_lines_shipped_total", "counter",
    "Output lines the agent shipped that the controller took.", ("host",),
)  # fmt: skip
LINES_DROPPED = Family(
    "stack_log_lines_dropped_total", "counter",
    "Output lines the controller dropped over the agent's rate (--agent-log-rate); "
    "the agent's files keep them.",
    ("host",),
)  # fmt: skip
LEADER = Family("stack_controller_leader", "gauge", "1 while this controller leads, else 0.")
TERM = Family(
    "stack_controller_term", "gauge", "The fencing token of this controller's leadership."
)


class ControllerMetrics:
    """The controller's counters. Cheap to keep: a dictionary update per event; the
    hosts' counters are kept only once a metrics port serves them (`enabled`)."""

    def __init__(self, per_process: bool = False) -> None:
        self.enabled = False
        tally = self.tally = Tally()
        self.rollouts = {
            "rollout_started": tally.counter(
                "stack_rollouts_started", "Rolling changes begun, by watcher.", ("watcher",)
            ),
            "rollout_done": tally.counter(
                "stack_rollouts_finished", "Rolling changes done, by watcher.", ("watcher",)
            ),
            "rollout_halted": tally.counter(
                "stack_rollouts_halted",
                "Rolling changes that stopped on a failed new process, by watcher.",
                ("watcher",),
            ),
        }
        self.admin_requests = tally.counter(
            "stack_admin_requests",
            "Admin calls (gRPC AdminService and the web console's actions) by method and "
            "status code (gRPC's names: OK, INVALID_ARGUMENT, PERMISSION_DENIED...).",
            ("method", "code"),
        )
        self.commit_seconds = tally.histogram(
            "stack_store_commit_duration_seconds",
            "Seconds one store commit took: of the desired state, or of events.",
            LATENCY_BOUNDS,
            ("what",),
        )
        self.accounts: dict[str, HostAccounts] = {}
        self.shipped: dict[str, int] = {}
        self.renderer = FleetRenderer(per_process)
        self.agent_lines: dict[str, AgentLines] = {}
        """Each agent's lines as last written, by host id (see `read`)."""

    def noted(self, note: EventNote) -> None:
        """The controller recorded `note`: count it if it is a rollout's."""
        counter = self.rollouts.get(note.kind)
        if counter is not None:
            counter.inc(note.watcher)

    def reported(self, host: str, observed: Observed) -> None:
        """`host`'s agent reported `observed` (as the controller kept it)."""
        if self.enabled:
            accounts = self.accounts.get(host)
            if accounts is None:
                accounts = self.accounts[host] = HostAccounts()
            accounts.report(observed)

    def lines(self, host: str, count: int) -> None:
        """The controller took `count` output lines from `host`."""
        self.shipped[host] = self.shipped.get(host, 0) + count

    def committed(self, what: str, seconds: float) -> None:
        """A store commit of `what` ("desired" or "events") took `seconds`."""
        self.commit_seconds.observe(what, value=seconds)


def watcher_state(watcher: DesiredWatcher, phases: set[WatcherPhase]) -> str:
    """The one state of a watcher, most pressing first: fatal (some worker gave up),
    halted (its rolling change failed), flapping, rolling_out, stopped, running."""
    rollout = watcher.rollout
    if WatcherPhase.FATAL in phases:
        return "fatal"
    if rollout is not None and rollout.halted:
        return "halted"
    if WatcherPhase.FLAPPING in phases:
        return "flapping"
    if rollout is not None:
        return "rolling_out"
    return "running" if watcher.active else "stopped"


def desired_count(watcher: DesiredWatcher, name: str, placement: Placement) -> int:
    """How many processes `watcher` should run: numprocesses (spread), or numprocesses
    on each host it is placed on plus the ones no host takes (each); 0 while stopped."""
    if not watcher.active:
        return 0
    count = watcher.spec.numprocesses
    if watcher.spec.placement.mode != "each":
        return count
    hosts = sum(1 for by in placement.hosts.values() if by.get(name))
    pending = placement.pending.get(name)
    return count * hosts + (pending.count if pending is not None else 0)


class AgentLines:
    """One agent's lines as last written: up, output lines shipped and dropped (they
    change seldom, and are written again only then) and the start of its heartbeat
    age's line (the age changes at every scrape). Changed in place."""

    __slots__ = ("age", "dropped", "shipped", "up", "values")

    def __init__(self, host: str) -> None:
        self.values = (-1, -1, -1)
        """(up, shipped, dropped) as the lines say them."""
        self.up = self.shipped = self.dropped = ""
        self.age = HEARTBEAT_AGE.start((host,))

    def write(self, host: str, up: int, shipped: int, dropped: int) -> None:
        """The lines of these values."""
        self.values = (up, shipped, dropped)
        labels = (host,)
        self.up = AGENT_UP.line(labels, up)
        self.shipped = LINES_SHIPPED.line(labels, shipped)
        self.dropped = LINES_DROPPED.line(labels, dropped)


def read(c: Controller) -> str:
    """Every family read from the controller's state, as text. A follower has only its
    leadership to say: the fleet's series come from the leader alone, so that a scrape of
    every controller counts each process once."""
    leadership = LEADER.text([((), 1 if c.leading else 0)]) + TERM.text([((), c.term)])
    if not c.leading:
        return leadership
    c.commands.want_stats(SCRAPE_LOOK_SECONDS)  # a scrape looks: the agents sample fast
    metrics = c.metrics
    records = sorted(c.agents.records.values(), key=lambda r: r.host_id)
    phases: dict[str, set[WatcherPhase]] = {}
    watchers = sorted(c.state.watchers.items())
    placement = c.placement

    def states() -> Iterator[tuple[tuple[str, str], float]]:
        for name, watcher in watchers:
            state = watcher_state(watcher, phases.get(name, set()))
            for candidate in WATCHER_STATES:
                yield (name, candidate), 1 if candidate == state else 0

    drained = c.state.drained
    agent_states: list[str] = []
    up: list[str] = []
    ages: list[str] = []
    shipped: list[str] = []
    dropped: list[str] = []
    views: list[HostView] = []
    now = c.clock()
    kept = metrics.agent_lines  # changed in place, as the renderer's (see stack.metrics.fleet)
    accounts, lines = metrics.accounts, metrics.shipped
    for r in records:
        host, ready, observed = r.host_id, r.ready, r.observed
        agent_states.append(r.shown_state(drained))
        if ready:
            for seen in observed.watchers:
                found = phases.get(seen.name)
                if found is None:
                    phases[seen.name] = {seen.phase}
                else:
                    found.add(seen.phase)
        known = kept.get(host)
        if known is None:
            known = kept[host] = AgentLines(host)
        values = known.values
        count, refused = lines.get(host, 0), r.meter.refusals.dropped_log_lines
        if values[0] != ready or values[1] != count or values[2] != refused:
            known.write(host, 1 if ready else 0, count, refused)
        up.append(known.up)
        shipped.append(known.shipped)
        dropped.append(known.dropped)
        # to the millisecond: no more precision than a heartbeat's age needs
        ages.append(f"{known.age}{max(0.0, now - r.last_seen_mono):.3f}\n")
        account = accounts.get(host)
        views.append(HostView(host, observed, ready, account.totals if account else NO_TOTALS))
    if len(kept) > len(records):  # some agent left: forget it
        metrics.agent_lines = {r.host_id: kept[r.host_id] for r in records}
    parts = [
        leadership,
        DESIRED.text(((name,), desired_count(w, name, placement)) for name, w in watchers),
        PENDING.text(
            ((name,), p.count if (p := placement.pending.get(name)) else 0) for name, _ in watchers
        ),
        STATE.text(states()),
        AGENTS.text(((s,), agent_states.count(s)) for s in AGENT_STATES),
        AGENT_UP.header(),
        *up,
        HEARTBEAT_AGE.header(),
        *ages,
        LINES_SHIPPED.header(),
        *shipped,
        LINES_DROPPED.header(),
        *dropped,
        *metrics.renderer.pieces(views),
    ]
    return "".join(parts)
