"""XLA through torchax: the workload's own module and inputs, traced to JAX, `jax.jit` -> XLA.

Variants: `xla` (XLA's default: CUDA graphs, "command buffers", for fusions, cuBLAS(Lt),
custom calls and cuDNN, and GEMM autotuning on) and `xla_no_cmdbuf` (command buffers off: the
side of the control pair against Inductor's default mode, which has no CUDA graphs).
"""
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from harness.orchestrator.config import BackendConfig
from harness.orchestrator import plugins

PLATFORMS = ("auto", "gpu", "cpu")
CACHE_SUBDIR = "jax"        # JAX's persistent compilation cache under the run's compile cache


def label(cfg: Mapping[str, Any]) -> str:
    parts = ["xla"]
    if not cfg.get("command_buffers", True):
        parts.append("no-cmdbuf")
    if cfg.get("autotune_level") is not None:
        parts.append(f"autotune{cfg['autotune_level']}")
    if cfg.get("xla_flags"):
        parts.append("flags")
    return ":".join(parts)


def graphs(cfg: Mapping[str, Any]) -> str:
    return "command_buffers" if cfg["command_buffers"] else "none"


def pair(cfg: Mapping[str, Any]) -> str | None:
    """XLA's default (command buffers and GEMM autotuning) is the headline pair's side; command
    buffers off the control pair's. Other autotune levels or extra flags are neither."""
    if cfg["autotune_level"] is not None or cfg["xla_flags"]:
        return None
    return "headline" if cfg["command_buffers"] else "control"


@plugins.backend("xla", module="backends.xla.backend", label=label, family="xla", graphs=graphs, pair=pair,
         # JAX would otherwise take 75% of the GPU up front and every memory figure would be that
         # (read when JAX starts its backends: in the worker, after the run's environment is set).
         # Its compile cache is not a variable here: JAX reads JAX_COMPILATION_CACHE_DIR when it
         # is imported, which a fork server did before the run; prepare() sets it from the
         # RunContext (CACHE_SUBDIR).
         env={"XLA_PYTHON_CLIENT_PREALLOCATE": "false"},
         packages=("jax", "jaxlib", "torchax", "torch"),
         # Not torchax: importing it before the backend's eager run breaks torch's CUDA autograd
         # (backend.channels_last_outputs), and no JAX backend may start in the server.
         preload=("torch", "jax", "backends.xla.backend"),
         variants={"xla_no_cmdbuf": {"command_buffers": False}})
@dataclass
class XlaConfig(BackendConfig):
    platform: str = "auto"          # auto (gpu when jax sees one) | gpu | cpu
    xla_flags: str = ""             # extra XLA flags, e.g. "--xla_gpu_enable_triton_gemm=false"
    autotune_level: Optional[int] = None   # --xla_gpu_autotune_level=N (gpu only); null: XLA's default
    dump_hlo: bool = True           # run_dir/xla_dump: optimised HLO, buffer assignment, memory report
    # XLA's default (true): CUDA graphs for the command types XLA enables by default; false:
    # --xla_gpu_enable_command_buffer= (none), the control against Inductor without graphs.
    command_buffers: bool = True
    # Profile the program as timed: with command buffers on, XLA's profiler replaces them by
    # op-by-op launches unless --xla_enable_command_buffers_during_profiling=true.
    profile_as_timed: bool = True
