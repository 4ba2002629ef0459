"""PyTorch eager: the baseline every compiler is measured against."""
from __future__ import annotations

from pathlib import Path

import torch

from backends._torch import prepare_torch
from harness.backend import Prepared
from harness.workload import Workload


def unavailable() -> str | None:
    return None


def prepare(workload: Workload, cfg: dict, device: torch.device, run_dir: Path) -> Prepared:
    return prepare_torch(workload, device, workload.forward)
