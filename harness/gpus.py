"""One GPU per job when a node runs several jobs at once (issue: sweeps across all GPUs).

Any launcher that runs jobs in parallel on one node (submitit's local executor, joblib) works:
each orchestrator takes a free GPU from a pool with an exclusive file lock and gives its
worker `CUDA_VISIBLE_DEVICES=<that id>`; jobs beyond the number of GPUs wait for a free one.
A job that crashes or hangs holds only its own GPU, and the OS drops its lock when it dies.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

from harness.errors import ConfigError

LOCK_DIR = Path(os.environ.get("HARNESS_GPU_LOCK_DIR", Path(tempfile.gettempdir()) / "harness-gpu-locks"))


def visible_gpus() -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES if set, else what nvidia-smi lists."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip()]
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return out.stdout.split() if out.returncode == 0 else []


def pool(spec) -> list[str]:
    """`auto`: the visible GPUs (none on a CPU machine); `none`: no pinning; `[0,1]`: these ids
    (a list: on Hydra's command line `gpu_pool=0,1` would be a sweep over two values)."""
    if spec == "auto":
        return visible_gpus()
    if spec in ("none", "", None):
        return []
    ids = [str(g).strip() for g in spec] if isinstance(spec, (list, tuple)) else [str(spec).strip()]
    if not all(g.isdigit() for g in ids):
        raise ConfigError("gpu_pool", f"expected auto, none or a list of GPU ids such as [0,1], got {spec!r}")
    return ids


@contextlib.contextmanager
def acquire(ids: list[str], poll_s: float = 0.5) -> Iterator[str | None]:
    """Hold one GPU of `ids` for the duration of the block; None when there is no pool."""
    if not ids:
        yield None
        return
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    while True:
        for gpu in ids:
            f = open(LOCK_DIR / f"gpu{gpu}.lock", "w")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            try:
                yield gpu
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
                f.close()
            return
        time.sleep(poll_s)
