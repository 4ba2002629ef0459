"""compare BASE NEW: a 1.5x slowdown is a regression (exit 1) with the kernels that grew; a 1%
change inside the runs' own spread is not."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import copy_sweep, report_cli
from harness.report.compare import (IMPROVEMENT, NEWLY_FAILING, NOISE, REGRESSION, CompareConfig,
                                    verdict)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cpu_sweep")]


def set_samples(record_path: Path, samples_ms: list[float]) -> None:
    """Rewrite a record's timing from the samples of its one process (the rest of what the
    process recorded kept), as harness.worker.timing and harness.orchestrator.combine compute
    it."""
    from harness.orchestrator.combine import timing
    r = json.loads(record_path.read_text())
    s = np.asarray(samples_ms, dtype=float)
    process = dict(((r.get("timing") or {}).get("processes") or [{"iters_per_sample": 1}])[0])
    process.update(median_ms=float(np.median(s)), cv=float(s.std(ddof=1) / s.mean()),
                   p10_ms=float(np.percentile(s, 10)), p90_ms=float(np.percentile(s, 90)),
                   min_ms=float(s.min()), samples_ms=s.tolist())
    r["timing"] = timing([process])
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


def test_a_regression_on_a_busy_host_is_marked_unreliable(pair, tmp_path):
    """NEW 1.5x slower while other work took half of its cores: still a regression for the
    gate, but the verdict and the headline say it is unreliable, naming the side."""
    base, new = pair
    for sweep, share in ((base, 0.0), (new, 0.5)):     # whatever the machine that made the sweep
        rec = record_of(sweep, "fp8_linear_eager_*")
        r = json.loads(rec.read_text())
        (process,) = r["timing"]["processes"]
        process["host_load"].update(other_share=share, other_cpu_s=share)
        r["flags"] = []
        rec.unlink()
        rec.write_text(json.dumps(r))
    set_samples(rec, [1.5 * x for x in r["timing"]["samples_ms"]])
    proc = report_cli("compare", base, new, "--out", tmp_path / "compare.md")
    assert proc.returncode == 1, proc.stderr
    assert "**REGRESSED** (1 of the regressions with a side flagged high_cv/process_spread/host_busy: " \
           "unreliable)" in proc.stdout
    line = next(l for l in proc.stdout.splitlines() if "| fp8_linear |" in l and "| eager |" in l)
    assert f"**{REGRESSION}** (unreliable: NEW host_busy)" in line
    row = pd.read_csv(tmp_path / "compare.csv").query("workload == 'fp8_linear' and backend == 'eager'").iloc[0]
    assert "host_busy" in row["new_flags"]


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


def spread(median: float, cv: float, n: int = 15, seed: int = 0) -> list[float]:
    """n samples around `median`, normal with coefficient of variation `cv`."""
    return list(median * (1 + cv * np.random.default_rng(seed).standard_normal(n)))


@pytest.mark.parametrize("ratio,cv,expected", [
    (1.5, 0.01, REGRESSION), (1.04, 0.001, NOISE), (1.06, 0.001, REGRESSION),
    (1.5, 0.6, NOISE),           # samples that overlap this much prove nothing
    (0.5, 0.01, IMPROVEMENT), (0.97, 0.01, NOISE)])
def test_verdict_is_a_rank_test_plus_the_minimum_effect(ratio, cv, expected):
    base = {"status": "ok", "median_ms": 1.0}
    new = {"status": "ok", "median_ms": ratio}
    v = verdict(base, new, CompareConfig(threshold=0.05, alpha=0.05),
                [spread(1.0, cv, seed=1)], [spread(ratio, cv, seed=2)])
    assert v["verdict"] == expected and v["test"] == "samples 15 v 15"
    assert (v["p_value"] < 0.05) == (expected != NOISE or abs(ratio - 1) < 0.05)


def test_one_process_a_side_must_also_clear_its_robust_spread():
    """Two processes of one commit on the H200 node (conv fwd on Inductor, one GPU alone, then
    with its neighbour busy): the samples differ (p = 2e-6), but NEW's own samples spread 25%
    (MAD): within noise. The 5x case's outlier does not widen the band (MAD 1.5%)."""
    base = [0.0632, 0.0632, 0.0633, 0.0633, 0.0633, 0.0635, 0.0636, 0.0637, 0.0639, 0.0639,
            0.0639, 0.064, 0.0641, 0.0644, 0.0648]
    new = [0.0645, 0.0664, 0.0692, 0.0697, 0.0771, 0.0786, 0.0795, 0.0837, 0.0848, 0.0865,
           0.0979, 0.1076, 0.1094, 0.1107, 0.1268]
    v = verdict({"status": "ok", "median_ms": 0.0637}, {"status": "ok", "median_ms": 0.0837},
                CompareConfig(), [base], [new])
    assert v["verdict"] == NOISE and v["p_value"] < 1e-5 and v["band_pct"] > 70
    v = verdict({"status": "ok", "median_ms": 1.01}, {"status": "ok", "median_ms": 5.05},
                CompareConfig(), [four_tight_one_outlier(1.0)], [four_tight_one_outlier(5.0)])
    assert v["band_pct"] == pytest.approx(300 * np.hypot(0.0147, 0.0147), rel=0.02)


