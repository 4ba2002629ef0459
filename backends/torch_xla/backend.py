"""PyTorch/XLA: the workload's own module and inputs as tensors on the XLA device.

Runs where `torch_xla` imports: its own environment (scripts/torch_xla_env.sh: torch 2.9.1 +
torch_xla 2.9.0, `PJRT_DEVICE=CPU`), since torch_xla is built against torch 2.9 and has no
CUDA builds since 2.8 (on the GPU the XLA numbers come from backends/xla, torchax).

`backend.mode=default`: one step is `torch_xla.compile(step, full_graph=True, name=GRAPH_NAME)`.
Torch ops on XLA tensors are traced lazily, the whole step (forward, and autograd's backward in
fwd_bwd) is cut into one graph at its end, compiled by XLA once (the graph hash is the cache
key) and run asynchronously. Every call traces again: host time inside the step, as for any
PyTorch/XLA user (cpu_tiny decode on a busy 2-core machine: 23 ms of host time per call, 7.5 ms
of it LazyTracing, for 1.5 ms of ExecuteTime). `backend.mode=dynamo`:
`torch.compile(backend="openxla")`, traced once and replayed while Dynamo's guards hold.
The device is synchronised with `xm.wait_device_ops()`. State the forward writes in place (a KV
cache: module buffers) is plain torch semantics on XLA tensors. The lazy
mode aliases each updated tensor's buffer to its input (input_output_alias: the cache is
donated); the dynamo mode's program has no alias (the cache comes back as new outputs:
cpu_tiny decode, 32768 more output bytes in the buffer assignment).

Compile counts and times come from torch_xla's metrics (`UncachedCompile`, `CompileTime`,
`LazyTracing`). An op without an XLA lowering falls back to eager torch on the CPU (tensors go
to the host and back inside the step): then the step is not one XLA program, and the run is
skipped naming the ops (`executed_fallback_ops()`); fp8_linear's tensorwise recipe on
torch_xla 2.9.0 is that case (`aten::_scaled_mm`).
"""
from __future__ import annotations

import copy
import dataclasses
import importlib.util
import os
import shlex
from pathlib import Path
from typing import Any

import torch

from backends.torch_xla import MODES
from backends.xla import dump
from harness.worker.backend import Prepared, RunContext
from harness.errors import ConfigError, Unsupported
from harness.worker.workload import LazyMapping, Workload, run_torch

# The HLO module name of the step (torch_xla.compile(name=...)), e.g.
# module_0002.harness_torch_xla_step.8.cpu_after_optimizations-buffer-assignment.txt
GRAPH_NAME = "harness_torch_xla_step"


def unavailable() -> str | None:
    if importlib.util.find_spec("torch_xla") is None:
        return ("torch_xla is not installed (no CUDA builds since PyTorch/XLA 2.8: use backend=xla; "
                "on the CPU: scripts/torch_xla_env.sh)")
    try:
        import torch_xla  # noqa: F401
    except Exception as e:  # a build for another torch version fails here
        return f"torch_xla does not import: {type(e).__name__}: {e}"[:500]
    return None


# ----------------------------------------------------------------------------------- flags, dump

def xla_flags(cfg: dict, run_dir: Path) -> list[str]:
    flags = dump.dump_flags(run_dir, GRAPH_NAME) if cfg.get("dump_hlo", True) else []
    return flags + shlex.split(cfg.get("xla_flags") or "")


# ---------------------------------------------------------------------------------------- metrics

def metrics_snapshot() -> dict[str, float]:
    """torch_xla's own counters: compiles (UncachedCompile: a new graph, CachedCompile: a hit
    in its graph cache), executions, and the nanosecond accumulators of CompileTime,
    ExecuteTime and LazyTracing (host time spent tracing torch ops into IR)."""
    import torch_xla.debug.metrics as met
    snap = {name: float(met.counter_value(name) or 0) for name in ("UncachedCompile", "CachedCompile")}
    for name in ("CompileTime", "ExecuteTime", "LazyTracing"):
        data = met.metric_data(name)
        snap[f"{name}_samples"] = float(data[0]) if data else 0.0
        snap[f"{name}_ns"] = float(data[1]) if data else 0.0
    return snap


