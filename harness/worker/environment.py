"""What a run ran on: enough to tell why two nights differ (driver, clocks, library versions)."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

# Always recorded; each backend adds the packages it declares (harness/orchestrator/plugins.py).
BASE_PACKAGES = ("torch", "numpy", "hydra-core")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _nvidia_smi(index: int) -> dict[str, Any]:
    query = "name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit,temperature.gpu"
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits",
                              f"--id={index}"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return {}
    fields = [f.strip() for f in out.stdout.strip().split(",")]
    if out.returncode != 0 or len(fields) != 7:
        return {}
    keys = ["gpu_name", "driver", "sm_clock_mhz", "max_sm_clock_mhz", "mem_clock_mhz",
            "power_limit_w", "temperature_c"]
    info: dict[str, Any] = {}
    for key, value in zip(keys, fields):
        try:
            info[key] = float(value) if key not in ("gpu_name", "driver") else value
        except ValueError:
            info[key] = None
    return info


def _host_state() -> dict[str, Any]:
    """What a fresh machine differs in: how long it has been up, its cores' clock now."""
    state: dict[str, Any] = {}
    try:
        state["uptime_s"] = float(Path("/proc/uptime").read_text().split()[0])
        mhz = [float(l.split(":")[1]) for l in Path("/proc/cpuinfo").read_text().splitlines()
               if l.startswith("cpu MHz")]
        if mhz:
            state["cpu_mhz_mean"] = sum(mhz) / len(mhz)
        state["loadavg_1m"] = os.getloadavg()[0]
    except (OSError, ValueError, IndexError):
        pass
    return state


def capture(device: str, packages: tuple[str, ...] = ()) -> dict[str, Any]:
    env: dict[str, Any] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "command": shlex.join(sys.argv),
        "git_sha": _git_sha(),
        "device": device,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "versions": {p: _version(p) for p in dict.fromkeys(BASE_PACKAGES + tuple(packages))},
        "affinity": sorted(os.sched_getaffinity(0)),
        **_host_state(),
    }
    if device == "cuda":
        import torch
        index = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        env.update(gpu_index=index, gpu_name=props.name, cuda=torch.version.cuda,
                   sm_count=props.multi_processor_count,
                   compute_capability=f"{props.major}.{props.minor}",
                   gpu_memory_bytes=props.total_memory)
        # nvidia-smi numbers GPUs physically; torch's index is within CUDA_VISIBLE_DEVICES.
        visible = [g.strip() for g in (os.environ.get("CUDA_VISIBLE_DEVICES") or "").split(",") if g.strip()]
        physical = int(visible[index]) if index < len(visible) and visible[index].isdigit() else index
        env["gpu_physical_index"] = physical
        env.update({k: v for k, v in _nvidia_smi(physical).items() if v is not None})
    else:
        env["cpu_count"] = os.cpu_count()
        env["cpu"] = platform.processor() or platform.machine()
    return env