def four_tight_one_outlier(median: float) -> list[float]:
    """What bench=quick gives on a loaded 2-core machine (issue 29): CV about 100%."""
    return [median, 1.01 * median, 0.99 * median, 1.02 * median, 5.3 * median]


def test_an_outlier_sample_no_longer_hides_a_5x_slowdown():
    base, new = four_tight_one_outlier(1.0), four_tight_one_outlier(5.0)
    assert statistics.stdev(base) / statistics.fmean(base) > 0.95
    v = verdict({"status": "ok", "median_ms": 1.01}, {"status": "ok", "median_ms": 5.05},
                CompareConfig(), [base], [new])
    # BASE's outlier (5.3) outranks 4 of NEW's 5 samples: the one-sided p is 12/252
    assert v["verdict"] == REGRESSION and v["p_value"] == pytest.approx(12 / 252)
    assert v["change_pct"] == pytest.approx(400)


def test_the_5x_slowdown_with_outliers_is_a_regression_end_to_end(pair, tmp_path):
    base, new = pair
    for sweep, median in ((base, 1.0), (new, 5.0)):
        set_samples(record_of(sweep, "fp8_linear_eager_*"), four_tight_one_outlier(median))
    proc = report_cli("compare", base, new, "--out", tmp_path / "c.md")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    row = pd.read_csv(tmp_path / "c.csv").query("workload == 'fp8_linear' and backend == 'eager'").iloc[0]
    assert row["verdict"] == REGRESSION and row["p_value"] == pytest.approx(12 / 252)
    assert row["test"] == "samples 5 v 5"
    # high_cv on both sides (host_busy too where the machine that made the sweep was busy)
    assert row["base_noise_flags"].startswith("high_cv") and row["new_noise_flags"].startswith("high_cv")
    line = next(l for l in proc.stdout.splitlines() if "| fp8_linear |" in l and "| eager |" in l)
    assert "**regression** (unreliable: BASE high_cv" in line and "; NEW high_cv" in line
    assert "| 0.048 |" in line


@pytest.mark.parametrize("new_medians,expected,test", [
    ([1.30, 1.31, 1.32], REGRESSION, "samples 45 v 45, 3 v 3 processes apart"),
    ([1.30, 1.31, 0.99], NOISE, "samples 45 v 45, 3 v 3 processes apart"),   # one process as fast as before
    ([1.02, 1.01, 1.03], NOISE, "samples 45 v 45, 3 v 3 processes apart"),   # below the minimum effect
])
def test_three_processes_a_side_rank_their_samples_and_must_all_move(new_medians, expected, test):
    """3 v 3 process medians can never give p < 0.05 (1/20 at best): the pooled samples are
    ranked, and every NEW process must be beyond every BASE process."""
    base = [spread(m, 0.005, seed=i) for i, m in enumerate([1.0, 1.005, 0.995])]
    new = [spread(m, 0.005, seed=10 + i) for i, m in enumerate(new_medians)]
    v = verdict({"status": "ok", "median_ms": 1.0},
                {"status": "ok", "median_ms": float(np.median(new_medians))}, CompareConfig(),
                base, new)
    assert v["verdict"] == expected and v["test"] == test
    assert v["p_value"] < 1e-3       # the samples alone would have said yes every time