def metrics_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    d = {k: after[k] - before.get(k, 0.0) for k in after}
    return {"graphs_compiled": int(d["UncachedCompile"]), "cached_compiles": int(d["CachedCompile"]),
            "compile_s": d["CompileTime_ns"] / 1e9, "executions": int(d["ExecuteTime_samples"]),
            "execute_s": d["ExecuteTime_ns"] / 1e9, "lazy_tracing_s": d["LazyTracing_ns"] / 1e9}


def fallback_counts() -> dict[str, int]:
    """Calls per op that ran through the CPU fallback so far in this process, e.g.
    {"aten::_scaled_mm": 1}: a process total, so a step's own are a difference of two."""
    import torch_xla.debug.metrics as met
    return {op: int(met.counter_value(op) or 0) for op in met.executed_fallback_ops()}


def new_fallbacks(before: dict[str, int]) -> list[str]:
    return sorted(op for op, n in fallback_counts().items() if n > before.get(op, 0))


def fallback_reason(ops: list[str]) -> str:
    import torch_xla
    return (f"torch_xla {torch_xla.__version__} has no XLA lowering for {', '.join(ops)}: it falls back to eager "
            "torch on the CPU (host transfers inside the step), so the step is not one XLA program")


def compile_phases(first_call: dict[str, Any], first_call_s: float) -> dict[str, Any]:
    """The first call's split from torch_xla's metrics: tracing torch ops into lazy IR
    (capture_s), XLA's compile of the graph (graph_codegen_s: HLO passes and LLVM codegen in
    one), the rest (graph hashing, lowering IR to HLO, transfers, the execution itself)."""
    if not first_call:
        return {"notes": ["no torch_xla metrics recorded for the first call"]}
    capture, codegen = first_call["lazy_tracing_s"], first_call["compile_s"]
    return {"capture_s": capture, "graph_codegen_s": codegen, "kernel_compile_wait_s": None,
            "other_s": max(first_call_s - capture - codegen, 0.0),
            "notes": ["torch_xla metrics: LazyTracing (capture), CompileTime (XLA compile, HLO passes "
                      "and CPU codegen together)"]}


# ---------------------------------------------------------------------------------------- prepare

def step_function(on_device: Workload, mode: str):
    """default: lazy tracing of every call, cut into one graph (`torch_xla.compile`);
    dynamo: `torch.compile(backend="openxla")`, which traces once and replays the compiled
    graph while Dynamo's guards hold (autograd's backward is a second graph, from AOTAutograd)."""
    import torch_xla
    if mode not in MODES:
        raise ConfigError("backend.mode", f"expected one of {', '.join(MODES)}, got {mode!r}")
    if mode == "dynamo":
        forward = torch.compile(on_device.forward, backend="openxla", fullgraph=True, dynamic=False)

        def dynamo_step(*inputs: torch.Tensor):
            # The HLO module's name, as torch_xla.compile(name=...) sets it, so the dump filter finds it.
            torch_xla._XLAC._set_current_graph_name(GRAPH_NAME)
            return run_torch(on_device, forward, inputs)

        return dynamo_step

    def harness_torch_xla_step(*inputs: torch.Tensor):
        return run_torch(on_device, on_device.forward, inputs)

    return torch_xla.compile(harness_torch_xla_step, full_graph=True, name=GRAPH_NAME)


def to_device_keeping_ties(module: torch.nn.Module, device) -> torch.nn.Module:
    """`module.to(device)`, with tensors shared between submodules still shared.

    CPU and XLA tensors are not shallow-copy compatible, so `Module.to` gives every module a
    new Parameter of its own: a tied weight (qwen_decoder's embedding and lm_head) becomes two
    device tensors, passed to the program twice and held twice (cpu_tiny: one more f32[128,64]
    parameter, 32768 bytes, in the buffer assignment)."""
    places: dict[int, list[tuple[torch.nn.Module, str]]] = {}
    for owner in module.modules():
        for name, t in [*owner._parameters.items(), *owner._buffers.items()]:
            if t is not None:
                places.setdefault(id(t), []).append((owner, name))
    module.to(device)
    for (first_owner, first_name), *others in places.values():
        for owner, name in others:
            setattr(owner, name, getattr(first_owner, first_name))
    return module


