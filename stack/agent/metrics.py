"""This host's series at the agent's own `/metrics` (`stack-agent --metrics-listen`), so
that a host stays observable while the controller is away.

The agent writes the same families the controller writes for this host (processes
running, unhealthy, memory, CPU, restarts, exits by reason: stack.metrics.fleet), from
what it runs now, plus whether it is connected to a controller. The counters are kept
from a snapshot taken each stats interval and at each scrape, so two exits of one
worker between two snapshots count as one.

The port is plaintext and loopback only: the agent's certificate is a client's (it
dials out), and a scraper on another host reads the fleet from the controller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from stack.metrics.fleet import FleetRenderer, HostAccounts, HostView
from stack.metrics.text import Family
from stack.security.rights import ExposureError, plaintext_right
from stack.spec.observed import Observed

log = logging.getLogger(__name__)

CONNECTED = Family(
    "stack_agent_connected",
    "gauge",
    "1 while this agent is connected to a controller; its workers run on either way.",
)

SHIPPED = Family(
    "stack_agent_log_lines_shipped_total",
    "counter",
    "Output lines this agent handed over for the controller since it started.",
)
DROPPED = Family(
    "stack_agent_log_lines_dropped_total",
    "counter",
    "Output lines this agent dropped from shipping (over --ship-rate, or its buffer full) "
    "since it started; its files keep them.",
)


def check_address(address: str) -> str:
    """`address` if the agent may serve metrics there (ValueError with one line if not)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"{address!r}: expected HOST:PORT")
    try:
        plaintext_right(address, acts=False, insecure=False, flag="--metrics-listen")
    except ExposureError:
        raise ValueError(
            f"{address}: the agent serves metrics only on a loopback address (plaintext); "
            f"scrape the fleet from the controller's --metrics-listen"
        ) from None
    return address


class HostMetrics:
    """The families of this host, from `snapshot()` (the engine's, once it runs)."""

    def __init__(self, host_id: str, per_process: bool) -> None:
        self.host_id = host_id
        self.snapshot: Callable[[], Observed] | None = None
        self.looked_at: Callable[[], None] = lambda: None
        """Called at each scrape (the engine then samples the workers' figures fast)."""
        self.connected: Callable[[], bool] = lambda: False
        self.lines: Callable[[], tuple[int, int]] = lambda: (0, 0)
        """Output lines shipped and dropped so far."""
        self._accounts = HostAccounts()
        self._renderer = FleetRenderer(per_process)

    def account(self) -> Observed | None:
        """Take a snapshot into the counters; None before the engine runs."""
        if self.snapshot is None:
            return None
        observed = self.snapshot()
        self._accounts.report(observed)
        return observed

    def read(self) -> str:
        self.looked_at()
        observed = self.account()
        shipped, dropped = self.lines()
        page = (
            CONNECTED.text([((), 1 if self.connected() else 0)])
            + SHIPPED.text([((), shipped)])
            + DROPPED.text([((), dropped)])
        )
        if observed is None:
            return page
        view = HostView(self.host_id, observed, True, self._accounts.totals)
        return page + self._renderer.render([view])

    async def keep_accounts(self, interval: float) -> None:
        """Account for a snapshot every `interval` seconds, between scrapes too."""
        while True:
            await asyncio.sleep(interval)
            self.account()
