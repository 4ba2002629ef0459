"""PyTorch eager: the baseline every compiler is measured against."""
from dataclasses import dataclass

from harness.orchestrator.config import BackendConfig
from harness.orchestrator import plugins


@plugins.backend("eager", module="backends.eager.backend", packages=("torch",), family="eager",
                 preload=("torch", "backends.eager.backend"))
@dataclass
class EagerConfig(BackendConfig):
    pass
