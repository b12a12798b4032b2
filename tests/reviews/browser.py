"""A headless Chromium from the system packages (Debian's chromium and
chromium-driver), driven by Selenium. Absent, the browser tests skip locally
and fail under KEEL_REQUIRE_SERVICES=1."""

import shutil
from pathlib import Path

import pytest
from django.conf import settings

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


def screenshot(driver, name: str) -> Path:
    """Save the whole page as var/screenshots/<name>.png (var/ is not committed)."""
    folder = Path(settings.BASE_DIR) / "var" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    # As tall as the page, so the picture shows what a reviewer would scroll to.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(1000, min(int(height) + 140, 4000)))
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 1000)
    return path


def assert_no_horizontal_scroll(driver) -> None:
    """The page fits a 1,280 px wide window: nothing to scroll sideways."""
    width, inner = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"{driver.current_url} is {width} px wide in a {inner} px window"
