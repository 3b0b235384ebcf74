"""The metrics' pure parts: the text format, the hosts' counters and series, the
watchers' one state, and the whole page as Prometheus' own parser reads it.

The counters are kept from successive reports of a host (stack.metrics.fleet); these
tables check what each kind of change between two reports counts. The integration
tests (tests/integration/test_metrics.py) scrape a real controller and agent.
"""

from __future__ import annotations

import gc
import math
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stack.controller.agents import AgentRecord
from stack.controller.desired import DesiredWatcher
from stack.controller.metrics import ControllerMetrics, watcher_state
from stack.controller.metrics import read as controller_read
from stack.controller.placement import Placement
from stack.controller.rollout import Rollout
from stack.metrics.exposition import Exposition
from stack.metrics.fleet import FleetRenderer, HostAccounts, HostView
from stack.metrics.tally import LATENCY_BOUNDS, Tally
from stack.metrics.text import NOTHING_KEPT, Family, kept_lines, number
from stack.spec.model import WatcherSpec
from stack.spec.observed import (
    ExitReason,
    Health,
    LastExit,
    Observed,
    ProcessState,
    ProcessStatus,
    WatcherPhase,
)

RUN = ProcessState.RUNNING


def proc(wid: int, pid: int, cpu: float = 0.0, **fields: object) -> ProcessStatus:
    return replace(
        ProcessStatus("web", wid, pid=pid, state=RUN, started_at=100.0 + pid, cpu_seconds=cpu),
        **fields,
    )


def observed(*procs: ProcessStatus) -> Observed:
    return Observed(processes=procs)


def view(host: str, report: Observed, up: bool = True) -> HostView:
    """`host` as a scrape sees it after its first report, `report`."""
    accounts = HostAccounts()
    accounts.report(report)
    return HostView(host, report, up, accounts.totals)


# ---- the text format ----


@pytest.mark.parametrize(
    ("value", "text"),
    [(3, "3"), (3.0, "3"), (0.25, "0.25"), (1e20, "100000000000000000000"),
     (math.inf, "+Inf"), (-math.inf, "-Inf"), (math.nan, "NaN")],
)  # fmt: skip
def test_values_are_written_as_prometheus_reads_them(value: float, text: str) -> None:
    assert number(value) == text


def test_label_values_are_escaped() -> None:
    family = Family("x", "gauge", "help", ("a", "b", "c"))
    line = family.line(('q"uote', "back\\slash", "new\nline"), 1)
    assert line == 'x{a="q\\"uote",b="back\\\\slash",c="new\\nline"} 1\n'
    parsed = list(text_string_to_metric_families(family.text([(('q"', "b\\", "n\n"), 2)])))
    assert parsed[0].samples[0].labels == {"a": 'q"', "b": "b\\", "c": "n\n"}


# ---- a host's counters ----


def test_cpu_counts_what_a_process_grew_and_all_of_a_new_pid() -> None:
    accounts = HostAccounts()
    accounts.report(observed(proc(1, 10, cpu=2.0)))
    assert accounts.totals.cpu_seconds == {"web": 2.0}, "a process first seen counts whole"
    accounts.report(observed(proc(1, 10, cpu=2.5)))
    assert accounts.totals.cpu_seconds == {"web": 2.5}
    accounts.report(observed(proc(1, 11, cpu=0.25)))
    assert accounts.totals.cpu_seconds == {"web": 2.75}, "a respawned worker's pid is new"
    accounts.report(observed())
    assert accounts.totals.cpu_seconds == {"web": 2.75}, "a worker gone takes nothing back"


def test_restarts_count_what_each_worker_gained_since_the_last_report() -> None:
    accounts = HostAccounts()
    accounts.report(observed(proc(1, 10, restarts=4), proc(2, 20)))
    assert accounts.totals.restarts == {"web": 0}, "the first report only says where it stands"
    accounts.report(observed(proc(1, 12, restarts=6), proc(2, 21, restarts=1)))
    assert accounts.totals.restarts == {"web": 3}
    accounts.report(observed(proc(2, 21, restarts=1)))
    accounts.report(observed(proc(1, 13, restarts=1), proc(2, 21, restarts=1)))
    assert accounts.totals.restarts == {"web": 3}, "a worker id that comes back starts anew"


