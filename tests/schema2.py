"""Sweeps for the report's tests, made from the committed H100 reference (schema 1), and
schema-2 records made from those records as the orchestrator will write them (RunRecord
schema 2 in the session plan): several processes with their own samples, the GPU figures of
the profiling pass, a backend label, typed flags and artifacts, CUDA-graph evidence."""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from conftest import REPO
from harness.describe import THRESHOLDS, assess, backend_label, merge_flags

REFERENCE = REPO / "results" / "reference" / "h100"
# Reference runs by what they are (results/reference/h100/<dir>).
FP8_FWD = {"eager": "fp8_fp8_linear_eager_60fc52f2", "inductor": "fp8_fp8_linear_inductor_105dcc62",
           "xla": "fp8_fp8_linear_xla_a54e91f6"}
DECODE = {"inductor": "qwen_qwen_decoder_inductor_03b25a25", "xla": "qwen_qwen_decoder_xla_ab33f002"}


def reference(name: str) -> dict[str, Any]:
    return json.loads((REFERENCE / name / "record.json").read_text())


def write_run(sweep: Path, name: str, record: dict[str, Any], tables_from: str | None = None) -> Path:
    """A run dir with this record.json, and the Parquet tables of a reference run beside it."""
    run = Path(sweep) / name
    run.mkdir(parents=True)
    if tables_from:
        for table in (REFERENCE / tables_from).glob("*.parquet"):
            shutil.copy(table, run / table.name)
    (run / "record.json").write_text(json.dumps(record))
    return run


def copy_reference(sweep: Path, *names: str) -> Path:
    for name in names:
        write_run(sweep, name, reference(name), tables_from=name)
    return Path(sweep)


def backend_config(label: str) -> tuple[str, dict[str, Any]]:
    """The backend and its config that a label names, so that a record's declared traits
    (harness.describe.backend_traits) agree with the label a test gives it: a registered option
    whose label it is, else an Inductor mode or an XLA autotune level spelled in the label."""
    import dataclasses
    from harness.orchestrator import plugins
    for spec in plugins.backends().values():
        for option in [{}, *spec.variants.values()]:
            cfg = dataclasses.asdict(spec.schema(name=spec.name, **option))
            if spec.label(cfg) == label:
                return spec.name, cfg
    name, *parts = label.split(":")
    spec = plugins.backend_spec(name)
    cfg = dataclasses.asdict(spec.schema(name=name))
    for part in parts:
        if part == "dynamic":
            cfg["dynamic"] = True
        elif part == "no-cmdbuf":
            cfg["command_buffers"] = False
        elif part.startswith("autotune"):
            cfg["autotune_level"] = int(part[len("autotune"):])
        else:
            cfg["mode"] = part
    assert spec.label(cfg) == label, (label, cfg)
    return name, cfg


def _process(samples_ms: np.ndarray, iters: int, first_call_s: float) -> dict[str, Any]:
    return {"median_ms": float(np.median(samples_ms)),
            "cv": float(samples_ms.std(ddof=1) / samples_ms.mean()),
            "p10_ms": float(np.percentile(samples_ms, 10)),
            "p90_ms": float(np.percentile(samples_ms, 90)), "min_ms": float(samples_ms.min()),
            "iters_per_sample": iters, "samples_ms": samples_ms.tolist(),
            "first_call_s": first_call_s}


def schema2(record: dict[str, Any], *, label: str | None = None,
            process_medians_ms: list[float] | None = None, gpu: dict[str, Any] | None = None,
            cudagraphs: dict[str, Any] | None = None,
            command_buffers: dict[str, Any] | None = None, flags: list[Any] | None = None,
            assessed: bool = True, run_id: str | None = None) -> dict[str, Any]:
    """A schema-2 record from a schema-1 one.

    process_medians_ms: one fresh process per median, each with the original samples scaled
    to it (default: the one original process). gpu: the record's `gpu` (default: the busy
    time of the original profile and the host gap left of the new wall median). flags: flags
    the worker raised; `assessed` adds describe.assess's as the orchestrator does."""
    r = copy.deepcopy(record)
    r.update(schema_version=2, backend_label=label or backend_label(record),
             run_id=run_id or r["run_id"])
    if label:
        r["backend"], r["config"]["backend"] = backend_config(label)
    timing = r.get("timing")
    if timing:
        base = np.asarray(timing["samples_ms"], dtype=float)
        medians = process_medians_ms or [float(np.median(base))]
        procs = [_process(base * m / np.median(base), timing["iters_per_sample"],
                          r.get("compile_s") or 0.0) for m in medians]
        pooled = np.concatenate([np.asarray(p["samples_ms"]) for p in procs])
        med = np.asarray([p["median_ms"] for p in procs])
        timing.update(median_ms=float(np.median(med)), p10_ms=float(np.percentile(pooled, 10)),
                      p90_ms=float(np.percentile(pooled, 90)), mean_ms=float(pooled.mean()),
                      std_ms=float(pooled.std(ddof=1)), min_ms=float(pooled.min()),
                      cv=float(np.median([p["cv"] for p in procs])),
                      samples_ms=pooled.tolist(), processes=procs,
                      between=None if len(procs) == 1 else {
                          "n": len(procs), "min_ms": float(med.min()), "max_ms": float(med.max()),
                          "spread_pct": float(100 * (med.max() - med.min()) / np.median(med)),
                          "cv": float(med.std(ddof=1) / med.mean())})
    kernels = r.get("kernels") or {}
    if gpu is None and timing and kernels.get("gpu_busy_us_per_iter") is not None:
        busy = kernels["gpu_busy_us_per_iter"] / 1e3
        gap = timing["median_ms"] - busy
        gpu = {"busy_ms_per_iter": busy, "kernel_ms_per_iter": kernels["kernel_us_per_iter"] / 1e3,
               "host_gap_ms": gap, "idle_share": gap / timing["median_ms"],
               "host_bound": gap / timing["median_ms"] > THRESHOLDS.host_bound_idle_share,
               "trace": f"{kernels.get('source')}, {kernels.get('iters')} iterations"}
    r["gpu"] = gpu
    if cudagraphs is not None:
        r["compile"]["cudagraphs"] = cudagraphs
    if command_buffers is not None:
        r["compile"]["command_buffers"] = command_buffers
    r["artifacts"] = [{"kind": kind, "path": path, "format": ""}
                      for kind, path in (record.get("artifacts") or {}).items()]
    r["flags"] = []
    r["flags"] = merge_flags(list(record.get("flags") or []) + list(flags or [])
                             + (assess(r) if assessed else []))
    return r
