"""JAX perfetto trace -> launches (`jax.profiler.trace(..., create_perfetto_trace=True)`).

XProf's trace.json with its `metadata` removed. No `cat`; processes are named by metadata
events {"ph": "M", "pid": 3, "name": "process_name", "args": {"name": "/device:GPU:0"}},
streams by thread_name "Stream #14(Compute,Memset)". Every arg value is a string (H100, JAX
0.11):
    {"ph": "X", "pid": 1, "tid": 14, "ts": 38897.28, "dur": 21.312,
     "name": "loop_convert_fusion_1", "args": {"hlo_module": "jit_step",
     "hlo_op": "command_buffer_1", "cuda_graph_id": "8", "correlation_id": "1",
     "kernel_details": "regs:16 static_shared:0 dynamic_shared:0 grid:32768,1,1 ..."}}
XLA runs a step as a CUDA graph (command buffer), so hlo_op names the buffer, not the
instruction; the kernel's own name is the instruction's ("loop_convert_fusion.1"), except
for cuBLAS's kernels ("nvjet_sm90_qqsss_..."), matched to the schedule's GEMMs by position.
Host launches are not exported, so kernels are placed in iterations by their GPU time.
With the HLO dump each kernel gets its instruction's cost and source PyTorch op (hlo.py).
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from harness.collect.hlo import HloModule, hlo_index
from harness.collect.kineto_costs import with_costs
from harness.collect.trace_io import (MARKER_PREFIXES, Launches, OpCost, Parsed, duration_us,
                                      iteration_windows, launch_frame, trace_events)
from harness.errors import InputError

_STREAM = re.compile(r"^Stream #\d+")
_GPU_PROCESS = re.compile(r"^/device:GPU:\d+")
_NOT_KERNELS = frozenset({"MemoryAlloc", "MemoryFree", "MemoryResidency", "Overhead",
                          "CudaGraph", "Synchronization", "Generic", "Unsupported"})
_CUBLAS_KERNEL = re.compile(r"gemm|cutlass|xmma|nvjet|cublas|gemv", re.IGNORECASE)


def _names(events: list[dict]) -> tuple[dict[Any, str], dict[tuple[Any, Any], str]]:
    """Process and thread names from the metadata events."""
    process: dict[Any, str] = {}
    thread: dict[tuple[Any, Any], str] = {}
    for e in events:
        if e.get("ph") == "M":
            name = e.get("name")
            if name == "process_name":
                process[e.get("pid")] = str((e.get("args") or {}).get("name", ""))
            elif name == "thread_name":
                thread[(e.get("pid"), e.get("tid"))] = str((e.get("args") or {}).get("name", ""))
    return process, thread


def _copy_name_and_size(name: str, args: dict) -> tuple[str, float]:
    """"memcpy_details": "kind_src:device kind_dst:pinned size:4096 ..."; memsets in a CUDA
    graph come as "Memset_details": "kind:unknown num_bytes:4 async:0"."""
    details = next((v for k, v in args.items() if k.lower() in ("memcpy_details",
                                                                "memset_details")), None)
    if not details:
        return name, math.nan
    m = re.search(r"(?:size|num_bytes):(\d+)", details)
    size = float(m.group(1)) if m else math.nan
    if not name.lower().startswith(("memcpy", "memset")):
        name = "Memset" if "memset" in details.lower() or any(
            k.lower() == "memset_details" for k in args) else "Memcpy"
    return name, size


def _not_kernel(name: str) -> bool:
    return name in _NOT_KERNELS or name.startswith("CudaGraph")


def _module(modules: dict[str, HloModule], name: str) -> HloModule | None:
    """The launch's module by name; a dump of one module serves every launch."""
    return modules.get(name) or (next(iter(modules.values())) if len(modules) == 1 else None)


