"""Trace -> normalised kernel table: where the GPU time goes, per kernel, per category, per op.

Two sources, one table (`COLUMNS`): a PyTorch Kineto trace (kineto.py) or a JAX perfetto trace
(perfetto.py). One row per (kernel, category, op, op_category): `category` is what the kernel
does (kernel_categories.py), `op` the PyTorch op it comes from (Kineto: the outermost aten op
around the launch; XLA: the optimised HLO's op_name path) and `op_category` that op's
category, so that attention, norm and fp8 casts mean the same on both compilers (XLA's
attention runs as dots, a softmax and transposes: gemm, reduction and copy by kernel,
attention by op).

Iterations: the harness wraps iteration i in `record_function("harness_iter_i")` (Kineto
user_annotation) or `jax.profiler.TraceAnnotation("harness_iter_i")` (a host event). Only
kernels of those iterations count (profiler warm-up, the first-call allocator memsets and the
trailing sync are not the program), and per-iteration figures are window totals / iterations.
Traces the harness did not write use `ProfilerStep#N` markers, else `iters`; with neither the
figures are totals over the whole trace, and `df.attrs["per_iteration"]` is False.

FLOPs and bytes: Kineto from the launching op's recorded shapes (kineto_costs.py); XLA from
the instruction in the optimised HLO dump when `hlo_dir` is given (hlo.py). Elsewhere NaN:
unknown is not zero.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from harness.collect.devices import DeviceSpec, Peaks, lookup_device
from harness.collect.kernel_categories import classify_cached, op_category
from harness.collect.kineto import from_scan, kineto_fast, kineto_full, parse_kineto
from harness.collect.kineto_scan import Scan
from harness.collect.trace_io import Parsed, detect_source, gc_paused, parse_json, read_bytes
from harness.errors import InputError

COLUMNS = ["kernel", "category", "op", "op_category", "calls_per_iter", "time_us_per_iter",
           "share", "flops", "bytes", "achieved_tflops", "achieved_gbps", "pct_peak_flops",
           "pct_peak_bw", "suspect", "source"]
SOURCES = ("kineto", "perfetto")


def parse_trace(path: Path, hlo_dir: str | Path | None, scanned: Scan | None = None) -> Parsed:
    """Either trace format, the Kineto text cut fast where it is laid out as libkineto does
    (`scanned`: that cut, made in advance, e.g. in another process)."""
    if scanned is not None:
        return parse_kineto(from_scan(scanned), path)
    raw = read_bytes(path)
    fast = kineto_fast(raw)
    if fast is not None:
        return parse_kineto(fast, path)
    data = parse_json(raw, path)
    del raw
    if detect_source(data, path) == "kineto":
        return parse_kineto(kineto_full(data, path), path)
    from harness.collect.perfetto import parse_perfetto   # (and hlo.py): only JAX traces need it
    return parse_perfetto(data, path, hlo_dir)


# ------------------------------------------------------------------------------- windows

def _in_windows(t: np.ndarray, windows: list[tuple[float, float]]) -> np.ndarray:
    """Which times fall inside one of the (sorted, disjoint) windows."""
    starts = np.array([w[0] for w in windows])
    ends = np.array([w[1] for w in windows])
    idx = np.searchsorted(starts, t, side="right") - 1
    ok = idx >= 0
    ok[ok] = t[ok] <= ends[idx[ok]]
    return ok


def _gpu_time_select(ts: np.ndarray, windows: list[tuple[float, float]]) -> np.ndarray:
    """Kernels of the iterations judged by GPU start time alone (no host launch to go by).

    GPU work trails its launch, so iteration i owns [start_i, start_i+1): a kernel cannot run
    before its iteration launched it, and one still running into the next window only moves
    between iterations, not out of the total. The last iteration has no next start; if the
    harness synchronised outside the marker its kernels run past the marker's end, so the last
    window takes as many kernels as the earlier iterations had (they run the same program),
    at least those before the marker's end.
    """
    starts = [w[0] for w in windows]
    order = np.argsort(ts, kind="stable")
    sorted_ts = ts[order]
    keep = np.zeros(len(ts), dtype=bool)
    counts = []
    for i in range(len(windows) - 1):
        lo, hi = np.searchsorted(sorted_ts, [starts[i], starts[i + 1]], side="left")
        keep[order[lo:hi]] = True
        counts.append(hi - lo)
    lo = int(np.searchsorted(sorted_ts, starts[-1], side="left"))
    hi = int(np.searchsorted(sorted_ts, windows[-1][1], side="right"))
    if counts and len(set(counts)) == 1 and counts[0] > hi - lo:
        hi = min(lo + counts[0], len(ts))
    keep[order[lo:hi]] = True
    return keep


def _select(launches: pd.DataFrame, windows: list[tuple[float, float]]) -> np.ndarray:
    if not windows:
        return np.ones(len(launches), dtype=bool)
    anchor = launches["anchor"].to_numpy()
    known = ~np.isnan(anchor)
    keep = np.zeros(len(launches), dtype=bool)
    if known.any():
        keep[known] = _in_windows(anchor[known], windows)
    if (~known).any():
        keep[~known] = _gpu_time_select(launches["ts"].to_numpy()[~known], windows)
    return keep


def _busy_us(ts: np.ndarray, dur: np.ndarray) -> float:
    """GPU time covered by at least one kernel: overlapping streams counted once."""
    if len(ts) == 0:
        return 0.0
    order = np.argsort(ts)
    start, end = ts[order], ts[order] + dur[order]
    run_end = np.maximum.accumulate(end)
    # a new busy interval starts where a kernel starts after everything before it ended
    new = np.concatenate([[True], start[1:] > run_end[:-1]])
    seg_start = start[new]
    seg_end = np.maximum.reduceat(end, np.flatnonzero(new))
    return float((seg_end - seg_start).sum())


# --------------------------------------------------------------------------------- table

def kernel_table(trace_path: str | Path, iters: int | None = None,
                 device: str | DeviceSpec | None = None, hlo_dir: str | Path | None = None,
                 sm_clock_mhz: float | None = None, scanned: Scan | None = None) -> pd.DataFrame:
    """One row per (kernel, category, op, op_category) of the profiled iterations, `COLUMNS`.

    iters: profiled iterations to divide by; None counts the harness_iter_* (else
        ProfilerStep#N) markers, and without markers the figures are whole-trace totals.
    device: GPU name ("NVIDIA H100 80GB HBM3"), spec key ("h100_sxm") or DeviceSpec; None takes
        the Kineto trace's deviceProperties (JAX traces do not record the GPU model).
    hlo_dir: XLA dump folder (*after_optimizations.txt, or the buffer assignment's values) for
        XLA FLOPs/bytes, fp8 detection and source ops.
    sm_clock_mhz: measured SM clock; peaks are scaled by it over the rated boost clock.
    scanned: the trace's Kineto fast-path scan, made in advance (kineto_scan.scan_in_background).
    `df.attrs` carries the provenance: source, iters, iters_source, per_iteration, device,
    clock ratio, kernel_us_per_iter, gpu_busy_us_per_iter, excluded launches, and `notes`:
    what was done about odd input (duplicated iteration markers counted once).
    """
    path = Path(trace_path)
    if iters is not None and (not isinstance(iters, (int, np.integer)) or iters <= 0):
        raise InputError(f"{path}: iters must be a positive integer, got {iters!r}")
    with gc_paused():
        parsed = parse_trace(path, hlo_dir, scanned)
        return _kernel_table(path, parsed, iters, device, hlo_dir, sm_clock_mhz)


def _kernel_table(path: Path, parsed: Parsed, iters: int | None,
                  device: str | DeviceSpec | None, hlo_dir: str | Path | None,
                  sm_clock_mhz: float | None) -> pd.DataFrame:
    launches = parsed.launches
    keep = _select(launches, parsed.windows)
    window = launches[keep].reset_index(drop=True)
    if window.empty:
        raise InputError(f"{path}: no GPU kernels inside the {len(parsed.windows)} "
                         f"{parsed.iters_source} iteration markers")
    n_iters = int(iters) if iters is not None else max(len(parsed.windows), 1)
    starts = np.array([w[0] for w in parsed.windows] or [-np.inf])
    when = np.where(np.isnan(window["anchor"]), window["ts"], window["anchor"])
    window["iteration"] = np.maximum(np.searchsorted(starts, when, side="right") - 1, 0)
    window = parsed.costs(window)
    spec = device if isinstance(device, DeviceSpec) else lookup_device(device or
                                                                        parsed.device_name)
    peaks = Peaks(spec, sm_clock_mhz) if spec is not None else None
    table = _aggregate(window, n_iters, parsed.source, peaks)
    table.attrs.update({
        "trace": str(path), "source": parsed.source, "iters": n_iters,
        "iters_source": "argument" if iters is not None else parsed.iters_source,
        "per_iteration": iters is not None or bool(parsed.windows),
        "markers": len(parsed.windows),
        "device": (device if isinstance(device, str) else None) or parsed.device_name,
        "device_spec": spec.key if spec else None,
        "clock_ratio": peaks.clock_ratio if peaks else None,
        "kernel_us_per_iter": float(window["dur"].sum()) / n_iters,
        "gpu_busy_us_per_iter": _busy_us(window["ts"].to_numpy(), window["dur"].to_numpy())
        / n_iters,
        "launches_in_window": int(keep.sum()), "launches_excluded": int((~keep).sum()),
        "hlo_dir": str(hlo_dir) if hlo_dir is not None else None,
        "notes": list(parsed.notes),
    })
    return table


def _primary(window: pd.DataFrame, source: str) -> np.ndarray:
    """Which launch carries its op's FLOPs/bytes when one op launches several kernels.

    cuBLAS split-K runs a GEMM kernel and a reduce kernel under one aten::mm; giving both the
    op's FLOPs would double them. Kineto: the longest launch of each op instance. XLA (no
    instance id): per hlo_op, the kernel name with the most total time.
    """
    if source == "kineto":
        has = window["instance"].notna().to_numpy()
        primary = np.zeros(len(window), dtype=bool)
        if has.any():
            sub = window[has]
            idx = sub["dur"].groupby(sub["instance"].astype("int64")).idxmax().to_numpy()
            primary[idx] = True
        return primary
    keys = window["instance"].map(repr)
    per_name = window.groupby([keys, window["kernel"]])["dur"].sum()
    best = per_name.groupby(level=0).idxmax()
    chosen = set(best.tolist())
    return np.array([(k, n) in chosen for k, n in zip(keys, window["kernel"])])


def _categorise(w: pd.DataFrame, source: str) -> None:
    # .tolist(): iterating pandas' Arrow-backed string columns element by element is ~10x slower
    w["category"] = [classify_cached(source, k, o or "", d or "", f or "", h or "", sc or "")
                     for k, o, d, f, h, sc in zip(w["kernel"].tolist(), w["op"].tolist(),
                                                  w["dtypes"].tolist(), w["features"].tolist(),
                                                  w["hlo"].tolist(), w["scope"].tolist())]
    w["op_category"] = [op_category(o or "", c)
                        for o, c in zip(w["source_op"].tolist(), w["category"].tolist())]


def _aggregate(w: pd.DataFrame, iters: int, source: str, peaks: Peaks | None) -> pd.DataFrame:
    _categorise(w, source)
    primary = _primary(w, source)
    flops = np.where(primary, w["op_flops"].to_numpy(dtype=float), np.nan)
    nbytes = np.where(np.isnan(w["bytes"].to_numpy()),
                      np.where(primary, w["op_bytes"].to_numpy(dtype=float), np.nan),
                      w["bytes"].to_numpy())
    w = w.assign(flops=flops, nbytes=nbytes, flops_known=~np.isnan(flops),
                 bytes_known=~np.isnan(nbytes))
    g = w.groupby(["kernel", "category", "source_op", "op_category"], sort=False)
    t = g.agg(calls=("dur", "size"), time=("dur", "sum"), flops=("flops", "sum"),
              nbytes=("nbytes", "sum"), flops_known=("flops_known", "sum"),
              bytes_known=("bytes_known", "sum"),
              peak_dtype=("peak_dtype", "first")).reset_index()
    # a row's FLOPs are known only if every launch's are: a partial sum would understate
    t.loc[t["flops_known"] < t["calls"], "flops"] = np.nan
    t.loc[t["bytes_known"] < t["calls"], "nbytes"] = np.nan
    time_us = t["time"] / iters
    total = time_us.sum()
    out = pd.DataFrame({
        # an unknown source op is missing (None), as in the CSV and Parquet files
        "kernel": t["kernel"], "category": t["category"],
        "op": t["source_op"].astype(object).where(t["source_op"] != "", None),
        "op_category": t["op_category"], "calls_per_iter": t["calls"] / iters,
        "time_us_per_iter": time_us, "share": time_us / total if total > 0 else np.nan,
        "flops": t["flops"] / iters, "bytes": t["nbytes"] / iters,
    })
    _roofline(out, t["peak_dtype"], peaks)
    out["source"] = source
    out = out.sort_values("time_us_per_iter", ascending=False, kind="stable")
    return out.reset_index(drop=True)[COLUMNS]


def _roofline(out: pd.DataFrame, dtypes: pd.Series, peaks: Peaks | None) -> None:
    """Achieved TFLOP/s and GB/s, and their % of the device's peaks at the measured clock."""
    seconds = out["time_us_per_iter"].where(out["time_us_per_iter"] > 0) * 1e-6
    out["achieved_tflops"] = out["flops"] / seconds / 1e12
    out["achieved_gbps"] = out["bytes"] / seconds / 1e9
    if peaks is not None:
        peak_tf = np.array([peaks.tflops(d) if d else np.nan for d in dtypes])
        out["pct_peak_flops"] = 100.0 * out["achieved_tflops"] / peak_tf
        out["pct_peak_bw"] = 100.0 * out["achieved_gbps"] / peaks.hbm_gbps
    else:
        out["pct_peak_flops"] = np.nan
        out["pct_peak_bw"] = np.nan
    out["suspect"] = _suspect(out["pct_peak_flops"], out["pct_peak_bw"])


def _suspect(pct_flops: pd.Series, pct_bw: pd.Series) -> pd.Series:
    """Seed 003: below 1% or above 100% of peak is probably a counting error, not a fact.

    A kernel is judged on its roofline figure, the larger of the two: a GEMM at 70% of peak
    FLOP/s and 0.5% of HBM bandwidth is fine; a kernel below 1% of both, or above 100% of
    either, is flagged. Nothing known, nothing flagged.
    """
    both = pd.concat([pct_flops, pct_bw], axis=1)
    best = both.max(axis=1, skipna=True)
    over = (both > 100.0).any(axis=1)
    return ((best < 1.0) | over).fillna(False).astype(bool)


def launch_overhead(table: pd.DataFrame, wall_us_per_iter: float) -> dict[str, float]:
    """The part of an iteration's wall time with no kernel running: host and launch overhead.

    kernel_us sums kernel durations (overlapping streams count twice); busy_us counts the GPU
    as busy once (needs `table.attrs` from kernel_table). gap = wall - busy (or wall - kernel
    sum when busy is unknown). The issue's example: Inductor fp8 fwd+bwd on the H100, kernels
    0.56 ms of a 0.98 ms naive-loop iteration.
    """
    kernel_us = float(table["time_us_per_iter"].sum())
    busy_us = float(table.attrs.get("gpu_busy_us_per_iter", kernel_us))
    gap = wall_us_per_iter - busy_us
    return {"wall_us_per_iter": float(wall_us_per_iter), "kernel_us_per_iter": kernel_us,
            "gpu_busy_us_per_iter": busy_us, "gap_us_per_iter": gap,
            "gap_share": gap / wall_us_per_iter if wall_us_per_iter > 0 else math.nan}
