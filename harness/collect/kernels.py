"""Trace -> normalised kernel table: where the GPU time goes, per kernel and per category.

Two sources, one table (`COLUMNS`):
- PyTorch Kineto chrome trace (`prof.export_chrome_trace`, eager and Inductor). Kernel events:
    {"ph": "X", "cat": "kernel", "name": "triton_red_fused_abs_max_0", "ts": 198093513655.849,
     "dur": 12.3, "args": {"External id": 1619, "correlation": 311, "stream": 7, "grid": [...]}}
  `correlation` pairs it with the host launch (`cat` cuda_runtime / cuda_driver, same
  `args.correlation`); `External id` names the innermost CPU op on the stack at launch
  (`cat` cpu_op: `aten::_scaled_mm` with `Input Dims`/`Input type` under record_shapes, or for
  Inductor the Triton kernel's own `_RecordFunctionFast` record of the same name).
  `cat` gpu_memcpy / gpu_memset (`args.bytes`) are kept as category `copy`.
- JAX perfetto trace (`jax.profiler.trace(..., create_perfetto_trace=True)`, i.e. XProf's
  trace.json with its `metadata` removed). No `cat`; processes are named by metadata events
  {"ph": "M", "pid": 3, "name": "process_name", "args": {"name": "/device:GPU:0"}}, streams by
  thread_name "Stream #14(Compute,Memset)". Every arg value is a string (H100, JAX 0.11):
    {"ph": "X", "pid": 1, "tid": 14, "ts": 38897.28, "dur": 21.312,
     "name": "loop_convert_fusion_1", "args": {"hlo_module": "jit_step",
     "hlo_op": "command_buffer_1", "cuda_graph_id": "8", "correlation_id": "1",
     "kernel_details": "regs:16 static_shared:0 dynamic_shared:0 grid:32768,1,1 ..."}}
  XLA runs a step as a CUDA graph (command buffer), so hlo_op names the buffer, not the
  instruction; the kernel's own name is the instruction's ("loop_convert_fusion.1"), except
  for cuBLAS's kernels ("nvjet_sm90_qqsss_..."), matched to the schedule's GEMMs by position.
  Host launches are not exported, so kernels are placed in iterations by their GPU time.

Iterations: the harness wraps iteration i in `record_function("harness_iter_i")` (Kineto
user_annotation) or `jax.profiler.TraceAnnotation("harness_iter_i")` (a host event). Only
kernels of those iterations count (profiler warm-up, the first-call allocator memsets and the
trailing sync are not the program), and per-iteration figures are window totals / iterations.
User traces without our markers fall back to `ProfilerStep#N`, else to the whole trace as one
iteration (`df.attrs["iters_source"]` says which).

FLOPs and bytes: Kineto from the launching op's recorded shapes through the formulas registered
in `torch.utils.flop_counter` (only ops that have one: seed 003's review point; the formulas
are reused, not rewritten); XLA from the instruction in the optimised HLO dump when `hlo_dir`
is given (dot / cuBLAS / convolution shapes). Elsewhere NaN: unknown is not zero.
"""
from __future__ import annotations

import gc
import inspect
import json
import math
import re
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from harness.collect.devices import DeviceSpec, Peaks, lookup_device, peak_dtype
from harness.collect.kernel_categories import CATEGORIES, classify_cached
from harness.errors import InputError

try:  # faster than json on 100+ MB traces; optional so a bare install still parses
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised only without orjson
    _orjson = None

COLUMNS = ["kernel", "category", "calls_per_iter", "time_us_per_iter", "share", "flops", "bytes",
           "achieved_tflops", "achieved_gbps", "pct_peak_flops", "pct_peak_bw", "suspect",
           "source"]
SOURCES = ("kineto", "perfetto")
ITER_MARKER = re.compile(r"^harness_iter(_\d+)?$")
STEP_MARKER = re.compile(r"^ProfilerStep#\d+$")


# ----------------------------------------------------------------------------------- loading

