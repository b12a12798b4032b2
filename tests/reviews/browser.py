"""A headless Chromium from the system packages (Debian's chromium and
chromium-driver), driven by Selenium. Absent, the browser tests skip locally
and fail under KEEL_REQUIRE_SERVICES=1."""

import shutil

import pytest

from tests.servers import REQUIRED

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",  # the suite runs as root in CI
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1000",
)


def chromium():
    """A new browser session; the caller quits it."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        message = "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
        if REQUIRED:
            pytest.fail(message + " and KEEL_REQUIRE_SERVICES=1")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
