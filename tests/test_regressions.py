"""regressions STORE: 14 nights of real CPU records (their times scaled night by night), written
as a real history store; a 10% step is a regression dated where it began with its commit range,
noise alone is nothing, one 3x night is suspicious, a flagged night decides nothing."""
from __future__ import annotations

import copy
import json
import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from test_report import report_cli
from harness.describe import assess
from harness.orchestrator.combine import timing as combine_timing
from harness.report.dashboard import change_dates, series_html
from harness.report.history import append, read_store
from harness.report.regressions import (IMPROVEMENT, REGRESSION, SERIES, SUSPICIOUS, Change,
                                        RegressionConfig, detect, night_series, not_judged,
                                        open_regressions)

# Real CPU runs (results/reference/cpu_torch_xla): fp8_linear fwd on eager and on xla (torchax),
# neither flagged (within-process CV 6.9% and 3.1%).
REFERENCE = REPO / "results" / "reference" / "cpu_torch_xla" / "torchax"
RUNS = {"eager": "fp8_linear_eager_07430907", "xla": "fp8_linear_xla_8c74197e"}
NIGHTS = 14


def night_of(n: int) -> str:
    return f"2026-03-{n:02d}"


def sha_of(n: int) -> str:
    return f"{n:02d}" + "c0ffee" * 6 + "00"


def night_record(name: str, level: float, night: int, process_spread: float = 0.01,
                 sample_spread: float = 1.0, failed: str = "") -> dict:
    """The real record `name` as it would read on `night` if its program ran `level` x as long:
    three fresh processes whose samples are the real samples scaled to level x (1 -+ spread),
    combined as the orchestrator combines them, its flags assessed again; its own commit.
    sample_spread > 1 widens the samples around their median (a noisy night); `failed`: the
    run failed with this reason instead."""
    r = copy.deepcopy(json.loads((REFERENCE / name / "record.json").read_text()))
    t = r["timing"]
    real = np.asarray(t["samples_ms"], dtype=float)
    real = np.median(real) + sample_spread * (real - np.median(real))
    processes = []
    for f in (1 - process_spread, 1.0, 1 + process_spread):
        s = real / np.median(real) * t["median_ms"] * level * f
        processes.append({"median_ms": float(np.median(s)), "cv": float(s.std(ddof=1) / s.mean()),
                          "p10_ms": float(np.percentile(s, 10)), "p90_ms": float(np.percentile(s, 90)),
                          "min_ms": float(s.min()), "iters_per_sample": t["iters_per_sample"],
                          "samples_ms": s.tolist()})
    r["timing"] = combine_timing(processes)
    r["environment"]["git_sha"] = sha_of(night)
    r["flags"] = assess(r)
    if failed:
        r.update(status="failed", reason=failed, timing=None, flags=[])
    return r


def write_store(tmp_path: Path, levels: dict[str, list[float]],
                night_kw: dict[tuple[str, int], dict] | None = None) -> Path:
    """One sweep per night (each run's record in its own run dir), appended to one history
    store with --night's API, as scripts/nightly.sh does."""
    store = tmp_path / "history"
    for n in range(1, len(next(iter(levels.values()))) + 1):
        sweep = tmp_path / "nights" / night_of(n)
        for backend, series in levels.items():
            run = sweep / f"{RUNS[backend]}"
            run.mkdir(parents=True)
            kw = (night_kw or {}).get((backend, n), {})
            (run / "record.json").write_text(json.dumps(night_record(RUNS[backend], series[n - 1],
                                                                     n, **kw)))
        append([sweep], store, plot=False, night=night_of(n))
    return store


def noisy(rng: np.random.Generator, cv: float = 0.02, step: float = 0.0, at: int = 8) -> list[float]:
    level = np.where(np.arange(1, NIGHTS + 1) >= at, 1.0 + step, 1.0)
    return list(level * np.exp(cv * rng.standard_normal(NIGHTS)))


def of(changes: list[Change], backend: str, kind: str | None = None) -> list[Change]:
    return [c for c in changes if c.backend == backend and (kind is None or c.kind == kind)]