def read_bytes(path: str | Path) -> bytes:
    """The JSON text of a trace file, gunzipped if it is gzip."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a trace file "
                         "(trace.json[.gz] or perfetto_trace.json.gz)") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            # One-shot inflate of the whole buffer: about twice gzip.open().read()'s speed.
            raw = zlib.decompress(raw, 16 + zlib.MAX_WBITS)
        except zlib.error as e:
            raise InputError(f"{path}: truncated or corrupt gzip ({e})") from None
    return raw


def parse_json(raw: bytes, path: str | Path) -> Any:
    try:
        return _loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{path}: truncated or invalid JSON ({first}); expected a Kineto or "
                         "JAX perfetto trace") from None


def read_trace(path: str | Path) -> tuple[Any, int]:
    """Parsed JSON of a trace (plain or gzip) and the size of its JSON text in bytes."""
    raw = read_bytes(path)
    return parse_json(raw, path), len(raw)


def _events(data: Any, path: Path) -> list[dict]:
    if isinstance(data, dict) and isinstance(data.get("traceEvents"), list):
        return data["traceEvents"]
    if isinstance(data, list):  # the chrome trace "JSON array" form
        return data
    raise InputError(f"{path}: unknown trace format, no traceEvents list; expected a Kineto "
                     "or JAX perfetto trace")


_KINETO_CATS = frozenset({"kernel", "cpu_op", "cuda_runtime", "cuda_driver", "user_annotation",
                          "gpu_memcpy", "gpu_memset"})


def detect_source(data: Any, path: Path) -> str:
    """'kineto' or 'perfetto'; InputError for anything else."""
    events = _events(data, path)
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


# ---------------------------------------------------------------------- launch records (raw)

@dataclass
class Launches:
    """One row per kernel launch (columnar), before windowing and aggregation."""
    kernel: Sequence[str] = field(default_factory=list)
    ts: Sequence[float] = field(default_factory=list)        # GPU start, us
    dur: Sequence[float] = field(default_factory=list)       # us
    anchor: Sequence[float] = field(default_factory=list)    # host launch time, NaN if unknown
    instance: Sequence[Any] = field(default_factory=list)    # Kineto External id; XLA (module, op)
    op: Sequence[str] = field(default_factory=list)
    bytes: Sequence[float] = field(default_factory=list)     # known per launch (memcpy), else NaN
    scope: Sequence[str] = field(default_factory=list)       # XLA op_name metadata ("name" arg)


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
    launches: pd.DataFrame                      # kernel, ts, dur, anchor, instance, op, bytes
    windows: list[tuple[float, float]]          # host iteration windows (start, end), us
    iters_source: str                           # "harness_iter" / "ProfilerStep" / "none"
    costs: Callable[[pd.DataFrame], pd.DataFrame]  # adds flops/bytes/dtypes/features/...
    device_name: str | None = None


# --------------------------------------------------------------------------------- Kineto

@dataclass
class _GpuRows:
    """GPU events (cat kernel / gpu_memcpy / gpu_memset), one list entry per event."""
    kernel: list[str]
    ts: np.ndarray
    dur: np.ndarray
    correlation: list[Any]
    external_id: list[Any]
    bytes: np.ndarray        # memcpy/memset `args.bytes`, NaN for kernels
    kernels: int             # how many are cat=kernel

    @staticmethod
    def from_events(events: list[dict]) -> "_GpuRows":
        args = [e.get("args") or {} for e in events]
        return _GpuRows(
            kernel=[e["name"] for e in events],
            ts=np.array([e["ts"] for e in events], dtype=float),
            dur=np.array([e.get("dur", 0.0) for e in events], dtype=float),
            correlation=[a.get("correlation") for a in args],
            external_id=[a.get("External id") for a in args],
            bytes=np.array([float(a["bytes"]) if e.get("cat") != "kernel" and
                            a.get("bytes") is not None else math.nan
                            for e, a in zip(events, args)], dtype=float),
            kernels=sum(1 for e in events if e.get("cat") == "kernel"))


@dataclass
class _KinetoEvents:
    """The few Kineto events the table needs, however they were found."""
    gpu: _GpuRows
    launch_ts: dict[Any, float]         # correlation -> host launch time (cuda_runtime/driver)
    markers: list[dict]                 # harness_iter_* / ProfilerStep#N host events
    # External ids -> ({id: key}, {key: op event}): ops with the same name and recorded inputs
    # share a key, so each distinct op is parsed and costed once, not once per launch.
    ops_for: Callable[[set], tuple[dict[Any, Any], dict[Any, dict]]]
    device: str | None


def _kineto_full(data: Any, path: Path) -> _KinetoEvents:
    """From the parsed JSON: any chrome-trace layout (re-saved, compact, array form)."""
    events = _events(data, path)
    buckets: dict[str, list[dict]] = {c: [] for c in ("kernel", "gpu_memcpy", "gpu_memset",
                                                        "cuda_runtime", "cuda_driver",
                                                        "cpu_op", "user_annotation")}
    get = buckets.get
    for e in events:
        b = get(e.get("cat"))  # type: ignore[arg-type]
        if b is not None:
            b.append(e)
    launch_ts: dict[Any, float] = {}
    for e in buckets["cuda_runtime"] + buckets["cuda_driver"]:
        corr = (e.get("args") or {}).get("correlation")
        if corr is not None:
            launch_ts.setdefault(corr, e["ts"])
    ops = buckets["cpu_op"] + buckets["user_annotation"]
    markers = [e for e in ops if e.get("name", "").startswith(("harness_iter", "ProfilerStep#"))]
    dump = _orjson.dumps if _orjson is not None else repr

    def ops_for(needed: set) -> tuple[dict[Any, Any], dict[Any, dict]]:
        keys: dict[Any, Any] = {}
        unique: dict[Any, dict] = {}
        for e in ops:
            a = e.get("args")
            x = a.get("External id") if a else None
            if x in needed and x not in keys:  # duplicates: keep the first, do not raise
                key = (e.get("name", ""), dump((a.get("Input Dims"), a.get("Input type"),
                                                a.get("Concrete Inputs"), a.get("kernel_num_gb"),
                                                a.get("kernel_flop"))))
                keys[x] = key
                unique.setdefault(key, e)
        return keys, unique

    device = None
    if isinstance(data, dict):
        props = data.get("deviceProperties") or []
        if props and isinstance(props[0], dict):
            device = props[0].get("name")
    gpu = _GpuRows.from_events(buckets["kernel"] + buckets["gpu_memcpy"] + buckets["gpu_memset"])
    return _KinetoEvents(gpu, launch_ts, markers, ops_for, device)


# Kineto's own writer (libkineto ChromeTraceLogger) lays every event out the same way:
#   \n  {\n    "ph": "X", "cat": "kernel", "name": "...", "pid": 0, "tid": 7,\n    "ts": ...,
#   "dur": ...,\n    "args": {\n      "External id": 8, ... "correlation": 15, ...\n    }\n  }
# so the events the table needs can be found with a regex and cut out of the text (raw
# newlines never occur inside JSON strings, so "\n  }" only ends an event). Building Python
# objects for the other ~80% (cpu ops that launch nothing, flow arrows) and freeing them again
# costs more than all the rest of the work. A trace laid out any other way (re-saved by
# json.dump, compact) takes the full parse; both give the same table (tested).
_FAST_HEAD = re.compile(rb'"traceEvents":\s*\[\s*\{\n    "ph": ')
_FAST_GPU = re.compile(rb'\n  \{\n    "ph": "X", "cat": "(?:kernel|gpu_memcpy|gpu_memset)", ')
_FAST_LAUNCH = re.compile(
    rb'\n  \{\n    "ph": "X", "cat": "cuda_(?:runtime|driver)", '
    rb'(?:[^\n]*\n    "ts": (-?[\d.]+(?:[eE][-+]?\d+)?),[^\n]*\n    "args": \{\n'
    rb'[^\n]*"correlation": (\d+))?')
_FAST_OP = re.compile(rb'\n  \{\n    "ph": "X", "cat": "(?:cpu_op|user_annotation)", [^\n]*\n'
                      rb'[^\n]*\n    "args": \{\n      "External id": (\d+)')
_FAST_OP_EVENT = re.compile(rb'\n  (\{\n    "ph": "X", "cat": "(?:cpu_op|user_annotation)", '
                            rb'[^\n]*\n[^\n]*\n    "args": \{\n      "External id": (\d+)'
                            rb'[^\n]*\n    \}\n  \})')
# what differs between two launches of the same op with the same inputs
_FAST_VOLATILE = re.compile(rb'"(?:ts|dur|tid|pid|External id|Ev Idx|Sequence number|'
                            rb'Fwd thread id|Record function id)": -?[\d.]+')
_FAST_DEVICE = re.compile(rb'"deviceProperties":\s*\[\s*\{[^}]*?"name":\s*"([^"]*)"')
_END = b"\n  }"


def _loads(raw: bytes) -> Any:
    return _orjson.loads(raw) if _orjson is not None else json.loads(raw)


def _cut(buf: bytes, starts: Iterable[int]) -> list[bytes]:
    """The events beginning at `starts` (their leading newline), as JSON text."""
    find = buf.find
    return [buf[s + 1:find(_END, s + 1) + len(_END)] for s in starts]


def _parse_events(pieces: list[bytes]) -> list[dict]:
    """Parse many cut events in one JSON call: per-event calls cost more than the parse."""
    return _loads(b"[" + b",".join(pieces) + b"]") if pieces else []


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


def _kineto_fast(buf: bytes) -> _KinetoEvents | None:
    """Kineto's layout, cut from the text; None when the text is laid out otherwise."""
    head = _FAST_HEAD.search(buf, 0, 1 << 16)
    if head is None:
        return None
    tail = buf[buf.rfind(_END):].rstrip()
    if b"]" not in tail or not tail.endswith(b"}"):
        return None  # truncated: let the JSON parser say where
    try:
        gpu = _GpuRows.from_events(
            _parse_events(_cut(buf, (m.start() for m in _FAST_GPU.finditer(buf)))))
        # every kernel must have been found in the expected layout, or we do not trust the cut
        if not gpu.kernels or gpu.kernels != buf.count(b'"cat": "kernel"'):
            return None
        launch_ts: dict[Any, float] = {}
        fields = _FAST_LAUNCH.findall(buf)
        if all(corr for _, corr in fields):
            for ts, corr in fields:
                launch_ts.setdefault(int(corr), float(ts))
        else:  # a launch laid out differently: parse them all
            for e in _parse_events(_cut(buf, (m.start() for m in _FAST_LAUNCH.finditer(buf)))):
                corr = (e.get("args") or {}).get("correlation")
                if corr is not None:
                    launch_ts.setdefault(corr, e["ts"])
        markers = [e for e in _parse_events(_cut(buf, _marker_starts(buf)))
                   if e.get("cat") in ("user_annotation", "cpu_op")]
    except (ValueError, KeyError):
        return None
    device = _FAST_DEVICE.search(buf, 0, head.start())

    def ops_for(needed: set) -> tuple[dict[Any, Any], dict[Any, dict]]:
        wanted = {b"%d" % x for x in needed if isinstance(x, int)}
        found: dict[int, bytes] = {}
        # one C-level pass returning whole one-line-args op events; ops Kineto wrote with
        # multi-line args (none seen so far) are picked up by the slower pass below
        for text, x in _FAST_OP_EVENT.findall(buf):
            if x in wanted:
                found.setdefault(int(x), text)  # duplicates: keep the first, do not raise
        missing = needed - found.keys()
        if missing:
            for m in _FAST_OP.finditer(buf):
                x = int(m.group(1))
                if x in missing and x not in found:
                    found[x] = _cut(buf, [m.start()])[0]
        keys: dict[Any, Any] = {}
        texts: dict[bytes, bytes] = {}
        sub = _FAST_VOLATILE.sub
        for x, text in found.items():
            key = sub(b"", text)
            keys[x] = key
            texts.setdefault(key, text)
        return keys, dict(zip(texts, _parse_events(list(texts.values()))))

    return _KinetoEvents(gpu, launch_ts, markers, ops_for,
                         device.group(1).decode() if device else None)