def _add_launch(rows: Launches, e: dict) -> None:
    a = e.get("args") or {}
    name, size = _copy_name_and_size(e.get("name", ""), a)
    hlo_op = a.get("hlo_op", "")
    # Under command buffers (CUDA graphs, XLA's default) every kernel's hlo_op is the
    # buffer ("command_buffer_1"); the kernel's own name is then the instruction's.
    rows.kernel.append(name)
    rows.ts.append(float(e["ts"]))
    rows.dur.append(duration_us(e.get("dur")))
    rows.anchor.append(math.nan)
    rows.instance.append(a.get("hlo_module", ""))
    rows.op.append("" if hlo_op.startswith("command_buffer") else hlo_op)
    rows.bytes.append(size)
    # XLA's op_name metadata prefix, e.g. "jit(step)/convert_element_type": names the
    # framework op when a fusion holds one (the kernel annotation's `name=`)
    rows.scope.append(a.get("name", ""))
    rows.source_op.append("")


# What a CUPTI activity (a kernel, copy or memset the GPU ran) carries in XProf's export and its
# derived lines ("XLA Ops", "XLA Modules", "Steps") do not: "correlation_id": "1",
# "kernel_details": "regs:18 static_shared:16 ...", "Memset_details", "memcpy_details".
_ACTIVITY_ARGS = frozenset({"correlation_id", "kernel_details", "memcpy_details",
                            "Memset_details", "memset_details"})


def _is_activity(e: dict) -> bool:
    args = e.get("args")
    return isinstance(args, dict) and not _ACTIVITY_ARGS.isdisjoint(args)


def _thread_label(key: tuple[Any, Any], thread: dict[tuple[Any, Any], str]) -> str:
    name = thread.get(key)
    return f"thread {key[1]} of pid {key[0]}" + (f" ({name!r})" if name else " (no thread_name)")


def kernel_threads(lines: dict[tuple[Any, Any], list[dict]], thread: dict[tuple[Any, Any], str],
                   path: Path) -> set[tuple[Any, Any]]:
    """The device threads that hold the kernels, by what they are. XProf names the CUPTI
    stream lines "Stream #14(Compute,Memset)"; its derived lines ("XLA Ops", "XLA Modules",
    "Steps") repeat the same kernels, and counting both doubled the time (1195.6 against
    597.8 us). A thread without thread_name metadata is a stream if its events carry CUPTI's
    activity args (`correlation_id`, `kernel_details`, ...). Refused when that cannot be told:
    several device threads and none recognisable, or two threads that repeat each other's
    kernels (same name, start and duration)."""
    streams = set()
    for key, events in lines.items():
        name = thread.get(key)
        if name is not None:
            if _STREAM.match(name):
                streams.add(key)
        elif any(_is_activity(e) for e in events):
            streams.add(key)
    if not streams and len(lines) == 1:
        streams = set(lines)        # one line on the device: nothing to confuse it with
    if not streams:
        raise InputError(f"{path}: cannot tell which of the {len(lines)} threads of the GPU "
                         "process hold its kernels: none is named 'Stream #N' by thread_name "
                         "metadata and none carries CUPTI's correlation_id or kernel_details; "
                         "expected the trace as jax.profiler wrote it")
    rows = {k: {(e.get("name"), e.get("ts"), e.get("dur")) for e in lines[k]} for k in streams}
    ordered = sorted(streams, key=str)
    for i, a in enumerate(ordered):
        for b in ordered[i + 1:]:
            same = len(rows[a] & rows[b])
            if same and same >= 0.5 * min(len(rows[a]), len(rows[b])):
                raise InputError(f"{path}: {_thread_label(a, thread)} and "
                                 f"{_thread_label(b, thread)} repeat {same} kernels (same name, "
                                 "start and duration): one of them is a derived line, not the "
                                 "device's; expected thread_name metadata naming the CUPTI "
                                 "stream lines 'Stream #N'")
    return streams


