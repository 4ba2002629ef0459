"""Screenshots of a dashboard's index and one series page, taken by the headless Chromium of the
browser test (Debian's package, driven by selenium; tests/browser.py).

    python scripts/dashboard_screenshots.py SITE_DIR [--out docs] [--height 1400]

Writes OUT/dashboard_index.png and OUT/dashboard_series.png: the series is the first open
regression's (else the first series). Pages are shot at 1280 px wide, as tall as they are up to
--height.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from browser import chromium, console_errors, missing, wait_for_plots  # noqa: E402

WIDTH = 1280


def shoot(driver, page: Path, png: Path, max_height: int) -> None:
    driver.set_window_size(WIDTH, 900)
    driver.get(page.as_uri())
    wait_for_plots(driver)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WIDTH, min(int(height) + 20, max_height))
    wait_for_plots(driver)
    errors = console_errors(driver)
    if errors:
        raise SystemExit(f"{page}: the browser logged errors: {errors}")
    driver.save_screenshot(str(png))
    print(f"{png} ({png.stat().st_size / 1e3:.0f} kB) <- {page}")


def series_page(driver, index: Path) -> Path:
    """The first open regression's series page, else the first series'."""
    driver.get(index.as_uri())
    href = driver.execute_script(
        "const a = document.querySelector('#open-regressions a') ||"
        " document.querySelector('#series a'); return a && a.getAttribute('href');")
    if not href:
        raise SystemExit(f"{index}: no series listed")
    return index.parent / href


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("site", type=Path, help="a dashboard (python -m harness.report dashboard)")
    p.add_argument("--out", type=Path, default=REPO / "docs")
    p.add_argument("--height", type=int, default=1400, help="the tallest screenshot, px")
    args = p.parse_args(argv)
    index = args.site / "index.html"
    if not index.is_file():
        p.error(f"{index}: not found (python -m harness.report dashboard STORE --out SITE_DIR)")
    why = missing()
    if why:
        p.error(why)
    args.out.mkdir(parents=True, exist_ok=True)
    with chromium() as driver:
        page = series_page(driver, index)
        shoot(driver, index, args.out / "dashboard_index.png", args.height)
        shoot(driver, page, args.out / "dashboard_series.png", args.height)
    return 0


if __name__ == "__main__":
    sys.exit(main())