def _kineto(ev: _KinetoEvents, path: Path) -> Parsed:
    gpu = ev.gpu
    if not gpu.kernels:
        raise InputError(f"{path}: no GPU kernel events (cat=kernel); was the trace recorded "
                         "with ProfilerActivity.CUDA on a GPU?")
    get = ev.launch_ts.get
    rows = Launches(kernel=gpu.kernel, ts=gpu.ts, dur=gpu.dur,
                    anchor=[get(c, math.nan) for c in gpu.correlation],
                    instance=gpu.external_id, op=[""] * len(gpu.kernel), bytes=gpu.bytes)
    windows, marker = _markers(ev.markers)

    def costs(launches: pd.DataFrame) -> pd.DataFrame:
        needed = set(launches["instance"].dropna().tolist())
        return _kineto_costs(launches, ev.ops_for(needed))

    return Parsed("kineto", _frame(rows), windows, marker, costs, ev.device)


def _markers(events: Iterable[dict]) -> tuple[list[tuple[float, float]], str]:
    """Iteration windows from host markers: harness_iter_* first, else ProfilerStep#N."""
    ours, steps = [], []
    for e in events:
        name = e.get("name", "")
        if name.startswith("harness_iter") and ITER_MARKER.match(name):
            ours.append((e["ts"], e["ts"] + e.get("dur", 0.0)))
        elif name.startswith("ProfilerStep#") and STEP_MARKER.match(name):
            steps.append((e["ts"], e["ts"] + e.get("dur", 0.0)))
    if ours:
        return sorted(ours), "harness_iter"
    if steps:
        return sorted(steps), "ProfilerStep"
    return [], "none"


def _frame(rows: Launches) -> pd.DataFrame:
    """Launches in GPU time order, whatever order the file listed them in (determinism: the
    two Kineto paths meet kernels and memsets in different orders)."""
    order = np.argsort(np.asarray(rows.ts, dtype=float), kind="stable")
    frame = pd.DataFrame({
        "kernel": pd.Series(rows.kernel, dtype=object),
        "ts": np.asarray(rows.ts, dtype=float),
        "dur": np.asarray(rows.dur, dtype=float),
        "anchor": np.asarray(rows.anchor, dtype=float),
        "instance": pd.Series(rows.instance, dtype=object),
        "op": pd.Series(rows.op, dtype=object),
        "bytes": np.asarray(rows.bytes, dtype=float),
        "scope": pd.Series(rows.scope if len(rows.scope) else [""] * len(rows.kernel),
                           dtype=object),
    })
    return frame.iloc[order].reset_index(drop=True)


# Kineto `Input type` spellings -> bytes per element. Anything else ("Scalar", "ScalarList",
# "TensorList", "") is not a tensor operand we can size.
_ITEMSIZE = {
    "float": 4, "double": 8, "c10::Half": 2, "c10::BFloat16": 2, "c10::Float8_e4m3fn": 1,
    "c10::Float8_e5m2": 1, "c10::Float8_e4m3fnuz": 1, "c10::Float8_e5m2fnuz": 1,
    "c10::Float8_e8m0fnu": 1, "c10::Float4_e2m1fn_x2": 1, "long int": 8, "int": 4,
    "short int": 2, "signed char": 1, "unsigned char": 1, "bool": 1,
    "c10::complex<float>": 8, "c10::complex<double>": 16,
}
# c10::ScalarType codes as `Concrete Inputs` prints an `out_dtype` argument ("15" = bfloat16).
_SCALAR_TYPE_ITEMSIZE = {0: 1, 1: 1, 2: 2, 3: 4, 4: 8, 5: 2, 6: 4, 7: 8, 11: 1, 15: 2, 23: 1,
                         24: 1, 25: 1, 26: 1, 44: 1}

