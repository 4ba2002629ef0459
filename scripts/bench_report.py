"""How long `python -m harness.report` takes on a sweep of 100 runs.

    python scripts/bench_report.py [--from RECORD_OR_SWEEP] [--runs 100] [--keep DIR]

Builds a synthetic sweep: one real record.json (from --from, else a template shaped like a
CPU fp8_linear record) copied 100 times with varied workloads, variants, backends, timings
and statuses (every 10th run failed), each ok run with a kernel table (the committed H100
Inductor or eager fp8 trace, times scaled) and a memory table, every 7th ok run noisy enough to
be flagged; then times report generation (load, tables, plots, findings, report.md) in this
process, and `python -m harness.report` end to end in a fresh process (imports of pandas and
matplotlib included), and prints wall and CPU seconds (the plots are drawn in worker
processes: their CPU is the children's). The machine may be shared: CPU time is what the
report costs, wall time what a user waits.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from repo_env import repo_env

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TEMPLATE = {
    "run_id": "", "status": "ok", "reason": "", "workload": "fp8_linear", "backend": "eager",
    "config": {"workload": {"name": "fp8_linear"}, "backend": {"name": "eager", "mode": "default"},
               "bench": {"repeats": 5}, "device": "auto", "seed": 0},
    "params": {"M": 2048, "K": 4096, "N": 8192, "mode": "fwd", "recipe": "tensorwise",
               "preset": "seed", "dtype": "bfloat16"},
    "environment": {"gpu_name": "NVIDIA H100 80GB HBM3", "driver": "570.86", "sm_clock_mhz": 1980.0,
                    "gpu_index": 0, "device": "cuda", "versions": {"torch": "2.13.0"}},
    "compile_s": 12.0, "compile": {},
    "timing": {"median_ms": 1.0, "p10_ms": 0.98, "p90_ms": 1.03, "mean_ms": 1.0, "std_ms": 0.02,
               "cv": 0.02, "min_ms": 0.97, "iters_per_sample": 100, "samples_ms": [1.0] * 20},
    "throughput": {"flops_per_iter": 2 * 2048 * 4096 * 8192, "min_bytes_per_iter": 1e8,
                   "tflops": None, "gbps_min_bytes": None, "tokens_per_s": None},
    "numerics": {"passed": True, "min_sqnr_db": 28.0, "threshold_sqnr_db": 25.0,
                 "max_abs_err": 0.01, "max_rel_err": 0.02, "worst_output": "out"},
    "memory": {"runtime_peak_bytes": 3e8}, "kernels": {}, "artifacts": {}, "stderr_tail": "",
    "wall_s": 20.0, "work_s": 15.0, "schema_version": 1,
}


def template(source: str | None) -> dict:
    if not source:
        return copy.deepcopy(TEMPLATE)
    path = Path(source)
    if path.is_dir():
        path = next(p for p in sorted(path.rglob("record.json"))
                    if json.loads(p.read_text())["status"] == "ok")
    return json.loads(path.read_text())


def build(root: Path, base: dict, runs: int) -> None:
    from harness.collect.kernel_table import kernel_table
    traces = REPO / "tests" / "fixtures" / "traces"
    tables = {b: kernel_table(traces / f"h100_fp8_linear_fwd_bwd_{b}.trace.json.gz")
              for b in ("eager", "inductor")}
    rng = np.random.default_rng(0)
    workloads = ["fp8_linear", "conv", "qwen_decoder", "mlp"]
    presets = ["seed", "square_4k", "llama3_8b_ffn_up", "llama3_8b_ffn_down", "llama3_70b_ffn_up"]
    backends = [("eager", "default"), ("inductor", "default"), ("inductor", "max-autotune"),
                ("xla", "default"), ("torch_xla", "default")]
    for i in range(runs):
        w = workloads[i // 25 % len(workloads)]
        preset = presets[i // 5 % len(presets)]
        backend, mode = backends[i % len(backends)]
        r = copy.deepcopy(base)
        r.update(run_id=f"{i:012x}", workload=w, backend=backend,
                 params={**(r.get("params") or {}), "preset": preset})
        r.setdefault("config", {})["backend"] = {"name": backend, "mode": mode}
        run = root / f"{i:03d}_{w}_{backend}"
        run.mkdir(parents=True)
        if i % 10 == 9:
            r.update(status="failed", reason="worker killed by signal SIGSEGV", timing=None)
        else:
            scale = float(rng.uniform(0.5, 2.0)) * (1 + 0.4 * (backend == "eager"))
            noise = 0.15 if i % 7 == 3 else 0.02     # every 7th run noisy: flagged high_cv
            s = np.asarray(r["timing"]["samples_ms"] or [1.0]) * scale * rng.normal(1, noise, 20)
            r["timing"].update(samples_ms=s.tolist(), median_ms=float(np.median(s)),
                               p10_ms=float(np.percentile(s, 10)),
                               p90_ms=float(np.percentile(s, 90)),
                               mean_ms=float(s.mean()), std_ms=float(s.std()),
                               cv=float(s.std() / s.mean()))
            k = tables["eager" if backend == "eager" else "inductor"].copy()
            k["time_us_per_iter"] *= scale
            k.to_parquet(run / "kernels.parquet")
            pd.DataFrame({"kind": ["parameter", "output", "temp", "workspace", "total"],
                          "bytes": np.array([1.0, 0.3, rng.uniform(0.2, 2), 0.05, 0]) * 1e8,
                          "buffers": [3, 1, 7, 1, 12], "source": "synthetic"}
                         ).to_parquet(run / "memory.parquet")
            r["artifacts"] = {"kernels": "kernels.parquet", "memory": "memory.parquet"}
        (run / "record.json").write_text(json.dumps(r))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--from", dest="source", help="a record.json or a sweep to copy a record from")
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--keep", help="build the sweep here and keep it (default: a temp dir)")
    args = p.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_report_"))
    try:
        build(root, template(args.source), args.runs)
        t0, c0, k0 = time.perf_counter(), time.process_time(), _children_cpu()
        from harness.report import generate   # imports (pandas, matplotlib) count too
        t1 = time.perf_counter()
        report = generate([root])
        t2, c2, k2 = time.perf_counter(), time.process_time(), _children_cpu()
        print(f"report on {args.runs} records: {t2 - t0:.2f} s wall (imports {t1 - t0:.2f} s, "
              f"load + tables + {len(report.plots)} plots + findings + report.md "
              f"{t2 - t1:.2f} s), CPU {c2 - c0:.2f} s here + {k2 - k0:.2f} s in plot workers "
              f"-> {report.markdown}")
        t3 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "harness.report", str(root)], check=True,
                       stdout=subprocess.DEVNULL, env=repo_env())
        t4, k4 = time.perf_counter(), _children_cpu()
        print(f"python -m harness.report, fresh process: {t4 - t3:.2f} s wall, CPU {k4 - k2:.2f} s "
              f"({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
