"""The agent's socket pool: one socket per binding, moved sockets beside old ones, retries."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from stack.agent.sockets import SocketPool
from stack.spec.model import SocketSpec
from tests.support.ports import reserve_port


@pytest.fixture
def pool() -> Iterator[SocketPool]:
    pool = SocketPool()
    yield pool
    pool.close()


@pytest.fixture
def taken() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield int(other.getsockname()[1])


def test_a_socket_moved_to_another_port_is_bound_beside_the_old_one(
    pool: SocketPool, reserved_port: int
) -> None:
    with reserve_port() as first:
        _moved_is_bound_beside(pool, first, reserved_port)


def _moved_is_bound_beside(pool: SocketPool, first: int, second: int) -> None:
    old = SocketSpec(name="web", port=first)
    pool.sync([old])
    before = pool.lookup(old)
    assert before is not None and before.sock is not None
    moved = SocketSpec(name="web", port=second)
    assert [bound.spec for bound in pool.sync([old, moved])] == [moved]
    after = pool.lookup(moved)
    assert after is not None and after.sock is not None and after.serial != before.serial
    assert pool.lookup(old) is before and before.sock.fileno() >= 0  # still bound for its workers
    pool.sync([moved])  # the rollout is over: the old one goes
    assert pool.lookup(old) is None and before.sock.fileno() == -1


def test_a_change_that_keeps_the_address_is_applied_to_the_bound_socket(
    pool: SocketPool, reserved_port: int
) -> None:
    spec = SocketSpec(name="web", port=reserved_port)
    pool.sync([spec])
    bound = pool.lookup(spec)
    assert bound is not None and bound.sock is not None
    fd, serial = bound.fd, bound.serial
    changed = SocketSpec(name="web", port=spec.port, backlog=16, blocking=True)
    assert pool.sync([changed]) == []
    assert pool.lookup(changed) is bound and bound.spec == changed
    assert (bound.fd, bound.serial) == (fd, serial)
    assert bound.sock.getblocking()


def test_a_port_of_zero_is_a_socket_of_its_own_per_name(pool: SocketPool) -> None:
    a, b = SocketSpec(name="a"), SocketSpec(name="b")
    pool.sync([a, b])
    bound_a, bound_b = pool.lookup(a), pool.lookup(b)
    assert bound_a is not None and bound_b is not None and bound_a is not bound_b
    assert bound_a.address != bound_b.address


def test_a_socket_that_failed_to_bind_is_tried_again_at_the_next_sync(
    pool: SocketPool, taken: int
) -> None:
    spec = SocketSpec(name="web", port=taken)
    (failed,) = pool.sync([spec])
    assert failed.sock is None
    assert failed.error == f"socket web: cannot bind 127.0.0.1:{taken}: Address already in use"
    assert pool.sync([spec]) == []  # the same failure again says nothing new
    assert pool.lookup(spec) is not None


def test_a_retry_that_binds_is_reported_with_the_serial_it_had(pool: SocketPool) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    spec = SocketSpec(name="web", port=int(holder.getsockname()[1]))
    (failed,) = pool.sync([spec])
    holder.close()
    (bound,) = pool.sync([spec])
    assert bound.sock is not None and not bound.error and bound.serial == failed.serial
