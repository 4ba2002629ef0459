"""PyTorch eager: the baseline every compiler is measured against."""
from __future__ import annotations

from backends.torch_common import prepare_torch
from harness.worker.backend import Prepared, RunContext
from harness.worker.workload import Workload


def unavailable() -> str | None:
    return None


def prepare(workload: Workload, cfg: dict, ctx: RunContext) -> Prepared:
    return prepare_torch(workload, ctx.device, workload.forward)
