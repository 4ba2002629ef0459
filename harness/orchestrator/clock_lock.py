"""`bench.lock_clocks=true`: the run's GPU's SM clock locked for its processes, then restored.

tritonbench's `--gpu-lockdown` (`gpu_lockdown` in tritonbench/utils/gpu_utils.py) locks the
graphics clock with `nvidia-smi -lgc` (at 1980 MHz on an H100, its maximum) and resets it with
`-rgc` afterwards; here NVML does both (`nvmlDeviceSetGpuLockedClocks`,
`nvmlDeviceResetGpuLockedClocks`), at `bench.lock_clocks_mhz` or the GPU's maximum SM clock.

The orchestrator owns the lock, not the worker: a worker killed for its time or memory limit,
or crashed, cannot restore anything, while the orchestrator's `finally` runs after it, after a
failure and after the stop signals it turns into `Interrupted` (SIGTERM, SIGUSR2, SIGHUP,
SIGINT). Only a SIGKILL of the orchestrator itself leaves the clock locked:
`nvidia-smi -rgc -i <gpu>` restores it.

Locking needs root (NVML_ERROR_NO_PERMISSION otherwise), a GPU that supports it (Volta and
later) and NVML; where any is missing the run goes on unlocked after one line, and the record's
`environment.sm_clock_lock` says why.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator

from harness import clocks
from harness.orchestrator import gpus


def _say(message: str) -> None:
    print(f"  [orchestrator] {message}", file=sys.stderr, flush=True)


def target_gpu(gpu: str | None, node_gpus: list[str]) -> str | None:
    """The GPU the run's worker will use, as nvidia-smi names it: the pool's slot, else the
    first GPU this job may use (gpus.visible_gpus); None without one (a CUDA_VISIBLE_DEVICES
    the user emptied sends the run to the CPU)."""
    if gpu is not None:
        return gpu
    visible = gpus.visible_gpus(node_gpus)
    return visible[0] if visible else None


def _handle(nvml, gpu: str):
    """nvidia-smi's index (NVML's enumeration: PCI order) or a UUID, as CUDA_VISIBLE_DEVICES holds."""
    if gpu.isdigit():
        return nvml.nvmlDeviceGetHandleByIndex(int(gpu))
    return nvml.nvmlDeviceGetHandleByUUID(gpu.encode())


@contextlib.contextmanager
def locked(bench: dict[str, Any], gpu: str | None) -> Iterator[dict[str, Any] | None]:
    """Inside: the SM clock of `gpu` locked where `bench.lock_clocks` asks and NVML permits.
    Yields what the record keeps (`environment.sm_clock_lock`), None when not asked."""
    if not bench.get("lock_clocks"):
        yield None
        return
    lock: dict[str, Any] = {"requested": True, "locked": False, "gpu": gpu, "how": "nvml"}

    def refused(reason: str) -> dict[str, Any]:
        _say(f"bench.lock_clocks: cannot lock the SM clock ({reason}); running unlocked")
        return dict(lock, reason=reason)

    if gpu is None:
        yield refused("no GPU")
        return
    with clocks.nvml_session("nvidia-ml-py is not installed (pip install nvidia-ml-py)") as (nvml, why):
        if nvml is None:
            yield refused(why)
            return
        try:
            handle = _handle(nvml, gpu)
            target = int(bench.get("lock_clocks_mhz") or nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_SM))
            nvml.nvmlDeviceSetGpuLockedClocks(handle, target, target)
        except nvml.NVMLError as e:
            yield refused(f"NVML: {e}")
            return
        _say(f"SM clock of GPU {gpu} locked at {target} MHz (bench.lock_clocks)")
        lock.update(locked=True, sm_clock_mhz=target)
        try:
            yield lock
        finally:
            try:
                nvml.nvmlDeviceResetGpuLockedClocks(handle)
                lock["restored"] = True
                _say(f"SM clock of GPU {gpu} unlocked")
            except nvml.NVMLError as e:
                lock["restored"] = False
                _say(f"error: could not unlock the SM clock of GPU {gpu} ({e}); run nvidia-smi -rgc -i {gpu}")
