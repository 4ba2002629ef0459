"""The fork server: imports torch (and what a backend declares) once, then forks each worker.

    python -m harness.worker.server CONTROL_FD ORCHESTRATOR_PID [MODULE ...]

Started by harness/orchestrator/forkserver.py, one per orchestrator process and preload set, as
asv's `--launch-method forkserver` does: a sweep pays for `import torch` once, and each run is
still a fresh process (forked from a server that has run nothing) with its own CUDA context,
process group, CPU set, environment, signals and limits.

The server never initialises CUDA or a JAX backend (a CUDA context does not survive a fork, and
JAX warns when it is forked with live backends): it imports modules, nothing else, and it stays
single-threaded in Python. `state` requests report what it holds, for the tests.

Messages, on the control socket from the orchestrator: an 8-byte length and a JSON object, with
file descriptors passed alongside (SCM_RIGHTS):
  {"op": "run", "task", "env", "cpus", "cwd"} + [output, result, lifeline, reply]:
      fork a worker; on `reply` (newline-delimited JSON) {"pid"} at once, {"returncode"} at its exit
  {"op": "state"} + [reply]: {"pid", "python_threads", "cuda_initialized", ...} on `reply`
and one `{"ready": state}` from the server once its modules are imported. The server exits, and
kills its workers' process groups, when the control socket closes (its orchestrator is gone) or
on SIGTERM (PR_SET_PDEATHSIG sends it when the orchestrator dies).
"""
from __future__ import annotations

import atexit
import ctypes
import importlib
import json
import os
import select
import signal
import socket
import sys
import threading
import traceback
from typing import Any

from harness.protocol import receive_message, send_message

PR_SET_PDEATHSIG = 1
# Imported by every server: the worker's own modules (the measurement, its timing and
# collectors; the collectors import pandas: ~1 s) and what each run imports on its way
# (numpy.random: the seed).
WORKER_MODULES = ("harness.worker.measure", "harness.worker.timing", "harness.worker.environment",
                  "harness.worker.numerics", "harness.worker.generate", "harness.worker.run_tables",
                  "harness.orchestrator.plugins", "numpy.random")


CUDA_ERROR_NOT_INITIALIZED = 3     # cuda.h's CUresult


_serving: Server | None = None     # the server loop, once the imports are done


def _stop(signum, frame):
    """SIGTERM: the orchestrator is gone (PR_SET_PDEATHSIG) or someone asked the server to go.
    It exits here, at once and without a word: an exception raised from a signal handler lands
    wherever the interpreter was, and during an import that may be a callback under C++ frames
    (seen in CI: a sweep stopped by a bad job while the server imported torch; the Stop raised
    in JAX's gc callback ended in std::terminate and 80 lines of traceback on the user's stderr,
    after the orchestrator had already said its one line)."""
    if _serving is not None and _serving.pid != os.getpid():
        os._exit(128 + signum)    # a worker just forked, before it set its own handlers: killed
    if _serving is not None:
        _serving.kill_children()
    os._exit(0)


def _prctl_pdeathsig(sig: int) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


def reply(sock: socket.socket, message: dict[str, Any]) -> None:
    try:
        sock.sendall(json.dumps(message).encode() + b"\n")
    except OSError:      # the orchestrator stopped listening to this run: nothing to tell
        pass


def state(preloaded: list[str], failed: dict[str, str]) -> dict[str, Any]:
    """What the server holds: the tests ask it that it initialised no device and runs one thread."""
    cuda_initialized = None
    if "torch" in sys.modules:
        cuda_initialized = bool(sys.modules["torch"].cuda.is_initialized())
    jax_backends = None
    if "jax" in sys.modules:
        from jax._src import xla_bridge
        jax_backends = sorted(getattr(xla_bridge, "_backends", {}) or {})
    with open("/proc/self/maps") as f:
        cuda_driver_loaded = any("libcuda.so" in line for line in f)
    return {"pid": os.getpid(), "preloaded": preloaded, "failed": failed, "unsafe": failed.get("unsafe", ""),
            "python_threads": threading.active_count(), "cuda_initialized": cuda_initialized,
            "cuda_driver_loaded": cuda_driver_loaded,
            "cuda_driver_initialized": cuda_driver_loaded and cuda_driver_initialized(_loaded_libcuda()),
            "jax_backends": jax_backends,
            "modules": sorted(m for m in ("torch", "jax", "torchax", "torch_xla", "pandas") if m in sys.modules)}