def test_five_processes_a_side_rank_the_process_medians():
    base = [spread(m, 0.005, seed=i) for i, m in enumerate([1.0, 1.01, 0.99, 1.02, 0.98])]
    new = [spread(m, 0.005, seed=9 + i) for i, m in enumerate([1.2, 1.21, 1.19, 1.22, 1.18])]
    v = verdict({"status": "ok", "median_ms": 1.0}, {"status": "ok", "median_ms": 1.2},
                CompareConfig(), base, new)
    assert v["verdict"] == REGRESSION and v["test"] == "process medians 5 v 5"
    assert v["p_value"] == pytest.approx(1 / 252)     # all 5 NEW medians above all 5 BASE


# ------------------------------------------- never vacuous; noise and cause (issues 18, 20)

from harness.report.compare import KERNELS, HOST, BOTH, UNKNOWN, split_change  # noqa: E402
from schema2 import DECODE, FP8_FWD, copy_reference, reference, schema2, write_run  # noqa: E402

FP8_NAME = "fp8_linear [fwd,tensorwise,seed]"


def slower(record: dict, change) -> dict:
    """The record with its median and every sample (pooled and per process) changed alike."""
    t = record["timing"]
    t["median_ms"] = change(t["median_ms"])
    t["samples_ms"] = [change(x) for x in t["samples_ms"]]
    for p in t.get("processes") or []:
        p["median_ms"] = change(p["median_ms"])
        p["samples_ms"] = [change(x) for x in p["samples_ms"]]
    return record


def test_nothing_matched_exits_3_and_says_so(tmp_path):
    base = copy_reference(tmp_path / "base", FP8_FWD["eager"])
    new = copy_reference(tmp_path / "new", DECODE["inductor"])
    proc = report_cli("compare", base, new)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "**INCOMPLETE**: no runs matched: nothing was compared." in proc.stdout
    assert "No regression" not in proc.stdout
    assert proc.stderr.strip() == ("compare: incomplete, no runs matched: nothing was compared "
                                   "(exit 3 unless something regressed; --allow-missing accepts "
                                   "this)")
    accepted = report_cli("compare", base, new, "--allow-missing")
    assert accepted.returncode == 0 and accepted.stderr == ""
    assert "no runs matched: nothing was compared (accepted with --allow-missing)." in accepted.stdout


def test_an_ok_run_of_base_missing_from_new_exits_3_and_is_listed(tmp_path):
    base = copy_reference(tmp_path / "base", *FP8_FWD.values())
    new = copy_reference(tmp_path / "new", FP8_FWD["eager"], FP8_FWD["xla"])
    proc = report_cli("compare", base, new)
    assert proc.returncode == 3
    assert f"**INCOMPLETE**: 1 ok run(s) of BASE missing from NEW: {FP8_NAME} inductor." in proc.stdout
    assert f"- {FP8_NAME} inductor (`{base / FP8_FWD['inductor']}`)" in proc.stdout
    assert f"missing from NEW: {FP8_NAME} inductor (exit 3" in proc.stderr
    accepted = report_cli("compare", base, new, "--allow-missing")
    assert accepted.returncode == 0
    assert "No regression among the matched runs; 1 ok run(s) of BASE missing" in accepted.stdout
    # runs only in NEW are no gap in the results
    assert report_cli("compare", new, base).returncode == 0


def test_a_regression_beside_a_missing_run_exits_1_and_says_both(tmp_path):
    base = copy_reference(tmp_path / "base", *FP8_FWD.values())
    new = copy_reference(tmp_path / "new", FP8_FWD["eager"])
    r = slower(reference(FP8_FWD["xla"]), lambda ms: 1.5 * ms)
    write_run(new, FP8_FWD["xla"], r, tables_from=FP8_FWD["xla"])
    proc = report_cli("compare", base, new, "--allow-missing")
    assert proc.returncode == 1
    proc = report_cli("compare", base, new)
    assert proc.returncode == 1
    assert "**REGRESSED**; also **INCOMPLETE**: 1 ok run(s) of BASE missing from NEW" in proc.stdout