def test_each_new_last_exit_counts_one_exit_of_its_reason() -> None:
    crashed = LastExit(code=1, reason=ExitReason.CRASHED, at=5.0)
    killed = LastExit(signal=9, reason=ExitReason.KILLED, at=6.0)
    accounts = HostAccounts()
    accounts.report(observed(proc(1, 10, last_exit=crashed)))
    assert dict(accounts.totals.exits) == {}
    accounts.report(observed(proc(1, 11, last_exit=killed)))
    accounts.report(observed(proc(1, 11, last_exit=killed)))
    accounts.report(observed(proc(1, 12, last_exit=replace(crashed, at=7.0))))
    assert dict(accounts.totals.exits) == {("web", "killed"): 1, ("web", "crashed"): 1}


def test_totals_are_replaced_not_changed_by_a_report() -> None:
    accounts = HostAccounts()
    before = accounts.totals
    accounts.report(observed(proc(1, 10, cpu=1.0)))
    assert before is not accounts.totals and before.cpu_seconds == {}


# ---- a host's series ----


def test_series_of_a_host_count_running_unhealthy_and_memory_per_watcher() -> None:
    report = observed(
        proc(1, 10, rss_bytes=100),
        proc(2, 20, rss_bytes=50, health=Health.UNHEALTHY),
        proc(3, 0, state=ProcessState.BACKOFF),
        replace(proc(1, 30, rss_bytes=7), watcher="api"),
    )
    page = FleetRenderer().render([view("h1", report)])
    samples = _samples(page)
    assert samples["stack_watcher_processes_running", ("web", "h1")] == 2
    assert samples["stack_watcher_processes_running", ("api", "h1")] == 1
    assert samples["stack_watcher_processes_unhealthy", ("web", "h1")] == 1
    assert samples["stack_watcher_resident_memory_bytes", ("web", "h1")] == 150


def test_a_down_host_runs_nothing_as_far_as_the_controller_knows() -> None:
    page = FleetRenderer().render([view("h1", observed(proc(1, 10, rss_bytes=5)), up=False)])
    samples = _samples(page)
    assert samples["stack_watcher_processes_running", ("web", "h1")] == 0
    assert not any(name == "stack_watcher_resident_memory_bytes" for name, _ in samples)


def test_per_process_series_only_when_asked() -> None:
    one = view("h1", observed(proc(1, 10, cpu=1.5, rss_bytes=9)))
    assert "stack_process_" not in FleetRenderer().render([one])
    samples = _samples(FleetRenderer(per_process=True).render([one]))
    assert samples["stack_process_cpu_seconds_total", ("web", "h1", "1")] == 1.5
    assert samples["stack_process_resident_memory_bytes", ("web", "h1", "1")] == 9


def test_a_report_that_changes_no_figure_keeps_the_totals() -> None:
    accounts = HostAccounts()
    accounts.report(observed(proc(1, 10, cpu=1.0, rss_bytes=5)))
    before = accounts.totals
    accounts.report(observed(proc(1, 10, cpu=1.0, rss_bytes=5, cpu_percent=3.0)))
    assert accounts.totals is before, "a heartbeat with the same figures"
    accounts.report(observed(proc(1, 10, cpu=1.0, rss_bytes=6)))
    assert accounts.totals is not before and accounts.totals.gauges == {"web": (1, 0, 6)}


def test_a_host_is_written_again_only_when_its_figures_changed() -> None:
    renderer = FleetRenderer()
    accounts = HostAccounts()
    accounts.report(observed(proc(1, 10)))
    one = HostView("h1", observed(proc(1, 10)), True, accounts.totals)
    two = view("h2", observed(proc(1, 20)))
    page = renderer.render([one, two])
    kept = renderer._kept["h1"].texts
    accounts.report(observed(proc(1, 10)))
    again = HostView("h1", observed(proc(1, 10)), True, accounts.totals)
    assert renderer.render([again, two]) == page
    assert renderer._kept["h1"].texts is kept, "same figures: the same lines"
    accounts.report(observed(proc(1, 11, rss_bytes=4)))
    renderer.render([HostView("h1", observed(proc(1, 11)), True, accounts.totals), two])
    assert renderer._kept["h1"].texts is not kept
    renderer.render([two])
    assert "h1" not in renderer._kept, "a host no longer known is forgotten"