def parse_perfetto(data: Any, path: Path, hlo_dir: str | Path | None) -> Parsed:
    events = trace_events(data, path)
    process, thread = _names(events)
    gpu_pids = {p for p, n in process.items() if _GPU_PROCESS.match(n)}
    if not gpu_pids:
        raise InputError(f"{path}: no GPU device process (/device:GPU:N) in this JAX trace; "
                         "was it recorded on a GPU?")
    lines: dict[tuple[Any, Any], list[dict]] = {}
    host: list[dict] = []
    for e in events:
        if e.get("ph") != "X":
            continue
        pid = e.get("pid")
        if pid not in gpu_pids:
            if e.get("name", "").startswith(MARKER_PREFIXES):
                host.append(e)
        elif not _not_kernel(e.get("name", "")):
            lines.setdefault((pid, e.get("tid")), []).append(e)
    if not lines:
        raise InputError(f"{path}: no GPU kernel events on the /device:GPU processes")
    rows = Launches()
    for key in sorted(kernel_threads(lines, thread, path), key=str):
        for e in lines[key]:
            _add_launch(rows, e)
    iterations = iteration_windows(host, path)
    modules = hlo_index(hlo_dir) if hlo_dir is not None else {}
    return Parsed("perfetto", launch_frame(rows, path), iterations.windows, iterations.source,
                  lambda launches: perfetto_costs(launches, modules), None, iterations.notes)


def _named_hits(kernels: list[str], ops: list[str], mods: list[str],
                modules: dict[str, HloModule]) -> list[str | None]:
    """Each launch's HLO instruction by hlo_op, else by the kernel name XLA gives it
    ("loop_convert_fusion.1" -> "loop_convert_fusion_1")."""
    found: list[str | None] = []
    for kernel, op, mod_name in zip(kernels, ops, mods):
        mod = _module(modules, mod_name)
        if mod is None:
            found.append(None)
        elif op in mod.costs or op in mod.source_ops:
            found.append(op)
        else:
            found.append(mod.by_kernel.get(kernel))
    return found


def _cublas_by_position(found: list[str | None], kernels: list[str], mods: list[str],
                        iteration: list[int], modules: dict[str, HloModule]) -> None:
    """cuBLAS kernels are named by cuBLAS: the j-th unnamed GEMM launch of an iteration runs
    the j-th cuBLAS custom-call of the module's schedule."""
    unnamed: dict[tuple[str, int], list[int]] = {}
    for i, (kernel, hit) in enumerate(zip(kernels, found)):
        if hit is None and _CUBLAS_KERNEL.search(kernel):
            unnamed.setdefault((mods[i], iteration[i]), []).append(i)
    for (mod_name, _), rows in unnamed.items():
        mod = _module(modules, mod_name)
        if mod is not None and len(rows) == len(mod.gemm_schedule):
            for i, name in zip(rows, mod.gemm_schedule):
                found[i] = name


def perfetto_costs(launches: pd.DataFrame, modules: dict[str, HloModule]) -> pd.DataFrame:
    """Each launch's HLO instruction, its cost and its source PyTorch op."""
    out = launches.copy()
    kernels = out["kernel"].tolist()
    mods = out["instance"].tolist()
    found = _named_hits(kernels, out["op"].tolist(), mods, modules)
    iteration = out["iteration"].tolist() if "iteration" in out else [0] * len(out)
    _cublas_by_position(found, kernels, mods, iteration, modules)
    info, ops = [], []
    for name, mod_name in zip(found, mods):
        mod = _module(modules, mod_name)
        info.append(mod.costs.get(name, OpCost()) if mod is not None and name else OpCost())
        ops.append(mod.source_ops.get(name, "") if mod is not None and name else "")
    # one instance per instruction, so a multi-kernel instruction's cost is counted once
    out["instance"] = [(m, name or k) for m, k, name in zip(mods, kernels, found)]
    out["hlo"] = [c.hlo for c in info]
    out["source_op"] = ops
    return with_costs(out, info, any(m.fp8 for m in modules.values()))
