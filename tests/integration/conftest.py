from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import Cluster, running_cluster
from tests.support.fake_agent import FakeAgent
from tests.support.users import User, throwaway_user


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A controller and an agent on 127.0.0.1, fresh for each test."""
    with running_cluster(tmp_path / "stack") as running:
        yield running


@pytest.fixture
def user() -> Iterator[User]:
    """A throwaway unprivileged user (needs root: mark the test with users.needs_root)."""
    with throwaway_user() as created:
        yield created


@pytest.fixture
def agents() -> Iterator[list[FakeAgent]]:
    """Scripted agents a test starts; cancelled when it ends."""
    started: list[FakeAgent] = []
    yield started
    for agent in started:
        agent.cancel()
