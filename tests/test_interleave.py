"""Interleaved pairs: the sweeper's grouping, the pair's ratio from adjacent couples, and the fair
experiment's processes alternating between the sides on the CPU."""
from __future__ import annotations

import json
import math

import pytest
from scipy import stats

from conftest import composed, records, run_harness
from harness.orchestrator.interleave import KEY, group_jobs, member_overrides
from harness.report.load import load, summary_row
from harness.report.pair_ratio import PAIRED, UNPAIRED, ratio_interval
from harness.report.pairs import pair_table

FAIR = ["+experiment=fair", "bench=quick", "bench.processes=3"]


def test_jobs_that_differ_only_in_backend_become_one_job():
    jobs = [[f"workload={w}", f"backend={b}", *FAIR] for w in ("fp8_linear", "conv")
            for b in ("inductor", "xla_no_cmdbuf")]
    grouped = group_jobs(jobs, lambda job: True)
    assert grouped == [[*jobs[0], f"{KEY}=[inductor,xla_no_cmdbuf]"], [*jobs[2], f"{KEY}=[inductor,xla_no_cmdbuf]"]]
    assert group_jobs(jobs, lambda job: False) == jobs           # interleave off: the basic sweeper's jobs
    alone = [["workload=conv", "backend=eager"], ["workload=fp8_linear", "backend=eager"]]
    assert group_jobs(alone, lambda job: True) == alone          # nothing to alternate with
    assert member_overrides(grouped[0], "xla_no_cmdbuf") == ["workload=fp8_linear", *FAIR, "backend=xla_no_cmdbuf"]
    asked = []
    assert group_jobs(jobs, lambda job: asked.append(job) or True) == grouped
    assert asked == [jobs[0], jobs[2]]        # one composed config per group, not per job


def test_the_sweeper_is_hydras_basic_one_with_its_own_target():
    sweeper = composed(hydra=True)["hydra"]["sweeper"]
    assert sweeper == {"_target_": "hydra_plugins.harness_sweeper.interleave_sweeper.InterleaveSweeper",
                       "max_batch_size": None, "params": None}


