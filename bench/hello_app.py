"""The WSGI app bench/throughput.py serves: a hello world of a few hundred bytes.

Small and constant on purpose, so that requests per second measure the path from
the listening socket to the worker and back, the part a process manager could
slow down, rather than the app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

BODY = (
    b"Hello from a worker behind a shared listening socket.\n"
    + b"The same bytes every time, so that only the serving path is measured.\n" * 4
)
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", HEADERS)
    return [BODY]
