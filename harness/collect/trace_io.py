"""Reading a trace file, and what both trace readers (Kineto, perfetto) hand the kernel table.

Reading: the bytes (trace_read.py), the JSON (orjson; strict, so a NaN or an infinite duration written by Python's json
is re-read with the standard library to name the event instead of calling the file
corrupt), and which trace format it is.

Handing over: `Launches` (one entry per GPU kernel, memcpy or memset), `Parsed` (the launches
as a DataFrame, the host iteration windows, how the launches are costed) and `OpCost`.
Durations are checked here once for both formats: an event without `dur`, or with a
negative, NaN or infinite one, is refused with the file and the event named, never counted
as 0.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np
import orjson

from harness.collect.trace_read import gc_paused, read_bytes  # noqa: F401 (re-exported)
from harness.errors import InputError

if TYPE_CHECKING:   # pandas is imported where a frame is built: hlo.py's users need none
    import pandas as pd

ITER_MARKER = re.compile(r"^harness_iter(_\d+)?$")
STEP_MARKER = re.compile(r"^ProfilerStep#\d+$")
MARKER_PREFIXES = ("harness_iter", "ProfilerStep#")
_KINETO_CATS = frozenset({"kernel", "cpu_op", "cuda_runtime", "cuda_driver", "user_annotation",
                          "gpu_memcpy", "gpu_memset"})
# What orjson refuses and Python's json writes: `"dur": NaN`, `Infinity`, `1e999`.
_NON_FINITE = re.compile(rb"-?(?:NaN|Infinity)\b|-?\d+(?:\.\d*)?[eE]\+?\d{3,}")


def parse_json(raw: bytes, path: str | Path) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        if _non_finite_at(raw, e):
            return json.loads(raw)   # the duration checks then name the event
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{path}: truncated or invalid JSON ({first}); expected a Kineto or "
                         "JAX perfetto trace") from None


def _non_finite_at(raw: bytes, error: orjson.JSONDecodeError) -> bool:
    return "infinity" in str(error) or _NON_FINITE.match(raw, error.pos) is not None


def read_trace(path: str | Path) -> tuple[Any, int]:
    """Parsed JSON of a trace (plain or gzip) and the size of its JSON text in bytes."""
    raw = read_bytes(path)
    return parse_json(raw, path), len(raw)


def trace_events(data: Any, path: Path) -> list[dict]:
    if isinstance(data, dict) and isinstance(data.get("traceEvents"), list):
        return data["traceEvents"]
    if isinstance(data, list):  # the chrome trace "JSON array" form
        return data
    raise InputError(f"{path}: unknown trace format, no traceEvents list; expected a Kineto "
                     "or JAX perfetto trace")


def detect_source(data: Any, path: Path) -> str:
    """'kineto' or 'perfetto'; InputError for anything else."""
    events = trace_events(data, path)
    if isinstance(data, dict) and ("schemaVersion" in data or "deviceProperties" in data):
        return "kineto"
    for e in events:
        if not isinstance(e, dict):
            break
        if e.get("ph") == "M" and e.get("name") == "process_name":
            name = str((e.get("args") or {}).get("name", ""))
            if name.startswith(("/device:", "/host:")):
                return "perfetto"
        if e.get("cat") in _KINETO_CATS:
            return "kineto"
    raise InputError(f"{path}: unknown trace format; expected a PyTorch Kineto chrome trace "
                     "(events with cat=kernel) or a JAX perfetto trace (process /device:GPU:N)")


def duration_us(value: Any) -> float:
    """An event's `dur` as a float; NaN when absent or not a number (refused later)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else math.nan


def check_durations(path: Path, names: Sequence[str], ts: np.ndarray, dur: np.ndarray) -> None:
    """Every GPU event needs a finite start and a finite, non-negative duration in us."""
    bad = ~(np.isfinite(ts) & np.isfinite(dur) & (dur >= 0))
    if not bad.any():
        return
    i = int(np.flatnonzero(bad)[0])
    d = dur[i]
    why = ("no 'dur' (or a NaN one)" if math.isnan(d) else f"an infinite 'dur' ({d})" if math.isinf(d)
           else f"a negative 'dur' ({d})" if d < 0 else f"a non-finite 'ts' ({ts[i]})")
    more = f" ({int(bad.sum()) - 1} more such events)" if bad.sum() > 1 else ""
    raise InputError(f"{path}: GPU event {names[i]!r} at ts {ts[i]} has {why}{more}; expected "
                     "a finite, non-negative duration in us")


# ------------------------------------------------------------ what the readers hand over

@dataclass
class Launches:
    """One row per kernel launch (columnar), before windowing and aggregation."""
    kernel: Sequence[str] = field(default_factory=list)
    ts: Sequence[float] = field(default_factory=list)        # GPU start, us
    dur: Sequence[float] = field(default_factory=list)       # us
    anchor: Sequence[float] = field(default_factory=list)    # host launch time, NaN if unknown
    instance: Sequence[Any] = field(default_factory=list)    # Kineto External id; XLA module
    op: Sequence[str] = field(default_factory=list)          # what launched it (classification)
    bytes: Sequence[float] = field(default_factory=list)     # known per launch (memcpy), else NaN
    scope: Sequence[str] = field(default_factory=list)       # XLA op_name metadata ("name" arg)
    source_op: Sequence[str] = field(default_factory=list)   # the PyTorch op it comes from


