"""PyTorch/XLA (lazy tensors, or torch.compile's openxla backend), where `torch_xla` imports:
its own environment (torch 2.9 + torch_xla 2.9, `scripts/torch_xla_env.sh`, the XLA CPU
device); elsewhere the run is `skipped`."""
from dataclasses import dataclass
from typing import Any, Mapping

from harness.orchestrator import plugins
from harness.orchestrator.config import BackendConfig

MODES = ("default", "dynamo")


def label(cfg: Mapping[str, Any]) -> str:
    return "torch_xla" if cfg.get("mode", "default") == "default" else f"torch_xla:{cfg['mode']}"


# Not torch_xla itself in its fork server: importing it registers the XLA device and reads the
# PJRT settings of the process (PJRT_DEVICE, XLA_FLAGS set in prepare()); each worker imports it
# after the fork, with the run's own environment.
@plugins.backend("torch_xla", module="backends.torch_xla.backend", label=label, packages=("torch", "torch_xla"),
                 family="torch_xla", env={"PJRT_DEVICE": "CPU"}, preload=("torch",))
@dataclass
class TorchXlaConfig(BackendConfig):
    mode: str = "default"       # default: lazy tensors, torch_xla.compile per step | dynamo: torch.compile(backend="openxla")
    dump_hlo: bool = True       # XLA_FLAGS --xla_dump_to=run_dir/xla_dump (set before torch_xla starts)
    xla_flags: str = ""