# Ops whose registered flop formula takes the shapes of the op's leading tensor operands
# (profile_analysis.py's adapters do the same job): how many is read from the formula's own
# signature (its required positional parameters: 2 for mm, 4 for _scaled_mm, which also wants
# the scale shapes), so a formula that changes across torch versions is followed, not copied.
_LEADING_SHAPE_OPS = frozenset({
    "aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_scaled_mm",
    "aten::_scaled_dot_product_flash_attention", "aten::_scaled_dot_product_efficient_attention",
    "aten::_scaled_dot_product_cudnn_attention",
    "aten::_scaled_dot_product_flash_attention_backward",
    "aten::_scaled_dot_product_efficient_attention_backward",
    "aten::_scaled_dot_product_cudnn_attention_backward",
})
# Convolutions: where stride/padding/dilation/transposed sit among the recorded inputs, to
# compute the output shape the formula needs (profile_analysis ignored padding: wrong for
# every padded conv). cudnn_convolution has no `transposed` and a different order.
_CONV_ARGS = {
    "aten::convolution": (3, 4, 5, 6), "aten::_convolution": (3, 4, 5, 6),
    "aten::convolution_overrideable": (3, 4, 5, 6), "aten::cudnn_convolution": (3, 2, 4, None),
    "aten::_slow_conv2d_forward": (4, 5, None, None),
}
# Output shapes of the matmul family, to count the result's write in `bytes`, and how many
# leading inputs are operands: a tensor of the output's shape after them is an `out=` buffer
# (Inductor calls `extern_kernels._scaled_mm(..., out=buf9)`), already counted as an input.
_MM_OUT = {
    "aten::mm": (2, lambda d: [d[0][0], d[1][-1]]),
    "aten::_scaled_mm": (2, lambda d: [d[0][0], d[1][-1]]),
    "aten::addmm": (3, lambda d: [d[1][0], d[2][-1]]),
    "aten::bmm": (2, lambda d: [d[0][0], d[0][1], d[1][-1]]),
    "aten::baddbmm": (3, lambda d: [d[1][0], d[1][1], d[2][-1]]),
}


@lru_cache(maxsize=1)
def _flop_formulas() -> dict[str, Callable[..., int]]:
    """aten op name as Kineto writes it ("aten::_scaled_mm") -> registered flop formula."""
    try:
        from torch.utils.flop_counter import flop_registry
    except ImportError:  # pragma: no cover - torch is a dependency; be graceful anyway
        return {}
    return {"aten::" + str(k)[len("aten."):]: f for k, f in flop_registry.items()
            if str(k).startswith("aten.")}


@lru_cache(maxsize=None)
def _required_positional(formula: Callable[..., int]) -> int:
    """Required positional parameters of a formula (flop_counter wraps it; wraps keeps the
    original signature reachable)."""
    params = inspect.signature(formula).parameters.values()
    return sum(1 for p in params if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty)


def _int_list(text: str) -> list[int]:
    return [int(t) for t in re.findall(r"-?\d+", text or "")]


