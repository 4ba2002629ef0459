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


def parse_perfetto(data: Any, path: Path, hlo_dir: str | Path | None) -> Parsed:
    events = trace_events(data, path)
    process, thread = _names(events)
    gpu_pids = {p for p, n in process.items() if _GPU_PROCESS.match(n)}
    if not gpu_pids:
        raise InputError(f"{path}: no GPU device process (/device:GPU:N) in this JAX trace; "
                         "was it recorded on a GPU?")
    # XProf's derived lines ("XLA Ops", "XLA Modules", "Steps") repeat the kernels; only the
    # CUPTI stream lines ("Stream #14(Compute,Memset)") are the kernels themselves.
    streams = {k for k, n in thread.items() if k[0] in gpu_pids and _STREAM.match(n)}
    rows = Launches()
    host: list[dict] = []
    for e in events:
        if e.get("ph") != "X":
            continue
        pid = e.get("pid")
        if pid not in gpu_pids:
            if e.get("name", "").startswith(MARKER_PREFIXES):
                host.append(e)
        elif (not streams or (pid, e.get("tid")) in streams) and not _not_kernel(e.get("name", "")):
            _add_launch(rows, e)
    if not rows.kernel:
        raise InputError(f"{path}: no GPU kernel events on the /device:GPU processes")
    windows, marker = iteration_windows(host)
    modules = hlo_index(hlo_dir) if hlo_dir is not None else {}
    return Parsed("perfetto", launch_frame(rows, path), windows, marker,
                  lambda launches: perfetto_costs(launches, modules), None)


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
