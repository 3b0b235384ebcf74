"""Settings for every test: `--hog`, and no wall-clock limits inside property tests.

`--hog` runs one busy-looping process per core for the whole session (see
tests/support/hog.py), so that a margin that holds only on an idle machine shows.
Hypothesis's per-example deadline and its too-slow health check are wall-clock
assertions that fail on a loaded machine without saying anything about the behaviour
under test; the suite has pytest-timeout for a hung test instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.support.hog import Hog, cores
from tests.support.ports import reserve_port
from tests.support.processes import become_subreaper

settings.register_profile("stack", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("stack")

_hog = pytest.StashKey[Hog]()


@pytest.fixture(scope="session", autouse=True)
def _subreaper() -> None:
    """Workers orphaned by a killed agent come to this process, so cleanup reaps them."""
    become_subreaper()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--hog",
        action="store_true",
        help="run one busy-looping process per core during the whole session",
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    if session.config.getoption("--hog"):
        session.config.stash[_hog] = Hog().start()


def pytest_report_header(config: pytest.Config) -> str | None:
    hog = config.stash.get(_hog, None)
    if hog is None:
        return None
    return f"hog: {hog.count} busy processes on {cores()} cores (pids {hog.pids})"


def pytest_unconfigure(config: pytest.Config) -> None:
    hog = config.stash.get(_hog, None)
    if hog is not None:
        hog.stop()


@pytest.fixture
def reserved_port() -> Iterator[int]:
    """A port on 127.0.0.1 that nothing else binds while the test runs (see
    tests/support/ports.py): a daemon the test starts may bind it, and where none does,
    dialing it finds nobody."""
    with reserve_port() as port:
        yield port
