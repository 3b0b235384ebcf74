"""The web console end to end: a real controller and agent, the page loaded in a real
headless chromium (tests/support/browser.py), watchers, processes, agents, events and a
watcher's output seen live on the page, and a scale made from the page seen on the page
and in `stackctl status`. Then who may do what, over HTTPS with each kind of certificate.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stack.security.certs import Role
from tests.support.browser import MISSING, headless_chromium
from tests.support.cluster import Cluster, running_cluster
from tests.support.processes import CONTROLLER, Daemon
from tests.support.scrape import get, served_http
from tests.support.tls import TlsStack, https_client, running_tls_stack
from tests.support.wait import wait_for
from tests.support.workers import watcher_toml


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    options = ("--http-listen", "127.0.0.1:0", "--insecure")
    with running_cluster(tmp_path_factory.mktemp("console"), controller_options=options) as c:
        c.apply(watcher_toml("web", c.tag, "--tick", "0.2", numprocesses=2))
        c.wait_running("web", 2)
        yield c


@pytest.fixture(scope="module")
def page(stack: Cluster) -> Iterator[Any]:
    if MISSING:
        pytest.skip(MISSING)
    with headless_chromium() as browser:
        browser.get(f"http://127.0.0.1:{served_http(stack.controller, 'web console')}/")
        yield browser


def text_of(browser: Any, css: str) -> str:
    """The text of the first element `css` finds, "" when there is none yet."""
    from selenium.webdriver.common.by import By

    found = browser.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else ""


def shown(browser: Any, css: str, wanted: str, what: str, timeout: float = 20.0) -> str:
    """Wait until the element `css` shows text containing `wanted`."""

    def showing() -> str:
        text: str = text_of(browser, css)
        return text if wanted in text else ""

    return wait_for(showing, timeout, what, interval=0.1)


def click(browser: Any, css: str) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.CSS_SELECTOR, css).click()


def status_line(stack: Cluster, watcher: str) -> str:
    out = stack.stackctl("status", watcher, "--summary", check=True).out
    return out.splitlines()[0]


def test_the_page_shows_watchers_agents_events_processes_and_output(
    stack: Cluster, page: Any
) -> None:
    shown(page, 'tr[data-watcher="web"] .running', "2/2", "web 2/2 on the page")
    assert "running" in text_of(page, 'tr[data-watcher="web"] .state')
    shown(page, 'tr[data-host="h1"]', "ready", "agent h1 ready on the page")
    shown(page, '#events li[data-kind="spawn"]', "spawn", "a spawn event on the page")
    shown(page, "#link", "live", "the live stream open")
    assert "(admin)" in text_of(page, "#who"), "plaintext with --insecure: everyone acts"
    click(page, 'tr[data-watcher="web"] td.name button')
    shown(page, "#processes tbody", "running", "web's processes on the page")
    rows = text_of(page, "#processes tbody").splitlines()
    assert len(rows) == 2 and all(row.startswith("h1") for row in rows), rows
    shown(page, "#log", "tick", "web's output on the page", timeout=30)


def test_an_admin_scales_from_the_page_and_stackctl_sees_it(stack: Cluster, page: Any) -> None:
    from selenium.webdriver.common.by import By

    field = page.find_element(By.CSS_SELECTOR, 'input[data-scale="web"]')
    field.clear()
    field.send_keys("3")
    click(page, 'button[data-action="scale"][data-watcher="web"]')
    shown(page, "#message", "2 -> 3", "the page to say what the scale did")
    shown(page, 'tr[data-watcher="web"] .running', "3/3", "web 3/3 on the page", timeout=30)
    assert "3/3 running" in status_line(stack, "web")
    assert any(e.kind == "scale" for e in stack.events("scale"))

    # Scaling down stops processes: the page asks first, and Cancel changes nothing.
    field = page.find_element(By.CSS_SELECTOR, 'input[data-scale="web"]')
    field.clear()
    field.send_keys("1")
    click(page, 'button[data-action="scale"][data-watcher="web"]')
    shown(page, "#confirm-text", "stops 2 of its processes", "the confirmation")
    click(page, "#confirm-no")
    assert not page.find_element(By.ID, "confirm").is_displayed()
    assert "3/3 running" in status_line(stack, "web")
    click(page, 'button[data-action="scale"][data-watcher="web"]')
    shown(page, "#confirm-text", "stops 2 of its processes", "the confirmation again")
    click(page, "#confirm-yes")
    shown(page, 'tr[data-watcher="web"] .running', "1/1", "web 1/1 on the page", timeout=30)
    assert "1/1 running" in status_line(stack, "web")


def test_stop_asks_first_and_start_brings_it_back(stack: Cluster, page: Any) -> None:
    click(page, 'button[data-action="stop"][data-watcher="web"]')
    shown(page, "#confirm-text", "Stop every process of web?", "the stop confirmation")
    click(page, "#confirm-yes")
    shown(page, 'tr[data-watcher="web"] .state', "stopped", "web stopped on the page")
    assert "stopped" in status_line(stack, "web")
    click(page, 'button[data-action="start"][data-watcher="web"]')
    shown(page, 'tr[data-watcher="web"] .state', "running", "web running again on the page")
    stack.wait_running("web", 1)


def test_a_screenshot_of_the_console(page: Any, tmp_path: Path) -> None:
    shown(page, 'tr[data-watcher="web"] .running', "/", "the watchers drawn")
    png = page.get_screenshot_as_png()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    (tmp_path / "console.png").write_bytes(png)


def test_the_page_and_its_assets_come_from_the_package(stack: Cluster) -> None:
    base = f"http://127.0.0.1:{served_http(stack.controller, 'web console')}"
    status, html = get(f"{base}/")
    assert status == 200 and "/assets/console.js" in html
    for asset in ("console.js", "console.css"):
        assert get(f"{base}/assets/{asset}")[0] == 200
    assert get(f"{base}/metrics")[0] == 200, "the console's port serves /metrics too"
    assert get(f"{base}/nowhere")[0] == 404


# -- who may do what ---------------------------------------------------------------


def test_a_plaintext_console_needs_insecure(tmp_path: Path) -> None:
    daemon = Daemon(
        [*CONTROLLER, "--data-dir", str(tmp_path / "c"), "--http-listen", "127.0.0.1:0"],
        tmp_path / "controller.log",
    ).start()
    assert daemon.proc is not None and daemon.proc.wait(30) == 1
    assert "refusing to serve the web console in plaintext on 127.0.0.1:0" in daemon.output()


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsStack]:
    root = tmp_path_factory.mktemp("console-tls")
    with running_tls_stack(root, "--http-listen", "127.0.0.1:0") as running:
        stackfile = root / "stack.toml"
        stackfile.write_text(watcher_toml("web", running.tag, numprocesses=1))
        running.stackctl("--tls-dir", str(running.tls), "apply", str(stackfile), check=True)
        running.wait_running("web", 1)
        yield running


def post(url: str, context: ssl.SSLContext, body: object, header: bool = True) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if header:
        headers["X-Stack-Console"] = "1"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_with_tls_viewers_read_and_admins_act(tls_stack: TlsStack) -> None:
    base = f"https://127.0.0.1:{served_http(tls_stack.controller, 'web console')}"
    viewer = https_client(tls_stack.tls, Role.viewer, "vic")
    admin = https_client(tls_stack.tls, Role.admin, "admin")
    status, body = get(f"{base}/api/state", viewer)
    state = json.loads(body)
    assert status == 200 and state["can_act"] is False
    assert [w["name"] for w in state["watchers"]] == ["web"]
    assert json.loads(get(f"{base}/api/state", admin)[1])["can_act"] is True

    scale = f"{base}/api/watchers/web/scale"
    status, answer = post(scale, viewer, {"count": 2})
    assert status == 403 and "may only read" in answer["error"]
    status, answer = post(scale, admin, {"count": 2}, header=False)
    assert status == 403 and "x-stack-console header" in answer["error"]
    status, answer = post(f"{base}/api/watchers/nope/scale", admin, {"count": 2})
    assert status == 404 and "nope" in answer["error"]
    status, answer = post(f"{base}/api/watchers/b%20d/scale", admin, {"count": 2})
    assert status == 400 and "watcher name 'b d'" in answer["error"]
    status, answer = post(scale, admin, {"count": 2})
    assert status == 200 and answer["answer"] == {"previous": 1, "numprocesses": 2}
    tls_stack.wait_running("web", 2)

    agent = https_client(tls_stack.tls, Role.agent, "h1")
    status, body = get(f"{base}/api/state", agent)
    assert status == 403


def test_live_streams_count_against_the_callers_follows(tls_stack: TlsStack) -> None:
    port = served_http(tls_stack.controller, "web console")
    viewer = https_client(tls_stack.tls, Role.viewer, "vic")

    def open_live() -> tuple[http.client.HTTPResponse, str]:
        """A live stream (its response holds the connection) and its first event."""
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=viewer, timeout=10)
        conn.request("GET", "/api/live")
        answer = conn.getresponse()
        assert answer.status == 200
        return answer, answer.readline().decode() + answer.readline().decode()

    held = [open_live() for _ in range(8)]
    try:
        assert all(first.startswith(": keepalive") for _, first in held)
        refused, first = open_live()
        refused.close()
        assert first.startswith("event: error") and "too many follow streams" in first, first
        held.pop()[0].close()

        def reopened() -> tuple[http.client.HTTPResponse, str] | None:
            answer, first = open_live()
            if first.startswith(": keepalive"):
                return answer, first
            answer.close()
            return None

        held.append(wait_for(reopened, 10, "the closed stream's slot to come free"))
    finally:
        for answer, _ in held:
            answer.close()
