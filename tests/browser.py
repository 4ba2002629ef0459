"""Headless Chromium from Debian's packages, driven by selenium (the dashboard's browser test and
scripts/dashboard_screenshots.py). Nothing is downloaded: selenium is pointed at Debian's
chromedriver, so its driver manager never runs.

    with chromium() as driver: driver.get(page.as_uri()); ...
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Without the background-networking flags Chromium keeps opening connections (component
# updates, sync, QUIC probes) that a machine without network refuses many at a time.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")


def missing() -> str | None:
    """Why there is no browser here (one line), or None."""
    absent = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if absent:
        return (f"no Chromium here ({', '.join(absent)} not found): `apt-get install -y chromium "
                "chromium-driver` (scripts/install_chromium.sh)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -e '.[test]'"
    return None


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 900):
    """A headless Chromium with a new empty profile, its console log readable through
    `driver.get_log("browser")`; quit and its profile removed at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="harness-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver) -> list[str]:
    """The page's console messages at level SEVERE (errors, failed loads) since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def wait_for_plots(driver, timeout_s: float = 30.0) -> None:
    """Until every plotly div on the page has drawn (plotly marks it `js-plotly-plot`)."""
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, timeout_s).until(lambda d: d.execute_script(
        "const divs = document.querySelectorAll('.plotly-graph-div');"
        "return divs.length > 0 && [...divs].every(d => d.classList.contains('js-plotly-plot')"
        " && d.querySelector('.main-svg'));"))
