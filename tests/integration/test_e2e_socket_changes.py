"""Socket changes are rolling, shown and contained: through stackctl, with real workers
serving on the sockets and a client that must never be refused."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from stack.v1 import types_pb2
from tests.integration.test_e2e_rolling import events_of, rollout_of
from tests.support.cluster import Cluster
from tests.support.ports import reserve_port
from tests.support.wait import wait_for
from tests.support.workers import asking, watcher_toml

UPDATE = {"max_parallel": 1, "min_uptime": 0.5}


def stack(tag: str, web: int, other: int = 0, workers: int = 3) -> str:
    """Socket `web` (and `other`), watcher `w` serving on web and inheriting every
    socket, and watcher `u` that uses none."""
    text = f'[sockets.web]\nhost = "127.0.0.1"\nport = {web}\n'
    if other:
        text += f'[sockets.other]\nhost = "127.0.0.1"\nport = {other}\n'
    text += watcher_toml(
        "w", tag, "--serve-fd", "$(circus.sockets.web)",
        numprocesses=workers, use_sockets=True, graceful_timeout=5, update=UPDATE,
    )  # fmt: skip
    return text + watcher_toml("u", tag, numprocesses=1)


@contextmanager
def port_taken() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield int(other.getsockname()[1])


def apply_file(cluster: Cluster, text: str, *flags: str) -> str:
    path = cluster.root / "stack.toml"
    path.write_text(text)
    return cluster.stackctl("apply", "--yes", *flags, str(path), check=True).out


def started(cluster: Cluster, web: int) -> tuple[int, dict[int, int], dict[int, int]]:
    """The stack applied with port `web` (reserved) for `web`: (that port, w's pids, u's)."""
    cluster.apply(stack(cluster.tag, web))
    return web, cluster.wait_running("w", 3), cluster.wait_running("u", 1)


def rolled_over(cluster: Cluster, before: dict[int, int]) -> dict[int, int] | None:
    """w's workers once every one was replaced and its rollout is over; else None."""
    now = cluster.running_pids("w")
    fresh = len(now) == len(before) and set(now.values()).isdisjoint(before.values())
    return now if fresh and rollout_of(cluster, "w") == "" else None


def fdnames(pid: int) -> str:
    """LISTEN_FDNAMES of a worker: the sockets it inherited, in fd order."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    found = [item for item in environ if item.startswith(b"LISTEN_FDNAMES=")]
    return found[0].decode().partition("=")[2] if found else ""


def test_adding_a_socket_rolls_the_use_sockets_watcher_batch_by_batch_without_an_outage(
    cluster: Cluster, reserved_port: int
) -> None:
    web, before, unrelated = started(cluster, reserved_port)
    with reserve_port() as other:
        _adding_a_socket_rolls(cluster, web, other, before, unrelated)


def _adding_a_socket_rolls(
    cluster: Cluster, web: int, other: int, before: dict[int, int], unrelated: dict[int, int]
) -> None:

    plan = apply_file(cluster, stack(cluster.tag, web, other), "--dry-run")
    assert "+ socket other" in plan
    assert "~ watcher w (replaces its workers)" in plan
    assert f"inherits the new socket other (address: 127.0.0.1:{other})" in plan
    assert "watcher u" not in plan

    with asking(web) as (answers, failures):
        cluster.apply(stack(cluster.tag, web, other))

        after = wait_for(lambda: rolled_over(cluster, before), 40, "w rolled over")
        wait_for(lambda: set(after.values()) & set(answers[-50:]), 10, "new workers to answer")

    assert failures == []
    assert set(before.values()) & set(answers), "the old workers served meanwhile"
    assert all(fdnames(pid) == "other:web" for pid in after.values())
    assert cluster.running_pids("u") == unrelated
    batches = [e["message"] for e in events_of(cluster, "w") if e["kind"] == "rollout"]
    assert batches == [
        "w: rolling out: 0 of 3 replaced, replacing 1",
        "w: rolling out: 1 of 3 replaced, replacing 2",
        "w: rolling out: 2 of 3 replaced, replacing 3",
    ]


def test_a_socket_on_a_taken_port_halts_only_its_users_and_removing_it_recovers(
    cluster: Cluster, reserved_port: int
) -> None:
    web, before, unrelated = started(cluster, reserved_port)

    with port_taken() as taken, asking(web) as (answers, failures):
        cluster.apply(stack(cluster.tag, web, taken))  # + socket other, port in use

        why = f"cannot bind 127.0.0.1:{taken}: Address already in use"
        wait_for(lambda: why in rollout_of(cluster, "w"), 20, "the rollout to halt")
        halted = rollout_of(cluster, "w")
        assert halted.startswith("rollout halted: the new version of worker 1 on h1 cannot start")
        assert halted.endswith("3 processes keep the version they ran"), halted
        status = cluster.stackctl("status", "w", "-o", "wide", check=True).out
        assert why in status
        # No worker was replaced, even for a moment, and the site never went down.
        assert cluster.running_pids("w") == before
        assert all(psutil.Process(pid).is_running() for pid in before.values())
        (w,) = cluster.status("w").watchers
        assert w.phase == types_pb2.WATCHER_PHASE_ACTIVE
        wait_for(lambda: len(answers) > 20, 10, "answers while halted")
        # The watcher that does not use the socket is untouched.
        assert cluster.running_pids("u") == unrelated
        assert rollout_of(cluster, "u") == ""

        # Removing the socket again: back to what runs, no reset, nothing restarted.
        plan = apply_file(cluster, stack(cluster.tag, web), "--dry-run")
        assert "- socket other" in plan and "(replaces its workers)" not in plan
        assert "its workers run this version already: none is replaced" in plan
        cluster.apply(stack(cluster.tag, web))
        wait_for(lambda: rollout_of(cluster, "w") == "", 10, "the halted rollout to go")
        assert cluster.running_pids("w") == before
    assert failures == []
    kinds = [e["kind"] for e in events_of(cluster, "w")]
    assert "rollout_halted" in kinds and "spawn_error" not in kinds


def test_a_socket_moved_to_a_taken_port_halts_and_moving_it_to_a_free_one_rolls_on(
    cluster: Cluster, reserved_port: int
) -> None:
    web, before, unrelated = started(cluster, reserved_port)

    with port_taken() as taken:
        plan = apply_file(cluster, stack(cluster.tag, taken), "--dry-run")
        assert f"uses socket web, which changed (port: {web} -> {taken})" in plan
        with asking(web) as (_, failures):
            cluster.apply(stack(cluster.tag, taken))
            why = f"cannot bind 127.0.0.1:{taken}: Address already in use"
            wait_for(lambda: why in rollout_of(cluster, "w"), 20, "the rollout to halt")
            assert cluster.running_pids("w") == before  # still serving on the old port
        assert failures == []

        # The fix: another port, no reset.
        with reserve_port() as fixed, asking(fixed) as (answers, _):
            cluster.apply(stack(cluster.tag, fixed))

            after = wait_for(lambda: rolled_over(cluster, before), 40, "w on the fixed port")
            wait_for(lambda: set(after.values()) & set(answers), 10, "answers on the new port")
    assert cluster.running_pids("u") == unrelated
    kinds = [e["kind"] for e in events_of(cluster, "w")]
    assert kinds.count("rollout_halted") == 1 and "rollout_done" in kinds
