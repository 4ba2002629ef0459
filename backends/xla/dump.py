"""XLA's flags for a run and what stays of its dump, each kept file with its kind."""
from __future__ import annotations

import contextlib
import shlex
from pathlib import Path
from typing import Any, Mapping

from harness.worker.backend import XLA_BUFFER_ASSIGNMENT, XLA_DUMP_FILE, XLA_OPTIMIZED_HLO, Artifact

STEP_NAME = "harness_xla_step"          # jax.jit names the module jit_harness_xla_step
DUMP_DIR = "xla_dump"
# What stays of the dump: everything else (LLVM IR, object files, PTX, other modules) goes.
KEEP = {"after_optimizations.txt": XLA_OPTIMIZED_HLO, "-buffer-assignment.txt": XLA_BUFFER_ASSIGNMENT,
        "-buffer-assignment-values.txt": XLA_DUMP_FILE, "-memory-usage-report.txt": XLA_DUMP_FILE,
        "-live-range.txt": XLA_DUMP_FILE}
# XLA's default command-buffer types (openxla/xla debug_options_flags.cc, jax 0.10-0.11):
# recorded with the run, as the flag in effect when none overrides it.
DEFAULT_COMMAND_BUFFER_TYPES = "FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN"


def dump_flags(run_dir: Path, module_name: str = STEP_NAME) -> list[str]:
    """XLA dumps the modules whose name contains module_name into run_dir/xla_dump, as text."""
    return [f"--xla_dump_to={Path(run_dir).resolve() / DUMP_DIR}", "--xla_dump_hlo_as_text",
            f"--xla_dump_hlo_module_re={module_name}"]


def xla_flags(cfg: Mapping[str, Any], run_dir: Path) -> list[str]:
    flags = dump_flags(run_dir) if cfg.get("dump_hlo", True) else []
    if cfg.get("platform", "auto") != "cpu":
        if cfg.get("autotune_level") is not None:
            flags.append(f"--xla_gpu_autotune_level={int(cfg['autotune_level'])}")
        if not cfg.get("command_buffers", True):
            flags.append("--xla_gpu_enable_command_buffer=")          # no command types at all
        elif cfg.get("profile_as_timed", True):
            flags.append("--xla_enable_command_buffers_during_profiling=true")
    flags += shlex.split(cfg.get("xla_flags") or "")
    return flags


def command_buffers(cfg: Mapping[str, Any], flags: list[str], platform: str) -> dict[str, Any]:
    """The command-buffer settings in effect, as the record states them."""
    if platform != "gpu":
        return {"enabled": False, "why": f"no command buffers on {platform}"}
    given = [f.split("=", 1)[1] for f in flags if f.startswith("--xla_gpu_enable_command_buffer=")]
    types = given[-1] if given else DEFAULT_COMMAND_BUFFER_TYPES
    profiling = any(f == "--xla_enable_command_buffers_during_profiling=true" for f in flags)
    return {"enabled": bool(types), "types": types or "none",
            "source": "XLA_FLAGS" if given else "XLA default", "during_profiling": bool(types) and profiling}


def trace_note(buffers: Mapping[str, Any]) -> str:
    if not buffers.get("enabled"):
        return "JAX profiler (perfetto): the timed program (no command buffers)"
    if buffers.get("during_profiling"):
        return "JAX profiler (perfetto) with command buffers on during profiling: the timed program"
    return ("JAX profiler (perfetto) with command buffers OFF during profiling: kernels launched op by op, "
            "not the timed program")


def _dump_files(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / DUMP_DIR
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def _kind(path: Path, module_name: str) -> str | None:
    if module_name not in path.name:
        return None
    return next((kind for suffix, kind in KEEP.items() if path.name.endswith(suffix)), None)


def prune(run_dir: Path, module_name: str = STEP_NAME) -> list[Artifact]:
    """Keep our module's after-optimisations HLO, buffer assignment and memory report (the CPU
    backend also writes LLVM IR, MLIR and object files per fusion: megabytes, deleted); the
    kept files as artifacts, paths relative to the run dir."""
    kept = []
    for path in _dump_files(run_dir):
        kind = _kind(path, module_name)
        if kind is None:
            path.unlink()
        else:
            kept.append(Artifact(kind, str(path.relative_to(run_dir))))
    root = Path(run_dir) / DUMP_DIR
    if root.is_dir():
        for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
    return kept
