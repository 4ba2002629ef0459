"""Runs one resolved config in a fresh worker process and always leaves exactly one RunRecord.

Why a process per run (DESIGN.md): torchax breaks torch.compile in the same process, the JAX
profiler records no GPU kernels once the PyTorch profiler has subscribed to CUPTI, and a
compiler segfault must cost one row of a sweep, not the sweep.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness import gpus
from harness.record import RECORD_NAME, RunRecord, read_record, write_json_atomic, write_record
from harness.worker import CONFIG_ERROR_PREFIX, CONFIG_NAME, RESULT_NAME

REPO_ROOT = Path(__file__).resolve().parent.parent
STDERR_TAIL_LINES = 40


def run_id(cfg: dict[str, Any]) -> str:
    """Stable id of what is measured: the same resolved config gives the same id."""
    key = {k: cfg.get(k) for k in ("workload", "backend", "bench", "device", "seed")}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def worker_env(cfg: dict[str, Any], run_dir: Path, gpu: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    # JAX would otherwise take 75% of the GPU up front and every memory figure would be that.
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    # cold: an empty compile cache per run, so compile times do not depend on what ran before
    # (and the run's Inductor output code can be found). warm: one shared cache dir.
    bench = cfg["bench"]
    if bench.get("compile_cache", "cold") == "warm":
        cache = (REPO_ROOT / bench["compile_cache_dir"]).resolve() / run_id(_without_cache_state(cfg))
    else:
        cache = run_dir / "compile_cache"
    env["TORCHINDUCTOR_CACHE_DIR"] = str(cache / "inductor")
    env["TRITON_CACHE_DIR"] = str(cache / "triton")
    env["JAX_COMPILATION_CACHE_DIR"] = str(cache / "jax")
    # cache every executable, however small or quick to compile (JAX's defaults skip those)
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    return env


def _without_cache_state(cfg: dict[str, Any]) -> dict[str, Any]:
    bench = {k: v for k, v in cfg["bench"].items() if k not in ("compile_cache", "prime_only")}
    return dict(cfg, bench=bench)


def _stream(pipe, tail: collections.deque, echo: bool) -> None:
    for raw in iter(pipe.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        tail.append(line)
        if echo and line.startswith("[worker]"):
            print(f"  {line}", file=sys.stderr, flush=True)
    pipe.close()


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def _failure_reason(returncode: int, tail: list[str]) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"worker killed by signal {name}"
    last = next((l for l in reversed(tail) if l.strip()), "")
    return f"worker exited with code {returncode}: {last}"[:2000]


class Interrupted(BaseException):
    """The orchestrator itself was told to stop (Slurm time limit, preemption, Ctrl-C)."""


def _raise_interrupted(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


def execute(cfg: dict[str, Any], run_dir: Path, echo: bool = True) -> RunRecord:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rid = run_id(cfg)
    write_json_atomic(run_dir / CONFIG_NAME, cfg, overwrite=True)
    result_path = run_dir / RESULT_NAME
    if result_path.exists():
        result_path.unlink()   # a stale result from a killed attempt must not be taken for this one

    with gpus.acquire(gpus.pool(cfg.get("gpu_pool", "none"))) as gpu:
        if gpu is not None and echo:
            print(f"  [orchestrator] on GPU {gpu}", file=sys.stderr, flush=True)
        primed = None
        if cfg["bench"].get("compile_cache") == "warm":
            # Fill the shared cache with the same program first, in its own process, so the
            # measured run's first call is a warm-cache compile and not a cold one.
            if echo:
                print("  [orchestrator] priming the compile cache", file=sys.stderr, flush=True)
            prime_cfg = dict(cfg, bench=dict(cfg["bench"], prime_only=True))
            write_json_atomic(run_dir / CONFIG_NAME, prime_cfg, overwrite=True)
            primed = _execute(prime_cfg, run_dir, rid, result_path, gpu, echo)
            write_json_atomic(run_dir / CONFIG_NAME, cfg, overwrite=True)
            if result_path.exists():
                result_path.unlink()
        record = _execute(cfg, run_dir, rid, result_path, gpu, echo)
        if primed is not None:
            record.compile["priming_run"] = {"status": primed.status, "reason": primed.reason,
                                             "compile_s": primed.compile_s}
    write_record(run_dir, record)
    if record.reason.startswith("interrupted:"):
        raise SystemExit(f"{record.reason}; failed record written to {run_dir}")
    return record


def _execute(cfg: dict[str, Any], run_dir: Path, rid: str, result_path: Path, gpu: str | None,
             echo: bool) -> RunRecord:
    timeout_s = float(cfg["bench"]["timeout_s"])
    started_at, start = time.time(), time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "harness.worker", str(run_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=worker_env(cfg, run_dir, gpu), cwd=REPO_ROOT, start_new_session=True)
    tail: collections.deque = collections.deque(maxlen=STDERR_TAIL_LINES)
    reader = threading.Thread(target=_stream, args=(proc.stdout, tail, echo), daemon=True)
    reader.start()
    timed_out, interrupted = False, ""
    # Slurm sends SIGTERM at the time limit and on preemption (SIGUSR2 first where
    # signal_delay_s is set): kill the worker's whole group and leave a `failed` record.
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGTERM, signal.SIGUSR2)}
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
    except (Interrupted, KeyboardInterrupt) as e:
        interrupted = str(e) or "SIGINT"
        _kill_group(proc)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    reader.join(timeout=5)
    wall_s = time.perf_counter() - start
    lines = list(tail)

    record = RunRecord(run_id=rid, status="failed", config=cfg, workload=cfg["workload"]["name"],
                       backend=cfg["backend"]["name"], stderr_tail="\n".join(lines), wall_s=wall_s,
                       started_at=started_at, finished_at=time.time())
    if interrupted:
        record.reason = f"interrupted: the orchestrator received {interrupted} (time limit or preemption); worker killed"
    elif timed_out:
        record.reason = f"timeout: worker still running after {timeout_s:g} s (bench.timeout_s), killed"
    elif proc.returncode == 2 and any(l.startswith(CONFIG_ERROR_PREFIX) for l in lines):
        record.reason = next(l for l in reversed(lines) if l.startswith(CONFIG_ERROR_PREFIX))
    elif proc.returncode != 0:
        record.reason = _failure_reason(proc.returncode, lines)
    elif not result_path.exists():
        record.reason = "worker exited 0 without writing a result"
    else:
        result = json.loads(result_path.read_text())
        for key, value in result.items():
            if hasattr(record, key):
                setattr(record, key, value)
        if record.status == "ok":
            record.stderr_tail = ""
    record.environment["gpu_slot"] = gpu
    return record


def existing_record(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / RECORD_NAME
    return read_record(path) if path.exists() else None
