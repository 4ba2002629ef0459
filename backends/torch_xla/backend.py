"""PyTorch/XLA (lazy tensors), only where `torch_xla` imports.

PyTorch/XLA has no CUDA builds since 2.8, so on our GPU machine the run is `skipped` and the
XLA numbers come from `backends/xla.py` (torchax). This adapter is kept small and is untested
here: the workload's module and inputs are moved to the XLA device, each step is traced
lazily and cut with `torch_xla.sync()` (`xm.mark_step()` on older releases).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from harness.backend import XLA_BUFFER_ASSIGNMENT, XLA_DUMP_FILE, XLA_OPTIMIZED_HLO, Artifact, Prepared, RunContext
from harness.workload import Workload, run_torch

DUMP_DIR = "xla_dump"


def unavailable() -> str | None:
    if importlib.util.find_spec("torch_xla") is None:
        return "torch_xla is not installed (no CUDA builds since PyTorch/XLA 2.8; use backend=xla)"
    try:
        import torch_xla  # noqa: F401
    except Exception as e:  # a build for another torch version fails here
        return f"torch_xla does not import: {type(e).__name__}: {e}"[:500]
    return None


def _sync() -> None:
    import torch_xla
    if hasattr(torch_xla, "sync"):
        torch_xla.sync()
    else:
        import torch_xla.core.xla_model as xm
        xm.mark_step()


def prepare(workload: Workload, cfg: dict, ctx: RunContext) -> Prepared:
    run_dir = ctx.run_dir
    flags = []
    if cfg.get("dump_hlo", True):
        flags += [f"--xla_dump_to={Path(run_dir).resolve() / DUMP_DIR}", "--xla_dump_hlo_as_text"]
    flags += (cfg.get("xla_flags") or "").split()
    # Read when torch_xla starts its runtime, i.e. at the first device query below.
    os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""), *flags]))
    import torch_xla
    import torch_xla.core.xla_model as xm

    xla_device = torch_xla.device() if hasattr(torch_xla, "device") else xm.xla_device()
    workload.module.to(xla_device)

    def move(t: torch.Tensor) -> torch.Tensor:
        moved = t.detach().to(xla_device)
        return moved.requires_grad_(t.requires_grad)

    if workload.grad_outputs is not None:
        workload.grad_outputs = tuple(move(g) for g in workload.grad_outputs)

    def step(*inputs: torch.Tensor):
        out = run_torch(workload, workload.forward, inputs)
        _sync()
        return out

    def convert(inputs) -> tuple:
        # State buffers (a KV cache) live on the module, moved with it: torch_xla updates them in place.
        return tuple(move(t) for t in inputs)

    def artifacts() -> list[Artifact]:
        root = Path(run_dir) / DUMP_DIR
        files = sorted(root.glob("*after_optimizations*.txt")) if root.is_dir() else []
        kinds = {"-buffer-assignment.txt": XLA_BUFFER_ASSIGNMENT, "after_optimizations.txt": XLA_OPTIMIZED_HLO}
        return [Artifact(next((k for suffix, k in kinds.items() if p.name.endswith(suffix)), XLA_DUMP_FILE),
                         str(p.relative_to(run_dir))) for p in files]

    return Prepared(
        step=step,
        inputs=convert(workload.inputs),
        convert=convert,
        synchronize=lambda out: xm.wait_device_ops(),
        to_torch=lambda out: tuple(o.detach().cpu() for o in out),
        artifacts=artifacts,
        compile_info={"xla_flags": os.environ["XLA_FLAGS"], "device": str(xla_device)},
    )
