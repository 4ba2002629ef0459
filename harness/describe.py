"""How a run is named and flagged, once, for the console line, the tables and compare.

Kept free of torch and pandas: the orchestrator imports it to print each run's line.
Records of schema 2 carry `backend_label` and typed `flags` themselves; schema-1 records (the
H100 reference) are read through the same functions.
"""
from __future__ import annotations

from typing import Any

# Workload parameters that name a variant, in this order: `fp8_linear[fwd,tensorwise,seed]`.
TAG_KEYS = ("mode", "recipe", "phase", "cache", "preset")

# Flag codes: what a run did not measure as asked. Each record flag is {"code", "detail"}.
FLAG_CODES = {
    "host_bound": "the GPU idled more than 10% of the step (host overhead decides the wall time)",
    "high_cv": "samples within a process spread more than 10% (CV)",
    "process_spread": "medians of fresh processes spread more than 5% (CV)",
    "recompiled": "the compiler compiled again during timing: the timing mixes compile and run",
    "collector": "a collector failed: a kernel or memory table is missing",
    "no_graph_replay": "a CUDA-graph mode did not replay graphs",
    "profile_differs": "the profiled program is not the timed one",
    "cpu_fallback": "a GPU node ran on the CPU",
}


def assess(record: dict[str, Any]) -> list[dict[str, str]]:
    """The flags a record's own figures call for (the worker adds those only it can see:
    recompiles, collector failures, a CPU fallback)."""
    flags = []
    gpu = record.get("gpu") or {}
    if gpu.get("host_bound"):
        flags.append({"code": "host_bound", "detail": (
            f"GPU busy {gpu['busy_ms_per_iter']:.4g} ms of a {record['timing']['median_ms']:.4g} ms step: "
            f"idle {100 * gpu['idle_share']:.0f}% (host gap {gpu['host_gap_ms']:.3g} ms)")})
    timing = record.get("timing") or {}
    if (timing.get("cv") or 0) > 0.10:
        flags.append({"code": "high_cv", "detail": f"within-process CV {100 * timing['cv']:.1f}%"})
    between = timing.get("between") or {}
    if (between.get("cv") or 0) > 0.05:
        flags.append({"code": "process_spread", "detail": (
            f"{between['n']} processes: medians {between['min_ms']:.4g}-{between['max_ms']:.4g} ms, "
            f"CV {100 * between['cv']:.1f}%")})
    graphs = (record.get("compile") or {}).get("cudagraphs") or {}
    if graphs and not graphs.get("replayed"):
        skips = "; ".join(graphs.get("skips") or []) or "no skip reason logged"
        flags.append({"code": "no_graph_replay", "detail": f"no CUDA graph replayed ({skips})"})
    buffers = (record.get("compile") or {}).get("command_buffers") or {}
    if buffers.get("enabled") and not buffers.get("during_profiling"):
        flags.append({"code": "profile_differs", "detail": "command buffers were off while profiling"})
    return flags


def variant(params: dict[str, Any]) -> str:
    """`fwd,tensorwise,seed`: the parameters that name a workload variant."""
    return ",".join(str(params[k]) for k in TAG_KEYS if params.get(k) is not None)


def backend_label(record: dict[str, Any]) -> str:
    """What tables call the backend: `inductor`, `inductor:max-autotune`, `xla:no-cmdbuf`.

    Schema 2 records carry the label their backend gave them; schema 1 records had only
    Inductor modes to tell apart."""
    if record.get("backend_label"):
        return str(record["backend_label"])
    backend = record.get("backend") or "?"
    mode = ((record.get("config") or {}).get("backend") or {}).get("mode")
    return f"{backend}:{mode}" if mode and mode != "default" else backend


def flag_codes(record: dict[str, Any]) -> list[str]:
    """The codes of a record's flags; schema 1 flags were free text (collector failures and
    recompiles), mapped here so that old records show them too."""
    codes = []
    for flag in record.get("flags") or []:
        if isinstance(flag, dict):
            code = str(flag.get("code") or "")
        else:
            text = str(flag)
            code = ("recompiled" if text.startswith("recompiled") else
                    "collector" if "collector" in text else "flagged")
        if code and code not in codes:
            codes.append(code)
    return codes


def summary_line(record: dict[str, Any]) -> str:
    """One console line per run: name, backend, status, the three times, spread, flags."""
    params = record.get("params") or {}
    tags = variant(params)
    name = f"{record.get('workload')}[{tags}]" if tags else str(record.get("workload"))
    parts = [f"{name:<40}", f"{backend_label(record):<22}", f"{record.get('status', '?'):<7}"]
    timing = record.get("timing") or {}
    if timing.get("median_ms") is not None:
        text = f"wall {timing['median_ms']:.4g} ms (cv {100 * (timing.get('cv') or 0):.1f}%"
        between = timing.get("between") or {}
        if between.get("n", 1) > 1:
            text += f", {between['n']} procs {between['min_ms']:.4g}-{between['max_ms']:.4g}"
        parts.append(text + ")")
    gpu = record.get("gpu") or {}
    if gpu.get("busy_ms_per_iter") is not None:
        parts.append(f"gpu {gpu['busy_ms_per_iter']:.4g} ms, host gap {gpu['host_gap_ms']:.3g} ms")
    thr = record.get("throughput") or {}
    if thr.get("tflops"):
        parts.append(f"{thr['tflops']:.3g} TFLOP/s")
    if thr.get("tokens_per_s"):
        parts.append(f"{thr['tokens_per_s']:.4g} tok/s")
    num = record.get("numerics")
    if num:
        parts.append(f"sqnr {num['min_sqnr_db']:.1f} dB {'ok' if num['passed'] else 'FAIL'}")
    codes = flag_codes(record)
    if codes:
        parts.append("!! " + ",".join(codes))
    if record.get("status") != "ok":
        parts.append(f"-- {record.get('reason')}")
    return "  ".join(parts)
