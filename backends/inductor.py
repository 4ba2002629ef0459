"""TorchInductor through torch.compile. The generated output code is kept per run: the memory
collector reads its static plan (empty_strided allocations, reuse) from it."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from backends._torch import prepare_torch
from harness.backend import Prepared
from harness.errors import ConfigError
from harness.workload import Workload

MODES = ("default", "max-autotune", "max-autotune-no-cudagraphs", "reduce-overhead")


def unavailable() -> str | None:
    return None


def _output_code_files(cache_dir: Path) -> list[Path]:
    # Inductor writes each compiled graph's wrapper as a module defining `def call(args)`
    # (seed 001, older Inductor) or `def call(self, args)` (torch >= 2.10, inside a Runner
    # class); kernels compiled in subprocesses land beside them as other .py files.
    found = []
    for path in sorted(cache_dir.rglob("*.py"), key=lambda p: p.stat().st_mtime):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if "def call(args)" in text or "def call(self, args)" in text:
            found.append(path)
    return found


def collect_output_code(run_dir: Path) -> dict[str, str]:
    cache_dir = Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR", ""))
    if not cache_dir.is_dir():
        return {}
    artifacts = {}
    for i, path in enumerate(_output_code_files(cache_dir)):
        dest = Path(run_dir) / f"inductor_output_code_{i}.py"
        shutil.copyfile(path, dest)
        artifacts[f"inductor_output_code_{i}"] = dest.name
    return artifacts


def prepare(workload: Workload, cfg: dict, device: torch.device, run_dir: Path) -> Prepared:
    mode = cfg.get("mode", "default")
    if mode not in MODES:
        raise ConfigError("backend.mode", f"expected one of {', '.join(MODES)}, got {mode!r}")
    compiled = torch.compile(workload.forward, mode=None if mode == "default" else mode,
                             fullgraph=bool(cfg.get("fullgraph", True)), dynamic=bool(cfg.get("dynamic", False)))
    prepared = prepare_torch(workload, device, compiled, {"mode": mode})
    prepared.collect_artifacts = collect_output_code
    return prepared