def _op_flops(name: str, dims: list, concrete: list) -> float:
    formula = _flop_formulas().get(name)
    if formula is None:
        return math.nan
    try:
        if name in _LEADING_SHAPE_OPS:
            n = _required_positional(formula)
            return float(formula(*dims[:n])) if len(dims) >= n else math.nan
        if name in _CONV_ARGS:
            s_i, p_i, d_i, t_i = _CONV_ARGS[name]
            x, w = dims[0], dims[1]
            n_sp = len(x) - 2
            stride = _int_list(concrete[s_i]) if s_i is not None else [1] * n_sp
            pad = _int_list(concrete[p_i]) if p_i is not None else [0] * n_sp
            dil = _int_list(concrete[d_i]) if d_i is not None else [1] * n_sp
            transposed = t_i is not None and concrete[t_i] == "True"
            stride, pad, dil = ([v[0]] * n_sp if len(v) == 1 else v for v in (stride, pad, dil))
            out = [x[0], w[0]] + [(x[i + 2] + 2 * pad[i] - dil[i] * (w[i + 2] - 1) - 1)
                                  // stride[i] + 1 for i in range(n_sp)]
            return float(formula(x, w, None, stride, pad, dil, transposed, out_val=out))
        if name == "aten::convolution_backward":
            grad_out, x, w = dims[0], dims[1], dims[2]
            mask = [m == "True" for m in re.findall(r"True|False", concrete[10])]
            return float(formula(grad_out, x, w, None, None, None, None, concrete[7] == "True",
                                 None, None, mask, out_val=[x, w, None]))
    except (IndexError, ValueError, TypeError, AssertionError, ZeroDivisionError):
        return math.nan  # a recorded shape the formula does not accept: unknown, not zero
    return math.nan


def _op_cost(name: str, args: dict) -> OpCost:
    dims = args.get("Input Dims") or []
    types = args.get("Input type") or []
    concrete = args.get("Concrete Inputs") or []
    tensors = [(d, t) for d, t in zip(dims, types) if t in _ITEMSIZE and isinstance(d, list)]
    dtypes = " ".join(t for _, t in tensors)
    fp8 = any("Float8" in t for _, t in tensors)
    distinct = {t for _, t in tensors}
    features = ["fp8_operand"] if fp8 else []
    if any(d == [] for d, _ in tensors):
        features.append("scalar_operand")
    if len(tensors) >= 2:
        features.append("same_dtype" if len(distinct) == 1 else "dtype_change")
    elif len(tensors) == 1:
        features.append("same_dtype")
    nbytes = float(sum(math.prod(d) * _ITEMSIZE[t] for d, t in tensors)) if tensors else math.nan
    if name in _MM_OUT and tensors:
        try:
            operands, out_shape = _MM_OUT[name]
            out_dims = out_shape(dims)
            if not any(d == out_dims for d in dims[operands:]):  # no out= buffer recorded
                code = concrete[6] if name == "aten::_scaled_mm" and len(concrete) > 6 else ""
                item = _SCALAR_TYPE_ITEMSIZE.get(int(code), 2) if code.isdigit() \
                    else _ITEMSIZE[tensors[0][1]]
                nbytes += math.prod(out_dims) * item
        except (IndexError, TypeError):
            pass
    gb = args.get("kernel_num_gb")  # Inductor's own estimate, when it was asked to record one
    if gb:
        nbytes = float(gb) * 1e9
    flops = float(args["kernel_flop"]) if args.get("kernel_flop") else _op_flops(name, dims,
                                                                                  concrete)
    return OpCost(flops=flops, bytes=nbytes, dtypes=dtypes, features=" ".join(features),
                  peak_dtype=peak_dtype(tensors[0][1]) if tensors else None)


def _kineto_costs(launches: pd.DataFrame,
                  ops: tuple[dict[Any, Any], dict[Any, dict]]) -> pd.DataFrame:
    keys, unique = ops
    by_key = {k: (e.get("name", ""), _op_cost(e.get("name", ""), e.get("args") or {}))
              for k, e in unique.items()}
    per_instance = {x: by_key[k] for x, k in keys.items()}
    fp8_trace = any("fp8_operand" in c.features for _, c in by_key.values())
    empty = ("", OpCost())
    info = [per_instance.get(x, empty) for x in launches["instance"].tolist()]
    out = launches.copy()
    out["op"] = [n for n, _ in info]
    out["dtypes"] = [c.dtypes for _, c in info]
    out["features"] = [(c.features + (" fp8_trace" if fp8_trace else "")).strip()
                       for _, c in info]
    out["hlo"] = ""
    out["peak_dtype"] = [c.peak_dtype for _, c in info]
    out["op_flops"] = [c.flops for _, c in info]
    out["op_bytes"] = [c.bytes for _, c in info]
    return out


# ------------------------------------------------------------------------------ JAX perfetto

_STREAM = re.compile(r"^Stream #\d+")
_NOT_KERNELS = frozenset({"MemoryAlloc", "MemoryFree", "MemoryResidency", "Overhead",
                          "CudaGraph", "Synchronization", "Generic", "Unsupported"})


def _perfetto(data: Any, path: Path, hlo_dir: str | Path | None) -> Parsed:
    events = _events(data, path)
    process: dict[Any, str] = {}
    thread: dict[tuple[Any, Any], str] = {}
    for e in events:
        if e.get("ph") == "M":
            name = e.get("name")
            if name == "process_name":
                process[e.get("pid")] = str((e.get("args") or {}).get("name", ""))
            elif name == "thread_name":
                thread[(e.get("pid"), e.get("tid"))] = str((e.get("args") or {}).get("name", ""))
    gpu_pids = {p for p, n in process.items() if re.match(r"^/device:GPU:\d+", n)}
    if not gpu_pids:
        raise InputError(f"{path}: no GPU device process (/device:GPU:N) in this JAX trace; "
                         "was it recorded on a GPU?")
    # XProf's derived lines ("XLA Ops", "XLA Modules", "Steps") repeat the kernels; only the
    # CUPTI stream lines ("Stream #14(Compute,Memset)") are the kernels themselves.
    stream_tids = {k for k, n in thread.items() if k[0] in gpu_pids and _STREAM.match(n)}
    any_stream_names = bool(stream_tids)

    rows = Launches()
    host: list[dict] = []
    for e in events:
        if e.get("ph") != "X":
            continue
        pid = e.get("pid")
        if pid not in gpu_pids:
            if e.get("name", "").startswith(("harness_iter", "ProfilerStep#")):
                host.append(e)
            continue
        if any_stream_names and (pid, e.get("tid")) not in stream_tids:
            continue
        name = e.get("name", "")
        a = e.get("args") or {}
        if name in _NOT_KERNELS or name.startswith("CudaGraph"):
            continue
        size = math.nan
        # "memcpy_details": "kind_src:device kind_dst:pinned size:4096 ..."; memsets in a CUDA
        # graph come as "Memset_details": "kind:unknown num_bytes:4 async:0"
        details = next((v for k, v in a.items() if k.lower() in ("memcpy_details",
                                                                  "memset_details")), None)
        if details:
            m = re.search(r"(?:size|num_bytes):(\d+)", details)
            size = float(m.group(1)) if m else math.nan
            if not name.lower().startswith(("memcpy", "memset")):
                name = "Memset" if "memset" in details.lower() or any(
                    k.lower() == "memset_details" for k in a) else "Memcpy"
        hlo_op = a.get("hlo_op", "")
        # Under command buffers (CUDA graphs, XLA's default) every kernel's hlo_op is the
        # buffer ("command_buffer_1"); the kernel's own name is then the instruction's.
        if hlo_op.startswith("command_buffer"):
            hlo_op = ""
        rows.kernel.append(name)
        rows.ts.append(float(e["ts"]))
        rows.dur.append(float(e.get("dur", 0.0)))
        rows.anchor.append(math.nan)
        rows.instance.append(a.get("hlo_module", ""))
        rows.op.append(hlo_op)
        rows.bytes.append(size)
        # XLA's op_name metadata prefix, e.g. "jit(step)/convert_element_type": names the
        # framework op when a fusion holds one (the kernel annotation's `name=`)
        rows.scope.append(a.get("name", ""))
    if not rows.kernel:
        raise InputError(f"{path}: no GPU kernel events on the /device:GPU processes")
    windows, marker = _markers(host)
    modules = hlo_index(hlo_dir) if hlo_dir is not None else {}

    def costs(launches: pd.DataFrame) -> pd.DataFrame:
        return _perfetto_costs(launches, modules)

    return Parsed("perfetto", _frame(rows), windows, marker, costs, None)


def _perfetto_costs(launches: pd.DataFrame, modules: dict[str, "HloModule"]) -> pd.DataFrame:
    """Each launch's HLO instruction: by hlo_op, else by kernel name (XLA names a fusion's
    kernel after it, "loop_convert_fusion.1" -> "loop_convert_fusion_1"), else, for cuBLAS
    kernels (named by cuBLAS), by position: the j-th unnamed GEMM launch of an iteration runs
    the j-th cuBLAS custom-call of the module's schedule."""
    out = launches.copy()
    kernels = out["kernel"].tolist()
    ops = out["op"].tolist()
    mods = out["instance"].tolist()
    only = next(iter(modules.values())) if len(modules) == 1 else None
    found: list[tuple[str, OpCost] | None] = []
    for kernel, op, mod_name in zip(kernels, ops, mods):
        mod = modules.get(mod_name) or only
        hit = None
        if mod is not None:
            name = op if op in mod.costs else mod.by_kernel.get(kernel)
            hit = (name, mod.costs[name]) if name else None
        found.append(hit)
    iteration = out["iteration"].tolist() if "iteration" in out else [0] * len(out)
    unnamed: dict[tuple[str, int], list[int]] = {}
    for i, (kernel, hit) in enumerate(zip(kernels, found)):
        if hit is None and _CUBLAS_KERNEL.search(kernel):
            unnamed.setdefault((mods[i], iteration[i]), []).append(i)
    for (mod_name, _), rows in unnamed.items():
        mod = modules.get(mod_name) or only
        if mod is not None and len(rows) == len(mod.gemm_schedule):
            for i, name in zip(rows, mod.gemm_schedule):
                found[i] = (name, mod.costs[name])
    fp8_trace = any(m.fp8 for m in modules.values())
    info = [hit[1] if hit else OpCost() for hit in found]
    # one instance per instruction, so a multi-kernel instruction's cost is counted once
    out["instance"] = [(m, hit[0] if hit else k) for m, k, hit in zip(mods, kernels, found)]
    out["dtypes"] = [c.dtypes for c in info]
    out["features"] = [(c.features + (" fp8_trace" if fp8_trace else "")).strip() for c in info]
    out["hlo"] = [c.hlo for c in info]
    out["peak_dtype"] = [c.peak_dtype for c in info]
    out["op_flops"] = [c.flops for c in info]
    out["op_bytes"] = [c.bytes for c in info]
    return out


_CUBLAS_KERNEL = re.compile(r"gemm|cutlass|xmma|nvjet|cublas|gemv", re.IGNORECASE)


# --------------------------------------------------------------------------- XLA HLO dumps

_HLO_ITEMSIZE = {"pred": 1, "s4": 0.5, "u4": 0.5, "s8": 1, "u8": 1, "s16": 2, "u16": 2,
                 "s32": 4, "u32": 4, "s64": 8, "u64": 8, "f16": 2, "bf16": 2, "f32": 4,
                 "f64": 8, "c64": 8, "c128": 16, "f8e4m3fn": 1, "f8e5m2": 1, "f8e4m3fnuz": 1,
                 "f8e5m2fnuz": 1, "f8e4m3": 1, "f8e3m4": 1, "f8e8m0fnu": 1, "f4e2m1fn": 0.5}
_HLO_SHAPE = re.compile(r"\b(pred|[suf]\d+|bf16|c64|c128|f8e\w+?|f4e2m1fn)\[([\d,]*)\]")
_HLO_COMP = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s*\(.*\)\s*->\s*.*\{\s*$")
_HLO_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*")
_HLO_OPERAND = re.compile(r"^%?([\w.\-]+)(?:#(\d+))?$")


@dataclass(frozen=True)
class _Instr:
    name: str
    shape: str
    opcode: str
    operands: str
    attrs: str
    line: str


@dataclass
class HloModule:
    """One optimised HLO module: each instruction's cost, found by name or kernel name."""
    name: str
    costs: dict[str, OpCost]        # instruction name -> cost
    by_kernel: dict[str, str]       # kernel name XLA gives it ("loop_convert_fusion_1") -> name
    gemm_schedule: list[str]        # cuBLAS custom-calls in execution order
    fp8: bool                       # any f8 value in the module


def _balanced(text: str, start: int) -> int:
    """Index just past the parenthesis group opening at text[start] == '('."""
    depth = 0
    for i in range(start, len(text)):
        c = text[i]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
    return len(text)


def _parse_instr(line: str) -> _Instr | None:
    m = _HLO_INSTR.match(line)
    if not m:
        return None
    rest = line[m.end():]
    if rest.startswith("("):
        end = _balanced(rest, 0)
        shape, rest = rest[:end], rest[end:].lstrip()
    else:
        shape, _, rest = rest.partition(" ")
    paren = rest.find("(")
    if paren <= 0:
        return None
    opcode = rest[:paren]
    end = _balanced(rest, paren)
    return _Instr(m.group(1), shape, opcode, rest[paren + 1:end - 1], rest[end:], line)


def _shapes(text: str) -> list[tuple[str, list[int]]]:
    return [(t, [int(d) for d in dims.split(",") if d]) for t, dims in _HLO_SHAPE.findall(text)]


def _shape_bytes(shapes: list[tuple[str, list[int]]]) -> float:
    return float(sum(math.prod(d) * _HLO_ITEMSIZE.get(t, math.nan) for t, d in shapes))


def _operand_shapes(ins: _Instr, shape_of: dict[str, str]) -> list[tuple[str, list[int]]]:
    """Operand shapes: printed inline by older XLA ("bf16[2048,4096]{1,0} %p0"), by name only
    by newer ("%p0", "%cublas-gemm.1#0" for a tuple element): then looked up."""
    inline = _shapes(ins.operands)
    if inline:
        return inline
    out: list[tuple[str, list[int]]] = []
    for token in ins.operands.split(","):
        m = _HLO_OPERAND.match(token.strip())
        if not m or m.group(1) not in shape_of:
            continue
        shapes = _shapes(shape_of[m.group(1)])
        if m.group(2) is not None:
            k = int(m.group(2))
            shapes = shapes[k:k + 1]
        out.extend(shapes)
    return out


def _dims_attr(attrs: str, key: str) -> list[int]:
    m = re.search(key + r"=\{([\d,]*)\}", attrs)
    return [int(v) for v in m.group(1).split(",") if v] if m else []


def _json_dims(attrs: str, key: str) -> list[int]:
    m = re.search(r'"' + key + r'":\[([^\]]*)\]', attrs)
    return [int(v) for v in re.findall(r"\d+", m.group(1))] if m else []


def _dot_flops(operands: list[tuple[str, list[int]]], attrs: str, backend_config: bool) -> float:
    """2 x lhs elements x rhs free elements (neither contracting nor batch)."""
    if len(operands) < 2:
        return math.nan
    (_, lhs), (_, rhs) = operands[0], operands[1]
    if backend_config:  # cuBLAS custom-call: dimension numbers live in backend_config
        rc = _json_dims(attrs, "rhs_contracting_dimensions")
        rb = _json_dims(attrs, "rhs_batch_dimensions")
    else:
        rc, rb = _dims_attr(attrs, "rhs_contracting_dims"), _dims_attr(attrs, "rhs_batch_dims")
    free_rhs = [d for i, d in enumerate(rhs) if i not in rc and i not in rb]
    return 2.0 * math.prod(lhs) * math.prod(free_rhs)


def _conv_flops(ins: _Instr, operands: list[tuple[str, list[int]]]) -> float:
    """2 x output elements x window size x input features per group (from dim_labels)."""
    out = _shapes(ins.shape)
    labels = re.search(r"dim_labels=\w+_(\w+)->", ins.attrs)
    window = re.search(r"window=\{size=([\dx]+)", ins.attrs)
    if not out or len(operands) < 2 or not labels:
        return math.nan
    rhs = operands[1][1]
    i_pos = labels.group(1).find("i")
    if i_pos < 0 or i_pos >= len(rhs):
        return math.nan
    size = math.prod(int(v) for v in window.group(1).split("x")) if window else 1
    return 2.0 * math.prod(out[0][1]) * size * rhs[i_pos]


def _kernel_name(instr: str) -> str:
    """The name XLA gives an instruction's kernel: "loop_convert_fusion.1" ->
    "loop_convert_fusion_1" (LLVM-safe: '.' and '-' become '_')."""
    return re.sub(r"[.\-]", "_", instr)


def hlo_index(hlo_dir: str | Path) -> dict[str, HloModule]:
    """Module name -> its instructions' costs, from XLA's *after_optimizations.txt dumps."""
    root = Path(hlo_dir)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory; expected XLA's --xla_dump_to folder")
    files = sorted(root.rglob("*after_optimizations.txt"))
    if not files:
        raise InputError(f"{root}: no *after_optimizations.txt; expected an XLA dump made with "
                         "--xla_dump_to=DIR --xla_dump_hlo_as_text")
    modules: dict[str, HloModule] = {}
    for f in files:
        module = _parse_module(f.read_text(errors="replace"))
        if module is not None:
            modules[module.name] = module
    return modules


def _parse_module(text: str) -> HloModule | None:
    head = re.match(r"\s*HloModule\s+([\w.\-]+)", text)
    if not head:
        return None
    comps: dict[str, list[_Instr]] = {}
    entry: list[_Instr] = []
    current: list[_Instr] | None = None
    for line in text.splitlines():
        m = _HLO_COMP.match(line)
        if m:
            current = comps.setdefault(m.group(1), [])
            if line.startswith("ENTRY"):
                entry = current
            continue
        if line.startswith("}"):
            current = None
            continue
        if current is not None:
            ins = _parse_instr(line)
            if ins is not None:
                current.append(ins)
    shape_of = {ins.name: ins.shape for comp in comps.values() for ins in comp}
    costs: dict[str, OpCost] = {}
    by_kernel: dict[str, str] = {}
    fp8 = False
    for comp in comps.values():
        for ins in comp:
            cost = _instr_cost(ins, comps, shape_of)
            costs[ins.name] = cost
            by_kernel.setdefault(_kernel_name(ins.name), ins.name)
            fp8 = fp8 or "fp8_operand" in cost.features
    for comp in comps.values():   # kernels shared by identical fusions carry the first's name
        for ins in comp:
            dedup = re.search(r'deduplicated_name="([^"]+)"', ins.attrs)
            if dedup:
                by_kernel.setdefault(_kernel_name(dedup.group(1)), ins.name)
    schedule = [ins.name for ins in _scheduled(entry, comps)
                if re.search(r'custom_call_target="__cublas', ins.attrs)]
    return HloModule(head.group(1), costs, by_kernel, schedule, fp8)


def _scheduled(body: list[_Instr], comps: dict[str, list[_Instr]]) -> list[_Instr]:
    """Instructions in execution order (a scheduled module prints them in order), entering
    `call`s (command buffers in some XLA versions) but not fusion bodies."""
    out: list[_Instr] = []
    for ins in body:
        if ins.opcode == "call":
            for name in re.findall(r"to_apply=%?([\w.\-]+)", ins.attrs):
                out.extend(_scheduled(comps.get(name, []), comps))
        else:
            out.append(ins)
    return out


def _called(ins: _Instr, comps: dict[str, list[_Instr]], seen: set[str]) -> list[_Instr]:
    body: list[_Instr] = []
    for name in re.findall(r"(?:calls|to_apply)=%?([\w.\-]+)", ins.attrs):
        if name in comps and name not in seen:
            seen.add(name)
            for inner in comps[name]:
                body.append(inner)
                body.extend(_called(inner, comps, seen))
    return body


def _instr_cost(ins: _Instr, comps: dict[str, list[_Instr]], shape_of: dict[str, str]
                ) -> OpCost:
    body = _called(ins, comps, set())
    text = "\n".join([ins.line] + [b.line for b in body])
    operand_shapes = _operand_shapes(ins, shape_of)
    out_shapes = _shapes(ins.shape)
    if ins.opcode == "custom-call":  # drop cuBLAS/cuDNN scratch buffers from the traffic
        out_shapes = [s for s in out_shapes if s[0] not in ("s8", "u8")] or out_shapes
    nbytes = _shape_bytes(operand_shapes + out_shapes)
    flops = math.nan
    target = re.search(r'custom_call_target="([^"]+)"', ins.attrs)
    if ins.opcode == "dot":
        flops = _dot_flops(operand_shapes, ins.attrs, False)
    elif ins.opcode == "convolution":
        flops = _conv_flops(ins, operand_shapes)
    elif target and target.group(1).startswith("__cublas"):
        flops = _dot_flops(operand_shapes, ins.attrs, True)
    elif target and target.group(1).startswith("__cudnn$conv"):
        flops = _conv_flops(ins, operand_shapes)
    else:
        dots = [b for b in body if b.opcode == "dot"]
        convs = [b for b in body if b.opcode == "convolution"]
        if dots or convs:
            flops = sum(_dot_flops(_operand_shapes(b, shape_of), b.attrs, False)
                        for b in dots) + sum(_conv_flops(b, _operand_shapes(b, shape_of))
                                             for b in convs)
    everything = operand_shapes + out_shapes
    features = []
    if any(t.startswith("f8") for t, _ in everything):
        features.append("fp8_operand")
    if len(out_shapes) == 1 and out_shapes[0][1] == []:
        features.append("scalar_output")
    lead = operand_shapes[0][0] if operand_shapes else (out_shapes[0][0] if out_shapes else None)
    return OpCost(flops=flops, bytes=nbytes, dtypes=" ".join(t for t, _ in everything),
                  features=" ".join(features), peak_dtype=peak_dtype(lead), hlo=text)


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
                 sm_clock_mhz: float | None = None) -> pd.DataFrame:
    """One row per (kernel name, category) of the profiled iterations, columns `COLUMNS`.

    iters: profiled iterations to divide by; None counts the harness_iter_* markers.
    device: GPU name ("NVIDIA H100 80GB HBM3"), spec key ("h100_sxm") or DeviceSpec; None takes
        the Kineto trace's deviceProperties (JAX traces do not record the GPU model).
    hlo_dir: XLA dump folder (*after_optimizations.txt) for XLA FLOPs/bytes and fp8 detection.
    sm_clock_mhz: measured SM clock; peaks are scaled by it over the rated boost clock.
    `df.attrs` carries the provenance: source, iters, iters_source, device, clock ratio,
    kernel_us_per_iter, gpu_busy_us_per_iter, excluded launches.
    """
    path = Path(trace_path)
    if iters is not None and (not isinstance(iters, (int, np.integer)) or iters <= 0):
        raise InputError(f"{path}: iters must be a positive integer, got {iters!r}")
    # A 200 MB trace is a few million small dicts and lists; with the cyclic GC on, its
    # collections rescan them over and over (measured: orjson.loads of 28 MB, 3.7 s wall with
    # GC, 0.8 s without). Nothing here makes cycles, so GC stays off while we parse.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _kernel_table(path, iters, device, hlo_dir, sm_clock_mhz)
    finally:
        if enabled:
            gc.enable()


def _kernel_table(path: Path, iters: int | None, device: str | DeviceSpec | None,
                  hlo_dir: str | Path | None, sm_clock_mhz: float | None) -> pd.DataFrame:
    raw = read_bytes(path)
    fast = _kineto_fast(raw)
    if fast is not None:
        parsed = _kineto(fast, path)
    else:
        data = parse_json(raw, path)
        del raw
        source = detect_source(data, path)
        parsed = _kineto(_kineto_full(data, path), path) if source == "kineto" \
            else _perfetto(data, path, hlo_dir)
        del data
    source = parsed.source
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
    table = _aggregate(window, n_iters, source, peaks)
    table.attrs.update({
        "trace": str(path), "source": source, "iters": n_iters,
        "iters_source": "argument" if iters is not None else parsed.iters_source,
        "markers": len(parsed.windows),
        "device": (device if isinstance(device, str) else None) or parsed.device_name,
        "device_spec": spec.key if spec else None,
        "clock_ratio": peaks.clock_ratio if peaks else None,
        "kernel_us_per_iter": float(window["dur"].sum()) / n_iters,
        "gpu_busy_us_per_iter": _busy_us(window["ts"].to_numpy(), window["dur"].to_numpy())
        / n_iters,
        "launches_in_window": int(keep.sum()), "launches_excluded": int((~keep).sum()),
        "hlo_dir": str(hlo_dir) if hlo_dir is not None else None,
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


def _aggregate(window: pd.DataFrame, iters: int, source: str, peaks: Peaks | None
               ) -> pd.DataFrame:
    w = window
    # .tolist(): iterating pandas' Arrow-backed string columns element by element is ~10x slower
    w["category"] = [classify_cached(source, k, o or "", d or "", f or "", h or "", sc or "")
                     for k, o, d, f, h, sc in zip(w["kernel"].tolist(), w["op"].tolist(),
                                                  w["dtypes"].tolist(), w["features"].tolist(),
                                                  w["hlo"].tolist(), w["scope"].tolist())]
    primary = _primary(w, source)
    flops = np.where(primary, w["op_flops"].to_numpy(dtype=float), np.nan)
    nbytes = np.where(np.isnan(w["bytes"].to_numpy()),
                      np.where(primary, w["op_bytes"].to_numpy(dtype=float), np.nan),
                      w["bytes"].to_numpy())
    w = w.assign(flops=flops, nbytes=nbytes, flops_known=~np.isnan(flops),
                 bytes_known=~np.isnan(nbytes))
    g = w.groupby(["kernel", "category"], sort=False)
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
        "kernel": t["kernel"], "category": t["category"],
        "calls_per_iter": t["calls"] / iters, "time_us_per_iter": time_us,
        "share": time_us / total if total > 0 else np.nan,
        "flops": t["flops"] / iters, "bytes": t["nbytes"] / iters,
    })
    seconds = out["time_us_per_iter"].where(out["time_us_per_iter"] > 0) * 1e-6
    out["achieved_tflops"] = out["flops"] / seconds / 1e12
    out["achieved_gbps"] = out["bytes"] / seconds / 1e9
    if peaks is not None:
        peak_tf = np.array([peaks.tflops(d) if d else np.nan for d in t["peak_dtype"]])
        out["pct_peak_flops"] = 100.0 * out["achieved_tflops"] / peak_tf
        out["pct_peak_bw"] = 100.0 * out["achieved_gbps"] / peaks.hbm_gbps
    else:
        out["pct_peak_flops"] = np.nan
        out["pct_peak_bw"] = np.nan
    out["suspect"] = _suspect(out["pct_peak_flops"], out["pct_peak_bw"])
    out["source"] = source
    out = out.sort_values("time_us_per_iter", ascending=False, kind="stable")
    return out.reset_index(drop=True)[COLUMNS]


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


# ----------------------------------------------------------------------- summaries / diffs

def category_summary(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """torchao's "time (ms) by kernel category": categories x backends, ms per iteration, and
    an `All` row. Categories no backend uses are left out, as torchao does."""
    cols = {}
    for label, table in tables.items():
        cols[label] = table.groupby("category")["time_us_per_iter"].sum() / 1000.0
    out = pd.DataFrame(cols).fillna(0.0)
    present = [c for c in CATEGORIES if c in out.index]
    out = out.reindex(present)
    out.loc["All"] = out.sum(axis=0)
    out.index.name = "category"
    return out


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


def kernel_diff(a: pd.DataFrame, b: pd.DataFrame, labels: tuple[str, str] = ("A", "B")
                ) -> pd.DataFrame:
    """Per kernel: time per iteration in A and B (us) and B - A, largest change first."""
    la, lb = labels
    ta = a.groupby(["kernel", "category"])["time_us_per_iter"].sum().rename(f"{la}_us")
    tb = b.groupby(["kernel", "category"])["time_us_per_iter"].sum().rename(f"{lb}_us")
    out = pd.concat([ta, tb], axis=1).fillna(0.0).reset_index()
    out["delta_us"] = out[f"{lb}_us"] - out[f"{la}_us"]
    out = out.reindex(out["delta_us"].abs().sort_values(ascending=False, kind="stable").index)
    return out.reset_index(drop=True)


def category_diff(a: pd.DataFrame, b: pd.DataFrame, labels: tuple[str, str] = ("A", "B")
                  ) -> pd.DataFrame:
    """Per category (ms per iteration): A, B and B - A, with the `All` row."""
    out = category_summary({labels[0]: a, labels[1]: b})
    out["delta"] = out[labels[1]] - out[labels[0]]
    return out