def test_h200_process_spread_hides_no_change_and_flags_none(tmp_path):
    """Inductor's fp8 forward on the H200: medians of fresh processes 0.177-0.302 ms. A second
    night whose processes landed in another order is within the between-process noise; the
    within-process CV (0.15%) alone would have called it a 14% regression."""
    h200 = [0.302, 0.238, 0.190, 0.180, 0.177]
    base, new = tmp_path / "base", tmp_path / "new"
    write_run(base, "r", schema2(reference(FP8_FWD["inductor"]), process_medians_ms=h200),
              tables_from=FP8_FWD["inductor"])
    write_run(new, "r", schema2(reference(FP8_FWD["inductor"]),
                                process_medians_ms=[0.302, 0.238, 0.216, 0.190, 0.180]),
              tables_from=FP8_FWD["inductor"])
    proc = report_cli("compare", base, new, "--out", tmp_path / "c.md")
    assert proc.returncode == 0, proc.stdout
    row = pd.read_csv(tmp_path / "c.csv").iloc[0]
    assert row["verdict"] == NOISE and row["test"] == "process medians 5 v 5"
    assert row["change_pct"] == pytest.approx(100 * (0.216 / 0.190 - 1))
    # one process on each side (the schema-1 record against a schema-2 one): within-process CV
    single = tmp_path / "single"
    write_run(single, "r", schema2(reference(FP8_FWD["inductor"]), process_medians_ms=[0.216]),
              tables_from=FP8_FWD["inductor"])
    one = copy_reference(tmp_path / "one", FP8_FWD["inductor"])
    assert report_cli("compare", one, single).returncode == 1


@pytest.mark.parametrize("gpu,host,cause", [
    ((1.0, 1.3), (0.2, 0.2), KERNELS), ((1.0, 1.0), (0.2, 0.5), HOST),
    ((1.0, 1.15), (0.2, 0.35), BOTH), ((1.0, float("nan")), (0.2, 0.5), UNKNOWN)])
def test_cause_says_whether_the_kernels_or_the_host_changed(gpu, host, cause):
    base = {"status": "ok", "median_ms": gpu[0] + host[0], "cv": 0.001,
            "gpu_busy_ms_per_iter": gpu[0], "host_gap_ms": host[0]}
    new = {"status": "ok", "median_ms": 1.5, "cv": 0.001,
           "gpu_busy_ms_per_iter": gpu[1], "host_gap_ms": host[1]}
    v = verdict(base, new, CompareConfig(), [spread(1.2, 0.001)], [spread(1.5, 0.001)])
    assert v["verdict"] == REGRESSION and v["cause"] == cause
    if cause != UNKNOWN:
        # the two parts are in % of BASE's wall and add up to the wall change
        assert v["gpu_change_pct"] == pytest.approx(100 * (gpu[1] - gpu[0]) / 1.2)
        assert v["gpu_change_pct"] + v["host_change_pct"] == pytest.approx(v["change_pct"])
    assert split_change(base, dict(new), CompareConfig(cause_share=0.0))["cause"] in (BOTH, UNKNOWN)


def test_compare_of_a_host_regression_names_the_host(tmp_path):
    """qwen decode on Inductor: same kernels, the host gap grown by 1 ms per step."""
    one = reference(DECODE["inductor"])
    base, new = tmp_path / "base", tmp_path / "new"
    write_run(base, "r", schema2(one), tables_from=DECODE["inductor"])
    later = slower(schema2(one), lambda ms: ms + 1.0)
    later["gpu"]["host_gap_ms"] += 1.0
    write_run(new, "r", later, tables_from=DECODE["inductor"])
    proc = report_cli("compare", base, new, "--out", tmp_path / "c.md")
    assert proc.returncode == 1
    row = pd.read_csv(tmp_path / "c.csv").iloc[0]
    assert row["cause"] == HOST and row["gpu_change_pct"] == 0.0
    assert row["host_change_pct"] == pytest.approx(100 / one["timing"]["median_ms"])
    assert "| host |" in proc.stdout and "GPU Δ %" in proc.stdout


def test_output_cut_by_a_pipe_keeps_the_exit_code_and_prints_no_traceback(tmp_path):
    import subprocess
    import sys
    base = copy_reference(tmp_path / "base", *FP8_FWD.values())
    new = copy_reference(tmp_path / "new", FP8_FWD["eager"])
    for command in (["compare", base, new], ["explain", base]):
        proc = subprocess.Popen([sys.executable, "-m", "harness.report", *map(str, command)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        proc.stdout.close()                 # the reader is gone before a line is written
        stderr = proc.stderr.read()
        assert proc.wait(timeout=120) == (3 if command[0] == "compare" else 0), stderr
        assert "Traceback" not in stderr and "BrokenPipeError" not in stderr
