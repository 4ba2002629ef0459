"""One worker process: started, watched, stopped; its outcome whatever happens to it.

A worker is spawned (`bench.isolation=spawn`: a fresh interpreter, `python -m
harness.worker.measure`, its task on stdin) or forked by the fork server
(`bench.isolation=forkserver`, harness/orchestrator/forkserver.py). Either way it hands its
`WorkerResult` back through a pipe (no files), writes its output to a pipe read here, runs in a
process group of its own on its CPU set, dies with its orchestrator (a lifeline pipe whose
write end only this process holds, watched by the worker; PR_SET_PDEATHSIG to its parent), and
is killed, with the reason recorded, past its time limit or its host-memory limit. `RLIMIT_AS`
would break CUDA (it reserves far more address space than it uses), so memory is the resident
set of the worker's process group, watched from here.
"""
from __future__ import annotations

import collections
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.orchestrator.forkserver import REPO_ROOT, ForkServer, ServerError, ServerUnsafe
from harness.protocol import WorkerResult, WorkerTask

STDERR_TAIL_LINES = 40
POLL_S = 0.2
PR_SET_PDEATHSIG = 1
INTERRUPTING = (signal.SIGTERM, signal.SIGUSR2, signal.SIGHUP, signal.SIGINT)


class Interrupted(BaseException):
    """The orchestrator itself was told to stop (Slurm time limit, preemption, hang-up, Ctrl-C)."""