STEP = {}


@pytest.fixture(scope="module")
def step_store(tmp_path_factory) -> Path:
    """eager: +10% from night 8 on, 2% noise; xla: 2% noise only."""
    rng = np.random.default_rng(8)
    STEP.update(eager=noisy(rng, step=0.10), xla=noisy(rng))
    return write_store(tmp_path_factory.mktemp("step"), STEP)


def test_the_store_holds_14_nights_of_both_series(step_store):
    h = read_store(step_store)
    assert sorted(h["date"].unique()) == [night_of(n) for n in range(1, NIGHTS + 1)]
    nights = night_series(h)
    assert len(nights) == 2 * NIGHTS and nights["usable"].all() and (nights["runs"] == 1).all()
    assert set(nights["device"]) == {"cpu"} and set(nights["backend"]) == {"eager", "xla"}
    # three processes each night: the night's own noise of its median is measured
    assert (nights["noise_cv"] > 0).all() and (nights["between_max_ms"] > nights["between_min_ms"]).all()


def test_a_10_percent_step_at_night_8_is_an_open_regression_with_its_commit_range(step_store):
    changes = detect(read_store(step_store))
    (c,) = of(changes, "eager")
    assert c.kind == REGRESSION and c.open and c.workload == "fp8_linear"
    assert c.first_date in {night_of(7), night_of(8), night_of(9)}
    first = int(c.first_date[-2:])
    assert (c.git_before, c.git_after) == (sha_of(first - 1), sha_of(first))
    assert c.last_date_before == night_of(first - 1) and c.latest_date == night_of(NIGHTS)
    assert c.nights_held == NIGHTS - first + 1 and c.nights_before == first - 1
    # the medians of the nights either side, as generated: the real median times the level
    eager = np.asarray(STEP["eager"])
    assert c.change_pct == pytest.approx(100 * (np.median(eager[first - 1:])
                                                / np.median(eager[:first - 1]) - 1))
    assert c.change_pct == pytest.approx(100 * (c.median_after_ms / c.median_before_ms - 1))
    assert c.gpu_change_pct is None and c.host_gap_change_pct is None   # CPU: not profiled
    assert of(changes, "xla", REGRESSION) == [] and of(changes, "xla", IMPROVEMENT) == []
    assert open_regressions(changes) == [c]
    # for drawing: the dashboard's line is where the regression begins
    assert change_dates(of(changes, "eager")) == [night_of(first)]


def drawn_change_lines(page: str) -> list[str]:
    """The nights where a series page draws a change-point line (its figure's layout shapes)."""
    text = page[page.index("Plotly.newPlot("):]
    decode = json.JSONDecoder().raw_decode
    _, end = decode(text, text.index("["))              # the traces
    layout, _ = decode(text, text.index("{", end))
    return sorted({s["x0"] for s in layout.get("shapes", [])
                   if s["name"] == "change point (first night after)"})


def test_the_dashboard_draws_a_line_where_every_verdict_begins():
    """A series of scripts/bench_regressions.py (3 processes a night, 5% slower from night 8)
    where a fit of its own, counting 2 processes a night, saw the regression only: the page
    draws the improvement's line too, as its changes table lists both."""
    nights = runpy.run_path(str(REPO / "scripts" / "bench_regressions.py"))["nights"]
    h = nights(np.random.default_rng(2), 300, 28, 0.02, "processes", step=0.05)
    h = h[h["variant"] == "s194"]
    changes = detect(h)
    assert sorted((c.first_date, c.kind) for c in changes) == [
        ("2026-01-04", IMPROVEMENT), ("2026-01-08", REGRESSION)]
    series = night_series(h)
    page = series_html(tuple(series.iloc[0][list(SERIES)]), series, changes)
    assert drawn_change_lines(page) == ["2026-01-04", "2026-01-08"]


