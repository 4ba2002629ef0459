"""The figures of a run from its worker processes: timing over processes, GPU time and the host
gap, throughput. Pure functions of the workers' results (tested without running anything).

What a figure is (DESIGN.md): wall time per iteration is the median of the per-process medians
(one process's median can be 70% off the next when the host gap decides it: Inductor's fp8
forward on the H200, identical kernels, 0.177-0.302 ms); its spread is given within a process
(CV of the samples) and between processes (min, max, CV of the medians). GPU time per iteration
is the GPU's busy time in the profiling pass; the host gap is wall minus GPU time.
"""
from __future__ import annotations

import statistics
from typing import Any

from harness.describe import THRESHOLDS


def timing(processes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Per-process timings (worker `timing` dicts, in process order) -> the run's timing."""
    if not processes:
        return None
    medians = [p["median_ms"] for p in processes]
    pooled = [s for p in processes for s in p["samples_ms"]]
    mean = statistics.fmean(pooled)
    std = statistics.stdev(pooled) if len(pooled) > 1 else 0.0
    quantiles = statistics.quantiles(pooled, n=10, method="inclusive") if len(pooled) > 1 else [pooled[0]] * 9
    out = {
        "median_ms": statistics.median(medians),
        "p10_ms": quantiles[0], "p90_ms": quantiles[-1], "mean_ms": mean, "std_ms": std,
        "min_ms": min(pooled),
        "cv": statistics.median(p["cv"] for p in processes),      # within a process
        "iters_per_sample": processes[0]["iters_per_sample"],
        "samples_ms": pooled,
        "processes": [{k: p.get(k) for k in ("median_ms", "cv", "p10_ms", "p90_ms", "min_ms", "iters_per_sample",
                                                "samples_ms", "settle_samples_ms", "settled", "first_call_s",
                                                "reference_median_ms", "started_at", "gpu_state")
                       if k in p or k not in ("started_at", "gpu_state")}
                      for p in processes],
        "between": between(medians),
    }
    refs = [p["reference_median_ms"] for p in processes if p.get("reference_median_ms")]
    if refs:
        out["reference_median_ms"] = statistics.median(refs)
        out["reference_timer"] = processes[0].get("reference_timer")
    return out


PERCENTILES = (50, 90, 99)


def tpot_ms(latencies_ms: list[float]) -> float:
    """vLLM's time per output token of one generation: (total - TTFT) / (tokens - 1)."""
    return sum(latencies_ms[1:]) / (len(latencies_ms) - 1)


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50, p90, p99 and the mean, as vLLM's benchmark reports them (numpy's linear percentiles)."""
    import numpy as np
    values = np.percentile(np.asarray(samples, dtype=float), PERCENTILES)
    return {**{f"p{q}": float(v) for q, v in zip(PERCENTILES, values)}, "mean": statistics.fmean(samples)}


def generation(processes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Per-process generations (worker `generation` dicts: each generation's latency per token,
    TTFT first) -> the run's generation figures, generations pooled over processes (vLLM pools
    requests): TTFT, TPOT (one per generation), ITL (one per decode step) and end-to-end
    percentiles, tokens per second, and the median latency at each position."""
    generations = [g for p in processes for g in p["latency_ms"]]
    if not generations:
        return None
    batch, prompt_len, tokens = processes[0]["batch"], processes[0]["prompt_len"], len(generations[0])
    e2e = [sum(g) for g in generations]
    tpot = [tpot_ms(g) for g in generations]
    return {
        "generations": len(generations), "new_tokens": tokens, "batch": batch, "prompt_len": prompt_len,
        "ttft_ms": percentiles([g[0] for g in generations]), "tpot_ms": percentiles(tpot),
        "itl_ms": percentiles([x for g in generations for x in g[1:]]), "e2e_ms": percentiles(e2e),
        "output_tokens_per_s": batch * tokens / (statistics.median(e2e) / 1e3),
        "decode_tokens_per_s": batch / (statistics.median(tpot) / 1e3),
        # token i comes from position prompt_len - 1 + i (the prefill's last, then each decode input)
        "first_position": prompt_len - 1,
        "per_token_median_ms": [statistics.median(g[i] for g in generations) for i in range(tokens)],
        "processes": [{"ttft_ms": [g[0] for g in p["latency_ms"]],
                       "tpot_ms": [tpot_ms(g) for g in p["latency_ms"]],
                       "latency_ms": p["latency_ms"]} for p in processes],
    }


def between(medians: list[float]) -> dict[str, Any] | None:
    """The spread of fresh processes' medians; None for a single process."""
    if len(medians) < 2:
        return None
    mid = statistics.median(medians)
    mean = statistics.fmean(medians)
    return {"n": len(medians), "min_ms": min(medians), "max_ms": max(medians),
            "spread_pct": 100.0 * (max(medians) - min(medians)) / mid if mid else None,
            "cv": statistics.stdev(medians) / mean if mean else None}


def gpu(kernels: dict[str, Any], wall_median_ms: float | None, trace_note: str) -> dict[str, Any] | None:
    """GPU busy time per iteration from the profiling pass beside the wall median."""
    busy_us = (kernels or {}).get("gpu_busy_us_per_iter")
    if busy_us is None or not wall_median_ms:
        return None
    busy = float(busy_us) / 1e3
    gap = wall_median_ms - busy
    idle = gap / wall_median_ms
    return {"busy_ms_per_iter": busy, "kernel_ms_per_iter": float(kernels.get("kernel_us_per_iter", busy_us)) / 1e3,
            "host_gap_ms": gap, "idle_share": idle, "host_bound": idle > THRESHOLDS.host_bound_idle_share,
            "trace": trace_note}


def throughput(basis: dict[str, Any], median_ms: float | None) -> dict[str, Any]:
    if not basis:
        return {}
    seconds = median_ms / 1e3 if median_ms else None
    flops, nbytes, tokens = basis.get("flops_per_iter"), basis.get("min_bytes_per_iter"), basis.get("tokens_per_iter")
    return {**basis,
            "tflops": flops / seconds / 1e12 if flops and seconds else None,
            "gbps_min_bytes": nbytes / seconds / 1e9 if nbytes and seconds else None,
            "tokens_per_s": tokens / seconds if tokens and seconds else None}
