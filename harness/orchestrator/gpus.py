"""One GPU, and a disjoint set of CPU cores, per job when a node runs several jobs at once.

Any launcher that runs jobs in parallel on one node (submitit's local executor, joblib, Slurm
with several tasks per node) works: each orchestrator takes a free GPU from a pool with an
exclusive file lock and gives its worker `CUDA_VISIBLE_DEVICES=<that id>`; jobs beyond the
number of GPUs wait for a free one. A job that crashes or hangs holds only its own GPU, and
the OS drops its lock when it dies.

The pool is the node's GPUs whatever submitit's local launcher did to CUDA_VISIBLE_DEVICES:
it starts every job with `CUDA_VISIBLE_DEVICES=""` when `gpus_per_node: 0` (and marks the job
`SUBMITIT_EXECUTOR=local`), which once made a whole GPU sweep run on the CPU. A non-empty
CUDA_VISIBLE_DEVICES is an allocation (Slurm's gres, a user's choice) and is kept; an unset one,
or the empty one that launcher set, is not, and nvidia-smi's list of the node's GPUs is used.
An empty value anyone else set (`CUDA_VISIBLE_DEVICES= python -m harness ...`) means what it
says: no GPU for this run.

Measured on a 2-GPU H200 node: Inductor's host-bound fp8 forward had a CV of 10.5% beside a
neighbour against 2.4% alone; so parallel jobs also get disjoint CPU sets (`cpu_sets`).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

from harness.errors import ConfigError

LOCK_DIR = Path(os.environ.get("HARNESS_GPU_LOCK_DIR", Path(tempfile.gettempdir()) / "harness-gpu-locks"))


def _nvidia_smi(*args: str) -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def node_gpus() -> list[str]:
    """The GPUs nvidia-smi lists on this node (physical indices), [] without nvidia-smi."""
    out = _nvidia_smi("--query-gpu=index", "--format=csv,noheader")
    return out.split() if out else []


def hidden_by_user() -> bool:
    """CUDA_VISIBLE_DEVICES set empty by the user, not by submitit's local launcher (which
    exports SUBMITIT_EXECUTOR=local beside it: submitit/local/local.py, start_controller)."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    return value is not None and not value.strip() and os.environ.get("SUBMITIT_EXECUTOR") != "local"


def visible_gpus(node: list[str] | None = None) -> list[str]:
    """GPU ids this job may use: a non-empty CUDA_VISIBLE_DEVICES (an allocation), none where
    the user emptied it, else the node's GPUs (`node`, where they were already listed)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if env:
        return [g.strip() for g in env.split(",") if g.strip()]
    if hidden_by_user():
        return []
    return node_gpus() if node is None else node


def pool(spec) -> list[str]:
    """`auto`: the visible GPUs (none on a CPU machine); `none`: no pinning; `[0,1]`: these ids
    (a list: on Hydra's command line `gpu_pool=0,1` would be a sweep over two values)."""
    if spec == "auto":
        return visible_gpus()
    if spec in ("none", "", None):
        return []
    ids = [str(g).strip() for g in spec] if isinstance(spec, (list, tuple)) else [str(spec).strip()]
    if not all(re.fullmatch(r"\d+|(GPU|MIG)-[\w-]+", g) for g in ids):
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


def parse_cpu_list(text: str) -> list[int]:
    """`0-15,32-47` -> [0..15, 32..47]."""
    cpus: list[int] = []
    for part in text.replace(" ", "").split(","):
        if re.fullmatch(r"\d+-\d+", part):
            lo, hi = map(int, part.split("-"))
            cpus.extend(range(lo, hi + 1))
        elif part.isdigit():
            cpus.append(int(part))
    return cpus


def gpu_affinity(topo: str | None = None) -> dict[str, list[int]]:
    """Each GPU's affine cores from `nvidia-smi topo -m`, whose tab-separated matrix has a
    `CPU Affinity` column (the header line starts with a tab, rows with their name):
        \tGPU0\tGPU1\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID
        GPU0\t X \tNV18\t0-47\t0\t\tN/A
    {} where nvidia-smi does not report them."""
    topo = _nvidia_smi("topo", "-m") if topo is None else topo
    lines = (topo or "").splitlines()
    header = next((l.split("\t") for l in lines if "CPU Affinity" in l), None)
    if header is None:
        return {}
    column = [c.strip() for c in header].index("CPU Affinity")
    found = {}
    for line in lines:
        cells = line.split("\t")
        if re.fullmatch(r"GPU\d+", cells[0].strip()) and len(cells) > column:
            cpus = parse_cpu_list(cells[column])
            if cpus:
                found[cells[0].strip()[3:]] = cpus
    return found


def cpu_sets(ids: list[str], available: list[int] | None = None,
             affinity: dict[str, list[int]] | None = None) -> dict[str, list[int]]:
    """Disjoint CPU sets for the GPUs of a pool: each GPU's affine cores (shared among the
    GPUs that report the same ones), else an even split of the cores this process may use."""
    available = sorted(available if available is not None else os.sched_getaffinity(0))
    affinity = affinity if affinity is not None else gpu_affinity()
    groups: dict[tuple[int, ...], list[str]] = {}
    for gpu in ids:
        cores = tuple(c for c in affinity.get(gpu, available) if c in available) or tuple(available)
        groups.setdefault(cores, []).append(gpu)
    sets = {}
    for cores, gpus in groups.items():
        share = max(1, len(cores) // len(gpus))
        for i, gpu in enumerate(gpus):
            sets[gpu] = list(cores[i * share:(i + 1) * share]) or list(cores)
    return sets
