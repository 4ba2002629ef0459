"""Device-synchronised timing: calibrated iterations per sample, many samples, robust stats.

Each sample runs `n` back-to-back iterations between two synchronisations and reports the
per-iteration time, so the cost of one synchronisation is spread over >= min_repeat_ms of work.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from harness.record import Timing


def _run_n(fn: Callable[[], Any], sync: Callable[[Any], None], n: int) -> float:
    out = None
    sync(out)
    start = time.perf_counter()
    for _ in range(n):
        out = fn()
    sync(out)
    return time.perf_counter() - start


def calibrate(fn: Callable[[], Any], sync: Callable[[Any], None], min_repeat_ms: float,
              max_iters: int) -> int:
    """Smallest power-of-two-ish count whose run lasts at least min_repeat_ms."""
    n = 1
    while True:
        elapsed_ms = _run_n(fn, sync, n) * 1e3
        if elapsed_ms >= min_repeat_ms or n >= max_iters:
            return n
        # Aim a little past the target so the next probe usually lands.
        n = min(max_iters, max(n * 2, int(n * 1.2 * min_repeat_ms / max(elapsed_ms, 1e-6))))


def summarize(samples_ms: list[float], iters: int) -> Timing:
    arr = np.asarray(samples_ms, dtype=float)
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return Timing(median_ms=float(np.median(arr)), p10_ms=float(np.percentile(arr, 10)),
                  p90_ms=float(np.percentile(arr, 90)), mean_ms=mean, std_ms=std,
                  cv=std / mean if mean else 0.0, min_ms=float(arr.min()), iters_per_sample=iters,
                  samples_ms=[float(x) for x in arr])


def warm_up(fn: Callable[[], Any], sync: Callable[[Any], None], calls: int, min_ms: float) -> None:
    """At least `calls` calls and at least `min_ms` of work. Seen on the H100: Inductor's fp8
    forward ran 0.28-0.38 ms for the first samples after 3 warm-up calls, then 0.187 ms
    steadily (SM clock ramping from 345 MHz idle)."""
    start, done = time.perf_counter(), 0
    while done < calls or (time.perf_counter() - start) * 1e3 < min_ms:
        sync(fn())
        done += 1


def measure(fn: Callable[[], Any], sync: Callable[[Any], None], *, warmup: int, repeats: int,
            min_repeat_ms: float, max_iters: int, warmup_ms: float = 0.0) -> Timing:
    warm_up(fn, sync, warmup, warmup_ms)
    iters = calibrate(fn, sync, min_repeat_ms, max_iters)
    samples = [_run_n(fn, sync, iters) * 1e3 / iters for _ in range(repeats)]
    return summarize(samples, iters)