def test_since_keeps_the_baseline_but_lists_only_later_changes(step_store):
    h = read_store(step_store)
    (c,) = of(detect(h), "eager")
    assert of(detect(h, since=c.first_date), "eager") == [c]
    assert detect(h, since=night_of(12)) == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_noise_alone_is_not_a_regression(tmp_path, seed):
    rng = np.random.default_rng(seed)
    store = write_store(tmp_path, {"eager": noisy(rng), "xla": noisy(rng)})
    assert [c for c in detect(read_store(store)) if c.kind != SUSPICIOUS] == []


def test_a_single_3x_night_is_suspicious_not_a_regression(tmp_path):
    rng = np.random.default_rng(4)
    eager = noisy(rng)
    eager[4] *= 3.0                            # night 5
    eager[-1] *= 3.0                           # and the latest night
    store = write_store(tmp_path, {"eager": eager})
    changes = detect(read_store(store))
    assert [c.kind for c in changes] == [SUSPICIOUS, SUSPICIOUS]
    latest, middle = changes                   # open ones first
    assert (latest.first_date, latest.open, latest.nights_held) == (night_of(14), True, 1)
    assert (middle.first_date, middle.open) == (night_of(5), False)
    assert middle.change_pct == pytest.approx(200, abs=15)
    assert (middle.git_before, middle.git_after) == (sha_of(4), sha_of(5))
    assert open_regressions(changes) == []


def test_a_flagged_night_decides_nothing_and_is_listed(tmp_path):
    """The last two nights 1.5x slower, but their samples spread 4x wider (high_cv): not a
    regression, not suspicious; the night series says why, and the latest one is listed."""
    rng = np.random.default_rng(5)
    eager = noisy(rng)
    eager[-2:] = [1.5 * x for x in eager[-2:]]
    store = write_store(tmp_path, {"eager": eager},
                        {("eager", n): {"sample_spread": 4.0} for n in (13, 14)})
    h = read_store(store)
    nights = night_series(h)
    assert nights["excluded"].tolist()[-2:] == ["flagged high_cv"] * 2
    assert not nights["usable"].tolist()[-1] and nights["usable"].tolist()[:-2] == [True] * 12
    assert detect(h) == []
    latest = not_judged(nights)
    assert latest[["date", "excluded"]].values.tolist() == [[night_of(14), "flagged high_cv"]]


def test_a_failed_night_at_the_step_widens_the_commit_range_and_is_counted(tmp_path):
    rng = np.random.default_rng(8)
    eager = noisy(rng, step=0.10)
    store = write_store(tmp_path, {"eager": eager},
                        {("eager", 8): {"failed": "worker killed by signal SIGKILL"}})
    nights = night_series(read_store(store))
    assert nights.loc[7, ["status", "usable", "excluded"]].tolist() == [
        "failed", False, "failed: worker killed by signal SIGKILL"]
    (c,) = detect(read_store(store))
    assert (c.kind, c.first_date, c.last_date_before) == (REGRESSION, night_of(9), night_of(7))
    assert (c.git_before, c.git_after, c.nights_excluded) == (sha_of(7), sha_of(9), 1)


def test_a_night_run_twice_counts_its_latest_ok_run(tmp_path):
    rng = np.random.default_rng(6)
    store = write_store(tmp_path, {"eager": noisy(rng)})
    retry = tmp_path / "retry" / RUNS["eager"]
    retry.mkdir(parents=True)
    (retry / "record.json").write_text(json.dumps(night_record(RUNS["eager"], 1.5, 99)))
    failed = tmp_path / "failed" / RUNS["eager"]
    failed.mkdir(parents=True)
    r = night_record(RUNS["eager"], 1.0, 98)
    r.update(status="failed", reason="worker killed by signal SIGKILL", timing=None)
    (failed / "record.json").write_text(json.dumps(r))
    append([tmp_path / "retry"], store, plot=False, night=night_of(14))
    append([tmp_path / "failed"], store, plot=False, night=night_of(14))   # written last
    last = night_series(read_store(store)).iloc[-1]
    assert last["runs"] == 3 and last["status"] == "ok" and last["git_sha"] == sha_of(99)
    assert last["median_ms"] == pytest.approx(1.5 * json.loads(
        (REFERENCE / RUNS["eager"] / "record.json").read_text())["timing"]["median_ms"])


