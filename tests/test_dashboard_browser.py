"""The nightly dashboard, loaded from file:// in a headless Chromium (Debian's package, driven by
selenium): no console error, the plots drawn (their SVG traces counted), the regression listed.

The store: 10 nights made from real CPU records, times scaled by scripts/synthetic_nights.py with
2% noise and appended night by night through `python -m harness.report history --night`, as
scripts/nightly.sh does. The records: fp8_linear on both fair pairs (tests/fixtures/cpu_nightly,
3 processes each, recorded on the loaded 2-core helper machine: every one flagged high_cv and
process_spread, so `regressions` never judges their nights) and fp8_linear eager
(results/reference/cpu_torch_xla, one quiet process), which steps up 30% from night 6; one
night of xla:no-cmdbuf is 3x (flagged: shown, not judged).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from browser import chromium, console_errors, missing, wait_for_plots
from conftest import FIXTURES, REPO
from test_report import report_cli

pytestmark = pytest.mark.slow

RECORDS = (FIXTURES / "cpu_nightly",
           REPO / "results/reference/cpu_torch_xla/torchax/fp8_linear_eager_07430907")
START = dt.date(2026, 1, 1)
NIGHTS = 10
STEP_NIGHT = 6                      # eager 30% slower from 2026-01-07 on
SERIES = 5                          # fp8_linear x eager and both sides of both fair pairs
STEPPED = "fp8_linear [fwd,tensorwise,cpu_small] eager on cpu"
FLAGGED = "fp8_linear [fwd,tensorwise,cpu_small] inductor on cpu"
TRACES = ".scatterlayer .trace"     # one SVG group per scatter trace plotly drew


def night(n: int) -> str:
    return (START + dt.timedelta(days=n)).isoformat()


def synthetic_sha(date: str) -> str:
    """The commit scripts/synthetic_nights.py gives a night, as the dashboard shows it."""
    return hashlib.sha1(f"synthetic {date}".encode()).hexdigest()[:10]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nights")
    proc = subprocess.run([sys.executable, "scripts/synthetic_nights.py", *map(str, RECORDS),
                           "--out", str(out), "--nights", str(NIGHTS), "--start", night(0),
                           "--noise", "0.02", "--shift", f"eager,{STEP_NIGHT},1.3",
                           "--shift", "xla:no-cmdbuf,3,3,1"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "history"


@pytest.fixture(scope="module")
def site(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = report_cli("dashboard", store, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"dashboard: {SERIES} series over {NIGHTS} night(s), ")
    return out


@pytest.fixture(scope="module")
def browser():
    why = missing()
    if why:
        pytest.skip(why)
    with chromium() as driver:
        yield driver


def load(driver, page: Path) -> list[str]:
    """Open a page from file://, wait for its plots; the console errors it logged."""
    console_errors(driver)          # drop what an earlier page logged
    driver.get(page.as_uri())
    wait_for_plots(driver)
    return console_errors(driver)


def count(driver, selector: str, root: str = "document") -> int:
    return driver.execute_script(f"return {root}.querySelectorAll({selector!r}).length")


def table_rows(driver, table_id: str) -> list[list[str]]:
    return driver.execute_script(
        f"return [...document.querySelectorAll('#{table_id} tbody tr')]"
        ".map(r => [...r.cells].map(c => c.innerText.trim()))")


def test_the_site_is_static_and_local(site, store):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) == 1 + 1 + SERIES            # index, pairs, one per series
    assert (site / "plotly.min.js").stat().st_size > 1_000_000
    for page in pages:
        text = page.read_text()
        assert 'src="http' not in text and 'href="http' not in text, page   # no network
        assert "plotly.min.js" in text


def test_an_empty_store_is_one_line(tmp_path):
    proc = report_cli("dashboard", tmp_path / "nothing", "--out", tmp_path / "site")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no history rows" in proc.stderr


def series_page(site: Path, name: str) -> Path:
    (page,) = [p for p in (site / "series").glob("*.html") if f"{name}</h1>" in p.read_text()]
    return page


