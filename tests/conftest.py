"""Settings for every test: `--hog`, and no wall-clock limits inside property tests.

`--hog` runs one busy-looping process per core for the whole session (see
tests/support/hog.py), so that a margin that holds only on an idle machine shows.
Hypothesis's per-example deadline and its too-slow health check are wall-clock
assertions that fail on a loaded machine without saying anything about the behaviour
under test; the suite has pytest-timeout for a hung test instead.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from tests.support.hog import Hog, cores

settings.register_profile("stack", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("stack")

_hog = pytest.StashKey[Hog]()


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
