"""Structured configs: Hydra validates key names and types against these dataclasses.

The run-level schema and `bench` live here; each workload and backend declares its own schema
in its package (harness/orchestrator/plugins.py registers them), extending `WorkloadConfig` or
`BackendConfig`. Nothing here imports torch: the orchestrator starts without it.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Mapping, Optional

from omegaconf import MISSING, OmegaConf

from harness.errors import ConfigError

COMPILE_CACHES = ("cold", "warm")
ISOLATIONS = ("forkserver", "spawn")
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


@dataclass
class BenchConfig:
    warmup: int = 3                 # calls after the first (compiling) one, before timing ...
    warmup_ms: float = 250.0        # ... and at least this long: an idle GPU needs time to clock up
    repeats: int = 15               # timed samples per process
    min_repeat_ms: float = 50.0     # iterations per sample are calibrated to reach this
    max_iters_per_repeat: int = 10_000
    # Fresh worker processes per config, each with its own samples; the record gives the median
    # of their medians and the spread between them. The first process compiles into the run's
    # cache, so the others compile warm and cheaply.
    processes: int = 1
    timeout_s: float = 900.0        # wall limit of each worker process
    # How a worker process starts (harness/orchestrator/spawn.py): forkserver: forked from a
    # server that imported torch once for the whole sweep (harness/worker/server.py); spawn: a
    # fresh interpreter that imports everything itself. Each is a fresh process per run.
    isolation: str = "forkserver"
    # Kill a worker whose resident memory (with its children) passes this; None: 80% of the
    # machine's memory (the cgroup limit where one is set).
    max_host_mem_gb: Optional[float] = None
    profile: bool = True            # run a separate profiling pass after timing (first process)
    profile_iters: int = 5
    check_numerics: bool = True
    # Time the same callable with an independent timer too (triton's do_bench for torch on CUDA,
    # a block_until_ready loop for JAX, a plain loop on CPU): timing.reference_median_ms.
    reference_timer: bool = False
    # cold: an empty Inductor/Triton/JAX compile cache per run; warm: a shared cache dir that
    # a priming worker fills first (same config, first call only), so the run compiles warm.
    compile_cache: str = "cold"
    compile_cache_dir: str = "results/compile_cache"
    prime_only: bool = False        # internal: the priming worker of a warm run stops after the first call
    # Lock the GPU's SM clock for the run (tritonbench's --gpu-lockdown; harness/orchestrator/
    # clock_lock.py): at lock_clocks_mhz, None: the GPU's maximum SM clock. Needs root; where
    # refused, the run goes on unlocked and its record says why. Always restored afterwards.
    lock_clocks: bool = False
    lock_clocks_mhz: Optional[int] = None
    # In a sweep, the runs that differ only in `backend` alternate their processes (A1 B1 A2 B2
    # ...) on one GPU, so a slow spell of the machine hits every side (harness/orchestrator/
    # interleave.py); +experiment=fair turns it on.
    interleave: bool = False


@dataclass
class BackendConfig:
    name: str = MISSING


@dataclass
class WorkloadConfig:
    name: str = MISSING
    preset: str = "auto"            # auto: the realistic preset on cuda, the small one on cpu
    mode: str = "fwd"               # fwd | fwd_bwd (where a workload supports it)
    dtype: Optional[str] = "bfloat16"
    min_sqnr_db: Optional[float] = None   # None: the workload's default for this recipe/mode


@dataclass
class RunConfig:
    workload: Any = MISSING
    backend: Any = MISSING
    bench: BenchConfig = field(default_factory=BenchConfig)
    device: str = "auto"            # auto | cuda | cpu
    seed: int = 0
    force: bool = False             # re-run even where the run dir already holds an `ok` record
    gpu_pool: Any = "auto"          # auto | none | [0,1,...]: jobs running at once each take one GPU (gpus.py)
    # auto: jobs that share a node's GPUs get disjoint CPU sets (the GPU's affine cores where
    # nvidia-smi reports them, else an even split); none: no pinning.
    cpu_pinning: str = "auto"
    # Internal, set by the interleaving sweeper (harness/orchestrator/interleave.py): the backend
    # options of the runs this job measures in turn; excluded from the run dir's name.
    interleave_backends: Optional[List[str]] = None


def short_key(text: str) -> str:
    """8 hex chars naming a set of overrides (sweep subdirs); stable across runs and hosts."""
    return hashlib.sha256(str(text).encode()).hexdigest()[:8]


def register_configs() -> None:
    # Hydra's ConfigStore is imported here and in `options`: the backends' and workloads'
    # schemas import this module, and the report reads their traits without Hydra (0.1 s)
    from hydra.core.config_store import ConfigStore

    from harness.orchestrator import plugins
    if not OmegaConf.has_resolver("harness_key"):
        OmegaConf.register_new_resolver("harness_key", short_key)
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    cs.store(group="bench", name="bench_schema", node=BenchConfig)
    for group, options in plugins.config_nodes().items():
        for option, node in options.items():
            cs.store(group=group, name=option, node=node)


def options(group: str) -> list[str]:
    """The options of a config group as Hydra sees them: ConfigStore entries and YAML files."""
    from hydra.core.config_store import ConfigStore
    try:
        stored = {name.removesuffix(".yaml") for name in ConfigStore.instance().list(group)}
    except OSError:   # Hydra's "group not found"
        stored = set()
    files = {p.stem for p in (CONF_DIR / group).glob("*.yaml")}
    return sorted(name for name in stored | files if not name.endswith("_schema"))


def check_bench(bench: Mapping[str, Any]) -> None:
    """Well-typed but wrong bench values: one line naming the key (exit 2), before any work."""
    def need(key: str, ok: bool, expected: str) -> None:
        if not ok:
            raise ConfigError(f"bench.{key}", f"expected {expected}, got {bench.get(key)!r}")

    def finite(key: str) -> bool:
        value = bench.get(key)
        return isinstance(value, (int, float)) and math.isfinite(value)

    for key in ("repeats", "processes", "profile_iters", "max_iters_per_repeat"):
        need(key, isinstance(bench.get(key), int) and bench[key] >= 1, "an integer >= 1")
    need("warmup", isinstance(bench.get("warmup"), int) and bench["warmup"] >= 0, "an integer >= 0")
    for key in ("warmup_ms", "min_repeat_ms"):
        need(key, finite(key) and bench[key] >= 0, "a number >= 0")
    need("timeout_s", finite("timeout_s") and bench["timeout_s"] > 0, "a number of seconds > 0")
    mem = bench.get("max_host_mem_gb")
    need("max_host_mem_gb", mem is None or (finite("max_host_mem_gb") and mem > 0),
         "null (80% of this machine's memory) or a number of GiB > 0")
    need("compile_cache", bench.get("compile_cache") in COMPILE_CACHES, " or ".join(COMPILE_CACHES))
    need("isolation", bench.get("isolation") in ISOLATIONS, " or ".join(ISOLATIONS))
    mhz = bench.get("lock_clocks_mhz")
    need("lock_clocks_mhz", mhz is None or (isinstance(mhz, int) and not isinstance(mhz, bool) and mhz > 0),
         "null (the GPU's maximum SM clock) or a clock in MHz > 0, e.g. 1980")
