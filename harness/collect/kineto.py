"""PyTorch Kineto chrome trace -> launches (`prof.export_chrome_trace`, eager and Inductor).

Kernel events:
    {"ph": "X", "cat": "kernel", "name": "triton_red_fused_abs_max_0", "ts": 198093513655.849,
     "dur": 12.3, "args": {"External id": 1619, "correlation": 311, "stream": 7, "grid": [...]}}
`correlation` pairs it with the host launch (`cat` cuda_runtime / cuda_driver, same
`args.correlation`, on the launching CPU thread `tid`); `External id` names the innermost CPU op
on the stack at launch (`cat` cpu_op: `aten::_scaled_mm` with `Input Dims`/`Input type` under
record_shapes, or for Inductor the Triton kernel's own `_RecordFunctionFast` record of the same
name). `cat` gpu_memcpy / gpu_memset (`args.bytes`) are kept as category `copy`. The source
PyTorch op of a launch is the outermost `aten::` op around the launch on its thread
(`aten::scaled_dot_product_attention` around `aten::_flash_attention_forward`).

Two ways in, one result (tested): `kineto_fast` cuts the needed events out of the text when
it is laid out the way libkineto writes it (kineto_scan.py); `kineto_full` reads any parsed
layout.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import orjson

from harness.collect.kineto_costs import kineto_costs
from harness.collect.kineto_scan import Scan, scan
from harness.collect.trace_io import (MARKER_PREFIXES, Launches, Parsed, iteration_windows,
                                      launch_frame, trace_events)
from harness.errors import InputError

_GPU_CATS = ("kernel", "gpu_memcpy", "gpu_memset")


@dataclass
class _GpuRows:
    """GPU events (cat kernel / gpu_memcpy / gpu_memset), one list entry per event."""
    kernel: list[str]
    ts: np.ndarray
    dur: np.ndarray          # NaN where `dur` is missing or not a number: refused later
    correlation: list[Any]
    external_id: list[Any]
    bytes: np.ndarray        # memcpy/memset `args.bytes`, NaN for kernels
    kernels: int             # how many are cat=kernel

    @staticmethod
    def from_events(events: list[dict]) -> "_GpuRows":
        args = [e.get("args") or {} for e in events]
        cats = [e.get("cat") for e in events]
        return _GpuRows(
            kernel=[e["name"] for e in events],
            # None (no `dur`) becomes NaN, refused with the event named by launch_frame
            ts=np.array([e.get("ts") for e in events], dtype=float),
            dur=np.array([e.get("dur") for e in events], dtype=float),
            correlation=[a.get("correlation") for a in args],
            external_id=[a.get("External id") for a in args],
            bytes=np.array([a.get("bytes") if c != "kernel" else None
                            for c, a in zip(cats, args)], dtype=float),
            kernels=cats.count("kernel"))


@dataclass
class AtenOps:
    """aten:: cpu ops: where each ran (thread, start, end), to find a launch's source op.
    Threads and names as the reader found them (the fast path keeps the raw bytes)."""
    tid: list[Any]
    ts: np.ndarray
    end: np.ndarray
    name: list[Any]


@dataclass
class KinetoEvents:
    """The few Kineto events the table needs, however they were found."""
    gpu: _GpuRows
    launches: dict[Any, tuple[float, Any]]   # correlation -> host launch (ts, thread)
    markers: list[dict]                 # harness_iter_* / ProfilerStep#N host events
    # External ids -> ({id: key}, {key: op event}): ops with the same name and recorded inputs
    # share a key, so each distinct op is parsed and costed once, not once per launch.
    ops_for: Callable[[set], tuple[dict[Any, Any], dict[Any, dict]]]
    aten: AtenOps
    device: str | None


def kineto_full(data: Any, path: Path) -> KinetoEvents:
    """From the parsed JSON: any chrome-trace layout (re-saved, compact, array form)."""
    buckets: dict[str, list[dict]] = {c: [] for c in _GPU_CATS + (
        "cuda_runtime", "cuda_driver", "cpu_op", "user_annotation")}
    get = buckets.get
    for e in trace_events(data, path):
        b = get(e.get("cat"))  # type: ignore[arg-type]
        if b is not None:
            b.append(e)
    launches: dict[Any, tuple[float, Any]] = {}
    for e in buckets["cuda_runtime"] + buckets["cuda_driver"]:
        corr = (e.get("args") or {}).get("correlation")
        if corr is not None:
            launches.setdefault(corr, (e["ts"], e.get("tid")))
    ops = buckets["cpu_op"] + buckets["user_annotation"]
    markers = [e for e in ops if e.get("name", "").startswith(MARKER_PREFIXES)]
    aten = [e for e in buckets["cpu_op"] if e.get("name", "").startswith("aten::")]

    def ops_for(needed: set) -> tuple[dict[Any, Any], dict[Any, dict]]:
        keys: dict[Any, Any] = {}
        unique: dict[Any, dict] = {}
        for e in ops:
            a = e.get("args")
            x = a.get("External id") if a else None
            if x in needed and x not in keys:  # duplicates: keep the first, do not raise
                key = (e.get("name", ""), orjson.dumps((
                    a.get("Input Dims"), a.get("Input type"), a.get("Concrete Inputs"),
                    a.get("kernel_num_gb"), a.get("kernel_flop"))))
                keys[x] = key
                unique.setdefault(key, e)
        return keys, unique

    device = None
    if isinstance(data, dict):
        props = data.get("deviceProperties") or []
        if props and isinstance(props[0], dict):
            device = props[0].get("name")
    gpu = _GpuRows.from_events(buckets["kernel"] + buckets["gpu_memcpy"] + buckets["gpu_memset"])
    ts = np.array([e.get("ts") for e in aten], dtype=float)
    end = ts + np.array([e.get("dur") for e in aten], dtype=float)
    return KinetoEvents(gpu, launches, markers, ops_for,
                        AtenOps([e.get("tid") for e in aten], ts, end, [e["name"] for e in aten]),
                        device)


def from_scan(found: Scan) -> KinetoEvents:
    """The events of a fast-path text scan (kineto_scan.py) as the table reads them."""
    gpu = _GpuRows(kernel=found["kernel"], ts=np.array(found["ts"], dtype=float),
                   dur=np.array(found["dur"], dtype=float), correlation=found["correlation"],
                   external_id=found["external_id"], bytes=np.array(found["bytes"], dtype=float),
                   kernels=found["kernels"])
    ts = np.array(found["aten_ts"], dtype=float)
    aten = AtenOps(found["aten_tid"], ts, ts + np.array(found["aten_dur"], dtype=float),
                   found["aten_name"])
    op_keys, op_events = found["op_keys"], found["op_events"]

    def ops_for(needed: set) -> tuple[dict[Any, Any], dict[Any, dict]]:
        keys = {x: op_keys[x] for x in needed if x in op_keys}
        return keys, {k: op_events[k] for k in dict.fromkeys(keys.values())}

    return KinetoEvents(gpu, found["launches"], found["markers"], ops_for, aten, found["device"])


def kineto_fast(buf: bytes) -> KinetoEvents | None:
    """Kineto's layout, cut from the text (kineto_scan.py); None when the text is laid out
    otherwise or is not whole (the full parse then says where it breaks)."""
    found = scan(buf)
    return from_scan(found) if found is not None else None


def outermost_ops(aten: AtenOps, tid: list[Any], t: np.ndarray) -> list[str]:
    """For each (thread, host time), the outermost aten op running there, else ""."""
    found = np.full(len(t), -1)
    threads = {thread: k for k, thread in enumerate(set(aten.tid))}
    op_threads = np.array([threads[x] for x in aten.tid], dtype=int)
    query_threads = np.array([threads.get(x, -1) for x in tid], dtype=int)
    for k in set(query_threads.tolist()) - {-1}:
        idx = np.flatnonzero(op_threads == k)
        idx = idx[np.lexsort((-aten.end[idx], aten.ts[idx]))]   # parents before children
        start, end = aten.ts[idx], aten.end[idx]
        # an op is outermost when it starts after everything before it on the thread ended
        top = np.concatenate([[True], start[1:] >= np.fmax.accumulate(end)[:-1]])
        idx, start, end = idx[top], start[top], end[top]
        q = np.flatnonzero(query_threads == k)
        j = np.searchsorted(start, t[q], side="right") - 1
        inside = (j >= 0) & (t[q] <= end[np.maximum(j, 0)])
        found[q[inside]] = idx[j[inside]]
    # each distinct op index looked up once, each distinct name decoded once
    index, inverse = np.unique(found, return_inverse=True)
    raw = [aten.name[j] if j >= 0 else "" for j in index.tolist()]
    text = {n: n.decode() if isinstance(n, bytes) else n for n in dict.fromkeys(raw)}
    names = [text[n] for n in raw]
    return [names[i] for i in inverse.tolist()]


def parse_kineto(ev: KinetoEvents, path: Path) -> Parsed:
    gpu = ev.gpu
    if not gpu.kernels:
        raise InputError(f"{path}: no GPU kernel events (cat=kernel); was the trace recorded "
                         "with ProfilerActivity.CUDA on a GPU?")
    host = [ev.launches.get(c, (math.nan, "")) for c in gpu.correlation]
    anchor = np.array([ts for ts, _ in host], dtype=float)
    rows = Launches(kernel=gpu.kernel, ts=gpu.ts, dur=gpu.dur, anchor=anchor,
                    instance=gpu.external_id, op=[""] * len(gpu.kernel), bytes=gpu.bytes,
                    source_op=outermost_ops(ev.aten, [t for _, t in host], anchor))
    iterations = iteration_windows(ev.markers, path)

    def costs(launches):
        needed = set(launches["instance"].dropna().tolist())
        return kineto_costs(launches, ev.ops_for(needed))

    return Parsed("kineto", launch_frame(rows, path), iterations.windows, iterations.source, costs,
                  ev.device, iterations.notes)
