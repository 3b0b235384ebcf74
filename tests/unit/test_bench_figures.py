"""The pure parts of the bench scripts: reading wrk's report and taking percentiles.

A misread unit would silently turn the throughput figures into nonsense (a p99
of 1.2 s read as 1.2 ms), so the parsing is checked on wrk's real output.
"""

from __future__ import annotations

import pytest

from bench.measure import percentile
from bench.throughput import parse_wrk

WRK_REPORT = """\
Running 1s test @ http://127.0.0.1:47123/
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.93ms    1.80ms  12.05ms   85.65%
    Req/Sec     1.20k   226.00     1.65k    60.00%
  Latency Distribution
     50%    1.15ms
     75%    2.44ms
     90%    4.40ms
     99%    {p99}
  1194 requests in 1.01s, 0.90MB read
{errors}Requests/sec:   1187.66
Transfer/sec:      0.90MB
"""


@pytest.mark.parametrize(
    ("printed", "milliseconds"),
    [("8.68ms", 8.68), ("750.00us", 0.75), ("1.20s", 1200.0), ("1.50m", 90_000.0)],
)
def test_wrk_report_gives_requests_per_second_and_p99_in_milliseconds(
    printed: str, milliseconds: float
) -> None:
    load = parse_wrk(WRK_REPORT.format(p99=printed, errors=""))
    assert load.requests == 1194
    assert load.requests_per_second == 1187.66
    assert load.p99_ms == pytest.approx(milliseconds)
    assert load.errors == ""


def test_wrk_socket_errors_and_bad_statuses_are_kept() -> None:
    errors = (
        "  Socket errors: connect 0, read 12, write 0, timeout 3\n  Non-2xx or 3xx responses: 5\n"
    )
    load = parse_wrk(WRK_REPORT.format(p99="8.68ms", errors=errors))
    assert load.errors == (
        "Socket errors: connect 0, read 12, write 0, timeout 3; Non-2xx or 3xx responses: 5"
    )


def test_a_report_without_latency_distribution_is_refused() -> None:
    with pytest.raises(RuntimeError, match="no request count, requests/s or p99"):
        parse_wrk("Requests/sec:   10.0\n")


def test_percentile_is_the_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 21)]  # 1 .. 20
    assert percentile(samples, 0.95) == 19.0
    assert percentile(samples, 0.5) == 10.0
    assert percentile(samples, 1.0) == 20.0
    assert percentile(samples, 0.0) == 1.0
    assert percentile(list(reversed(samples)), 0.95) == 19.0
    assert percentile([3.0], 0.99) == 3.0