def _loaded_libcuda() -> Any:
    """The CUDA driver library this process has already mapped (never loads it)."""
    try:
        return ctypes.CDLL("libcuda.so.1", mode=os.RTLD_NOLOAD)
    except OSError:
        return None


def cuda_driver_initialized(libcuda: Any) -> bool:
    """Whether cuInit has run in this process. Mapping the driver is harmless to a fork: on the
    H200 (torch 2.11, CUDA 13) `import torch` alone maps libcuda.so through the libraries
    libtorch_cuda links. cuInit is what a forked child cannot inherit, and every driver call
    before it answers CUDA_ERROR_NOT_INITIALIZED without initialising anything."""
    if libcuda is None:
        return False
    count = ctypes.c_int()
    return libcuda.cuDeviceGetCount(ctypes.byref(count)) != CUDA_ERROR_NOT_INITIALIZED


def unsafe(held: dict[str, Any]) -> list[str]:
    """Why a process in this state must not be forked into a worker: a CUDA driver that was
    called into (a forked child cannot use it: "Cannot re-initialize CUDA in forked subprocess",
    seen on the H200 when Inductor's modules were preloaded), a live JAX backend, or Python
    threads (a fork copies none of them, and what they held stays held)."""
    reasons = []
    if held["cuda_initialized"] or held["cuda_driver_initialized"]:
        reasons.append("the CUDA driver is initialised (cuInit ran)")
    if held["jax_backends"]:
        reasons.append(f"JAX backends {held['jax_backends']} started")
    if held["python_threads"] > 1:
        reasons.append(f"{held['python_threads']} Python threads run")
    return reasons


def preload(modules: list[str]) -> tuple[list[str], dict[str, str]]:
    """Import each module; one that fails is left for the worker to import (and to fail on, with
    the run's reason): a backend whose package is missing is `skipped` there, not here. The
    first module after which the server is no longer safe to fork (`unsafe`) is named in
    `failed["unsafe"]`, and nothing more is imported."""
    done, failed = [], {}
    for name in (*WORKER_MODULES, *modules):
        try:
            importlib.import_module(name)
            done.append(name)
        except Exception as e:   # noqa: BLE001: reported in `state`, raised again in the worker
            failed[name] = f"{type(e).__name__}: {e}"
        reasons = unsafe(state(done, failed))
        if reasons:
            failed["unsafe"] = f"after importing {name}: {'; '.join(reasons)}"
            return done, failed
    # What every run did first, once here (measured on the loaded 2-core machine): the plugins'
    # discovery (their schemas import Hydra; entry points scan every installed package), 1.3 s
    # a run; the caches an environment capture fills (package metadata, platform), 0.1 s a run.
    # Neither starts a device; the orchestrator discovered the same plugins when it started.
    try:
        from harness.orchestrator import plugins
        from harness.worker import environment
        plugins.discover()
        environment.capture("cpu")
    except Exception as e:      # noqa: BLE001: the worker meets it again and fails with it
        failed["discovery"] = f"{type(e).__name__}: {e}"
    reasons = unsafe(state(done, failed))
    if reasons:
        failed["unsafe"] = f"after the plugins' discovery: {'; '.join(reasons)}"
    return done, failed


