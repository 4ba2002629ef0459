"""Structured configs: Hydra validates key names and types against these dataclasses.

Each workload has its own dataclass (its parameters differ); they are registered in the
ConfigStore as `workload/<name>_schema` and each `conf/workload/<name>.yaml` extends its
schema, so `workload.M=abc` or `workload.typo=1` is rejected by OmegaConf itself.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf


@dataclass
class BenchConfig:
    warmup: int = 3                 # calls after the first (compiling) one, before timing ...
    warmup_ms: float = 250.0        # ... and at least this long: an idle GPU needs time to clock up
    repeats: int = 15               # timed samples
    min_repeat_ms: float = 50.0     # iterations per sample are calibrated to reach this
    max_iters_per_repeat: int = 10_000
    timeout_s: float = 900.0        # wall limit of the whole worker process
    profile: bool = True            # run a separate profiling pass after timing
    profile_iters: int = 5
    check_numerics: bool = True
    # cold: an empty Inductor/Triton/JAX compile cache per run; warm: a shared cache dir that
    # a priming worker fills first (same config, first call only), so the run compiles warm.
    compile_cache: str = "cold"
    compile_cache_dir: str = "results/compile_cache"
    prime_only: bool = False        # internal: the priming worker of a warm run stops after the first call


@dataclass
class BackendConfig:
    name: str = MISSING
    # inductor
    mode: str = "default"           # default | max-autotune | max-autotune-no-cudagraphs | reduce-overhead
    fullgraph: bool = True
    dynamic: bool = False
    # xla (torchax -> jax.jit -> XLA)
    platform: str = "auto"          # auto | gpu | cpu
    xla_flags: str = ""
    autotune_level: Optional[int] = None
    dump_hlo: bool = True


@dataclass
class WorkloadConfig:
    name: str = MISSING
    preset: str = "auto"            # auto: the realistic preset on cuda, the small one on cpu
    mode: str = "fwd"               # fwd | fwd_bwd (where a workload supports it)
    dtype: str = "bfloat16"
    min_sqnr_db: Optional[float] = None   # None: the workload's default for this recipe/mode


@dataclass
class Fp8LinearConfig(WorkloadConfig):
    name: str = "fp8_linear"
    recipe: str = "tensorwise"      # tensorwise | bf16
    M: Optional[int] = None
    K: Optional[int] = None
    N: Optional[int] = None


@dataclass
class ConvConfig(WorkloadConfig):
    name: str = "conv"
    dtype: Optional[str] = None     # None: the preset's (seed002 is float32, ResNet stages bfloat16)
    batch: Optional[int] = None
    in_channels: Optional[int] = None
    out_channels: Optional[int] = None
    height: Optional[int] = None
    width: Optional[int] = None
    kernel_size: Optional[int] = None
    stride: Optional[int] = None
    padding: Optional[int] = None
    bias: Optional[bool] = None
    channels_last: Optional[bool] = None
    unbatched: Optional[bool] = None  # input [C,H,W], unsqueezed to a batch of 1 by Conv2d (seed 002)


@dataclass
class QwenDecoderConfig(WorkloadConfig):
    name: str = "qwen_decoder"
    dtype: Optional[str] = None     # None: the preset's (bfloat16 on the GPU presets)
    phase: str = "decode"           # prefill | decode
    cache: Optional[str] = None     # static | paged; None: the preset's
    batch: Optional[int] = None
    prompt_len: Optional[int] = None
    max_len: Optional[int] = None
    block_size: Optional[int] = None      # paged cache
    num_blocks: Optional[int] = None      # paged cache; None: batch * max_len / block_size
    num_layers: Optional[int] = None
    hidden_size: Optional[int] = None
    num_heads: Optional[int] = None
    num_kv_heads: Optional[int] = None
    head_dim: Optional[int] = None
    intermediate_size: Optional[int] = None
    vocab_size: Optional[int] = None
    tie_embeddings: Optional[bool] = None


@dataclass
class FaultyConfig(WorkloadConfig):
    """Test-only workload that misbehaves on request."""
    name: str = "faulty"
    fault: str = "none"             # none | crash | hang | wrong | raise | segfault
    size: int = 64


@dataclass
class RunConfig:
    workload: Any = MISSING
    backend: BackendConfig = MISSING
    bench: BenchConfig = field(default_factory=BenchConfig)
    device: str = "auto"            # auto | cuda | cpu
    seed: int = 0
    force: bool = False             # re-run even where the run dir already holds an `ok` record
    gpu_pool: Any = "auto"          # auto | none | [0,1,...]: jobs running at once each take one GPU (gpus.py)


WORKLOAD_SCHEMAS: dict[str, type] = {
    "fp8_linear": Fp8LinearConfig,
    "conv": ConvConfig,
    "qwen_decoder": QwenDecoderConfig,
    "faulty": FaultyConfig,
}


def short_key(text: str) -> str:
    """8 hex chars naming a set of overrides (sweep subdirs); stable across runs and hosts."""
    return hashlib.sha256(str(text).encode()).hexdigest()[:8]


def register_configs() -> None:
    if not OmegaConf.has_resolver("harness_key"):
        OmegaConf.register_new_resolver("harness_key", short_key)
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    cs.store(group="backend", name="backend_schema", node=BackendConfig)
    cs.store(group="bench", name="bench_schema", node=BenchConfig)
    for name, schema in WORKLOAD_SCHEMAS.items():
        cs.store(group="workload", name=f"{name}_schema", node=schema)
