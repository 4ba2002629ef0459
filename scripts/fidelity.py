"""Does the harness time what a reference timer times, and how much do fresh processes differ?

    python scripts/fidelity.py SWEEP_DIR [SWEEP_DIR ...]          # a table from finished runs
    python scripts/fidelity.py --run OUT_DIR -- workload=fp8_linear backend=inductor,xla ...

`--run` sweeps the overrides with `bench.processes=5 bench.reference_timer=true` (each process
also times the same callable with triton's `do_bench` where torch runs on CUDA, a
block_until_ready loop for JAX, a plain loop on CPU). The table: harness median (median of the
process medians), the reference's median, their ratio, the within-process CV, the spread of
the process medians, the GPU's busy share of the step, and the verdict against the goal: a
run whose GPU is busy >= 90% of its step within 2% of the reference with CV < 2%; any other
run is host-bound and must say so (flag `host_bound`).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.describe import backend_label, flag_codes, variant  # noqa: E402

GPU_BOUND_SHARE = 0.90
WITHIN = 0.02
MAX_CV = 0.02


def rows(sweeps: list[Path]) -> list[dict]:
    out = []
    for path in sorted(p for s in sweeps for p in Path(s).rglob("record.json")):
        r = json.loads(path.read_text())
        t, gpu = r.get("timing") or {}, r.get("gpu") or {}
        if r.get("status") != "ok" or not t.get("reference_median_ms"):
            continue
        between = t.get("between") or {}
        busy = 1.0 - gpu["idle_share"] if gpu.get("idle_share") is not None else None
        ratio = t["median_ms"] / t["reference_median_ms"]
        if busy is not None and busy >= GPU_BOUND_SHARE:
            ok = abs(ratio - 1) <= WITHIN and t["cv"] < MAX_CV
            verdict = "agree" if ok else "DISAGREE"
        else:
            verdict = "host-bound, flagged" if "host_bound" in flag_codes(r) else (
                "no GPU time" if busy is None else "host-bound, NOT flagged")
        out.append({"run": f"{r['workload']}[{variant(r.get('params') or {})}]", "backend": backend_label(r),
                    "harness_ms": t["median_ms"], "reference_ms": t["reference_median_ms"],
                    "reference": t.get("reference_timer", ""), "ratio": ratio, "cv_pct": 100 * t["cv"],
                    "processes": between.get("n", 1),
                    "process_min_ms": between.get("min_ms", t["median_ms"]),
                    "process_max_ms": between.get("max_ms", t["median_ms"]),
                    "process_cv_pct": 100 * between["cv"] if between.get("cv") is not None else None,
                    "gpu_busy_pct": 100 * busy if busy is not None else None, "verdict": verdict})
    return out


def markdown(table: list[dict]) -> str:
    head = ("| run | backend | harness ms | reference ms | ratio | CV % | processes: min-max ms (CV %) "
            "| GPU busy % | verdict |\n|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in table:
        spread = (f"{r['processes']}: {r['process_min_ms']:.4g}-{r['process_max_ms']:.4g}"
                  + (f" ({r['process_cv_pct']:.1f})" if r["process_cv_pct"] is not None else ""))
        busy = f"{r['gpu_busy_pct']:.0f}" if r["gpu_busy_pct"] is not None else "-"
        lines.append(f"| {r['run']} | {r['backend']} | {r['harness_ms']:.4g} | {r['reference_ms']:.4g} "
                     f"({r['reference']}) | {r['ratio']:.3f} | {r['cv_pct']:.2f} | {spread} | {busy} | {r['verdict']} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sweeps", nargs="*", type=Path)
    p.add_argument("--run", type=Path, metavar="OUT_DIR", help="sweep the overrides after -- into OUT_DIR first")
    p.add_argument("--processes", type=int, default=5)
    args, overrides = p.parse_known_args(argv)
    overrides = [o for o in overrides if o != "--"]
    if args.run:
        cmd = [sys.executable, "-m", "harness", "-m", *overrides, f"bench.processes={args.processes}",
               "bench.reference_timer=true", f"hydra.sweep.dir={args.run}"]
        subprocess.run(cmd, cwd=REPO, check=False)
        args.sweeps.append(args.run)
    if not args.sweeps:
        p.error("give SWEEP_DIRs, or --run OUT_DIR -- OVERRIDES")
    table = rows(args.sweeps)
    print(markdown(table))
    return 0 if all(r["verdict"] in ("agree", "host-bound, flagged") for r in table) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
