"""PyTorch/XLA (lazy tensors), where `torch_xla` imports (its own environment: torch 2.9 +
torch_xla 2.9, `scripts/torch_xla_env.sh`); elsewhere the run is `skipped`."""
from dataclasses import dataclass

from harness.config import BackendConfig
from harness import plugins


@plugins.backend("torch_xla", module="backends.torch_xla.backend", packages=("torch", "torch_xla"),
         env={"PJRT_DEVICE": "CPU"})
@dataclass
class TorchXlaConfig(BackendConfig):
    dump_hlo: bool = True       # XLA_FLAGS --xla_dump_to=run_dir/xla_dump (set before torch_xla starts)
    xla_flags: str = ""
