"""Does the harness time what a reference timer times? One row per run that timed the same
callable with a reference timer too (`bench.reference_timer=true`: triton's `do_bench` where
torch runs on CUDA, a block_until_ready loop for JAX, a plain loop on CPU).

The goal, and the verdict: a run whose GPU is busy >= 90% of its step agrees within 2% of the
reference with a CV under 2%; any other run is host-bound and must say so (flag `host_bound`).
`scripts/fidelity.py` prints the table; the findings docs render it (harness/report/docs/).
"""
from __future__ import annotations

from typing import Any

from harness.describe import backend_label, flag_codes, variant

GPU_BOUND_SHARE = 0.90
WITHIN = 0.02
MAX_CV = 0.02
AGREE, DISAGREE = "agree", "DISAGREE"
HOST_BOUND_FLAGGED, HOST_BOUND_UNFLAGGED, NO_GPU_TIME = (
    "host-bound, flagged", "host-bound, NOT flagged", "no GPU time")


def row(record: dict[str, Any]) -> dict[str, Any] | None:
    """The fidelity row of an ok run that has a reference median, else None."""
    t, gpu = record.get("timing") or {}, record.get("gpu") or {}
    if record.get("status") != "ok" or not t.get("reference_median_ms"):
        return None
    between = t.get("between") or {}
    busy = 1.0 - gpu["idle_share"] if gpu.get("idle_share") is not None else None
    ratio = t["median_ms"] / t["reference_median_ms"]
    if busy is not None and busy >= GPU_BOUND_SHARE:
        verdict = AGREE if abs(ratio - 1) <= WITHIN and t["cv"] < MAX_CV else DISAGREE
    else:
        verdict = HOST_BOUND_FLAGGED if "host_bound" in flag_codes(record) else (
            NO_GPU_TIME if busy is None else HOST_BOUND_UNFLAGGED)
    return {"run": f"{record['workload']}[{variant(record.get('params') or {})}]",
            "workload": record["workload"], "params": record.get("params") or {},
            "backend": backend_label(record), "sweep": record.get("_sweep", ""),
            "harness_ms": t["median_ms"], "reference_ms": t["reference_median_ms"],
            "reference": t.get("reference_timer", ""), "ratio": ratio, "cv_pct": 100 * t["cv"],
            "processes": between.get("n", 1),
            "process_min_ms": between.get("min_ms", t["median_ms"]),
            "process_max_ms": between.get("max_ms", t["median_ms"]),
            "process_cv_pct": 100 * between["cv"] if between.get("cv") is not None else None,
            "gpu_busy_pct": 100 * busy if busy is not None else None,
            "gpu_bound": busy is not None and busy >= GPU_BOUND_SHARE, "verdict": verdict,
            "why": _why(ratio, t["cv"]) if verdict == DISAGREE else ""}


def _why(ratio: float, cv: float) -> str:
    said = []
    if abs(ratio - 1) > WITHIN:
        said.append(f"ratio {ratio:.3f}, beyond {100 * WITHIN:.0f}%")
    if cv >= MAX_CV:
        said.append(f"CV {100 * cv:.1f}%, at or above {100 * MAX_CV:.0f}%")
    return "; ".join(said)


def rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in map(row, records) if r is not None]


def markdown(table: list[dict[str, Any]]) -> str:
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
