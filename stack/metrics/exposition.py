"""A daemon's `/metrics` page, made with prometheus_client.

prometheus_client brings what every Python exporter is expected to have: the
process's own series (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
open fds, start time), the interpreter's (`python_info`, garbage collections) and the
escaping rules of the text format; the daemon's counters (`stack.metrics.tally`) become
its families at each scrape. The series read from the daemon's state (the fleet's:
many, per watcher and host) are written by stack.metrics.text, ten times faster, and
appended.

Only a daemon started with a metrics or console port imports this module.
"""

from __future__ import annotations

import gc
import os
import resource
from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

import stack
from stack.metrics.tally import Tally
from stack.metrics.text import Family

WIRE = "stack.v1"


class _TallyCollector(Collector):
    """The daemon's counters and histograms, as they stand."""

    def __init__(self, tally: Tally) -> None:
        self._tally = tally

    def collect(self) -> Iterator[Metric]:
        for counter in self._tally.counters:
            family = CounterMetricFamily(counter.name, counter.help, labels=counter.labels)
            for values, value in sorted(counter.values.items()):
                family.add_metric(values, value)
            yield family
        for histogram in self._tally.histograms:
            made = HistogramMetricFamily(histogram.name, histogram.help, labels=histogram.labels)
            for values, found in sorted(histogram.values.items()):
                buckets = [(le, float(count)) for le, count in histogram.cumulative(found)]
                made.add_metric(list(values), buckets, found.sum)
            yield made


class _ProcessCollector(ProcessCollector):
    """prometheus_client's `process_*` series of this process, with its open descriptors
    counted from the size Linux (6.2 on) gives /proc/self/fd rather than by listing
    them: a controller holds a connection per agent, and listing a thousand of them took
    a tenth of a scrape. The limit is read with getrlimit rather than from a file."""

    def collect(self) -> Iterator[Metric]:
        if not self._btime:
            return
        prefix, ticks = self._prefix, self._ticks
        try:
            with open("/proc/self/stat", "rb") as stat:
                parts = stat.read().split(b")")[-1].split()
        except OSError:
            pass
        else:
            yield GaugeMetricFamily(
                prefix + "virtual_memory_bytes", "Virtual memory size in bytes.",
                value=float(parts[20]),
            )  # fmt: skip
            yield GaugeMetricFamily(
                prefix + "resident_memory_bytes", "Resident memory size in bytes.",
                value=float(parts[21]) * self._pagesize,
            )  # fmt: skip
            yield GaugeMetricFamily(
                prefix + "start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                value=float(parts[19]) / ticks + self._btime,
            )
            yield CounterMetricFamily(
                prefix + "cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                value=(float(parts[11]) + float(parts[12])) / ticks,
            )  # fmt: skip
        try:
            opened = os.stat("/proc/self/fd").st_size or len(os.listdir("/proc/self/fd"))
        except OSError:
            return
        yield GaugeMetricFamily(
            prefix + "open_fds", "Number of open file descriptors.", value=float(opened)
        )
        yield GaugeMetricFamily(
            prefix + "max_fds", "Maximum number of open file descriptors.",
            value=float(resource.getrlimit(resource.RLIMIT_NOFILE)[0]),
        )  # fmt: skip


BUILD_INFO = Family(
    "stack_build_info",
    "gauge",
    "The version of Stack and of its wire protocol (always 1).",
    ("version", "wire"),
)


def build_info() -> str:
    """The `stack_build_info` family."""
    return BUILD_INFO.text([((stack.__version__, WIRE), 1)])


class Exposition:
    """What one daemon's `/metrics` answers."""

    def __init__(self, tally: Tally, read: Callable[[], str]) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        _ProcessCollector(registry=self._registry)
        PlatformCollector(registry=self._registry)
        GCCollector(registry=self._registry)
        self._registry.register(_TallyCollector(tally))
        self._read = read

    def scrape(self) -> bytes:
        """The page, in the text format 0.0.4 (see stack.metrics.text.CONTENT_TYPE).

        Python's cycle collector is held off while the page is written: a page of a
        thousand agents makes a few thousand short-lived tuples and lists, all freed when
        it is done, and a collection started among them would walk the daemon's young
        objects for nothing. The page makes no cycles.
        """
        collecting = gc.isenabled()
        gc.disable()
        try:
            return generate_latest(self._registry) + (build_info() + self._read()).encode()
        finally:
            if collecting:
                gc.enable()