def test_a_changed_value_shows_in_the_next_page_and_only_its_line_is_written_anew() -> None:
    renderer = FleetRenderer()
    accounts = HostAccounts()
    accounts.report(observed(proc(1, 10, cpu=1.0, rss_bytes=4096)))
    first = _samples(renderer.render([HostView("h1", observed(), True, accounts.totals)]))
    running_line = renderer._kept["h1"].watchers["web"][1][0]
    accounts.report(observed(proc(1, 10, cpu=3.5, rss_bytes=8192)))
    page = renderer.render([HostView("h1", observed(), True, accounts.totals)])
    second = _samples(page)
    assert first["stack_watcher_cpu_seconds_total", ("web", "h1")] == 1.0
    assert second["stack_watcher_cpu_seconds_total", ("web", "h1")] == 3.5
    assert second["stack_watcher_resident_memory_bytes", ("web", "h1")] == 8192
    assert renderer._kept["h1"].watchers["web"][1][0] is running_line, (
        "the processes running did not change: their line is the one written before"
    )


def test_a_host_that_leaves_is_gone_from_the_next_page() -> None:
    renderer = FleetRenderer()
    one, two = view("h1", observed(proc(1, 10))), view("h2", observed(proc(1, 20)))
    renderer.render([one, two])
    page = _samples(renderer.render([two]))
    assert {labels[1] for _, labels in page} == {"h2"}
    assert _samples(renderer.render([one, two])) == _samples(FleetRenderer().render([one, two])), (
        "a host that comes back is written whole again"
    )


def test_a_new_watcher_on_a_kept_host_shows_with_its_series() -> None:
    renderer = FleetRenderer()
    accounts = HostAccounts()
    accounts.report(observed(proc(1, 10)))
    renderer.render([HostView("h1", observed(), True, accounts.totals)])
    accounts.report(observed(proc(1, 10), replace(proc(1, 30), watcher="api")))
    page = renderer.render([HostView("h1", observed(), True, accounts.totals)])
    samples = _samples(page)
    assert samples["stack_watcher_processes_running", ("api", "h1")] == 1
    assert samples["stack_watcher_processes_running", ("web", "h1")] == 1
    assert page == FleetRenderer().render([HostView("h1", observed(), True, accounts.totals)])
    names = [f.name for f in text_string_to_metric_families(page)]
    assert len(names) == len(set(names)), "each family once"


def test_kept_lines_writes_only_the_series_whose_value_changed() -> None:
    family = Family("x_total", "counter", "X.", ("host",))
    text, kept = kept_lines(family, [(("a",), 1), (("b",), 2)], NOTHING_KEPT)
    assert text == 'x_total{host="a"} 1\nx_total{host="b"} 2\n'
    line_a = kept["a",][1]
    text, again = kept_lines(family, [(("a",), 1), (("b",), 3), (("c",), 0)], kept)
    assert text == 'x_total{host="a"} 1\nx_total{host="b"} 3\nx_total{host="c"} 0\n'
    assert again["a",][1] is line_a
    text, last = kept_lines(family, [(("c",), 0)], again)
    assert text == 'x_total{host="c"} 0\n' and set(last) == {("c",)}, "a series left is forgotten"


def test_every_family_is_one_group_even_with_many_hosts() -> None:
    views = [view(f"h{i}", observed(proc(1, i + 1))) for i in range(3)]
    families = list(text_string_to_metric_families(FleetRenderer().render(views)))
    names = [f.name for f in families]
    assert len(names) == len(set(names))
    running = next(f for f in families if f.name == "stack_watcher_processes_running")
    assert [s.labels["host"] for s in running.samples] == ["h0", "h1", "h2"]


# ---- a watcher's one state ----

SPEC = WatcherSpec(name="web", cmd="sleep 1")
ROLLING = Rollout(pinned={}, batch={}, total=2)


@pytest.mark.parametrize(
    ("watcher", "phases", "state"),
    [
        (DesiredWatcher(SPEC), set(), "running"),
        (DesiredWatcher(SPEC, active=False), {WatcherPhase.STOPPED}, "stopped"),
        (DesiredWatcher(SPEC), {WatcherPhase.ACTIVE, WatcherPhase.FLAPPING}, "flapping"),
        (DesiredWatcher(SPEC), {WatcherPhase.FLAPPING, WatcherPhase.FATAL}, "fatal"),
        (DesiredWatcher(SPEC, rollout=ROLLING), {WatcherPhase.ACTIVE}, "rolling_out"),
        (DesiredWatcher(SPEC, rollout=ROLLING), {WatcherPhase.FLAPPING}, "flapping"),
        (DesiredWatcher(SPEC, rollout=replace(ROLLING, halted="x")), {WatcherPhase.FLAPPING},
         "halted"),
        (DesiredWatcher(SPEC, rollout=replace(ROLLING, halted="x")), {WatcherPhase.FATAL},
         "fatal"),
    ],
)  # fmt: skip
def test_the_most_pressing_state_of_a_watcher_wins(
    watcher: DesiredWatcher, phases: set[WatcherPhase], state: str
) -> None:
    assert watcher_state(watcher, phases) == state