def test_index_lists_the_regression_first_and_draws_every_sparkline(browser, site, store):
    from harness.report.history import read_store
    from harness.report.regressions import detect

    assert load(browser, site / "index.html") == []
    assert count(browser, TRACES) == SERIES       # one sparkline trace per series
    assert browser.execute_script(
        "return document.querySelector('h2').innerText") == "Open regressions"
    (regression,) = table_rows(browser, "open-regressions")
    series, kind, first, commits = regression[:4]
    assert (series, kind) == (STEPPED, "regression")
    first_night = next(n for n in range(NIGHTS) if night(n) == first)
    assert abs(first_night - STEP_NIGHT) <= 1
    assert commits == f"{synthetic_sha(night(first_night - 1))}..{synthetic_sha(first)}"
    # every verdict of `regressions` is on the page, and only those
    listed = table_rows(browser, "open-regressions") + (
        table_rows(browser, "other-changes") if count(browser, "#other-changes") else [])
    assert sorted((r[0], r[1].split(" ")[0], r[2]) for r in listed) == sorted(
        (f"{c.workload} [{c.variant}] {c.backend} on {c.device}", c.kind, c.first_date)
        for c in detect(read_store(store)))
    rows = {row[0]: row for row in table_rows(browser, "series")}
    assert len(rows) == SERIES
    for name, row in rows.items():    # a flagged value is never bare: `!!` beside it
        assert ("!!" in row[3]) == (row[6] != "none"), row
    assert "processes" in rows[FLAGGED][3] and "not judged" in rows[FLAGGED][7]
    assert rows[STEPPED][7].startswith("regression")


def test_series_page_draws_the_wall_commits_and_the_change(browser, site):
    assert load(browser, series_page(site, STEPPED)) == []
    fig = "document.getElementById('series-figure')"
    names = browser.execute_script(f"return {fig}.data.map(t => t.name)")
    assert names == ["wall median (ms/iter)"]     # one process, not flagged: no band, no circle
    assert count(browser, TRACES, fig) == 1
    assert count(browser, ".scatterlayer .trace .points path", fig) == NIGHTS
    legend = browser.execute_script(
        f"return [...{fig}.querySelectorAll('.legendtext')].map(t => t.textContent)")
    assert "change point (first night after)" in legend
    assert count(browser, ".shapelayer path", fig) == 1
    commits = browser.execute_script(f"return {fig}.data[0].customdata.map(c => c[1])")
    assert commits == [synthetic_sha(night(n)) for n in range(NIGHTS)]
    assert "regression" in table_rows(browser, "changes")[0][1]
    nights = table_rows(browser, "nights")
    assert len(nights) == NIGHTS and {n[6] for n in nights} == {"judged"}


def test_series_page_of_a_flagged_series_circles_every_night(browser, site):
    assert load(browser, series_page(site, FLAGGED)) == []
    fig = "document.getElementById('series-figure')"
    names = browser.execute_script(f"return {fig}.data.map(t => t.name)")
    assert names == ["process spread (min-max of the processes' medians)",
                     "wall median (ms/iter)", "not judged (hover: why)"]
    assert count(browser, TRACES, fig) == 3
    assert count(browser, ".scatterlayer .trace:nth-child(3) .points path", fig) == NIGHTS
    hover = browser.execute_script(f"return {fig}.data[2].customdata[0][0]")
    assert hover.startswith("high_cv: samples within a process spread more than 10%")
    nights = table_rows(browser, "nights")
    # recorded on a loaded 2-core machine: spread, and busy by its load average (describe.host_busy)
    assert all(n[6] == "not judged (flagged high_cv,process_spread,host_busy)" for n in nights), [n[6] for n in nights]
    assert "No change detected" in browser.find_element("tag name", "body").text


def test_pairs_page_draws_both_fair_pairs(browser, site):
    assert load(browser, site / "pairs.html") == []
    for pair in ("headline", "control"):
        fig = f"document.getElementById('pair-{pair}')"
        names = browser.execute_script(f"return {fig}.data.map(t => t.name)")
        assert names == ["fp8_linear [fwd,tensorwise,cpu_small] on cpu",
                         "a side flagged (hover: flags)"]
        assert count(browser, TRACES, fig) == 2
        assert browser.execute_script(f"return {fig}.data[0].x.length") == NIGHTS
        title = browser.execute_script(f"return {fig}.layout.yaxis.title.text")
        assert title.startswith("Inductor / XLA wall")
