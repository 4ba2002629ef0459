"""TorchInductor through torch.compile. The generated output code is kept per run: the memory
collector reads its static plan (empty_strided allocations, reuse) from it."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from backends._torch import prepare_torch
from harness.backend import Prepared
from harness.errors import ConfigError
from harness.workload import Workload

MODES = ("default", "max-autotune", "max-autotune-no-cudagraphs", "reduce-overhead")


def unavailable() -> str | None:
    return None


def _output_code_files(cache_dir: Path) -> list[Path]:
    # Inductor writes each compiled graph's wrapper as a module defining `def call(args)`
    # (seed 001, older Inductor) or `def call(self, args)` (torch >= 2.10, inside a Runner
    # class); kernels compiled in subprocesses land beside them as other .py files.
    found = []
    for path in sorted(cache_dir.rglob("*.py"), key=lambda p: p.stat().st_mtime):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if "def call(args)" in text or "def call(self, args)" in text:
            found.append(path)
    return found


def collect_output_code(run_dir: Path) -> dict[str, str]:
    cache_dir = Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR", ""))
    if not cache_dir.is_dir():
        return {}
    artifacts = {}
    for i, path in enumerate(_output_code_files(cache_dir)):
        dest = Path(run_dir) / f"inductor_output_code_{i}.py"
        shutil.copyfile(path, dest)
        artifacts[f"inductor_output_code_{i}"] = dest.name
    return artifacts


def compile_phases(first_call_s: float) -> dict:
    """Phases of the first call from Dynamo's own wall-clock accounting (main thread).

    capture_s: Dynamo bytecode tracing and guards (frame compile minus the backend call);
    graph_codegen_s: AOTAutograd + Inductor lowering, scheduling, codegen (and max-autotune
    benchmarking, which these counters do not separate) for graphs compiled with the frame;
    kernel_compile_wait_s: the main thread waiting on Triton / C++ kernel compiles, which run
    in a worker pool (their CPU time is larger); other_s: the rest of the first call -- the
    execution itself, and a backward graph that AOTAutograd compiles lazily at the first
    backward (Dynamo's frame counters do not cover it).
    """
    from torch._dynamo.utils import compile_times
    names, values = compile_times(repr="csv", aggregate=True)
    t = {name: float(v) for name, v in zip(names, values)}
    frame = t.get("_compile.compile_inner", 0.0)
    backend = t.get("OutputGraph.call_user_compiler", 0.0)
    wait = t.get("async_compile.wait", 0.0)
    phases = {
        "capture_s": max(frame - backend, 0.0),
        "graph_codegen_s": max(backend - wait, 0.0),
        "kernel_compile_wait_s": wait,
        "other_s": max(first_call_s - frame, 0.0),
        "notes": ["AOTAutograd tracing is inside graph_codegen_s; a lazily compiled backward is in other_s",
                  "max-autotune benchmarking is not separated from graph_codegen_s by Dynamo's counters"],
        "dynamo_counters": {k: t[k] for k in ("_compile.compile_inner", "OutputGraph.call_user_compiler",
                                                 "compile_fx_inner", "async_compile.wait", "bytecode_tracing",
                                                 "GraphLowering.run", "Scheduler.codegen") if k in t},
    }
    return phases


def graphs_compiled() -> int:
    from torch._dynamo.utils import counters
    return int(counters["stats"]["unique_graphs"]) + int(counters["aot_autograd"]["total"])


def prepare(workload: Workload, cfg: dict, device: torch.device, run_dir: Path) -> Prepared:
    mode = cfg.get("mode", "default")
    if mode not in MODES:
        raise ConfigError("backend.mode", f"expected one of {', '.join(MODES)}, got {mode!r}")
    compiled = torch.compile(workload.forward, mode=None if mode == "default" else mode,
                             fullgraph=bool(cfg.get("fullgraph", True)), dynamic=bool(cfg.get("dynamic", False)))
    prepared = prepare_torch(workload, device, compiled, {"mode": mode})
    prepared.collect_artifacts = collect_output_code
    prepared.compile_phases = compile_phases
    prepared.graphs_compiled = graphs_compiled
    return prepared
