"""TorchInductor through torch.compile. The generated output code is kept per run: the memory
collector reads its static plan (empty_strided allocations, reuse) from it.

In a CUDA-graph mode (reduce-overhead, max-autotune) the record says whether graphs were
recorded and replayed, and why not where not: on the H200 a decode step whose KV cache was a
graph input idled 73% of its step under reduce-overhead with nothing in the record saying why.
"""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from backends.inductor import GRAPH_MODES, MODES
from backends.torch_common import clone_outputs, prepare_torch
from harness.worker.backend import INDUCTOR_OUTPUT_CODE, Artifact, Prepared, RunContext
from harness.errors import ConfigError
from harness.worker.workload import Workload

OUTPUT_CODE_NAME = "inductor_output_code_{}.py"


def unavailable() -> str | None:
    return None


def _loaded_output_code() -> list[Path]:
    """The compiled graphs' wrappers this process loaded, oldest first. Inductor loads every
    generated module through `PyCodeCache` (private; checked on torch 2.11 and 2.13), from a
    fresh compile or from its FX graph cache alike; a wrapper defines `call(args)` (seed 001,
    older Inductor) or `call(self, args)` (torch >= 2.10, inside a Runner class), kernels do not."""
    from torch._inductor.codecache import PyCodeCache
    found: list[Path] = []
    for module in getattr(PyCodeCache, "modules", []):
        path = Path(getattr(module, "__file__", "") or "")
        if path.is_file() and path not in found:
            text = path.read_text(errors="replace")
            if "def call(args)" in text or "def call(self, args)" in text:
                found.append(path)
    return found


def collect_output_code(run_dir: Path) -> list[Artifact]:
    artifacts = []
    for i, path in enumerate(_loaded_output_code()):
        name = OUTPUT_CODE_NAME.format(i)
        shutil.copyfile(path, Path(run_dir) / name)
        artifacts.append(Artifact(INDUCTOR_OUTPUT_CODE, name))
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
    return {
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


def cache_counters() -> dict[str, int]:
    """Inductor's FX-graph and AOTAutograd cache hits and misses, as Dynamo counts them (a
    warm run must hit; a cold one must not)."""
    from torch._dynamo.utils import counters
    return {k: int(v) for group in ("inductor", "aot_autograd") for k, v in counters[group].items()
            if "cache_hit" in k or "cache_miss" in k}


def graphs_compiled() -> int:
    from torch._dynamo.utils import counters
    return int(counters["stats"]["unique_graphs"]) + int(counters["aot_autograd"]["total"])


class CudaGraphWatch:
    """Counts CUDA graph captures and replays in this process and keeps Inductor's reasons for
    skipping graphs. Replays are counted at `torch.cuda.CUDAGraph.replay` (cudagraph trees call
    it for every replay); skip reasons are what Inductor logs on its `cudagraphs` artifact
    logger ("skipping cudagraphs due to mutated inputs (2 instances)")."""

    def __init__(self) -> None:
        self.captures = 0
        self.replays = 0
        self.skips: list[str] = []
        graph_class = torch.cuda.CUDAGraph
        original_replay, original_capture_end = graph_class.replay, graph_class.capture_end

        def replay(graph, *args, **kwargs):
            self.replays += 1
            return original_replay(graph, *args, **kwargs)

        def capture_end(graph, *args, **kwargs):
            self.captures += 1
            return original_capture_end(graph, *args, **kwargs)

        graph_class.replay, graph_class.capture_end = replay, capture_end
        watch = self

        class _Skips(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                message = record.getMessage()
                if "cudagraph" in message and message not in watch.skips:
                    watch.skips.append(message[:500])

        # torch 2.13 logs skips on the `cudagraphs` artifact logger, older releases on `perf_hints`
        from torch._inductor import cudagraph_utils
        for name in ("cudagraphs_log", "perf_hint_log"):
            logger = getattr(cudagraph_utils, name, None)
            if isinstance(logger, logging.Logger):
                logger.addHandler(_Skips(level=logging.WARNING))

    def evidence(self) -> dict[str, Any]:
        from torch._dynamo.utils import counters
        return {"graphs_recorded": self.captures, "graph_replays": self.replays,
                "skips": list(self.skips), "skip_count": int(counters["inductor"]["cudagraph_skips"]),
                "replayed": self.replays > 0}


def record_compiles() -> list[dict[str, Any]]:
    """Every compile of this process as Dynamo reports it to its compile callbacks (start and end
    of a frame's compile, a lazily compiled backward, a CUDA-graph recording), with its seconds:
    a compiler that recompiles per sequence length shows here, one entry per length."""
    from torch._dynamo.callback import callback_handler
    events: list[dict[str, Any]] = []
    started: list[float] = []

    def start(args=None) -> None:
        started[:] = [time.perf_counter()]

    def end(args=None) -> None:
        trigger = getattr(getattr(args, "callback_trigger", None), "name", None)
        events.append({"trigger": trigger, "compile_id": str(getattr(args, "compile_id", "")),
                       "seconds": time.perf_counter() - started[0] if started else None})
    callback_handler.register_start_callback(start)
    callback_handler.register_end_callback(end)
    return events


def prepare(workload: Workload, cfg: dict, ctx: RunContext) -> Prepared:
    mode = cfg.get("mode", "default")
    if mode not in MODES:
        raise ConfigError("backend.mode", f"expected one of {', '.join(MODES)}, got {mode!r}")
    watch = CudaGraphWatch() if mode in GRAPH_MODES and ctx.device.type == "cuda" else None
    options = dict(mode=None if mode == "default" else mode, fullgraph=bool(cfg.get("fullgraph", True)),
                   dynamic=bool(cfg.get("dynamic", False)))
    compiled = torch.compile(workload.forward, **options)
    steps = {name: torch.compile(fn, **options) for name, fn in workload.steps.items()}
    prepared = prepare_torch(workload, ctx.device, compiled, {"mode": mode, "compiles": record_compiles()}, steps)
    if mode in GRAPH_MODES:
        prepared.keep = clone_outputs
    prepared.artifacts = lambda: collect_output_code(ctx.run_dir)
    info = prepared.compile_info

    def phases(first_call_s: float) -> dict:
        info["cache_counters"] = cache_counters()      # after the first call, with its compiles
        return compile_phases(first_call_s)
    prepared.compile_phases = phases
    prepared.graphs_compiled = graphs_compiled
    if watch is not None:
        prepared.run_evidence = lambda: {"cudagraphs": watch.evidence()}
    return prepared
