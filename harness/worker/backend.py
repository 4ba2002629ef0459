"""The one small interface every backend implements, and the typed values it hands the worker.

A backend package registers a schema (harness/orchestrator/plugins.py) whose module satisfies `Backend`:
    unavailable() -> str | None                 why it cannot run here (the run is `skipped`)
    prepare(workload, cfg, ctx) -> Prepared
It knows nothing about timing policy or parsing: it says what each file it leaves is
(`Artifact`), and the worker hands each kind to its collector.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

# The typed files a backend hands back cross the process boundary in the result: they are
# defined there, and re-exported here for backends.
from harness.protocol import (INDUCTOR_OUTPUT_CODE, KERNEL_TABLE, MEMORY_BUFFERS, MEMORY_TABLE,  # noqa: F401
                              TRACE, XLA_BUFFER_ASSIGNMENT, XLA_DUMP_FILE, XLA_OPTIMIZED_HLO, Artifact)


@dataclass(frozen=True)
class RunContext:
    """Where a run writes, handed to `prepare` (backends read no environment variables)."""
    run_dir: Path
    device: Any                     # torch.device
    compile_cache_dir: Path         # holds the subdirs the backend's compile_cache declares


@dataclass
class Prepared:
    step: Callable[..., Any]                    # one iteration on native inputs -> native outputs
    inputs: tuple[Any, ...]                     # workload.inputs converted to the backend's form
    convert: Callable[[tuple], tuple]           # torch inputs -> native inputs (numerics steps)
    synchronize: Callable[[Any], None]          # block until `out` (or all queued work) is done
    cuda_events: bool = False                   # the work runs on torch's CUDA stream (do_bench can time it)
    to_torch: Callable[[Any], tuple] = tuple    # native outputs -> torch tensors
    profile: Callable[[Callable[[], Any], int, Path], Artifact] | None = None  # -> the trace
    trace_note: str = ""                        # how the profiler sees the program (recorded)
    reset_peak_memory: Callable[[], None] = lambda: None
    peak_memory_bytes: Callable[[], int | None] = lambda: None
    peak_memory_source: str = "torch.cuda.max_memory_allocated"
    # Called once after the first call: the files the compiler left, each with its kind.
    artifacts: Callable[[], list[Artifact]] = lambda: []
    compile_info: dict[str, Any] = field(default_factory=dict)
    # first_call_s -> {phase_s: seconds, ..., "notes": [...]} from the compiler's own counters
    compile_phases: Callable[[float], dict[str, Any]] = lambda first_call_s: {}
    # Graphs compiled so far (None: not countable): a change across the timed window means
    # a recompile happened while timing, and the timing mixes compile and run.
    graphs_compiled: Callable[[], int | None] = lambda: None
    # After timing: how the compiled program ran (CUDA graphs recorded/replayed, skips).
    run_evidence: Callable[[], dict[str, Any]] = lambda: {}
    # The workload's state buffers as torch tensors, as the last call left them.
    state: Callable[[], dict[str, Any]] = lambda: {}
    # The workload's named steps (`Workload.steps`), as `step` is: native inputs -> native outputs,
    # sharing the state with `step` and with each other.
    steps: dict[str, Callable[..., Any]] = field(default_factory=dict)
    # Outputs carried into the next call (a generation's token, position, cache): a CUDA-graph
    # replay overwrites its previous outputs, so graph modes clone them; the rest pass them on.
    keep: Callable[[tuple], tuple] = tuple


class Backend(Protocol):
    def unavailable(self) -> str | None: ...

    def prepare(self, workload: Any, cfg: dict[str, Any], ctx: RunContext) -> Prepared: ...