def run_first_call(traced, inputs: tuple, run_dir: Path) -> tuple[Any, dict[str, Any]]:
    """The first call, synchronised, with what torch_xla's metrics say it cost; Unsupported
    (the run is skipped) when an op of the step fell back to eager torch on the CPU."""
    import torch_xla.core.xla_model as xm
    before, fallbacks_before = metrics_snapshot(), fallback_counts()
    try:
        out = traced(*inputs)
    except RuntimeError as e:
        # A fallback op needs its inputs on the host, i.e. an execution inside the step, which
        # full_graph refuses ("Unexpected execution happens inside the compiled function");
        # the op is counted before that.
        if ops := new_fallbacks(fallbacks_before):
            dump.prune(run_dir, GRAPH_NAME)
            raise Unsupported(fallback_reason(ops)) from e
        raise
    xm.wait_device_ops()          # so CompileTime and ExecuteTime include this call's program
    metrics = metrics_delta(before, metrics_snapshot())
    metrics["fallback_ops"] = new_fallbacks(fallbacks_before)
    if metrics["fallback_ops"]:
        dump.prune(run_dir, GRAPH_NAME)
        raise Unsupported(fallback_reason(metrics["fallback_ops"]))
    return out, metrics


def prepare(workload: Workload, cfg: dict, ctx: RunContext) -> Prepared:
    run_dir = Path(ctx.run_dir)
    # Both are read when torch_xla starts its runtime (the first device query below), not at
    # import: the worker's unavailable() has imported torch_xla already, which is fine.
    flags = xla_flags(cfg, run_dir)
    os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""), *flags]))
    import torch_xla
    import torch_xla.core.xla_model as xm

    xla_device = torch_xla.device()

    def move(t: torch.Tensor) -> torch.Tensor:
        return t.detach().to(xla_device).requires_grad_(t.requires_grad)

    # A copy of the module on the device (parameters and buffers, ties kept): the workload's
    # own module stays on the CPU, where its reference() builds the float32 ground truth. Its
    # state buffers (a KV cache) are updated in place on the device by plain torch semantics.
    on_device = dataclasses.replace(
        workload, module=to_device_keeping_ties(copy.deepcopy(workload.module), xla_device),
        grad_outputs=None if workload.grad_outputs is None else tuple(move(g) for g in workload.grad_outputs))
    buffers = dict(on_device.module.named_buffers())

    def convert(inputs) -> tuple:
        return tuple(move(t) for t in inputs)

    mode = cfg.get("mode", "default")
    traced = step_function(on_device, mode)
    inputs = convert(workload.inputs)
    torch_xla.sync()              # the moves, so the first call's metrics are the step's own
    xm.wait_device_ops()
    first_call: dict[str, Any] = {}
    compile_info: dict[str, Any] = {"mode": mode, "device": str(xla_device), "xla_flags": os.environ["XLA_FLAGS"],
                                    "pjrt_device": os.environ.get("PJRT_DEVICE"), "graph_name": GRAPH_NAME,
                                    "first_call": first_call}

    def step(*inputs_: torch.Tensor):
        if first_call:
            return traced(*inputs_)
        out, metrics = run_first_call(traced, inputs_, run_dir)
        first_call.update(metrics)
        return out

    def graphs_compiled() -> int:
        import torch_xla.debug.metrics as met
        return int(met.counter_value("UncachedCompile") or 0)

    return Prepared(
        step=step,
        inputs=inputs,
        convert=convert,
        synchronize=lambda out: xm.wait_device_ops(),
        to_torch=lambda out: tuple(o.detach().cpu() for o in out),
        artifacts=lambda: dump.prune(run_dir, GRAPH_NAME),
        compile_info=compile_info,
        compile_phases=lambda first_call_s: compile_phases(first_call, first_call_s),
        graphs_compiled=graphs_compiled,
        peak_memory_source="none: the XLA CPU client has no allocator stats (GetAllocatorStats UNIMPLEMENTED)",
        state=lambda: LazyMapping(workload.state_buffers, lambda name: buffers[name].detach().cpu()),
    )
