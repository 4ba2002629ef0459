"""TorchInductor through torch.compile.

Variants, each a Hydra option: `inductor` (default mode: no CUDA graphs, no GEMM autotuning),
`inductor_cudagraphs` (reduce-overhead: CUDA graphs) and `inductor_max_autotune` (GEMM template
autotuning and CUDA graphs: Inductor at its best, the side of the headline pair against XLA's
default, which has both).
"""
from dataclasses import dataclass
from typing import Any, Mapping

from harness.orchestrator.config import BackendConfig
from harness.orchestrator import plugins

MODES = ("default", "max-autotune", "max-autotune-no-cudagraphs", "reduce-overhead")
GRAPH_MODES = ("reduce-overhead", "max-autotune")     # the modes that capture CUDA graphs
CACHE_SUBDIR = "inductor"     # Inductor's cache (FX graphs, output code) under the run's compile cache
# What its fork server imports before forking a worker: torch alone. With torch._dynamo and
# torch._inductor.compile_fx preloaded as well (3-4 s more on a 2-core machine), the H200's
# server had loaded the CUDA driver and run threads, and every forked worker failed ("Cannot
# re-initialize CUDA in forked subprocess", 2026-12-02): a worker imports them itself.
PRELOAD = ("torch", "backends.inductor.backend")


def label(cfg: Mapping[str, Any]) -> str:
    parts = [] if cfg.get("mode", "default") == "default" else [cfg["mode"]]
    if cfg.get("dynamic"):
        parts.append("dynamic")
    if not cfg.get("fullgraph", True):
        parts.append("graph-breaks")
    return ":".join(["inductor", *parts])


def graphs(cfg: Mapping[str, Any]) -> str:
    return "cudagraphs" if cfg["mode"] in GRAPH_MODES else "none"


def pair(cfg: Mapping[str, Any]) -> str | None:
    """max-autotune (GEMM autotuning + CUDA graphs) is the headline pair's side against XLA's
    default; the default mode (neither) the control pair's against XLA without command buffers.
    A dynamic or graph-breaking configuration is neither."""
    if cfg["dynamic"] or not cfg["fullgraph"]:
        return None
    return {"max-autotune": "headline", "default": "control"}.get(cfg["mode"])


@plugins.backend("inductor", module="backends.inductor.backend", label=label, family="inductor",
         graphs=graphs, pair=pair,
         compile_cache={"TORCHINDUCTOR_CACHE_DIR": CACHE_SUBDIR, "TRITON_CACHE_DIR": "triton"},
         packages=("torch", "triton"), preload=PRELOAD,
         variants={"inductor_cudagraphs": {"mode": "reduce-overhead"},
                   "inductor_max_autotune": {"mode": "max-autotune"}})
@dataclass
class InductorConfig(BackendConfig):
    mode: str = "default"           # default | max-autotune | max-autotune-no-cudagraphs | reduce-overhead
    fullgraph: bool = True
    dynamic: bool = False
