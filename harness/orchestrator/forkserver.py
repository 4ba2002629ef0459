"""The orchestrator's side of the fork server (harness/worker/server.py): start it, ask it to
fork a worker, watch that worker as spawn.py watches a spawned one.

One server per orchestrator process and preload set (a backend's `preload`, plugins.py): a
sweep under Hydra's basic launcher runs every job in this process, so its runs share one server
per backend family and pay for `import torch` once. The server starts in the background when a
run first asks for it (`server_for`), so its imports overlap the orchestrator's own start, and
it exits when this process does (its control socket closes; PR_SET_PDEATHSIG as well).

A worker's file descriptors are made here and handed to the server with the request
(SCM_RIGHTS): its output pipe, its result pipe and the read end of its lifeline, whose write end
only this process holds, so that the worker dies with the orchestrator and not with the server.
"""
from __future__ import annotations

import atexit
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping

from harness.protocol import WorkerTask, receive_message, send_message

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_MODULE = "harness.worker.server"


def with_repo_path(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with the repo first on PYTHONPATH and whatever was there after it (on the GPU
    machine the carried packages live in a --target directory there): how every process that
    runs the harness's code is started (servers, workers, the scripts' and the tests' CLIs)."""
    return dict(env, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])))


class ServerError(RuntimeError):
    """The fork server could not start, or it died: the run fails with this reason."""


class ServerUnsafe(RuntimeError):
    """The fork server is not safe to fork (its preloads loaded the CUDA driver, started a JAX
    backend or a Python thread): its runs are spawned instead, and their records say so."""


class ForkedWorker:
    """A worker forked by the server, with what spawn.py uses of a Popen: `pid`, `poll()`,
    `wait(timeout)`, `returncode`. The server reports the pid at the fork and the exit status
    at the exit, on this worker's own socket; `lost` says the server went away in between."""

    def __init__(self, sock: socket.socket):
        self.sock, self.buffer = sock, b""
        self.returncode: int | None = None
        self.lost = ""
        first = self._next(None)
        if first is None or "pid" not in first:
            raise ServerError(f"the fork server did not fork the worker: {first or 'it exited'}")
        self.pid: int = first["pid"]

    def _next(self, timeout: float | None) -> dict[str, Any] | None:
        """The next message; None at end of file; TimeoutError when none came in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self.sock], [], [], left)[0]:
                raise TimeoutError
            chunk = self.sock.recv(4096)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            try:
                message = self._next(timeout)
            except TimeoutError:
                raise subprocess.TimeoutExpired(SERVER_MODULE, timeout) from None
            if message is None:   # the server died; the worker with it (PR_SET_PDEATHSIG)
                self.lost = "the fork server exited while the worker ran"
                self.returncode = -signal.SIGKILL
            else:
                self.returncode = message["returncode"]
            self.sock.close()
        return self.returncode

    def poll(self) -> int | None:
        try:
            return self.wait(0)
        except subprocess.TimeoutExpired:
            return None


class ForkServer:
    def __init__(self, preload: tuple[str, ...]):
        self.preload = preload
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = with_repo_path(dict(os.environ, PYTHONUNBUFFERED="1"))
        # Its own session: a Ctrl-C in the terminal goes to the orchestrator, which stops the run.
        self.proc = subprocess.Popen([sys.executable, "-m", SERVER_MODULE, str(theirs.fileno()), str(os.getpid()),
                                      *preload], pass_fds=(theirs.fileno(),), cwd=REPO_ROOT, env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
        theirs.close()
        self.control = ours
        self.ready: dict[str, Any] | None = None
        self.lock = threading.Lock()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self) -> dict[str, Any]:
        """The server's state once its modules are imported (the first run waits for it)."""
        with self.lock:
            if self.ready is None:
                message, _ = receive_message(self.control)
                if message is None:
                    raise ServerError(f"the fork server exited while importing {', '.join(self.preload) or 'its modules'} "
                                      f"(exit code {self.proc.wait()})")
                self.ready = message["ready"]
        return self.ready

    def _request(self, message: dict[str, Any], fds: list[int]) -> socket.socket:
        """Send a request with its fds and a reply socket of its own; our end of that socket."""
        self.wait_ready()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with self.lock:
                send_message(self.control, message, [*fds, theirs.fileno()])
        except OSError as e:
            ours.close()
            raise ServerError(f"the fork server is gone ({e.strerror or e})") from None
        finally:
            theirs.close()
        return ours

    def fork(self, task: WorkerTask, env: dict[str, str], cpus: list[int] | None, output_fd: int,
             result_fd: int, lifeline_fd: int) -> ForkedWorker:
        """A fresh worker for `task`: its environment, CPU set and working dir applied before it runs.
        ServerUnsafe where the server cannot be forked safely (`ready["unsafe"]`)."""
        why = self.wait_ready().get("unsafe")
        if why:
            raise ServerUnsafe(f"the fork server of {', '.join(self.preload)} is not safe to fork ({why})")
        sock = self._request({"op": "run", "task": task.to_dict(), "env": env, "cpus": cpus, "cwd": str(REPO_ROOT)},
                             [output_fd, result_fd, lifeline_fd])
        return ForkedWorker(sock)

    def state(self) -> dict[str, Any]:
        """What the server holds now (its pid, threads, whether CUDA or a JAX backend started)."""
        with self._request({"op": "state"}, []) as sock:
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    raise ServerError("the fork server closed the state request without an answer")
                data += chunk
        return json.loads(data)

    def close(self) -> None:
        """Close the control socket: the server kills what it still runs and exits."""
        self.control.close()


_servers: dict[tuple[str, ...], ForkServer] = {}
_servers_lock = threading.Lock()


def server_for(preload: tuple[str, ...]) -> ForkServer:
    """This process's server for a preload set, started (in the background) if there is none or
    the last one died."""
    with _servers_lock:
        server = _servers.get(preload)
        if server is None or not server.alive():
            server = _servers[preload] = ForkServer(preload)
        return server


def start_early(backend_options: list[str]) -> None:
    """Start the servers of the backend options a command line names (`backend=eager,inductor`)
    now, before Hydra composes anything: their imports (seconds) overlap the orchestrator's own
    start and Hydra's checks of the sweep's configs. The runs find them by preload set."""
    from harness.orchestrator import plugins
    preload_of = {option: spec.preload for spec in plugins.backends().values()
                  for option in (spec.name, *spec.variants)}
    for preload in dict.fromkeys(preload_of[o] for o in backend_options if o in preload_of):
        server_for(preload)


@atexit.register
def shutdown() -> None:
    """Close every server's control socket; each exits on its own (nothing waits for it)."""
    with _servers_lock:
        for server in _servers.values():
            server.close()
        _servers.clear()