@dataclass(frozen=True)
class OpCost:
    """What one launching op instance costs and what it touches."""
    flops: float = math.nan
    bytes: float = math.nan
    dtypes: str = ""
    features: str = ""
    peak_dtype: str | None = None
    hlo: str = ""


@dataclass
class Parsed:
    source: str
    launches: pd.DataFrame                      # Launches' fields, in GPU time order
    windows: list[tuple[float, float]]          # host iteration windows (start, end), us
    iters_source: str                           # "harness_iter" / "ProfilerStep" / "none"
    costs: Callable[[pd.DataFrame], pd.DataFrame]  # adds flops/bytes/dtypes/features/...
    device_name: str | None = None
    notes: list[str] = field(default_factory=list)  # what the reader did about odd input


@dataclass
class Iterations:
    """The host markers that cut a trace into iterations, checked (`iteration_windows`)."""
    windows: list[tuple[float, float]]          # (start, end) in us, sorted, disjoint
    source: str                                 # "harness_iter" / "ProfilerStep" / "none"
    notes: list[str] = field(default_factory=list)   # what was done about odd markers


def iteration_windows(events: Iterable[dict], path: str | Path) -> Iterations:
    """Iteration windows from host markers: harness_iter_* first, else ProfilerStep#N.

    Markers are checked like kernels: a marker without a finite start and a positive, finite
    `dur` is refused (a missing `dur` read as 0 once left every launch of that iteration out:
    figures 20% low, exit 0). An exact copy of a marker (same name, start and duration: a trace
    whose events were written twice) is counted once, and a note says so; two different
    markers of one numbered name, or markers that overlap, are refused: which is the
    iteration cannot be told, and counting both halved the per-iteration figures."""
    ours, steps = [], []
    for e in events:
        name = e.get("name", "")
        if name.startswith("harness_iter") and ITER_MARKER.match(name):
            ours.append(e)
        elif name.startswith("ProfilerStep#") and STEP_MARKER.match(name):
            steps.append(e)
    markers, source = (ours, "harness_iter") if ours else (steps, "ProfilerStep") if steps \
        else ([], "none")
    seen: dict[tuple[str, float, float], None] = {}
    starts: dict[str, float] = {}
    for e in markers:
        name, ts, dur = e["name"], duration_us(e.get("ts")), duration_us(e.get("dur"))
        if not (math.isfinite(ts) and math.isfinite(dur) and dur > 0):
            why = ("no 'dur' (or a NaN one)" if "dur" not in e or math.isnan(dur) else
                   f"a 'dur' of {e.get('dur')!r}" if math.isfinite(ts) else
                   f"a start 'ts' of {e.get('ts')!r}")
            raise InputError(f"{path}: iteration marker {name!r} at ts {e.get('ts')} has {why}; "
                             "expected a finite start and a positive duration in us")
        if (name, ts, dur) in seen:
            continue
        if name in starts and name != "harness_iter":   # numbered markers name one iteration
            raise InputError(f"{path}: iteration marker {name!r} appears twice, at ts "
                             f"{starts[name]} and {ts}; expected one marker per iteration")
        seen[(name, ts, dur)] = None
        starts[name] = ts
    ordered = sorted(seen, key=lambda k: (k[1], k[2]))
    for (a, a_ts, a_dur), (b, b_ts, _) in zip(ordered, ordered[1:]):
        # ProfilerStep#N+1 starts where #N ends; ts + dur at 4.6e12 us can round past it by
        # 0.001 us (the traces' last decimal), which is no overlap
        if b_ts + 0.01 < a_ts + a_dur:
            raise InputError(f"{path}: iteration markers {a!r} (ts {a_ts}, dur {a_dur}) and {b!r} "
                             f"(ts {b_ts}) overlap; expected one marker per iteration, one after "
                             "the other")
    notes = []
    if len(markers) > len(seen):
        notes.append(f"{len(markers) - len(seen)} duplicated {source} marker(s) (same name, "
                     "start and duration) counted once")
    return Iterations([(ts, ts + dur) for _, ts, dur in ordered], source, notes)


def launch_frame(rows: Launches, path: Path) -> pd.DataFrame:
    """Launches in GPU time order, whatever order the file listed them in (determinism: the
    two Kineto paths meet kernels and memsets in different orders). Durations checked."""
    import pandas as pd
    ts = np.asarray(rows.ts, dtype=float)
    dur = np.asarray(rows.dur, dtype=float)
    check_durations(path, rows.kernel, ts, dur)
    n = len(rows.kernel)
    order = np.argsort(ts, kind="stable")
    frame = pd.DataFrame({
        "kernel": pd.Series(rows.kernel, dtype=object),
        "ts": ts, "dur": dur,
        "anchor": np.asarray(rows.anchor, dtype=float),
        "instance": pd.Series(rows.instance, dtype=object),
        "op": pd.Series(rows.op, dtype=object),
        "bytes": np.asarray(rows.bytes, dtype=float),
        "scope": pd.Series(rows.scope if len(rows.scope) else [""] * n, dtype=object),
        "source_op": pd.Series(rows.source_op if len(rows.source_op) else [""] * n,
                               dtype=object),
    })
    return frame.iloc[order].reset_index(drop=True)
