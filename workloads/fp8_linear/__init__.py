"""torchao-style float8 training linear, dynamic tensorwise scaling (seeds 000, 001).

Presets (below): seed (M=2048 K=4096 N=8192), cpu_small, square_4k, llama3_* FFN shapes.
"""
from dataclasses import dataclass
from typing import Any, Optional

from harness.errors import ConfigError
from harness.orchestrator.config import WorkloadConfig
from harness.orchestrator import plugins
from harness.params import require_choice, require_float_dtype, require_positive

PRESETS: dict[str, dict[str, Any]] = {
    "seed": dict(M=2048, K=4096, N=8192),            # seeds 000/001
    "cpu_small": dict(M=64, K=128, N=256),
    "square_4k": dict(M=4096, K=4096, N=4096),
    "llama3_8b_ffn_up": dict(M=8192, K=4096, N=14336),
    "llama3_8b_ffn_down": dict(M=8192, K=14336, N=4096),
    "llama3_70b_ffn_up": dict(M=8192, K=8192, N=28672),
}
DEFAULT_PRESET = {"cuda": "seed", "cpu": "cpu_small"}
RECIPES = ("tensorwise", "torchao", "bf16")
FP8_RECIPES = ("tensorwise", "torchao")      # the recipes whose GEMMs run in fp8 (_scaled_mm)


def validate(p: dict[str, Any]) -> None:
    require_positive(p, "M", "K", "N")
    require_choice(p, "mode", ("fwd", "fwd_bwd"))
    require_choice(p, "recipe", RECIPES)
    require_float_dtype(p)
    if p["recipe"] in FP8_RECIPES and (p["K"] % 16 or p["N"] % 16):
        raise ConfigError("workload.K", f"_scaled_mm needs K and N divisible by 16, got K={p['K']} N={p['N']}")


@plugins.workload("fp8_linear", build="workloads.fp8_linear.model:build", presets=PRESETS,
                  default_preset=DEFAULT_PRESET, validate=validate)
@dataclass
class Fp8LinearConfig(WorkloadConfig):
    mode: str = "fwd"               # fwd | fwd_bwd
    # tensorwise: the recipe written out in model.py; torchao: torchao's own Float8Linear
    # (convert_to_float8_training, tensorwise; needs torchao, else skipped); bf16: no fp8
    recipe: str = "tensorwise"
    M: Optional[int] = None         # None: the preset's
    K: Optional[int] = None
    N: Optional[int] = None
