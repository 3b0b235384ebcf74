"""Reading a daemon's HTTP ports as Prometheus and a browser do: the port it printed,
and its `/metrics` page parsed by prometheus_client's own parser."""

from __future__ import annotations

import re
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import Daemon
from tests.support.wait import wait_for


def served_http(daemon: Daemon, what: str, timeout: float = 30.0) -> int:
    """The port of `daemon`'s HTTP port `what` ("metrics", "web console"), as it printed it
    (`serving the metrics on 127.0.0.1:PORT ...`)."""
    pattern = re.compile(rf"serving the {re.escape(what)} on \S+:(\d+) ")

    def printed() -> int:
        if not daemon.alive():
            raise AssertionError(f"{daemon.argv[2]} exited:\n{daemon.output()}")
        found = pattern.findall(daemon.output())
        return int(found[-1]) if found else 0

    return wait_for(printed, timeout, f"the daemon to serve the {what}")


@dataclass(frozen=True)
class Page:
    """One scrape: each sample's value by (name, labels as sorted pairs)."""

    text: str
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    types: dict[str, str]

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, tuple(sorted(labels.items()))))

    def named(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {labels: v for (n, labels), v in self.samples.items() if n == name}


def get(url: str, context: ssl.SSLContext | None = None, timeout: float = 10.0) -> tuple[int, str]:
    """(status, body) of a GET; an HTTP error status is returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(url: str, context: ssl.SSLContext | None = None) -> Page:
    """GET `url` and parse it as Prometheus would (a page it cannot parse fails here)."""
    status, text = get(url, context)
    assert status == 200, f"GET {url}: {status} {text[:200]}"
    samples = {}
    types = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return Page(text, samples, types)
