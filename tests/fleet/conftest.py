"""Fixtures for the fleet tests: hosts as network namespaces, torn down whatever happens."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tests.support import netns
from tests.support.fleet import Fleet

MakeFleet = Callable[..., Fleet]


@pytest.fixture
def make_fleet(tmp_path: Path) -> Iterator[MakeFleet]:
    """Start a fleet: `make_fleet(hosts=3, labels={"h1": {"role": "web"}}, ...)`.

    Every fleet started is closed at teardown, processes killed and namespaces
    deleted, even when the test or the start-up failed. Skips when network
    namespaces cannot be made here.
    """
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(reason)
    fleets: list[Fleet] = []
    previous = signal.signal(signal.SIGTERM, _interrupt)

    def make(
        hosts: int = 3,
        labels: Mapping[str, Mapping[str, str]] | None = None,
        agent_timeout: float = 1.0,
        reschedule_after: float = 2.0,
    ) -> Fleet:
        fleet = Fleet(
            tmp_path / f"fleet{len(fleets)}",
            hosts=hosts,
            labels=labels or {},
            agent_timeout=agent_timeout,
            reschedule_after=reschedule_after,
        )
        fleets.append(fleet)
        return fleet.start()

    try:
        yield make
    finally:
        try:
            for fleet in fleets:
                print(fleet.logs())
                fleet.close()
        finally:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM (a cancelled CI job) unwinds like Ctrl-C, so the namespaces are deleted."""
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture
def fleet(make_fleet: MakeFleet) -> Fleet:
    """Three hosts h1..h3 and a controller (agent timeout 1 s, reschedule after 2 s)."""
    return make_fleet()
