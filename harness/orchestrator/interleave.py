"""Interleaved runs: the processes of the runs a sweep compares alternate, A1 B1 A2 B2 A3 B3.

The two sides of a pair used to run one after the other, minutes apart; on a machine whose
state drifts over seconds (the H200's Inductor default: process medians 0.188, 0.206, 0.226 ms
with the same kernels) the drift fell on one side only. PyTorch's benchmarks/dynamo
`speedup_experiment` alternates eager and compiled for the same reason ("to handle frequency
scaling and load changes"). Here whole fresh processes alternate: every backend of one workload
variant runs its k-th process before any runs its (k+1)-th, on the same GPU.

How (docs/DESIGN.md, "Interleaved runs"): with `bench.interleave=true` the sweeper (`hydra/
sweeper: interleave`, hydra_plugins/harness_sweeper) groups the sweep's jobs by every override
except `backend` and hands each group of two or more to the launcher as ONE job, its members
in `interleave_backends`; whatever the launcher (local, local_gpus, Slurm), the group's
processes then run in one orchestrator, round-robin. That job composes each member's config
with Hydra (the run dir Hydra would have given it alone: resume and re-runs find it), takes
every member's run-dir lock, skips members whose record is already ok, holds one GPU, and
writes each member's own record, which names its group (`timing.interleave`) and each
process's start (`timing.processes[i].started_at`).
"""
from __future__ import annotations

import contextlib
import hashlib
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.orchestrator.preflight import run_config
from harness.orchestrator.run import Measurement, claim, holding_gpu, run_lock, run_processes, save
from harness.orchestrator.spawn import interruptible

KEY = "interleave_backends"     # RunConfig's field naming a group job's members
BACKEND = "backend"


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def group_jobs(jobs: Sequence[Sequence[str]], interleaves: Callable[[Sequence[str]], bool]) -> list[list[str]]:
    """A sweep's jobs (each a list of overrides) with those that differ only in `backend` and
    interleave (`interleaves(job)`: its bench.interleave) made one job: the first member's
    overrides plus `interleave_backends=[its members' backends]`. Other jobs are kept as they
    are, in order; a group takes the place of its first member."""
    groups: dict[tuple[str, ...], list[Sequence[str]]] = {}
    # interleaves(job) asked once per group: a backend's config cannot set bench.interleave, and
    # composing a job's config to read it costs ~0.1-0.2 s (preflight.py skips the same composes)
    interleaved: dict[tuple[str, ...], bool] = {}
    order: list[tuple[str, ...] | int] = []
    for i, job in enumerate(jobs):
        backend = [o for o in job if _key(o) == BACKEND]
        key = tuple(sorted(o for o in job if _key(o) != BACKEND))
        if len(backend) == 1 and key not in interleaved:
            interleaved[key] = interleaves(job)
        if len(backend) != 1 or not interleaved[key]:
            order.append(i)
            continue
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(job)
    out: list[list[str]] = []
    for item in order:
        if isinstance(item, int):
            out.append(list(jobs[item]))
            continue
        members = groups[item]
        if len(members) == 1:
            out.append(list(members[0]))
            continue
        names = [next(o for o in job if _key(o) == BACKEND).split("=", 1)[1] for job in members]
        out.append([*members[0], f"{KEY}=[{','.join(names)}]"])
    return out


def member_overrides(task_overrides: Sequence[str], backend: str) -> list[str]:
    """A member's own overrides: the group job's, its backend in place of the first member's."""
    return [o for o in task_overrides if _key(o) not in (BACKEND, KEY)] + [f"{BACKEND}={backend}"]


def group_id(run_dirs: Sequence[Path]) -> str:
    return hashlib.sha256("\n".join(map(str, run_dirs)).encode()).hexdigest()[:12]


def run_group(members: Sequence[tuple[dict[str, Any], Path]], label: str, echo: bool = True) -> list:
    """Measure the members (resolved config, run dir) with their processes round-robin on one
    GPU; each gets its own record in its run dir. Returns [(record or None when skipped, where)]."""
    from harness.orchestrator.config import check_bench
    for cfg, _ in members:
        check_bench(cfg["bench"])
    run_dirs = [Path(d) for _, d in members]
    gid = group_id(run_dirs)
    results: list = [(None, str(d / "record.json")) for d in run_dirs]
    with interruptible(), contextlib.ExitStack() as held:
        for d in run_dirs:
            d.mkdir(parents=True, exist_ok=True)    # Hydra made only the group job's (the first's)
            held.enter_context(run_lock(d, label))
        todo = [i for i, (cfg, d) in enumerate(members) if claim(cfg, d, f"{label}: {d.name}")]
        if not todo:
            return results
        first_cfg = members[todo[0]][0]
        with holding_gpu(first_cfg, echo) as (gpu, cpus, node_gpus):
            runs = {i: Measurement.start(members[i][0], run_dirs[i], gpu, cpus, node_gpus) for i in todo}
            labels = [runs[i].record.backend_label for i in todo]
            if echo:
                print(f"  [orchestrator] interleaving {len(todo)} runs, one process each in turn: "
                      f"{', '.join(labels)}", file=sys.stderr, flush=True)
            lock = run_processes(list(runs.values()), gpu, node_gpus, echo)
        for position, i in enumerate(todo):
            record = runs[i].finish(lock)
            if record.timing is not None:
                record.timing["interleave"] = {"group": gid, "position": position, "members": labels,
                                               "run_dirs": [str(run_dirs[j]) for j in todo],
                                               "order": "round robin: process k of every member before process k+1"}
            results[i] = (record, save(record, run_dirs[i]))
    return results


def compose_members(task_overrides: Sequence[str], backends: Sequence[str], config_name: str,
                    sweep_dir: Path) -> list[tuple[dict[str, Any], Path]]:
    """Each member's resolved config and its run dir as Hydra names a sweep's run alone
    (`hydra.sweep.subdir` under the group's sweep dir), composed by Hydra's compose API."""
    from hydra import compose
    out = []
    for backend in backends:
        cfg = compose(config_name=config_name, overrides=member_overrides(task_overrides, backend),
                      return_hydra_config=True)
        out.append((run_config(cfg), Path(sweep_dir) / str(cfg.hydra.sweep.subdir)))
    return out
