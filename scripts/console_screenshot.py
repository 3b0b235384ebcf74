"""Take the README's screenshot of the web console (docs/console.png).

Run: .venv/bin/python scripts/console_screenshot.py [--out docs/console.png]
It starts a real controller (--http-listen, plaintext with --insecure, on loopback) and
agent in a temporary directory, applies a small stack, opens the console in headless
chromium (tests/support/browser.py), selects a watcher so that its processes and output
show, and saves the page. Everything it started is stopped at the end.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.browser import MISSING, headless_chromium  # noqa: E402
from tests.support.cluster import running_cluster  # noqa: E402
from tests.support.scrape import served_http  # noqa: E402
from tests.support.wait import wait_for  # noqa: E402
from tests.support.workers import watcher_toml  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "console.png")
    out = parser.parse_args().out
    if MISSING:
        raise SystemExit(MISSING)
    options = ("--http-listen", "127.0.0.1:0", "--insecure")
    with tempfile.TemporaryDirectory(prefix="stack-console-") as tmp, running_cluster(
        Path(tmp), controller_options=options
    ) as stack:
        stack.apply(
            watcher_toml("webapp", stack.tag, "--tick", "0.5", numprocesses=4)
            + watcher_toml("ticker", stack.tag, "--tick", "1", numprocesses=1)
            + watcher_toml("worker", stack.tag, numprocesses=2)
        )
        for name, count in (("webapp", 4), ("ticker", 1), ("worker", 2)):
            stack.wait_running(name, count)
        with headless_chromium(1280, 1100) as browser:
            browser.get(f"http://127.0.0.1:{served_http(stack.controller, 'web console')}/")
            from selenium.webdriver.common.by import By

            wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#watchers tbody tr"), 20)
            pick = 'tr[data-watcher="webapp"] td.name button'
            browser.find_element(By.CSS_SELECTOR, pick).click()
            wait_for(lambda: "tick" in browser.find_element(By.ID, "log").text, 30)
            time.sleep(2)  # a few more lines of output and a second refresh
            out.write_bytes(browser.get_screenshot_as_png())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
