"""Timing over fresh processes: N processes give N medians and their spread; the first
compiles, the others hit its cache; GPU time and the host gap stand beside the wall median."""
from __future__ import annotations

import statistics

import pytest

from conftest import records, run_harness
from harness.orchestrator import combine
from harness.describe import assess, summary_line
from harness.worker.timing import settle


def process(median: float, cv: float = 0.01, n: int = 5) -> dict:
    samples = [median * (1 + cv * d) for d in (-1.0, -0.5, 0.0, 0.5, 1.0)][:n]
    return {"median_ms": median, "cv": cv, "p10_ms": min(samples), "p90_ms": max(samples), "min_ms": min(samples),
            "iters_per_sample": 10, "samples_ms": samples}


def test_the_median_of_process_medians_and_their_spread():
    t = combine.timing([process(0.30), process(0.19), process(0.18)])
    assert t["median_ms"] == 0.19
    assert [p["median_ms"] for p in t["processes"]] == [0.30, 0.19, 0.18]
    assert t["between"]["n"] == 3
    assert (t["between"]["min_ms"], t["between"]["max_ms"]) == (0.18, 0.30)
    assert t["between"]["cv"] == pytest.approx(statistics.stdev([0.30, 0.19, 0.18]) / statistics.fmean([0.30, 0.19, 0.18]))
    assert t["between"]["spread_pct"] == pytest.approx(100 * 0.12 / 0.19)
    assert t["cv"] == 0.01 and len(t["samples_ms"]) == 15
    assert combine.timing([process(0.2)])["between"] is None


def test_gpu_time_and_host_gap_name_a_host_bound_run():
    gpu = combine.gpu({"gpu_busy_us_per_iter": 170.0, "kernel_us_per_iter": 172.0}, 0.30, "kineto")
    assert gpu["busy_ms_per_iter"] == pytest.approx(0.17) and gpu["host_gap_ms"] == pytest.approx(0.13)
    assert gpu["idle_share"] == pytest.approx(0.13 / 0.30) and gpu["host_bound"]
    assert not combine.gpu({"gpu_busy_us_per_iter": 290.0}, 0.30, "")["host_bound"]     # 3% idle
    assert combine.gpu({}, 0.30, "") is None                                            # not profiled
    record = {"status": "ok", "workload": "fp8_linear", "backend": "inductor", "params": {"mode": "fwd"},
              "timing": combine.timing([process(0.30), process(0.31), process(0.29)]), "gpu": gpu}
    flags = assess(record)
    assert [f["code"] for f in flags] == ["host_bound"]
    assert "idle 43%" in flags[0]["detail"]
    record["flags"] = flags
    line = summary_line(record)
    assert "wall 0.3 ms" in line and "3 procs 0.29-0.31" in line and "gpu 0.17 ms, host gap 0.13 ms" in line
    assert line.endswith("!! host_bound")


def test_samples_settle_before_they_count():
    ramp = iter([0.30, 0.28, 0.25, 0.21, 0.19, 0.185, 0.18, 0.18, 0.181, 0.18, 0.179, 0.18] + [0.18] * 30)
    taken, settled = settle(lambda: next(ramp))
    assert settled and taken[:4] == [0.30, 0.28, 0.25, 0.21]
    noisy = iter([0.1, 0.3] * 30)
    taken, settled = settle(lambda: next(noisy))
    assert not settled and len(taken) == 30


@pytest.mark.slow
def test_three_processes_three_medians_and_the_others_compile_warm(tmp_path):
    # the small faulty workload (fault none): the mechanism is the same as fp8_linear's, and
    # its compile and samples cost seconds less on a CPU (fp8 there is an emulation)
    proc = run_harness("workload=faulty", "backend=inductor", "bench=quick", "bench.processes=3",
                       f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (r,) = records(tmp_path)
    assert r["status"] == "ok", r["reason"]
    medians = [p["median_ms"] for p in r["timing"]["processes"]]
    assert len(medians) == 3 and r["timing"]["median_ms"] == statistics.median(medians)
    assert r["timing"]["between"]["n"] == 3
    assert r["compile"]["cache_counters"]["fxgraph_cache_miss"] >= 1     # the first process compiled
    later = r["compile"]["later_processes"]
    assert len(later) == 2
    for p in later:                                                     # the others loaded its graphs
        assert p["cache_counters"].get("fxgraph_cache_hit", 0) >= 1
        assert p["cache_counters"].get("fxgraph_cache_miss", 0) == 0
    assert "3 procs" in proc.stdout