def _raise_interrupted(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


@dataclass
class Outcome:
    result: WorkerResult | None         # what the worker sent back (None: it sent nothing)
    failure: str = ""                   # why there is no usable result
    interrupted: str = ""               # the signal the orchestrator received
    stderr_tail: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    isolation: str = ""                 # how the worker started: forkserver | spawn | spawn (why)


def host_memory_limit_bytes(limit_gb: float | None) -> int:
    """bench.max_host_mem_gb, or 80% of this machine's memory: the cgroup's limit where one is
    set, else MemTotal (read again each time: a VM's memory can grow while it runs)."""
    if limit_gb is not None:
        return int(limit_gb * 2 ** 30)
    total = None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2 ** 60:
            total = int(text)
            break
    if total is None:
        with open("/proc/meminfo") as f:
            total = next(int(l.split()[1]) * 1024 for l in f if l.startswith("MemTotal:"))
    return int(0.8 * total)


def group_rss_bytes(pgid: int) -> int:
    """Resident memory of every process in a process group (the worker and its compile pool)."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:       # state, ppid, pgrp
                continue
            with open(f"/proc/{entry.name}/statm") as f:
                total += int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total


def _preexec(cpus: list[int] | None):
    def run() -> None:
        # Die with the orchestrator: a killed orchestrator must not leave a GPU job running.
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if cpus:
            os.sched_setaffinity(0, cpus)
    return run


def _kill_group(proc) -> None:
    """SIGTERM, then SIGKILL, to the worker's process group (it leads it: setsid)."""
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


def _stream(fd: int, tail: collections.deque, echo: bool) -> None:
    with os.fdopen(fd, "rb") as pipe:
        for raw in iter(pipe.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            tail.append(line)
            if echo and line.startswith("[worker]"):
                print(f"  {line}", file=sys.stderr, flush=True)


def _read_result(fd: int, box: list) -> None:
    with os.fdopen(fd, "rb") as pipe:
        box.append(pipe.read())


def _failure_reason(returncode: int, tail: list[str]) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"worker killed by signal {name}"
    last = next((l for l in reversed(tail) if l.strip()), "")
    return f"worker exited with code {returncode}: {last}"[:2000]


def _spawn(task: WorkerTask, env: dict[str, str], cpus: list[int] | None, output_fd: int, result_fd: int,
           lifeline_fd: int) -> subprocess.Popen:
    """A fresh interpreter: `python -m harness.worker.measure RESULT_FD LIFELINE_FD`, the task on stdin."""
    proc = subprocess.Popen([sys.executable, "-m", "harness.worker.measure", str(result_fd), str(lifeline_fd)],
                            stdin=subprocess.PIPE, stdout=output_fd, stderr=output_fd, env=env, cwd=REPO_ROOT,
                            start_new_session=True, pass_fds=(result_fd, lifeline_fd), preexec_fn=_preexec(cpus))
    proc.stdin.write(json.dumps(task.to_dict()).encode())
    proc.stdin.close()
    return proc


def run_worker(task: WorkerTask, env: dict[str, str], cpus: list[int] | None, timeout_s: float,
               mem_limit_gb: float | None, echo: bool = True, server: ForkServer | None = None) -> Outcome:
    """One worker, spawned or (with `server`) forked, watched to its end."""
    task.deadline_s = timeout_s + 30     # the worker's own deadline, behind ours
    result_read, result_write = os.pipe()
    output_read, output_write = os.pipe()
    lifeline_read, lifeline_write = os.pipe()    # nobody writes: its end of file is our death
    started_at, start = time.time(), time.perf_counter()
    outcome = Outcome(result=None, started_at=started_at, isolation="forkserver" if server else "spawn")
    try:
        try:
            try:
                proc = (server.fork(task, env, cpus, output_write, result_write, lifeline_read) if server
                        else _spawn(task, env, cpus, output_write, result_write, lifeline_read))
            except ServerUnsafe as e:      # a correct run first: this one is spawned, and says so
                outcome.isolation = f"spawn ({e}; bench.isolation=forkserver asked)"
                if echo:
                    print(f"  [orchestrator] {e}: spawning this worker instead", file=sys.stderr, flush=True)
                proc = _spawn(task, env, cpus, output_write, result_write, lifeline_read)
        except ServerError as e:
            outcome.failure = str(e)
            for fd in (result_read, output_read):
                os.close(fd)
            return outcome
        finally:
            for fd in (result_write, output_write, lifeline_read):
                os.close(fd)
        box: list[bytes] = []
        reader = threading.Thread(target=_read_result, args=(result_read, box), daemon=True)
        reader.start()
        tail: collections.deque = collections.deque(maxlen=STDERR_TAIL_LINES)
        streamer = threading.Thread(target=_stream, args=(output_read, tail, echo), daemon=True)
        streamer.start()
        outcome.failure, outcome.interrupted = _wait(proc, timeout_s, mem_limit_gb)
        streamer.join(timeout=5)
        reader.join(timeout=5)
    finally:
        os.close(lifeline_write)
    outcome.wall_s, outcome.finished_at = time.perf_counter() - start, time.time()
    outcome.stderr_tail = list(tail)
    if outcome.failure or outcome.interrupted:
        return outcome
    if getattr(proc, "lost", ""):
        outcome.failure = proc.lost
    elif proc.returncode != 0:
        outcome.failure = _failure_reason(proc.returncode, list(tail))
    elif not box or not box[0]:
        outcome.failure = "worker exited 0 without sending a result"
    else:
        try:
            outcome.result = WorkerResult.from_json(box[0])
        except (ValueError, TypeError, KeyError) as e:
            outcome.failure = f"worker sent a result this orchestrator cannot read: {e}"[:2000]
    return outcome


@contextlib.contextmanager
def interruptible():
    """While a run is in the orchestrator's hands, the signals that stop a job (Slurm's USR2
    before the time limit, TERM at it or on preemption, HUP when the terminal goes, Ctrl-C)
    raise `Interrupted`, so that the worker is stopped and a failed record written."""
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {sig: signal.signal(sig, _raise_interrupted) for sig in INTERRUPTING}
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _wait(proc, timeout_s: float, mem_limit_gb: float | None) -> tuple[str, str]:
    """(failure, interrupted): why the worker was stopped, if it was."""
    deadline = time.monotonic() + timeout_s
    next_memory_check = 0.0
    try:
        while proc.poll() is None:
            now = time.monotonic()
            if now > deadline:
                _kill_group(proc)
                return f"timeout: worker still running after {timeout_s:g} s (bench.timeout_s), killed", ""
            if now >= next_memory_check:
                next_memory_check = now + 1.0
                limit = host_memory_limit_bytes(mem_limit_gb)
                rss = group_rss_bytes(proc.pid)
                if rss > limit:
                    _kill_group(proc)
                    # 3 significant digits: a limit of 0.05 GiB once read "above 0.0 GiB"
                    return (f"host memory above {limit / 2 ** 30:.3g} GiB (bench.max_host_mem_gb): the worker "
                            f"and its children held {rss / 2 ** 30:.3g} GiB, killed"), ""
            try:
                proc.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                pass
        return "", ""
    except (Interrupted, KeyboardInterrupt) as e:
        _kill_group(proc)
        return "", str(e) or "SIGINT"
