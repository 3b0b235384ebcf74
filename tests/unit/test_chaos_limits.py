"""bench/chaos.py judges each failed client request against the README's limits; these
cases pin down what counts as a cause, on samples as sparse as a loaded machine makes
them (chaos seed 39799478: a drained host's refusals were called violations when the
harness's samples of its socket were seconds apart)."""

from __future__ import annotations

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
