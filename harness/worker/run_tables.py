"""A run's normalised tables from its typed artifacts: memory (compiler dumps, allocator peak)
and kernels (the profiler trace), as Parquet beside the record.

A parser that fails on our own artifacts flags the run instead of failing it: the timing holds.
Used by the worker after its measurement and by scripts/recollect.py on finished runs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.worker.backend import (INDUCTOR_OUTPUT_CODE, KERNEL_TABLE, MEMORY_BUFFERS, MEMORY_TABLE, TRACE,
                             XLA_BUFFER_ASSIGNMENT, XLA_OPTIMIZED_HLO, Artifact)

MEMORY_INPUTS = (INDUCTOR_OUTPUT_CODE, XLA_BUFFER_ASSIGNMENT)


@dataclass
class RunTables:
    artifacts: list[Artifact] = field(default_factory=list)    # the tables written
    memory_by_kind: dict[str, int | None] = field(default_factory=dict)
    kernels: dict[str, Any] = field(default_factory=dict)         # kernel-table summary
    flags: list[dict[str, str]] = field(default_factory=list)


def collect(run_dir: Path, artifacts: list[Artifact], *, gpu_name: str | None, sm_clock_mhz: float | None,
            on_gpu: bool, profile_iters: int | None, runtime_peak: tuple[int, str] | None) -> RunTables:
    out = RunTables()
    dumps = [run_dir / a.path for a in artifacts if a.kind in MEMORY_INPUTS]
    traces = [a for a in artifacts if a.kind == TRACE]
    if not dumps and runtime_peak is None and not (traces and on_gpu):
        return out   # nothing to collect: spare the run pandas' import (~1 s of harness overhead)
    _memory(run_dir, dumps, runtime_peak, out)
    if traces and on_gpu:    # CPU traces have no GPU kernels
        hlo = [run_dir / a.path for a in artifacts if a.kind == XLA_OPTIMIZED_HLO]
        _kernels(run_dir, traces[0], hlo, gpu_name, sm_clock_mhz, profile_iters, out)
    return out


def _memory(run_dir: Path, dumps: list[Path], runtime_peak: tuple[int, str] | None, out: RunTables) -> None:
    from harness.collect import memory_table as memory
    try:
        summary, buffers = memory.memory_table_from_files(dumps) if dumps else (None, None)
        if runtime_peak is not None:
            row = memory.runtime_peak_row(*runtime_peak)
            summary = row if summary is None else memory.pd.concat([summary, row], ignore_index=True)
        if summary is not None:
            summary.to_parquet(run_dir / "memory.parquet")
            out.artifacts.append(Artifact(MEMORY_TABLE, "memory.parquet"))
            out.memory_by_kind = {
                f"{g}:{k}" if g else k: (None if memory.pd.isna(b) else int(b))
                for g, k, b in summary[["graph", "kind", "bytes"]].itertuples(index=False)}
        if buffers is not None and len(buffers):
            buffers.to_parquet(run_dir / "memory_buffers.parquet")
            out.artifacts.append(Artifact(MEMORY_BUFFERS, "memory_buffers.parquet"))
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        out.flags.append({"code": "collector", "detail": f"memory collector: {type(e).__name__}: {e}"[:1000]})


def _kernels(run_dir: Path, trace: Artifact, hlo: list[Path], gpu_name: str | None, sm_clock_mhz: float | None,
             profile_iters: int | None, out: RunTables) -> None:
    from harness.collect.kernel_table import kernel_table
    try:
        hlo_dir = hlo[0].parent if hlo else None
        table = kernel_table(run_dir / trace.path, iters=profile_iters, device=gpu_name,
                             sm_clock_mhz=sm_clock_mhz, hlo_dir=hlo_dir)
        table.to_parquet(run_dir / "kernels.parquet")
        out.artifacts.append(Artifact(KERNEL_TABLE, "kernels.parquet"))
        summary = dict(table.attrs)
        for column in ("category", "op_category"):     # by kernel, and by the PyTorch op it came from
            if column in table:
                summary[f"by_{column}_us_per_iter"] = {
                    k: float(v) for k, v in table.groupby(column)["time_us_per_iter"].sum().items()}
        out.kernels = json.loads(json.dumps(summary, default=str))
    except Exception as e:  # noqa: BLE001
        out.flags.append({"code": "collector", "detail": f"kernel collector: {type(e).__name__}: {e}"[:1000]})