class Server:
    def __init__(self, control: socket.socket, preloaded: list[str], failed: dict[str, str]):
        self.control, self.preloaded, self.failed = control, preloaded, failed
        self.pid = os.getpid()
        self.children: dict[int, socket.socket] = {}     # worker pid -> its reply socket

    def serve(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)   # wakes the select below
        try:
            while True:
                self.reap()
                ready, _, _ = select.select([self.control, wake_r], [], [])
                if wake_r in ready:
                    os.read(wake_r, 4096)
                if self.control in ready:
                    message, fds = receive_message(self.control)
                    if message is None:
                        return          # the orchestrator is gone
                    self.handle(message, fds)
        finally:
            self.kill_children()

    def handle(self, message: dict[str, Any], fds: list[int]) -> None:
        if message["op"] == "state":
            with socket.socket(fileno=fds[0]) as sock:
                reply(sock, state(self.preloaded, self.failed))
            return
        output, result, lifeline, reply_fd = fds
        sock = socket.socket(fileno=reply_fd)
        sys.stdout.flush()
        sys.stderr.flush()
        server_pid = os.getpid()
        try:
            pid = os.fork()
        except OSError as e:        # no memory or no process left: this run fails, the server stays
            reply(sock, {"error": f"fork failed: {e.strerror or e}"})
            for fd in (output, result, lifeline, sock.detach()):
                os.close(fd)
            return
        if pid == 0:
            code = 70       # EX_SOFTWARE: the child's setup failed
            try:
                code = child(message, output, result, lifeline, server_pid)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:  # noqa: BLE001: never return into the server's loop
                traceback.print_exc()
            finally:
                os._exit(code)
        for fd in (output, result, lifeline):
            os.close(fd)
        self.children[pid] = sock
        reply(sock, {"pid": pid})

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            sock = self.children.pop(pid, None)
            if sock is not None:
                reply(sock, {"returncode": os.waitstatus_to_exitcode(status)})
                sock.close()

    def kill_children(self) -> None:
        for pid in list(self.children):
            try:
                os.killpg(pid, signal.SIGKILL)      # each worker leads its own process group
            except (ProcessLookupError, PermissionError):
                pass


def child(message: dict[str, Any], output: int, result: int, lifeline: int, server_pid: int) -> int:
    """In the forked worker: become a fresh run's process, then measure. Returns the exit code."""
    os.setsid()                                     # its own process group, as a spawned worker
    _prctl_pdeathsig(signal.SIGKILL)                # dies with the server (which dies with the orchestrator)
    if os.getppid() != server_pid:                  # the server died before the line above
        return 1
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(output, 1)
    os.dup2(output, 2)
    keep = {0, 1, 2, result, lifeline}
    for fd in map(int, os.listdir("/proc/self/fd")):   # the server's sockets, other runs' fds
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    os.chdir(message["cwd"])
    os.environ.clear()
    os.environ.update(message["env"])
    if message.get("cpus"):
        os.sched_setaffinity(0, message["cpus"])
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads and "torch" in sys.modules:
        # OpenMP read OMP_NUM_THREADS when the server loaded it; torch's pool takes it from here
        sys.modules["torch"].set_num_threads(int(threads))
    from harness.protocol import WorkerTask
    from harness.worker import measure
    code = measure.run(WorkerTask.from_dict(message["task"]), result, lifeline)
    # As the interpreter's own exit would: wait for non-daemon threads, run the exit handlers
    # (Inductor's compile workers shut down there), flush.
    threading._shutdown()      # noqa: SLF001: what multiprocessing's forked processes call too
    atexit._run_exitfuncs()    # noqa: SLF001
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def main(argv: list[str]) -> int:
    control_fd, orchestrator_pid, modules = int(argv[0]), int(argv[1]), argv[2:]
    # torch.cuda.is_available() asks the CUDA runtime for the device count, which loads the
    # driver and makes every later fork unusable for CUDA; with this set it asks NVML (torch's
    # own switch for forking servers). Each worker runs with its run's environment, without it.
    os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
    signal.signal(signal.SIGTERM, _stop)
    _prctl_pdeathsig(signal.SIGTERM)
    try:
        if os.getppid() != orchestrator_pid:        # the orchestrator died before the line above
            return 1
        control = socket.socket(fileno=control_fd)
        preloaded, failed = preload(modules)
        send_message(control, {"ready": state(preloaded, failed)})
        global _serving
        _serving = Server(control, preloaded, failed)
        _serving.serve()
    except (BrokenPipeError, ConnectionResetError):     # the orchestrator is gone
        pass
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stderr.flush()
    # Without the interpreter's teardown of torch & co (0.1-0.5 s): the orchestrator's caller
    # waits for the server's end of its stderr, and the server has nothing left to write.
    os._exit(code)
