"""torchao-style float8 training linear, dynamic tensorwise scaling (seeds 000, 001).

Presets (model.py): seed (M=2048 K=4096 N=8192), cpu_small, square_4k, llama3_* FFN shapes.
"""
from dataclasses import dataclass
from typing import Optional

from harness.orchestrator.config import WorkloadConfig
from harness.orchestrator import plugins


@plugins.workload("fp8_linear", build="workloads.fp8_linear.model:build")
@dataclass
class Fp8LinearConfig(WorkloadConfig):
    mode: str = "fwd"               # fwd | fwd_bwd
    # tensorwise: the recipe written out in model.py; torchao: torchao's own Float8Linear
    # (convert_to_float8_training, tensorwise; needs torchao, else skipped); bf16: no fp8
    recipe: str = "tensorwise"
    M: Optional[int] = None         # None: the preset's
    K: Optional[int] = None
    N: Optional[int] = None
