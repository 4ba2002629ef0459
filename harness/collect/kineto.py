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
it is laid out the way libkineto writes it; `kineto_full` reads any parsed layout.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import orjson

from harness.collect.kineto_costs import kineto_costs
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


# Kineto's own writer (libkineto ChromeTraceLogger) lays every event out the same way:
#   \n  {\n    "ph": "X", "cat": "kernel", "name": "...", "pid": 0, "tid": 7,\n    "ts": ...,
#   "dur": ...,\n    "args": {\n      "External id": 8, ... "correlation": 15, ...\n    }\n  }
# so the events the table needs can be found with a regex and cut out of the text (raw
# newlines never occur inside JSON strings, so "\n  }" only ends an event). Building Python
# objects for the other ~80% (cpu ops that launch nothing, flow arrows) and freeing them again
# costs more than all the rest of the work. A trace laid out any other way (re-saved by
# json.dump, compact) takes the full parse; both give the same table (tested).
_NUM = rb"(-?[\d.]+(?:[eE][-+]?\d+)?)"
_FAST_HEAD = re.compile(rb'"traceEvents":\s*\[\s*\{\n    "ph": ')
_FAST_GPU = re.compile(
    rb'\n  \{\n    "ph": "X", "cat": "(kernel|gpu_memcpy|gpu_memset)", '
    rb'"name": "([^"\\\n]*(?:\\.[^"\\\n]*)*)", "pid": [^,\n]*, "tid": [^,\n]*,\n    "ts": ' + _NUM +
    rb', "dur": ' + _NUM + rb',\n    "args": \{\n      "External id": (\d+),[^\n]*"correlation": '
    rb'(\d+)(?:[^\n]*"bytes": (\d+))?')
_FAST_LAUNCH = re.compile(
    rb'\n  \{\n    "ph": "X", "cat": "cuda_(?:runtime|driver)", '
    rb'(?:"name": "[^"\n]*", "pid": [^,\n]*, "tid": ([^,\n]*),\n    "ts": ' + _NUM +
    rb',[^\n]*\n    "args": \{\n[^\n]*"correlation": (\d+))?')
# cpu ops with their args on one line (all seen so far): name, thread, start, duration,
# External id and the rest of the args, in one C-level pass
_FAST_OP_EVENT = re.compile(rb'\n  \{\n    "ph": "X", "cat": "(?:cpu_op|user_annotation)", '
                            rb'"name": "([^"\n]*)", "pid": [^,\n]*, "tid": ([^,\n]*),\n    "ts": '
                            + _NUM + rb', "dur": ' + _NUM + rb',\n    "args": \{\n      '
                            rb'"External id": (\d+)([^\n]*)\n    \}\n  \}')
# any cpu op with an External id, however its args are laid out (the slow pass)
_FAST_OP = re.compile(rb'\n  \{\n    "ph": "X", "cat": "(?:cpu_op|user_annotation)", [^\n]*\n'
                      rb'[^\n]*\n    "args": \{\n      "External id": (\d+)')
# what differs between two launches of the same op with the same inputs
_FAST_VOLATILE = re.compile(rb'"(?:Ev Idx|Sequence number|Fwd thread id|Record function id)": '
                            rb'-?[\d.]+')
_FAST_DEVICE = re.compile(rb'"deviceProperties":\s*\[\s*\{[^}]*?"name":\s*"([^"]*)"')
_END = b"\n  }"


def _cut(buf: bytes, starts: Iterable[int]) -> list[bytes]:
    """The events beginning at `starts` (their leading newline), as JSON text."""
    find = buf.find
    return [buf[s + 1:find(_END, s + 1) + len(_END)] for s in starts]


def _parse_events(pieces: list[bytes]) -> list[dict]:
    """Parse many cut events in one JSON call: per-event calls cost more than the parse."""
    return orjson.loads(b"[" + b",".join(pieces) + b"]") if pieces else []


def _marker_starts(buf: bytes) -> list[int]:
    """Event starts of the few events named harness_iter*/ProfilerStep#: bytes.find is a
    memchr-speed scan, a regex pass is several times slower."""
    starts = []
    for needle in (b'"name": "harness_iter', b'"name": "ProfilerStep#'):
        i = buf.find(needle)
        while i >= 0:
            starts.append(buf.rfind(b"\n  {\n", 0, i))
            i = buf.find(needle, i + 1)
    return sorted(set(s for s in starts if s >= 0))


def _whole_file(buf: bytes, head: re.Match) -> bool:
    """The text around the events is a complete JSON object: the file was not cut after some
    events (a cut that ends just after an event's args would otherwise read as a trace)."""
    last = buf.rfind(_END)
    rest = buf[last + len(_END):].lstrip(b", \n\r\t")
    if last < 0 or not rest.startswith(b"]"):
        return False
    try:
        orjson.loads(buf[:head.start()] + b'"traceEvents": []' + rest[1:])
    except orjson.JSONDecodeError:
        return False
    return True


def _fast_launches(buf: bytes) -> dict[Any, tuple[float, Any]]:
    fields = _FAST_LAUNCH.findall(buf)
    if all(corr for _, _, corr in fields):
        ts = np.array([t for _, t, _ in fields], dtype=float).tolist()
        # reversed: the first launch of a correlation id wins, as in the full parse
        return {int(c): (t, tid) for (tid, _, c), t in zip(reversed(fields), reversed(ts))}
    launches: dict[Any, tuple[float, Any]] = {}
    for e in _parse_events(_cut(buf, (m.start() for m in _FAST_LAUNCH.finditer(buf)))):
        corr = (e.get("args") or {}).get("correlation")   # a launch laid out differently
        if corr is not None:
            launches.setdefault(corr, (e["ts"], str(e.get("tid")).encode()))
    return launches


