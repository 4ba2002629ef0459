"""The one small interface every backend module implements.

A backend module exposes:
    unavailable() -> str | None        why it cannot run here (the run is then `skipped`)
    prepare(workload, cfg, device, run_dir) -> Prepared
It knows nothing about timing policy or parsing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.workload import Outputs


@dataclass
class Prepared:
    step: Callable[..., Any]                    # one iteration on native inputs -> native outputs
    inputs: tuple[Any, ...]                     # workload.inputs converted to the backend's form
    convert: Callable[[tuple], tuple]           # torch inputs -> native inputs (numerics steps)
    synchronize: Callable[[Any], None]          # block until `out` (or all queued work) is done
    to_torch: Callable[[Any], Outputs]          # native outputs -> torch tensors
    profile: Callable[[Callable[[], Any], int, Path], Path] | None = None  # -> trace file
    reset_peak_memory: Callable[[], None] = lambda: None
    peak_memory_bytes: Callable[[], int | None] = lambda: None
    peak_memory_source: str = "torch.cuda.max_memory_allocated"
    # Called once after the first call: write dumps/code into the run dir, return name -> path.
    collect_artifacts: Callable[[Path], dict[str, str]] = lambda run_dir: {}
    compile_info: dict[str, Any] = field(default_factory=dict)
    # first_call_s -> {phase_s: seconds, ..., "notes": [...]} from the compiler's own counters
    compile_phases: Callable[[float], dict[str, Any]] = lambda first_call_s: {}
    # Graphs compiled so far (None: not countable): a change across the timed window means
    # a recompile happened while timing, and the timing mixes compile and run.
    graphs_compiled: Callable[[], int | None] = lambda: None