# ---- the whole page ----


def test_the_page_is_valid_for_prometheus_with_the_daemons_counters() -> None:
    tally = Tally()
    tally.counter("stack_rollouts_started", "Rollouts.", ("watcher",)).inc("web")
    commits = tally.histogram("stack_store_commit_duration_seconds", "C.", LATENCY_BOUNDS,
                              ("what",))  # fmt: skip
    commits.observe("desired", value=0.003)
    commits.observe("desired", value=9.0)
    fleet = FleetRenderer().render([view("h1", observed(proc(1, 10)))])
    page = Exposition(tally, lambda: fleet).scrape().decode()
    families = {f.name: f for f in text_string_to_metric_families(page)}
    assert families["stack_rollouts_started"].samples[0].value == 1
    buckets = {s.labels["le"]: s.value for s in families["stack_store_commit_duration_seconds"]
               .samples if s.name.endswith("_bucket")}  # fmt: skip
    assert buckets["0.0025"] == 0 and buckets["0.005"] == 1 and buckets["+Inf"] == 2
    assert families["stack_build_info"].samples[0].labels["wire"] == "stack.v1"
    assert "process_cpu_seconds" in families, "the daemon's own process series"
    assert "stack_watcher_processes_running" in families


def _samples(page: str) -> dict[tuple[str, tuple[str, ...]], float]:
    found = {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            found[sample.name, tuple(sample.labels.values())] = sample.value
    return found


# ---- the controller's page: each agent's lines kept between scrapes ----


def _controller(*hosts: str) -> Any:
    """The controller's state as `read` looks at it: ready agents `hosts`, heard from
    at monotonic 100, looked at 2.5 s later."""
    metrics = ControllerMetrics()
    metrics.enabled = True
    return SimpleNamespace(
        leading=True, term=1, metrics=metrics,
        commands=SimpleNamespace(want_stats=lambda seconds: 0),
        agents=SimpleNamespace(records={
            host: AgentRecord(host, ready=True, last_seen_mono=100.0) for host in hosts
        }),
        state=SimpleNamespace(watchers={}, drained=frozenset()), placement=Placement(),
        clock=lambda: 102.5,
    )  # fmt: skip


def test_the_controllers_page_follows_agents_that_change_leave_and_come() -> None:
    c = _controller("h1", "h2")
    first = _samples(controller_read(c))
    assert first["stack_agent_up", ("h1",)] == 1
    assert first["stack_agent_heartbeat_age_seconds", ("h2",)] == 2.5
    assert first["stack_log_lines_shipped_total", ("h1",)] == 0
    c.metrics.lines("h1", 7)
    c.agents.records["h2"].ready = False
    del c.agents.records["h1"]
    c.agents.records["h3"] = AgentRecord("h3", ready=True, last_seen_mono=101.0)
    page = controller_read(c)
    second = _samples(page)
    assert ("stack_agent_up", ("h1",)) not in second, "an agent that left is gone"
    assert second["stack_agent_up", ("h2",)] == 0, "a changed value shows at once"
    assert second["stack_agent_heartbeat_age_seconds", ("h3",)] == 1.5, "a new agent shows"
    c.agents.records["h1"] = AgentRecord("h1", ready=True, last_seen_mono=100.0)
    assert _samples(controller_read(c))["stack_log_lines_shipped_total", ("h1",)] == 7
    names = [f.name for f in text_string_to_metric_families(page)]
    assert len(names) == len(set(names)), "each family once"


def test_the_renderer_keeps_no_report_nor_totals_alive_between_scrapes() -> None:
    """What a renderer keeps to compare is a number: a host's replaced report and totals
    are freed at once, not left for the cycle collector to walk until the next scrape."""
    report = observed(proc(1, 10))
    accounts = HostAccounts()
    accounts.report(report)
    renderer = FleetRenderer()
    renderer.render([HostView("h1", report, True, accounts.totals)])
    kept = renderer._kept["h1"]
    assert kept not in gc.get_referrers(report)
    assert kept not in gc.get_referrers(accounts.totals)
    per_process = FleetRenderer(per_process=True)
    per_process.render([HostView("h1", report, True, accounts.totals)])
    assert per_process._kept["h1"] in gc.get_referrers(report), (
        "per process, the report itself is what the lines are compared with"
    )