def test_a_nights_own_noise_is_its_process_spread_through_the_median_of_n():
    from harness.report.regressions import median_noise
    assert median_noise(0.03, 3) == pytest.approx(0.03 * 0.6698, rel=1e-3)   # Var = 0.4487
    assert median_noise(0.03, 2) == pytest.approx(0.03 / np.sqrt(2))          # the mean of 2
    assert np.isnan(median_noise(0.03, 1)) and np.isnan(median_noise(float("nan"), 3))
    draws = np.median(np.random.default_rng(0).standard_normal((200_000, 5)), axis=1)
    assert median_noise(1.0, 5) == pytest.approx(draws.std(), rel=0.01)


def test_config_refuses_an_unknown_method():
    with pytest.raises(ValueError, match="method 'hunter'"):
        RegressionConfig(method="hunter")


# ------------------------------------------------------------------------------------ CLI


@pytest.mark.slow
def test_cli_exits_1_while_a_regression_is_open_and_prints_json(step_store):
    proc = report_cli("regressions", step_store, "--json")
    assert proc.returncode == 1, proc.stderr
    (item,) = [c for c in json.loads(proc.stdout) if c["kind"] != SUSPICIOUS]
    assert {k: item[k] for k in ("variant", "backend", "kind")} == {
        "variant": "fwd,tensorwise,cpu_small", "backend": "eager", "kind": REGRESSION}
    assert item["first_date"] in {night_of(7), night_of(8), night_of(9)} and item["open"]
    assert item["gpu_change_pct"] is None
    text = report_cli("regressions", step_store)
    assert text.returncode == 1
    assert "**1 open regression(s)**: fp8_linear [fwd,tensorwise,cpu_small] eager @ cpu +" in text.stdout
    row = next(l for l in text.stdout.splitlines() if l.startswith("| fp8_linear [fwd,tensorwise,cpu_small] eager @ cpu |"))
    first = int(item["first_date"][-2:])
    assert f"| {sha_of(first - 1)[:8]}..{sha_of(first)[:8]} |" in row and "| yes |" in row
    later = report_cli("regressions", step_store, "--json", "--since", night_of(12))
    assert later.returncode == 0 and json.loads(later.stdout) == []
    assert report_cli("regressions", step_store, "--min-effect", "0.5").returncode == 0


@pytest.mark.slow
def test_cli_bad_input_is_one_line_and_exit_2(step_store, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = tmp_path / "corrupt"
    (corrupt / "date=2026-03-01").mkdir(parents=True)
    (corrupt / "date=2026-03-01" / "x.parquet").write_bytes(b"PAR1 not parquet")
    no_rows = tmp_path / "no_rows"          # parts that hold no rows (once a traceback)
    (no_rows / "date=2026-03-01").mkdir(parents=True)
    pd.read_parquet(next(Path(step_store).glob("date=*/*.parquet"))).iloc[:0].to_parquet(
        no_rows / "date=2026-03-01" / "x.parquet")
    cases = [((tmp_path / "nowhere",), f"{tmp_path / 'nowhere'}: no such directory"),
             ((empty,), f"{empty}: empty history store"),
             ((no_rows,), f"{no_rows}: empty history store (its 1 part(s) hold no rows)"),
             ((no_rows, "--json"), f"{no_rows}: empty history store (its 1 part(s) hold no rows)"),
             ((corrupt,), f"{corrupt / 'date=2026-03-01' / 'x.parquet'}: corrupt history part"),
             ((step_store, "--since", "2026-13-01"), "--since '2026-13-01': expected a date YYYY-MM-DD"),
             ((step_store, "--min-effect", "-1"), "python -m harness.report regressions: "
              "argument --min-effect: expected a finite number >= 0, got '-1'"),
             ((step_store, "--alpha", "1"), "python -m harness.report regressions: "
              "argument --alpha: expected a level below 1, e.g. 0.03, got 1")]
    for args, message in cases:
        proc = report_cli("regressions", *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stderr.startswith(f"error: {message}"), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
