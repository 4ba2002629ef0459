"""Test-only workload: a small matmul that misbehaves on request, to prove a sweep survives it."""
from __future__ import annotations

import os
import signal
import time
from typing import Any

import torch

from harness.params import resolve
from harness.worker.workload import Workload
from workloads.faulty import validate


class Faulty(torch.nn.Module):
    def __init__(self, weight: torch.Tensor, fault: str):
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        self.fault = fault
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fault == "crash":
            os.abort()
        if self.fault == "segfault":
            os.kill(os.getpid(), signal.SIGSEGV)
        if self.fault == "hang":
            time.sleep(3600)
        if self.fault == "raise":
            raise RuntimeError("faulty workload raised on request")
        y = x @ self.weight
        if self.fault == "recompile":
            # A Python int that changes over the first calls, then stays: torch.compile
            # (dynamic=False) guards on its value and compiles again three times inside the timed
            # window, below Dynamo's recompile limit; the value adds nothing to the result.
            self.calls = min(self.calls + 1, 4)
            return y + (self.calls - self.calls)
        return y + 1.0 if self.fault == "wrong" else y


def forward(module: Faulty, x: torch.Tensor) -> torch.Tensor:
    return module(x)


def build(cfg: dict[str, Any], device: torch.device) -> Workload:
    p = resolve(cfg, None, device.type, None, validate)
    n = p["size"]
    if p["fault"] == "leak":
        # Globals an earlier run in this process would have left (a module attribute of torch,
        # which a fork server imported, and a variable), then set them for the next run to find;
        # and this process's parent (a fork server's runs share it).
        p.update(found_globals=[getattr(torch, "_harness_leak", None), os.environ.get("HARNESS_LEAK")],
                 parent_pid=os.getppid())
        torch._harness_leak = os.environ["HARNESS_LEAK"] = "set by an earlier run"
    x = torch.randn(n, n, device=device)
    w = torch.randn(n, n, device=device)
    return Workload(name="faulty", params=p, module=Faulty(w, p["fault"]).to(device), inputs=(x,),
                    forward=forward, flops=2.0 * n ** 3, min_bytes=3.0 * n * n * 4,
                    reference=lambda: [(x.cpu().double() @ w.cpu().double(),)],
                    min_sqnr_db=60.0 if p["min_sqnr_db"] is None else p["min_sqnr_db"])
