"""bench/chaos.py's judgements: each failed client request against the README's limits,
on samples as sparse as a loaded machine makes them (chaos seed 39799478: a drained
host's refusals were called violations when the harness's samples of its socket were
seconds apart), and a soak's daemons' growth (a 5-minute soak, seed 7, failed an agent
for one gRPC thread that comes and goes)."""

from __future__ import annotations

from bench.chaoskit import kernel
from bench.chaoskit.load import (
    ALL_DOWN,
    CUT_OFF,
    KILLED,
    NOT_BOUND,
    Failure,
    Sample,
    Samples,
    explain,
)
from bench.chaoskit.run import JUDGED, Usage, growth


def refused(host: str, at: float, error: str = "refused") -> Failure:
    return Failure(host, at, at + 0.01, error)


def test_a_refusal_between_two_samples_seconds_apart_is_judged_by_them() -> None:
    samples = Samples([Sample(10.0, "h1", False, 0), Sample(16.0, "h1", False, 0)])
    assert explain(refused("h1", 13.0), [], samples, []) == NOT_BOUND


def test_a_refusal_where_every_sample_shows_the_socket_served_is_a_violation() -> None:
    samples = Samples(
        [Sample(t, "h1", True, 2) for t in (10.0, 10.5, 11.0, 11.5, 12.0)]
        + [Sample(11.0, "h2", False, 0)]
    )
    assert explain(refused("h1", 11.2), [], samples, []) == ""


def test_a_sample_long_before_the_nearest_ones_does_not_count() -> None:
    samples = Samples([Sample(t, "h1", True, 1) for t in (20.0, 29.5, 30.5)])
    samples = Samples([Sample(5.0, "h1", False, 0), *samples.around("h1", 0, 100)])
    assert explain(refused("h1", 30.0), [], samples, []) == ""


def test_each_limit_names_its_cause() -> None:
    empty = Samples([])
    assert explain(refused("h1", 5.0), [("h1", 4.0, 6.0)], empty, []) == CUT_OFF
    down = Samples([Sample(5.0, "h1", True, 0)])
    assert explain(refused("h1", 5.0), [], down, []) == ALL_DOWN
    serving = Samples([Sample(5.0, "h1", True, 2)])
    assert explain(refused("h1", 5.0, "reset"), [], serving, [("h1", 5.2)]) == KILLED
    assert explain(refused("h1", 5.0, "refused"), [], serving, [("h1", 5.2)]) == ""


def usage_series(name: str, tasks: list[int], work: str = "", fds: int = 20) -> list[Usage]:
    """One sample a minute of daemon `name`, 30 minutes long."""
    return [
        Usage(60.0 * i, name, 100, kernel.Usage(50 << 20, fds, t), work)
        for i, t in enumerate(tasks)
    ]


def test_a_soak_fails_a_daemon_whose_thread_floor_rises_not_one_whose_threads_come_and_go() -> None:
    steady = [8] * 31
    come_and_go = [8, 9] * 15 + [9]
    leaking = [8] * 16 + [9] * 15
    usage = [
        *usage_series("h1", steady),
        *usage_series("h2", come_and_go),
        *usage_series("h3", leaking),
        *usage_series("e1", leaking),
    ]
    found, unjudged = growth(usage, JUDGED)
    assert [(name, what) for name, _, what, _, _ in found] == [("h3", "tasks")]
    assert unjudged == []


def test_a_soak_compares_a_daemon_with_itself_at_the_same_work() -> None:
    """A 5-minute soak (seed 7) failed c1 for the sockets it holds as the leader (it
    followed in the first window); an agent's fds likewise follow the watchers it runs."""
    follows_then_leads = [
        Usage(60.0 * i, "c1", 100, kernel.Usage(60 << 20, 16 if i < 15 else 23, 16),
              "follower" if i < 15 else "leader")
        for i in range(31)
    ]  # fmt: skip
    found, unjudged = growth(follows_then_leads, JUDGED)
    assert found == [] and unjudged == ["c1 (pid 100)"]
    leads_throughout = [
        Usage(60.0 * i, "c1", 100, kernel.Usage(60 << 20, 16 if i < 15 else 23, 16), "leader")
        for i in range(31)
    ]
    found, _ = growth(leads_throughout, JUDGED)
    assert [(name, work, what) for name, work, what, _, _ in found] == [("c1", "leader", "fds")]
