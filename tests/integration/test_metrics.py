"""/metrics of a real controller and agent, scraped over HTTP(S) and read with
Prometheus' own parser: every family the README lists, and the values moving with what
happens (a scale, a killed worker, a rolling restart, output shipped).

One plaintext stack for the file; the HTTPS checks share one TLS stack.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stack import __version__ as STACK_VERSION
from stack.security.certs import Role
from tests.support.cluster import Cluster, running_cluster
from tests.support.processes import AGENT, CONTROLLER, Daemon
from tests.support.scrape import Page, get, scrape, served_http
from tests.support.tls import TlsStack, https_client, running_tls_stack
from tests.support.wait import wait_for
from tests.support.workers import watcher_toml

STATES = ("running", "stopped", "flapping", "fatal", "rolling_out", "halted")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("metrics")
    options = ("--metrics-listen", "127.0.0.1:0", "--metrics-per-process")
    agent = (*Cluster.agent_options, "--metrics-listen", "127.0.0.1:0")
    with running_cluster(root, controller_options=options, agent_options=agent) as cluster:
        cluster.apply(watcher_toml("w", cluster.tag, "--tick", "0.05", numprocesses=2))
        cluster.wait_running("w", 2)
        yield cluster


def metrics_url(stack: Cluster) -> str:
    return f"http://127.0.0.1:{served_http(stack.controller, 'metrics')}/metrics"


def scrape_until(
    stack: Cluster, check: Callable[[Page], bool], what: str, timeout: float = 20.0
) -> Page:
    """Scrape until `check(page)` holds."""
    url = metrics_url(stack)

    def page() -> Page | None:
        found = scrape(url)
        return found if check(found) else None

    return wait_for(page, timeout, what, interval=0.2)


def test_the_fleet_as_it_is_desired_running_state_and_agents(stack: Cluster) -> None:
    page = scrape_until(
        stack,
        lambda p: (
            p.value("stack_watcher_processes_running", watcher="w", host="h1") == 2
            and (p.value("stack_watcher_resident_memory_bytes", watcher="w", host="h1") or 0) > 0
        ),
        "2 running processes of w and their memory in the metrics",
    )
    assert page.value("stack_watcher_processes_desired", watcher="w") == 2
    assert page.value("stack_watcher_processes_pending", watcher="w") == 0
    assert {s: page.value("stack_watcher_state", watcher="w", state=s) for s in STATES} == {
        s: (1 if s == "running" else 0) for s in STATES
    }
    assert page.value("stack_watcher_processes_unhealthy", watcher="w", host="h1") == 0
    assert page.value("stack_agents", state="ready") == 1
    assert page.value("stack_agents", state="down") == 0
    assert page.value("stack_agent_up", host="h1") == 1
    age = page.value("stack_agent_heartbeat_age_seconds", host="h1")
    assert age is not None and 0 <= age < 10, "heard from within the agent timeout"
    assert page.value("stack_controller_leader") == 1
    assert (page.value("stack_controller_term") or 0) >= 1
    memory = page.value("stack_watcher_resident_memory_bytes", watcher="w", host="h1")
    assert memory is not None and memory > 1_000_000, "two Python workers take megabytes"
    per_process = page.named("stack_process_resident_memory_bytes")
    assert {dict(labels)["wid"] for labels in per_process} == {"1", "2"}
    build = page.named("stack_build_info")
    assert [dict(labels)["wire"] for labels in build] == ["stack.v1"]
    assert page.types["stack_watcher_cpu_seconds"] == "counter"
    assert page.types["stack_store_commit_duration_seconds"] == "histogram"
    assert (page.value("stack_store_commit_duration_seconds_count", what="desired") or 0) >= 1
    assert page.value("process_resident_memory_bytes") is not None, "the controller's own"


def test_cpu_and_output_shipped_grow_as_workers_run(stack: Cluster) -> None:
    first = scrape(metrics_url(stack))
    cpu = first.value("stack_watcher_cpu_seconds_total", watcher="w", host="h1") or 0.0
    lines = first.value("stack_log_lines_shipped_total", host="h1") or 0.0
    scrape_until(
        stack,
        lambda p: (
            (p.value("stack_watcher_cpu_seconds_total", watcher="w", host="h1") or 0) > cpu
            and (p.value("stack_log_lines_shipped_total", host="h1") or 0) > lines
        ),
        "the workers' CPU time and shipped lines to grow",
    )
    assert first.value("stack_log_lines_dropped_total", host="h1") == 0


def test_a_killed_worker_counts_a_restart_and_an_exit(stack: Cluster) -> None:
    before = scrape(metrics_url(stack))
    restarts = before.value("stack_watcher_restarts_total", watcher="w", host="h1") or 0.0
    crashed = before.value("stack_watcher_exits_total", watcher="w", host="h1",
                           reason="crashed") or 0.0  # fmt: skip
    pids = stack.running_pids("w")
    os.kill(pids[1], signal.SIGKILL)
    page = scrape_until(
        stack,
        lambda p: p.value("stack_watcher_restarts_total", watcher="w", host="h1") == restarts + 1,
        "the restart to be counted",
    )
    exits = page.value("stack_watcher_exits_total", watcher="w", host="h1", reason="crashed")
    assert exits == crashed + 1
    stack.wait_running("w", 2)


def test_admin_calls_are_counted_by_method_and_code(stack: Cluster) -> None:
    def count(page: Page, method: str, code: str) -> float:
        return page.value("stack_admin_requests_total", method=method, code=code) or 0.0

    before = scrape(metrics_url(stack))
    assert stack.stackctl("scale", "w", "2").code == 0
    assert stack.stackctl("scale", "nope", "2").code == 1
    assert stack.stackctl("scale", "bad/name", "2").code == 1
    page = scrape(metrics_url(stack))
    assert count(page, "Scale", "OK") == count(before, "Scale", "OK") + 1
    assert count(page, "Scale", "NOT_FOUND") == count(before, "Scale", "NOT_FOUND") + 1
    assert count(page, "Scale", "INVALID_ARGUMENT") == (
        count(before, "Scale", "INVALID_ARGUMENT") + 1
    )


def test_a_rolling_restart_counts_started_and_finished(stack: Cluster) -> None:
    assert stack.stackctl("restart", "w", "--rolling", "--wait", timeout=90).code == 0
    page = scrape_until(
        stack,
        lambda p: p.value("stack_rollouts_finished_total", watcher="w") == 1,
        "the finished rollout to be counted",
    )
    assert page.value("stack_rollouts_started_total", watcher="w") == 1
    assert (page.value("stack_rollouts_halted_total", watcher="w") or 0) == 0
    assert page.value("stack_watcher_state", watcher="w", state="running") == 1


def test_a_stopped_watcher_desires_nothing_and_says_stopped(stack: Cluster) -> None:
    assert stack.stackctl("stop", "w", "--wait").code == 0
    try:
        page = scrape_until(
            stack,
            lambda p: p.value("stack_watcher_state", watcher="w", state="stopped") == 1,
            "w to be stopped in the metrics",
        )
        assert page.value("stack_watcher_processes_desired", watcher="w") == 0
        assert page.value("stack_watcher_state", watcher="w", state="running") == 0
    finally:
        assert stack.stackctl("start", "w", "--wait").code == 0


def test_only_metrics_is_served_and_only_read(stack: Cluster) -> None:
    port = served_http(stack.controller, "metrics")
    status, body = get(f"http://127.0.0.1:{port}/")
    assert status == 404 and "/metrics" in body


def test_an_agent_serves_its_host_while_the_controller_is_away(stack: Cluster) -> None:
    url = f"http://127.0.0.1:{served_http(stack.agent, 'metrics')}/metrics"
    page = wait_for(
        lambda: (p := scrape(url)).value("stack_agent_log_lines_shipped_total") and p,
        20, "the agent to count the lines it shipped", interval=0.2,
    )  # fmt: skip
    assert page.value("stack_agent_connected") == 1
    assert page.value("stack_agent_log_lines_dropped_total") == 0
    assert page.value("stack_watcher_processes_running", watcher="w", host="h1") == 2
    assert page.value("stack_build_info", version=STACK_VERSION, wire="stack.v1") == 1
    stack.controller.stop()
    try:

        def lost() -> Page | None:
            page = scrape(url)
            memory = page.value("stack_watcher_resident_memory_bytes", watcher="w", host="h1")
            return page if page.value("stack_agent_connected") == 0 and memory else None

        page = wait_for(lost, 20, "the agent to say it lost its controller", interval=0.2)
        assert page.value("stack_watcher_processes_running", watcher="w", host="h1") == 2
    finally:
        stack.start_controller()
        wait_for(lambda: stack.agent_state() == "ready", 30, "the agent to reconnect")


# -- where it may be served --------------------------------------------------------


def refused(tmp_path: Path, program: tuple[str, ...]) -> tuple[int | None, str]:
    """How `program` with `--metrics-listen 0.0.0.0:0` and no TLS ended: (code, output)."""
    daemon = Daemon(
        [*program, "--data-dir", str(tmp_path / "d"), "--metrics-listen", "0.0.0.0:0"],
        tmp_path / "daemon.log",
    ).start()
    assert daemon.proc is not None
    return daemon.proc.wait(30), daemon.output()


def test_plaintext_metrics_off_loopback_refuse_to_start(tmp_path: Path) -> None:
    code, out = refused(tmp_path, CONTROLLER)
    assert code == 1 and "Traceback" not in out
    assert "refusing to serve metrics in plaintext on 0.0.0.0:0 (--metrics-listen)" in out


def test_an_agent_serves_metrics_only_on_loopback(tmp_path: Path) -> None:
    code, out = refused(tmp_path, AGENT)
    assert code == 2 and "serves metrics only on a loopback address" in out


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsStack]:
    root = tmp_path_factory.mktemp("metrics-tls")
    with running_tls_stack(root, "--metrics-listen", "127.0.0.1:0") as running:
        yield running


def test_with_tls_metrics_are_https_for_viewers_and_admins(tls_stack: TlsStack) -> None:
    url = f"https://127.0.0.1:{served_http(tls_stack.controller, 'metrics')}/metrics"
    for role, name in ((Role.viewer, "vic"), (Role.admin, "admin")):
        page = scrape(url, https_client(tls_stack.tls, role, name))
        assert page.value("stack_agent_up", host="h1") == 1
    status, body = get(url, https_client(tls_stack.tls, Role.agent, "h1"))
    assert status == 403 and "may not read metrics" in body
    with pytest.raises(OSError):
        get(url, https_client(tls_stack.tls, None))
    with pytest.raises(OSError):
        get(url.replace("https:", "http:"))
