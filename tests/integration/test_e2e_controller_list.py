"""Several controller addresses: stackctl and the agent try them in turn."""

from __future__ import annotations

from pathlib import Path

from tests.support.cluster import Cluster
from tests.support.harness import stackctl_to
from tests.support.ports import reserve_port
from tests.support.processes import AGENT, Daemon, run_stackctl
from tests.support.wait import wait_for
from tests.support.workers import watcher_toml


def stackctl(controllers: str, *args: str) -> tuple[int, str, str]:
    result = run_stackctl([*stackctl_to(controllers), *args])
    return result.code, result.out, result.err


def test_stackctl_skips_a_controller_it_cannot_reach(cluster: Cluster, reserved_port: int) -> None:
    dead = f"127.0.0.1:{reserved_port}"
    cluster.apply(watcher_toml("w", cluster.tag, numprocesses=2))

    code, out, err = stackctl(f"{dead},{cluster.address}", "scale", "w", "3")

    assert code == 0, err
    assert "w: 2 -> 3" in out
    cluster.wait_running("w", 3)


def test_stackctl_names_every_controller_when_none_answers() -> None:
    with reserve_port() as one, reserve_port() as two:
        first, second = f"127.0.0.1:{one}", f"127.0.0.1:{two}"
        code, _, err = stackctl(f"{first},{second}", "status")

    assert code == 1
    assert err.strip() == f"stackctl: cannot reach any controller (tried {first}, {second})"


def test_a_bad_address_in_the_list_is_a_usage_error() -> None:
    code, _, err = stackctl("127.0.0.1:7450,nonsense", "status")
    assert code == 2
    words = " ".join(err.replace("│", " ").split())  # rich wraps usage errors in a box
    rule = "expected unix:PATH or HOST:PORT (several: comma-separated)"
    assert f"{rule}, got '127.0.0.1:7450,nonsense'" in words


def test_the_agent_dials_the_next_controller_when_the_first_is_down(
    tmp_path: Path, reserved_port: int
) -> None:
    cluster = Cluster(tmp_path / "stack")
    dead = f"127.0.0.1:{reserved_port}"
    cluster.agent = Daemon(
        [*AGENT, "--controller", f"{dead},{cluster.address}",
         "--host-id", "h1", "--data-dir", str(tmp_path / "agent"), *cluster.agent_options],
        tmp_path / "agent.log",
    )  # fmt: skip
    try:
        cluster.start()
        cluster.apply(watcher_toml("w", cluster.tag))
        cluster.wait_running("w", 1)
        wait_for(lambda: "connected to controller " + cluster.address in cluster.agent.output(),
                 5, "the agent's log line")  # fmt: skip
    finally:
        cluster.close()