def _fast_aten(buf: bytes, ops: list[tuple[bytes, ...]]) -> AtenOps | None:
    aten = [op for op in ops if op[0].startswith(b"aten::")]
    if len(aten) != buf.count(b'"cat": "cpu_op", "name": "aten::'):
        return None   # some aten op laid out otherwise: do not trust the cut
    ts = np.array([op[2] for op in aten], dtype=float)
    end = ts + np.array([op[3] for op in aten], dtype=float)
    return AtenOps([op[1] for op in aten], ts, end, [op[0] for op in aten])


def _fast_ops_for(buf: bytes, ops: list[tuple[bytes, ...]]
                  ) -> Callable[[set], tuple[dict[Any, Any], dict[Any, dict]]]:
    def ops_for(needed: set) -> tuple[dict[Any, Any], dict[Any, dict]]:
        # External id -> its op; reversed, so that the first of duplicate ids wins
        index = dict(zip((op[4] for op in reversed(ops)), range(len(ops) - 1, -1, -1)))
        found: dict[int, bytes] = {}
        for x in needed:
            i = index.get(b"%d" % x) if isinstance(x, int) else None
            if i is not None:
                name, _, _, _, ext, rest = ops[i]
                found[x] = b'{"name": "%s", "args": {"External id": %s%s}}' % (name, ext, rest)
        missing = needed - found.keys()
        if missing:   # ops Kineto wrote with multi-line args (none seen so far)
            for m in _FAST_OP.finditer(buf):
                x = int(m.group(1))
                if x in missing and x not in found:
                    found[x] = _cut(buf, [m.start()])[0]
        # the volatile fields of every op removed in one regex pass over their joined text
        # (one pass, not 34k calls, on a 100 MB trace); raw NUL never occurs in JSON text
        ids = list(found)
        stripped = _FAST_VOLATILE.sub(b"", b"\0".join(
            found[x].replace(b'"External id": %d' % x, b"", 1) for x in ids)).split(b"\0")
        keys: dict[Any, Any] = dict(zip(ids, stripped))
        texts: dict[bytes, bytes] = {}
        for x, key in zip(ids, stripped):
            texts.setdefault(key, found[x])
        return keys, dict(zip(texts, _parse_events(list(texts.values()))))
    return ops_for


def _fast_gpu(buf: bytes) -> _GpuRows | None:
    """GPU events straight from the text; None unless every one of them was found (an event
    without `dur`, or laid out otherwise, goes to the full parse, which names it)."""
    found = _FAST_GPU.findall(buf)
    cats = [f[0] for f in found]
    if any(cats.count(c) != buf.count(b'"cat": "%s"' % c) for c in (b"kernel", b"gpu_memcpy",
                                                                    b"gpu_memset")):
        return None
    names: dict[bytes, str] = {}
    for f in found:
        if f[1] not in names:   # a JSON string's text: unescape only where it has escapes
            names[f[1]] = orjson.loads(b'"%s"' % f[1]) if b"\\" in f[1] else f[1].decode()
    return _GpuRows(kernel=[names[f[1]] for f in found],
                    ts=np.array([f[2] for f in found], dtype=float),
                    dur=np.array([f[3] for f in found], dtype=float),
                    correlation=[int(f[5]) for f in found],
                    external_id=[int(f[4]) for f in found],
                    bytes=np.array([f[6] if f[0] != b"kernel" and f[6] else None for f in found],
                                   dtype=float),
                    kernels=cats.count(b"kernel"))


def kineto_fast(buf: bytes) -> KinetoEvents | None:
    """Kineto's layout, cut from the text; None when the text is laid out otherwise or is
    not whole (the full parse then says where it breaks)."""
    head = _FAST_HEAD.search(buf, 0, 1 << 16)
    if head is None or not _whole_file(buf, head):
        return None
    try:
        gpu = _fast_gpu(buf)
        if gpu is None or not gpu.kernels:
            return None
        ops = _FAST_OP_EVENT.findall(buf)
        aten = _fast_aten(buf, ops)
        if aten is None:
            return None
        launches = _fast_launches(buf)
        markers = [e for e in _parse_events(_cut(buf, _marker_starts(buf)))
                   if e.get("cat") in ("user_annotation", "cpu_op")]
    except (ValueError, KeyError):
        return None
    device = _FAST_DEVICE.search(buf, 0, head.start())
    return KinetoEvents(gpu, launches, markers, _fast_ops_for(buf, ops), aten,
                        device.group(1).decode() if device else None)


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
    names = {j: aten.name[j] for j in set(found.tolist()) - {-1}}
    names = {j: n.decode() if isinstance(n, bytes) else n for j, n in names.items()}
    return [names.get(j, "") for j in found.tolist()]


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
    windows, marker = iteration_windows(ev.markers)

    def costs(launches):
        needed = set(launches["instance"].dropna().tolist())
        return kineto_costs(launches, ev.ops_for(needed))

    return Parsed("kineto", launch_frame(rows, path), windows, marker, costs, ev.device)
