"""Device-synchronised timing: calibrated iterations per sample, many samples, robust stats.

Each sample runs `n` back-to-back iterations between two synchronisations and reports the
per-iteration time, so the cost of one synchronisation is spread over >= min_repeat_ms of work.
Before the samples that count, samples are taken until they settle (the median of the last
three within 2% of the three before): an idle GPU's clock ramps, a host's caches and branch
predictors warm, and a fixed count of warm-up calls did not always cover that.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

SETTLE_WINDOW = 3           # samples per window
SETTLE_TOLERANCE = 0.02     # last window's median within 2% of the previous one's
SETTLE_MAX_SAMPLES = 30     # give up settling after this many (the record says so)


@dataclass
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    cv: float                   # std / mean
    min_ms: float
    iters_per_sample: int
    samples_ms: list[float]     # per-iteration time of each sample
    settle_samples_ms: list[float] = field(default_factory=list)   # taken and discarded
    settled: bool = True


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


def settle(sample: Callable[[], float]) -> tuple[list[float], bool]:
    """Samples until two consecutive windows agree; returns them (discarded) and whether the
    windows did agree before SETTLE_MAX_SAMPLES."""
    taken: list[float] = []
    while len(taken) < SETTLE_MAX_SAMPLES:
        taken.append(sample())
        if len(taken) >= 2 * SETTLE_WINDOW:
            last = statistics.median(taken[-SETTLE_WINDOW:])
            before = statistics.median(taken[-2 * SETTLE_WINDOW:-SETTLE_WINDOW])
            if abs(last - before) <= SETTLE_TOLERANCE * before:
                return taken, True
    return taken, False


def samples(sample: Callable[[], Any], repeats: int, after_sample: Callable[[], None] | None = None) -> list:
    """`repeats` samples; `after_sample()` after each, outside its window (the GPU state
    reading of harness/worker/gpu_state.py), so its results line up with the samples."""
    taken = []
    for _ in range(repeats):
        taken.append(sample())
        if after_sample is not None:
            after_sample()
    return taken


def measure(fn: Callable[[], Any], sync: Callable[[Any], None], *, warmup: int, repeats: int,
            min_repeat_ms: float, max_iters: int, warmup_ms: float = 0.0, settle_first: bool = True,
            after_sample: Callable[[], None] | None = None) -> Timing:
    warm_up(fn, sync, warmup, warmup_ms)
    iters = calibrate(fn, sync, min_repeat_ms, max_iters)
    sample = lambda: _run_n(fn, sync, iters) * 1e3 / iters  # noqa: E731
    discarded, settled = settle(sample) if settle_first else ([], True)
    timing = summarize(samples(sample, repeats, after_sample), iters)
    timing.settle_samples_ms, timing.settled = discarded, settled
    return timing


def reference_median_ms(fn: Callable[[], Any], sync: Callable[[Any], None], cuda_events: bool) -> tuple[float, str]:
    """An independent timer on the same callable: triton's `do_bench` (CUDA events, median)
    where the work runs on torch's CUDA stream, else a plain loop: n back-to-back calls, block
    on the last output, median per call over 25 repeats, n covering ~50 ms so the pipeline's
    start is spread thin, as in any steady-state loop (JAX's `block_until_ready` loop)."""
    if cuda_events:
        from triton.testing import do_bench
        return float(do_bench(fn, warmup=100, rep=500, return_mode="median")), "triton do_bench"
    start = time.perf_counter()
    sync(fn())
    n = max(20, int(0.05 / max(time.perf_counter() - start, 1e-6)))
    samples = [_run_n(fn, sync, n) * 1e3 / n for _ in range(25)]
    return statistics.median(samples), "plain loop (block on the last output)"