def side(backend: str, family: str, medians: list[float], group: str = "") -> dict:
    """A summary row of one side of the control pair, from a record."""
    return summary_row({
        "status": "ok", "workload": "fp8_linear", "backend": family, "backend_label": backend, "run_id": backend,
        "backend_traits": {"family": family, "graphs": "none", "pair": "control"}, "params": {"mode": "fwd"},
        "timing": {"median_ms": sorted(medians)[len(medians) // 2], "cv": 0.01,
                   "processes": [{"median_ms": m} for m in medians],
                   **({"interleave": {"group": group}} if group else {})}})


def test_interleaved_couples_cancel_a_drift_that_sequential_sides_cannot():
    # The machine slows 1x, 1.5x, 2x over the rounds; Inductor takes 1.1x XLA's time throughout.
    drift = [1.0, 1.5, 2.0]
    inductor, xla = [1.1 * d for d in drift], [1.0 * d for d in drift]
    paired = ratio_interval(side("inductor", "inductor", inductor, "g"), side("xla", "xla", xla, "g"))
    assert paired["ratio_method"] == PAIRED and paired["ratio_n"] == 3
    assert paired["ratio"] == pytest.approx(1.1) and paired["ratio_high"] - paired["ratio_low"] < 1e-9
    unpaired = ratio_interval(side("inductor", "inductor", inductor), side("xla", "xla", xla))
    assert unpaired["ratio_method"] == UNPAIRED
    assert unpaired["ratio_low"] < 1.0 < unpaired["ratio_high"]      # the drift swamps the 10%


def test_the_paired_interval_is_a_t_interval_on_the_log_ratios():
    a, b = [1.10, 1.32, 1.05, 1.21], [1.00, 1.20, 1.00, 1.05]
    logs = [math.log(x / y) for x, y in zip(a, b)]
    mean, sem = sum(logs) / 4, stats.sem(logs)
    half = stats.t.ppf(0.975, 3) * sem
    got = ratio_interval(side("i", "inductor", a, "g"), side("x", "xla", b, "g"))
    assert (got["ratio"], got["ratio_low"], got["ratio_high"]) == pytest.approx(
        (math.exp(mean), math.exp(mean - half), math.exp(mean + half)))


def test_the_pairs_table_carries_the_interval():
    import pandas as pd
    summary = pd.DataFrame([side("inductor", "inductor", [1.1, 1.65, 2.2], "g"),
                            side("xla:no-cmdbuf", "xla", [1.0, 1.5, 2.0], "g")])
    row = pair_table(summary).iloc[0]
    assert (row["pair"], row["ratio_method"], row["ratio_n"]) == ("control", PAIRED, 3)
    assert row["ratio"] == pytest.approx(1.1) and row["clocks"] == ""


@pytest.mark.slow
def test_fair_processes_alternate_between_the_sides_and_resume(sweep_dir):
    overrides = ["-m", "+experiment=fair", "workload=faulty", "backend=inductor,xla_no_cmdbuf", "bench=quick",
                 "bench.processes=2", "bench.profile=false", "bench.lock_clocks=true", f"hydra.sweep.dir={sweep_dir}"]
    first = run_harness(*overrides)
    assert first.returncode == 0, first.stderr
    assert "2 runs as 1 job(s)" in first.stdout
    recs = records(sweep_dir)
    assert sorted(r["backend_label"] for r in recs) == ["inductor", "xla:no-cmdbuf"]
    assert all(r["status"] == "ok" for r in recs), [r["reason"] for r in recs]
    starts = sorted((p["started_at"], r["backend_label"]) for r in recs for p in r["timing"]["processes"])
    assert [label for _, label in starts] == ["inductor", "xla:no-cmdbuf", "inductor", "xla:no-cmdbuf"]
    assert len({r["timing"]["interleave"]["group"] for r in recs}) == 1
    # no GPU here: the lock was refused, the runs went on unlocked and say so
    assert all(r["environment"]["sm_clock_lock"] == {"requested": True, "locked": False, "gpu": None,
                                                     "how": "nvml", "reason": "no GPU"} for r in recs)
    # each run in the dir Hydra names it by alone: <workload>_<backend>_<hash of its overrides>
    assert sorted(p.parent.name.rsplit("_", 1)[0] for p in sweep_dir.rglob("record.json")) == [
        "faulty_inductor", "faulty_xla"]
    row = pair_table(load([sweep_dir]).summary).iloc[0]
    assert (row["pair"], row["ratio_method"], row["ratio_n"]) == ("control", PAIRED, 2)

    mtimes = {p: p.stat().st_mtime_ns for p in sweep_dir.rglob("record.json")}
    again = run_harness(*overrides)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already ok, skipped (resume)") == 2
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert json.loads(next(iter(mtimes)).read_text())["status"] == "ok"


@pytest.mark.slow
def test_a_group_is_one_job_under_submitits_local_executor(sweep_dir):
    """The Slurm launcher's code path (submitit), on this machine: the group job composes its
    members' configs in the job's own process and writes each member's record."""
    proc = run_harness("-m", "hydra/launcher=local", "workload=faulty", "backend=eager,xla_no_cmdbuf", "bench=quick",
                       "bench.interleave=true", "bench.profile=false", f"hydra.sweep.dir={sweep_dir}")
    assert proc.returncode == 0, proc.stderr
    recs = records(sweep_dir)
    assert sorted(r["backend_label"] for r in recs) == ["eager", "xla:no-cmdbuf"]
    assert all(r["status"] == "ok" for r in recs), [r["reason"] for r in recs]
    assert [r["timing"]["interleave"]["members"] for r in recs] == [["eager", "xla:no-cmdbuf"]] * 2
    assert len(list(sweep_dir.glob(".submitit/*/*_log.out"))) == 1          # one job for the two runs
