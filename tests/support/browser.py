"""A real headless browser for the web console's tests: Debian's chromium, driven by
Selenium through Debian's chromedriver (the two come from one source package, so their
versions match; Selenium never downloads a driver of its own here)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from typing import Any

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

MISSING = (
    ""
    if CHROMIUM and CHROMEDRIVER
    else ("needs Debian's chromium and chromium-driver (./run test installs them as root)")
)
"""Why no browser test can run here ("" when they can)."""


@contextlib.contextmanager
def headless_chromium(width: int = 1280, height: int = 960) -> Iterator[Any]:
    """A Selenium WebDriver on a fresh headless chromium, quit at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM and CHROMEDRIVER
    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the tests run as root, where chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
