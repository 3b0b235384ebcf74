"""The controller's HTTP ports: `/metrics` (--metrics-listen) and the web console
(--http-listen, which serves `/metrics` too).

Both run on the controller's event loop (stack.web.server). With TLS they serve HTTPS
with the controller's certificate and take viewers and admins by their client
certificates; in plaintext they follow stack.security.rights.plaintext_right.
prometheus_client is imported here, so only by a controller that serves metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

from stack.controller import metrics
from stack.controller.controller import Controller
from stack.controller.settings import ControllerSettings
from stack.security.rights import ExposureError, Right, plaintext_right
from stack.security.tls import TlsMaterial, https_context
from stack.web.server import Application, HttpServer, metrics_page


class WebError(Exception):
    """An HTTP port that cannot be served as asked (one line)."""


@dataclass(frozen=True)
class Port:
    """One HTTP port to serve: what, where, and what its plaintext callers may do."""

    what: str
    """"metrics" or "web console"."""
    address: str
    flag: str
    console: bool


def ports(settings: ControllerSettings) -> list[Port]:
    """The HTTP ports the settings ask for."""
    found = []
    if settings.metrics_listen:
        found.append(Port("metrics", settings.metrics_listen, "--metrics-listen", False))
    if settings.http_listen:
        found.append(Port("web console", settings.http_listen, "--http-listen", True))
    return found


def rights(settings: ControllerSettings, tls: TlsMaterial | None) -> list[tuple[Port, Right]]:
    """Each HTTP port with what its plaintext callers may do (READ for HTTPS: there the
    certificates decide); WebError if one may not be served so (see plaintext_right)."""
    found = []
    for port in ports(settings):
        right = Right.READ
        if tls is None:
            try:
                right = plaintext_right(port.address, port.console, settings.insecure, port.flag)
            except ExposureError as exc:
                raise WebError(str(exc)) from None
        found.append((port, right))
    return found


def servers(controller: Controller, tls: TlsMaterial | None) -> list[HttpServer]:
    """The HTTP servers of `controller`, not bound yet (WebError: see `rights`)."""
    wanted = rights(controller.settings, tls)
    if not wanted:
        return []
    from stack.metrics.exposition import Exposition
    from stack.metrics.text import CONTENT_TYPE

    controller.metrics.enabled = True
    exposition = Exposition(controller.metrics.tally, lambda: metrics.read(controller))
    context = https_context(tls) if tls is not None else None
    made = []
    for port, right in wanted:
        app: Application
        if port.console:
            from stack.controller.console import Console

            app = Console(controller, exposition.scrape).handle
        else:
            app = metrics_page(exposition.scrape, CONTENT_TYPE)
        made.append(HttpServer(app, port.address, context, right, name=port.what))
    return made
