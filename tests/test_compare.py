"""compare BASE NEW: a 1.5x slowdown is a regression (exit 1) with the kernels that grew; a 1%
change inside the runs' own spread is not."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from test_report import copy_sweep, make_cpu_sweep, report_cli
from harness.report.compare import (IMPROVEMENT, NEWLY_FAILING, NOISE, REGRESSION, CompareConfig,
                                    verdict)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cpu_sweep(tmp_path_factory) -> Path:
    return make_cpu_sweep(tmp_path_factory)


def set_samples(record_path: Path, samples_ms: list[float]) -> None:
    """Rewrite a record's timing from its samples, as harness.timing computes it."""
    r = json.loads(record_path.read_text())
    s = np.asarray(samples_ms, dtype=float)
    mean, std = float(s.mean()), float(s.std(ddof=1))
    r["timing"].update(samples_ms=s.tolist(), median_ms=float(np.median(s)),
                       p10_ms=float(np.percentile(s, 10)), p90_ms=float(np.percentile(s, 90)),
                       mean_ms=mean, std_ms=std, cv=std / mean, min_ms=float(s.min()))
    record_path.unlink()
    record_path.write_text(json.dumps(r))


def tight(median: float, cv: float) -> list[float]:
    """Five samples around `median` with coefficient of variation about `cv`."""
    return list(median * (1 + cv * np.array([-1.26, -0.63, 0.0, 0.63, 1.26])))


@pytest.fixture
def pair(cpu_sweep, tmp_path):
    """BASE and NEW copies of the real sweep; fp8_linear eager made quiet (CV 1%) in both, so
    that a change can be told from noise on a shared CPU."""
    base = copy_sweep(cpu_sweep, tmp_path / "base")
    new = copy_sweep(cpu_sweep, tmp_path / "new")
    for sweep in (base, new):
        for rec in sweep.glob("*/record.json"):
            r = json.loads(rec.read_text())
            if r["status"] == "ok":
                set_samples(rec, tight(r["timing"]["median_ms"] or 1.0, 0.01))
    return base, new


def record_of(sweep: Path, pattern: str) -> Path:
    (path,) = sweep.glob(f"{pattern}/record.json")
    return path


def test_slowdown_by_half_is_flagged_with_the_kernels_that_grew(pair, tmp_path):
    base, new = pair
    rec = record_of(new, "fp8_linear_eager_*")
    samples = json.loads(rec.read_text())["timing"]["samples_ms"]
    set_samples(rec, [1.5 * x for x in samples])
    # the new night's kernels: the same trace, the fp8 casts 1.5x slower
    k = pd.read_parquet(rec.parent / "kernels.parquet")
    k.loc[k["category"] == "fp8_cast", "time_us_per_iter"] *= 1.5
    (rec.parent / "kernels.parquet").unlink()
    k.to_parquet(rec.parent / "kernels.parquet")

    proc = report_cli("compare", base, new, "--out", tmp_path / "compare.md")
    assert proc.returncode == 1, proc.stderr
    table = pd.read_csv(tmp_path / "compare.csv")
    row = table[(table["workload"] == "fp8_linear") & (table["backend"] == "eager")].iloc[0]
    assert row["verdict"] == REGRESSION and row["ratio"] == pytest.approx(1.5)
    assert row["matched_by"] == "run_id"
    others = table.drop(index=row.name)
    assert not others["verdict"].isin([REGRESSION, NEWLY_FAILING]).any()
    md = proc.stdout
    assert "**REGRESSED**" in md and "## Why slower: fp8_linear [fwd,tensorwise,cpu_small] eager" in md
    why = md.split("## Why slower")[1].split("## Environment")[0]
    assert "| fp8_cast |" in why and "elementwise_kernel" in why


def test_one_percent_within_noise_is_not_flagged(pair):
    base, new = pair
    rec = record_of(new, "fp8_linear_eager_*")
    samples = json.loads(rec.read_text())["timing"]["samples_ms"]
    set_samples(rec, [1.01 * x for x in samples])
    proc = report_cli("compare", base, new)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No regression." in proc.stdout
    line = next(l for l in proc.stdout.splitlines() if "| fp8_linear |" in l and "| eager |" in l)
    assert NOISE in line and "+1.0" in line


def test_a_run_that_now_fails_and_runs_on_one_side_are_listed(pair):
    base, new = pair
    rec = record_of(new, "faulty_inductor_*")
    r = json.loads(rec.read_text())
    r.update(status="failed", reason="worker killed by signal SIGSEGV", timing=None)
    rec.unlink()
    rec.write_text(json.dumps(r))
    gone = record_of(new, "fp8_linear_inductor_*")
    gone.rename(gone.with_name("record.20260101-000000.ok.json"))   # kept attempt: not a result
    proc = report_cli("compare", base, new)
    assert proc.returncode == 1
    assert f"**{NEWLY_FAILING}**" in proc.stdout and "SIGSEGV" in proc.stdout
    only = proc.stdout.split("## Only in BASE")[1]
    assert "| fp8_linear |" in only and "| inductor |" in only


def test_environment_differences_are_shown(pair):
    base, new = pair
    for rec in new.glob("*/record.json"):
        r = json.loads(rec.read_text())
        env = r.setdefault("environment", {})    # a run that raised has none
        env.update(driver="580.65", gpu_index=1)
        env.setdefault("versions", {})["torch"] = "9.9.9"
        rec.unlink()
        rec.write_text(json.dumps(r))
    proc = report_cli("compare", base, new)
    env = proc.stdout.split("## Environment differences")[1]
    assert "| driver | (none) | 580.65 |" in env and "| gpu_index | (none) | 1 |" in env
    assert "| version:torch |" in env and "9.9.9" in env


def test_runs_match_on_the_human_key_when_run_id_changed(pair):
    base, new = pair
    for rec in new.glob("*/record.json"):   # e.g. bench.repeats changed: new run_ids
        r = json.loads(rec.read_text())
        r["run_id"] = "x" + r["run_id"]
        rec.unlink()
        rec.write_text(json.dumps(r))
    proc = report_cli("compare", base, new)
    assert proc.returncode == 0, proc.stdout
    assert "0 only in BASE, 0 only in NEW" in proc.stdout


@pytest.mark.parametrize("ratio,cv,expected", [
    (1.5, 0.01, REGRESSION), (1.04, 0.001, NOISE), (1.06, 0.001, REGRESSION),
    (1.5, 0.2, NOISE),           # 3 x sqrt(2) x 20% = 85%: a 1.5x on such noise proves nothing
    (0.5, 0.01, IMPROVEMENT), (0.97, 0.01, NOISE)])
def test_verdict_band_is_max_of_threshold_and_k_cv(ratio, cv, expected):
    base = {"status": "ok", "median_ms": 1.0, "cv": cv}
    new = {"status": "ok", "median_ms": ratio, "cv": cv}
    assert verdict(base, new, CompareConfig(threshold=0.05, k=3.0))["verdict"] == expected
