"""What the eager and Inductor backends share: device sync, the PyTorch profiler, peaks, state."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from harness.worker.backend import TRACE, Artifact, Prepared
from harness.worker.workload import Workload, run_torch

TRACE_NAME = "trace.json.gz"


def synchronize(device: torch.device) -> Callable[[Any], None]:
    if device.type == "cuda":
        return lambda out: torch.cuda.synchronize(device)
    return lambda out: None


def profile(device: torch.device) -> Callable[[Callable[[], Any], int, Path], Artifact]:
    def run(fn: Callable[[], Any], iters: int, out_dir: Path) -> Artifact:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        sync = synchronize(device)
        sync(fn())  # nothing lazy left for the profiled window
        with torch.profiler.profile(activities=activities, record_shapes=True) as prof:
            for i in range(iters):
                # One marker per iteration: the kernel collector divides by their count.
                with torch.profiler.record_function(f"harness_iter_{i}"):
                    out = fn()
                sync(out)
        prof.export_chrome_trace(str(Path(out_dir) / TRACE_NAME))
        return Artifact(TRACE, TRACE_NAME, "kineto")
    return run


def _runner(workload: Workload, forward: Callable[..., Any]) -> Callable[..., Any]:
    def step(*inputs: torch.Tensor):
        return run_torch(workload, forward, inputs)
    return step


def clone_outputs(outs: tuple) -> tuple:
    """Outputs that outlive the next call: cudagraph trees hand out the same output memory on
    every replay, and a tensor of an earlier replay raises when read ("accessing tensor output
    of CUDAGraphs that has been overwritten by a subsequent run"); gpt-fast clones its next token."""
    return tuple(t.clone() for t in outs)


def prepare_torch(workload: Workload, device: torch.device, forward: Callable[..., Any],
                  compile_info: dict | None = None, steps: dict[str, Callable[..., Any]] | None = None) -> Prepared:
    """Torch runs the workload as it is: state buffers are updated in place, as in eager.
    `steps`: the workload's named steps as this backend runs them (default: as they are)."""
    cuda = device.type == "cuda"
    state_names = set(workload.state_buffers)
    return Prepared(
        step=_runner(workload, forward),
        inputs=workload.inputs,
        convert=lambda inputs: tuple(inputs),
        synchronize=synchronize(device),
        cuda_events=cuda,
        # Copied at once: under CUDA graphs (reduce-overhead, max-autotune) the next replay
        # overwrites a step's outputs in place, and the numerics check holds several steps'
        # ("accessing tensor output of CUDAGraphs that has been overwritten", seen on the H200).
        to_torch=lambda out: tuple(t.detach().cpu() for t in out),
        profile=profile(device),
        trace_note="PyTorch profiler (Kineto), the timed program",
        reset_peak_memory=(lambda: torch.cuda.reset_peak_memory_stats(device)) if cuda else (lambda: None),
        peak_memory_bytes=(lambda: int(torch.cuda.max_memory_allocated(device))) if cuda else (lambda: None),
        compile_info=compile_info or {},
        state=lambda: {k: v for k, v in workload.module.named_buffers() if k in state_names},
        steps={name: _runner(workload, fn) for name, fn in (workload.steps if steps is None else steps).items()},
    )
