"""Counters and histograms of what happens, kept as plain numbers until a scrape.

The controller and the agent count events where they happen (a rollout halts, an admin
call ends, a store commit returns) with `Counter.inc` and `Histogram.observe`: a
dictionary update, no lock (each daemon counts on its event loop), no import of
prometheus_client. `stack.metrics.exposition` turns them into Prometheus families when
a scraper asks. Label values are given in the order of the label names.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

LabelValues = tuple[str, ...]
T = TypeVar("T")


@dataclass
class Counter:
    """A family of counters (name without `_total`)."""

    name: str
    help: str
    labels: tuple[str, ...] = ()
    values: dict[LabelValues, float] = field(default_factory=dict)

    def inc(self, *labels: str, by: float = 1.0) -> None:
        """Add `by` (at least 0) to the counter of these label values."""
        if by < 0:
            raise ValueError(f"counter {self.name} cannot go down (by {by})")
        self.values[labels] = self.values.get(labels, 0.0) + by


@dataclass
class HistogramValues:
    """One labelled histogram: counts per bucket (not cumulative), sum and count."""

    buckets: list[int]
    sum: float = 0.0
    count: int = 0


@dataclass
class Histogram:
    """A family of histograms with fixed upper bounds (`+Inf` is implied)."""

    name: str
    help: str
    bounds: tuple[float, ...]
    labels: tuple[str, ...] = ()
    values: dict[LabelValues, HistogramValues] = field(default_factory=dict)

    def observe(self, *labels: str, value: float) -> None:
        """Count one observation of `value` under these label values."""
        found = self.values.get(labels)
        if found is None:
            found = self.values[labels] = HistogramValues([0] * (len(self.bounds) + 1))
        found.buckets[bisect.bisect_left(self.bounds, value)] += 1
        found.sum += value
        found.count += 1

    def cumulative(self, values: HistogramValues) -> Iterator[tuple[str, int]]:
        """(le, cumulative count) for every bound and `+Inf`, as Prometheus writes them."""
        total = 0
        for bound, count in zip([*self.bounds, float("inf")], values.buckets, strict=True):
            total += count
            yield ("+Inf" if bound == float("inf") else repr(float(bound))), total


LATENCY_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Seconds: store commits take a millisecond on SQLite, tens on etcd, seconds when sick."""


class Tally:
    """The counters and histograms of one daemon, in the order they were made."""

    def __init__(self) -> None:
        self.counters: list[Counter] = []
        self.histograms: list[Histogram] = []

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        made = Counter(name, help_text, tuple(labels))
        self.counters.append(made)
        return made

    def histogram(
        self, name: str, help_text: str, bounds: Sequence[float], labels: Sequence[str] = ()
    ) -> Histogram:
        made = Histogram(name, help_text, tuple(sorted(bounds)), tuple(labels))
        self.histograms.append(made)
        return made


def timed(call: Callable[[], T]) -> tuple[T, float]:
    """`call()` and the seconds it took (for a call run in a thread: the thread times
    it, the loop records it)."""
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started
