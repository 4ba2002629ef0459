"""Runs one resolved config in fresh worker processes and always leaves exactly one RunRecord.

Why a process per run (DESIGN.md): torchax breaks torch.compile in the same process, the JAX
profiler records no GPU kernels once the PyTorch profiler has subscribed to CUPTI, and a
compiler segfault must cost one row of a sweep, not the sweep.

One run, one owner: a lock on the run dir, so that a second orchestrator on the same run (two
sweeps into one dir) waits, then finds the first one's record. Nothing measured is deleted: a
re-run keeps the earlier failed record beside the new one, and a record that cannot be written
to the run dir goes to a fallback path that the console names.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from harness import describe
from harness.orchestrator import clock_lock, combine, forkserver, gpus, plugins
from harness.orchestrator.forkserver import REPO_ROOT, with_repo_path
from harness.orchestrator.spawn import Interrupted, Outcome, interruptible, run_worker
from harness.protocol import CONFIG_ERROR, CPU_FALLBACK, OK, WorkerResult, WorkerTask
from harness.record import RECORD_NAME, RunRecord, keep_aside, read_record, write_json_atomic, write_record

LOCK_NAME = ".harness.lock"
UNSAVED_DIR = Path(tempfile.gettempdir()) / "harness-unsaved"


# How a worker starts is not what it measures: the same run under spawn and under the fork server
# keeps its id (compare matches them) and its warm compile cache.
NOT_MEASURED = ("isolation",)


def run_id(cfg: dict[str, Any]) -> str:
    """Stable id of what is measured: the same resolved config gives the same id."""
    key = {k: cfg.get(k) for k in ("workload", "backend", "bench", "device", "seed")}
    if isinstance(key["bench"], dict):
        key["bench"] = {k: v for k, v in key["bench"].items() if k not in NOT_MEASURED}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def _without_cache_state(cfg: dict[str, Any]) -> dict[str, Any]:
    bench = {k: v for k, v in cfg["bench"].items() if k not in ("compile_cache", "prime_only", "processes")}
    return dict(cfg, bench=bench)


def compile_cache_dir(cfg: dict[str, Any], run_dir: Path) -> Path:
    """cold: a cache of the run's own (its first process compiles cold, the others warm);
    warm: one cache per config shared across runs, primed first."""
    bench = cfg["bench"]
    if bench.get("compile_cache", "cold") == "warm":
        return (REPO_ROOT / bench["compile_cache_dir"]).resolve() / run_id(_without_cache_state(cfg))
    return run_dir / "compile_cache"


def worker_env(cfg: dict[str, Any], cache_dir: Path, gpu: str | None, cpus: list[int] | None) -> dict[str, str]:
    spec = plugins.backend_spec(cfg["backend"]["name"])
    env = with_repo_path(os.environ)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    if cpus:
        env["OMP_NUM_THREADS"] = str(len(cpus))   # torch's intra-op pool: the cores the job has
    env["PYTHONUNBUFFERED"] = "1"
    for var, value in spec.env.items():
        env.setdefault(var, value)
    for var, subdir in spec.compile_cache.items():
        env[var] = str(cache_dir / subdir)
    return env


@contextlib.contextmanager
def run_lock(run_dir: Path, label: str) -> Iterator[None]:
    """One orchestrator per run dir at a time; the next one waits for it."""
    with open(run_dir / LOCK_NAME, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another orchestrator"
            print(f"[{label}] {run_dir} is being measured by pid {holder}; waiting for it", file=sys.stderr, flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def existing_record(run_dir: Path) -> dict[str, Any] | None:
    """The run dir's record; one that cannot be read (cut short, not JSON) comes back as
    status `unreadable` with the reason, to be kept aside like a failed attempt."""
    path = Path(run_dir) / RECORD_NAME
    if not path.exists():
        return None
    try:
        record = read_record(path)
    except (OSError, ValueError) as e:      # JSONDecodeError, UnicodeDecodeError
        return {"status": "unreadable", "reason": f"{type(e).__name__}: {e}"}
    return record if isinstance(record, dict) else {"status": "unreadable", "reason": "not a JSON object"}


def run(cfg: dict[str, Any], run_dir: Path, label: str = "run", echo: bool = True) -> tuple[RunRecord | None, str]:
    """Measure cfg into run_dir unless it already holds an ok record (force=true re-runs).
    Returns (the new record or None when skipped, where it was written)."""
    from harness.orchestrator.config import check_bench
    check_bench(cfg["bench"])
    run_dir = Path(run_dir)
    # From here on a stop signal is an Interrupted (spawn.interruptible): while the run waits
    # for its lock it leaves nothing behind; once a worker runs, a failed record.
    with interruptible(), run_lock(run_dir, label):
        if not claim(cfg, run_dir, label):
            return None, str(run_dir / RECORD_NAME)
        record = execute(cfg, run_dir, echo)
        return record, save(record, run_dir)


def claim(cfg: dict[str, Any], run_dir: Path, label: str) -> bool:
    """Under the run's lock: False (skipped, said so) where the run dir holds an ok record and
    force is off; else True, an earlier attempt's record kept aside first (results are never
    overwritten; an unreadable one is named)."""
    previous = existing_record(run_dir)
    if previous is None:
        return True
    if previous.get("status") == "ok" and not cfg.get("force"):
        print(f"[{label}] already ok, skipped (resume): {describe.summary_line(previous)}", flush=True)
        return False
    kept = keep_aside(run_dir / RECORD_NAME, str(previous.get("status")))
    if previous.get("status") == "unreadable":
        print(f"[{label}] {run_dir / RECORD_NAME}: unreadable record ({previous['reason']}); "
              f"kept as {kept.name}, measuring again", file=sys.stderr, flush=True)
    return True


def save(record: RunRecord, run_dir: Path) -> str:
    """The record into the run dir or, if that fails, into a fallback file; where it went."""
    try:
        return str(write_record(run_dir, record))
    except OSError as e:
        fallback = UNSAVED_DIR / f"{record.run_id}-{time.strftime('%Y%m%d-%H%M%S')}.{RECORD_NAME}"
        write_json_atomic(fallback, record.to_dict())
        print(f"error: cannot write {Path(run_dir) / RECORD_NAME} ({e.strerror or e}); "
              f"the record is at {fallback}", file=sys.stderr, flush=True)
        return str(fallback)


def execute(cfg: dict[str, Any], run_dir: Path, echo: bool = True) -> RunRecord:
    with holding_gpu(cfg, echo) as (gpu, cpus, node_gpus):
        m = Measurement.start(cfg, run_dir, gpu, cpus, node_gpus)
        lock = run_processes([m], gpu, node_gpus, echo)
    return m.finish(lock)


def run_processes(runs: list[Measurement], gpu: str | None, node_gpus: list[str],
                  echo: bool) -> dict[str, Any] | None:
    """The runs' processes on the GPU held, under the first run's clock lock: each primed, then
    process k of every run before any run's k+1 (one run: its processes in order); a run stops
    at its first process that does not end ok. Returns the lock, for the records."""
    with clock_lock.locked(runs[0].bench, clock_lock.target_gpu(gpu, node_gpus)) as lock:
        try:
            for m in runs:
                m.prime(echo)
            for k in range(max(m.processes for m in runs)):
                for m in runs:
                    if m.open and k < m.processes:
                        m.spawn(k, echo)
        except Interrupted as e:
            for m in runs:
                if m.open and len(m.outcomes) < m.processes:
                    m.interrupted(e)
    return lock


@contextlib.contextmanager
def holding_gpu(cfg: dict[str, Any], echo: bool) -> Iterator[tuple[str | None, list[int] | None, list[str]]]:
    """A GPU from the pool (waiting for a free one) and its CPU set, held inside; yields
    (gpu, cpus, the node's GPUs)."""
    node_gpus = gpus.node_gpus()
    pool = gpus.pool(cfg.get("gpu_pool", "none"))
    cpu_sets = gpus.cpu_sets(pool) if len(pool) > 1 and cfg.get("cpu_pinning", "auto") == "auto" else {}
    with gpus.acquire(pool) as gpu:
        cpus = cpu_sets.get(gpu) if gpu is not None else None
        if echo and gpu is not None:
            print(f"  [orchestrator] on GPU {gpu}" + (f", CPUs {_ranges(cpus)}" if cpus else ""),
                  file=sys.stderr, flush=True)
        yield gpu, cpus, node_gpus


@dataclass
class Measurement:
    """One run's worker processes as the orchestrator starts them, one at a time, on the GPU it
    holds; `finish` makes them its record. An interleaved group (interleave.py) starts the
    processes of several of them in turn."""
    cfg: dict[str, Any]
    run_dir: Path
    record: RunRecord
    base: dict[str, Any]            # the WorkerTask fields every process shares
    env: dict[str, str]
    cpus: list[int] | None
    placement: dict[str, Any]       # the record's environment: the GPU, CPU set and node's GPUs it ran on
    server: forkserver.ForkServer | None      # bench.isolation=forkserver: the backend's server
    outcomes: list[Outcome] = field(default_factory=list)
    open: bool = True               # False once a process failed or the run was interrupted

    @classmethod
    def start(cls, cfg: dict[str, Any], run_dir: Path, gpu: str | None, cpus: list[int] | None,
              node_gpus: list[str]) -> "Measurement":
        spec = plugins.backend_spec(cfg["backend"]["name"])
        plugins.workload_spec(cfg["workload"]["name"])      # an unknown name is a config error, here
        record = RunRecord(run_id=run_id(cfg), status="failed", config=cfg, workload=cfg["workload"]["name"],
                           backend=spec.name, backend_label=spec.label(cfg["backend"]),
                           backend_traits=spec.traits(cfg["backend"]).to_dict())
        # Started now (or already, for an earlier run of this family), the fork server imports
        # torch while this process prepares the run.
        server = forkserver.server_for(spec.preload) if cfg["bench"].get("isolation") == "forkserver" else None
        base = dict(config=cfg, run_dir=str(run_dir), compile_cache_dir=str(compile_cache_dir(cfg, run_dir)),
                    gpus_listed=0 if gpus.hidden_by_user() else len(node_gpus), gpu_slot=gpu)
        return cls(cfg, Path(run_dir), record, base, worker_env(cfg, Path(base["compile_cache_dir"]), gpu, cpus),
                   cpus, dict(gpu_slot=gpu, cpu_set=cpus, node_gpus=node_gpus or None), server)

    @property
    def bench(self) -> dict[str, Any]:
        return self.cfg["bench"]

    @property
    def processes(self) -> int:
        return int(self.bench["processes"])

    def _start(self, task: WorkerTask, echo: bool) -> Outcome:
        return run_worker(task, self.env, self.cpus, float(self.bench["timeout_s"]),
                          self.bench.get("max_host_mem_gb"), echo, self.server)

    def prime(self, echo: bool) -> None:
        """With bench.compile_cache=warm: fill the shared cache with the same program first, in
        its own process, so the measured run's first call is a warm-cache compile."""
        if self.bench.get("compile_cache") != "warm":
            return
        if echo:
            print("  [orchestrator] priming the compile cache", file=sys.stderr, flush=True)
        primed = self._start(WorkerTask(**self.base, prime_only=True), echo)
        self.record.compile["priming_run"] = {
            "ok": primed.result is not None and primed.result.ok,
            "reason": primed.failure or (primed.result.reason if primed.result else ""),
            "first_call_s": primed.result.first_call_s if primed.result else None}

    def spawn(self, k: int, echo: bool) -> None:
        """Process k; the run stays open while its processes end ok."""
        outcome = self._start(WorkerTask(**self.base, process_index=k, processes=self.processes), echo)
        self.outcomes.append(outcome)
        self.open = outcome.result is not None and outcome.result.ok

    def interrupted(self, signal_name: Interrupted) -> None:
        self.outcomes.append(Outcome(result=None, interrupted=str(signal_name)))
        self.open = False

    def finish(self, lock: dict[str, Any] | None) -> RunRecord:
        environment = dict(self.placement, command=shlex.join(sys.argv), **slurm_job())
        if lock is not None:
            environment["sm_clock_lock"] = lock
        fill(self.record, self.outcomes, self.processes, environment)
        return self.record


def slurm_job() -> dict[str, Any]:
    """The Slurm job a run ran in (its array task, restarts after a requeue), where it did."""
    env = os.environ
    if "SLURM_JOB_ID" not in env:
        return {}
    array = env.get("SLURM_ARRAY_JOB_ID")
    job = f"{array}_{env['SLURM_ARRAY_TASK_ID']}" if array and env.get("SLURM_ARRAY_TASK_ID") else env["SLURM_JOB_ID"]
    return {"slurm": {"job": job, "restart_count": int(env.get("SLURM_RESTART_COUNT", "0") or 0),
                      "partition": env.get("SLURM_JOB_PARTITION"), "node": env.get("SLURMD_NODENAME")}}


def _ranges(cpus: list[int]) -> str:
    return f"{cpus[0]}-{cpus[-1]}" if cpus == list(range(cpus[0], cpus[-1] + 1)) else ",".join(map(str, cpus))


def fill(record: RunRecord, outcomes: list[Outcome], planned: int,
         environment: dict[str, Any] | None = None) -> None:
    """The record from the processes' outcomes: the first process's checks and tables, the
    timing of all, and the first failure's reason; `environment`: what the orchestrator adds to
    the worker's (where it ran, the clock lock), there before the flags are judged on it."""
    results: list[WorkerResult] = [o.result for o in outcomes if o.result is not None]
    first = results[0] if results else WorkerResult()
    for key in ("params", "shape", "environment", "numerics", "memory", "kernels", "profile_iters"):
        if getattr(first, key) is not None:
            setattr(record, key, getattr(first, key))
    record.environment.update(environment or {})
    record.artifacts = [a.to_dict() for a in first.artifacts]
    record.compile = {**first.compile, **record.compile}     # with the priming run
    record.compile_s = first.first_call_s
    if len(results) > 1:    # they compile from the cache the first filled: their cache counters say so
        record.compile["later_processes"] = [
            {"first_call_s": r.first_call_s,
             **{k: v for k, v in r.compile.items() if k in ("cache_counters", "persistent_cache")}}
            for r in results[1:]]
    timed = [dict(r.timing, first_call_s=r.first_call_s) for r in results if r.timing]
    record.timing = combine.timing(timed)
    median = record.timing["median_ms"] if record.timing else None
    record.gpu = combine.gpu(record.kernels, median, first.trace_note)
    record.throughput = combine.throughput(first.throughput_basis or {}, median)
    record.generation = combine.generation([r.generation for r in results if r.generation])
    record.flags = [f for r in results for f in r.flags]
    record.flags += [{"code": "cpu_fallback", "detail": r.reason} for r in results if r.status == CPU_FALLBACK]
    # how the workers started; a fork server that could not be forked safely spawns them
    record.environment["isolation"] = "; ".join(dict.fromkeys(o.isolation for o in outcomes if o.isolation)) or None
    record.started_at = outcomes[0].started_at if outcomes else None
    record.finished_at = outcomes[-1].finished_at if outcomes else None
    record.wall_s = sum(o.wall_s for o in outcomes)
    record.work_s = sum(r.work_s or 0.0 for r in results) or None
    record.status, record.reason = _status(outcomes, planned)
    config_error = next((r for r in results if r.status == CONFIG_ERROR), None)
    if config_error is not None:
        record.config_error = {"key": config_error.config_key, "message": config_error.reason}
    if record.status != "ok":
        record.stderr_tail = "\n".join(outcomes[-1].stderr_tail) if outcomes else ""
    record.flags = describe.merge_flags(record.flags + describe.assess(record.to_dict()))


def _status(outcomes: list[Outcome], planned: int) -> tuple[str, str]:
    prefix = (lambda k: f"process {k + 1} of {planned}: ") if planned > 1 else (lambda k: "")
    for k, o in enumerate(outcomes):
        if o.interrupted:
            return "failed", (f"interrupted: the orchestrator received {o.interrupted} "
                              "(time limit, preemption, scancel or hang-up); worker killed")
        if o.result is None:
            return "failed", prefix(k) + o.failure
        r = o.result
        if r.status == CONFIG_ERROR:
            return "failed", f"config error: {r.config_key}: {r.reason}"
        if r.status == CPU_FALLBACK:
            return "failed", prefix(k) + f"cpu fallback: {r.reason}"
        if r.status != OK:
            return r.status, prefix(k) + r.reason
    if not outcomes:
        return "failed", "no worker ran"
    return "ok", ""
