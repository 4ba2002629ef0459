"""The fork server (bench.isolation=forkserver): each run a fresh process that shares nothing with
the last, a server that never starts a device, and nothing left behind whatever happens.

Real processes throughout: the CLI as a user runs it, and the server asked about itself.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from conftest import REPO, ProcessWatch, composed, harness_env, records, run_harness
from harness.orchestrator import forkserver, plugins
from harness.orchestrator.spawn import run_worker
from harness.protocol import WorkerTask

pytestmark = pytest.mark.slow


def test_a_global_set_by_one_run_is_absent_in_the_next(sweep_dir):
    proc = run_harness("-m", "workload=faulty", "workload.fault=leak", "backend=eager", "bench=quick",
                       "bench.isolation=forkserver", "seed=0,1", f"hydra.sweep.dir={sweep_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    recs = records(sweep_dir)
    assert [r["status"] for r in recs] == ["ok", "ok"]
    # both were forked by the one server of the sweep, and neither saw what the other set
    assert len({r["params"]["parent_pid"] for r in recs}) == 1
    assert [r["params"]["found_globals"] for r in recs] == [[None, None], [None, None]]


@pytest.fixture(scope="module")
def servers():
    """A server per preload set the backends declare, as a sweep over all of them starts."""
    started = {spec.preload: forkserver.ForkServer(spec.preload) for spec in plugins.backends().values()}
    yield started
    for server in started.values():
        server.close()
        server.proc.wait(timeout=30)


def test_every_server_starts_no_device_and_one_thread(servers):
    assert any("jax" in preload for preload in servers) and any("backends.inductor.backend" in p for p in servers)
    for preload, server in servers.items():
        state = server.state()
        assert state["pid"] == server.proc.pid
        assert set(preload) <= set(state["preloaded"]), state["failed"]
        assert state["unsafe"] == ""
        assert state["cuda_initialized"] is False          # torch.cuda.is_initialized() in the server
        assert state["cuda_driver_initialized"] is False   # nothing called cuInit there
        assert state["python_threads"] == 1
        assert "torchax" not in state["modules"]           # it would break torch in every worker
        if "jax" in preload:
            assert state["jax_backends"] == []             # imported, no backend started


def test_a_run_leaves_the_server_as_it_was(servers, tmp_path):
    server = servers[plugins.backend_spec("eager").preload]
    before = server.state()
    cfg = {"workload": {"name": "faulty", "fault": "none", "size": 32, "preset": "auto", "mode": "fwd",
                        "dtype": None, "min_sqnr_db": None},
           "backend": {"name": "eager"}, "device": "auto", "seed": 0,
           "bench": {"warmup": 1, "warmup_ms": 0, "repeats": 3, "min_repeat_ms": 1.0, "max_iters_per_repeat": 100,
                     "profile": False, "profile_iters": 1, "check_numerics": True, "compile_cache": "cold",
                     "reference_timer": False}}
    task = WorkerTask(config=cfg, run_dir=str(tmp_path), compile_cache_dir=str(tmp_path / "cache"))
    env = dict(harness_env(), OMP_NUM_THREADS="1")
    outcome = run_worker(task, env, [sorted(os.sched_getaffinity(0))[0]], 120, None, echo=False, server=server)
    assert outcome.result is not None and outcome.result.status == "ok", (outcome.failure, outcome.stderr_tail)
    assert outcome.result.environment["affinity"] == [sorted(os.sched_getaffinity(0))[0]]  # its CPU set
    assert server.state() == before


# --- nothing left behind ---------------------------------------------------------------------------

def start(*overrides: str) -> tuple[subprocess.Popen, ProcessWatch]:
    proc = subprocess.Popen([sys.executable, "-m", "harness", *overrides], cwd=REPO, env=harness_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, ProcessWatch(proc)


def test_a_crash_and_a_hang_leave_no_process_behind(sweep_dir):
    proc, watch = start("-m", "workload=faulty", "workload.fault=crash,hang", "backend=eager", "bench=quick",
                        "bench.isolation=forkserver", "bench.timeout_s=10", f"hydra.sweep.dir={sweep_dir}")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    reasons = sorted(r["reason"] for r in records(sweep_dir))
    assert reasons[0].startswith("timeout: worker still running after 10 s")
    assert reasons[1] == "worker killed by signal SIGABRT"
    assert len(watch.servers()) == 1, "one fork server for the sweep"
    watch.assert_all_gone()


# The orchestrator's own death (SIGKILL, SIGHUP) under both isolations: tests/test_node_integrity.py.
def test_a_dead_server_fails_its_run_and_leaves_nothing(tmp_path):
    proc, watch = start("workload=faulty", "workload.fault=hang", "backend=eager", "bench=quick",
                        "bench.isolation=forkserver", "bench.timeout_s=300", f"hydra.run.dir={tmp_path}")
    watch.wait_for_worker()
    (server,) = watch.servers()
    os.kill(server, signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err[-2000:]
    (r,) = records(tmp_path)
    assert r["status"] == "failed" and r["reason"] == "the fork server exited while the worker ran", r["reason"]
    watch.assert_all_gone()


def test_a_server_unsafe_to_fork_spawns_its_runs_and_the_record_says_so(tmp_path, monkeypatch):
    """A preload that starts a thread (on the H200, Inductor's modules loaded the CUDA driver)
    leaves a server that must not fork: it stops importing and says why, and its runs are
    spawned instead, correctly, with the reason in the record's environment."""
    (tmp_path / "starts_a_thread.py").write_text(
        "import threading, time\nthreading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    server = forkserver.ForkServer(("torch", "starts_a_thread", "backends.eager.backend"))
    try:
        state = server.state()
        assert state["unsafe"] == "after importing starts_a_thread: 2 Python threads run"
        assert "backends.eager.backend" not in state["preloaded"]       # it stopped there
        from harness.orchestrator import run as run_mod
        cfg = composed("workload=faulty", "backend=eager", "bench=quick", "bench.profile=false",
                       "bench.isolation=forkserver", "device=cpu")
        monkeypatch.setattr(forkserver, "server_for", lambda preload: server)
        record = run_mod.execute(cfg, tmp_path / "run", echo=False)
        assert record.status == "ok", record.reason
        assert record.environment["isolation"] == (
            "spawn (the fork server of torch, starts_a_thread, backends.eager.backend is not safe to fork "
            "(after importing starts_a_thread: 2 Python threads run); bench.isolation=forkserver asked)")
    finally:
        server.close()
        server.proc.wait(timeout=30)


class _Driver:
    """A CUDA driver library stand-in: answers cuDeviceGetCount with the given CUresult."""
    def __init__(self, result: int):
        self.result = result

    def cuDeviceGetCount(self, count) -> int:      # noqa: N802: the driver API's name
        return self.result


def test_a_mapped_driver_is_unsafe_only_once_cuinit_ran():
    """On the H200 `import torch` maps libcuda.so without calling cuInit (the fork server was
    refused for every run on 2026-12-02 for it): only an initialised driver makes it unsafe."""
    from harness.worker.server import CUDA_ERROR_NOT_INITIALIZED, cuda_driver_initialized, unsafe
    assert cuda_driver_initialized(None) is False                      # not mapped
    assert cuda_driver_initialized(_Driver(CUDA_ERROR_NOT_INITIALIZED)) is False
    assert cuda_driver_initialized(_Driver(0)) is True                 # CUDA_SUCCESS: cuInit ran
    held = {"cuda_initialized": False, "cuda_driver_loaded": True, "cuda_driver_initialized": False,
            "jax_backends": [], "python_threads": 1}
    assert unsafe(held) == []
    assert unsafe({**held, "cuda_driver_initialized": True}) == ["the CUDA driver is initialised (cuInit ran)"]


def test_a_server_stopped_while_it_imports_exits_at_once_and_says_nothing(tmp_path):
    """The orchestrator ends (here: at once, as a sweep with a bad job does) while its server
    still imports. The server's SIGTERM lands wherever the import is, in CI inside a callback
    under C++ frames (JAX's gc callback): an exception raised there ended in std::terminate and
    a traceback on the user's stderr. Here the import sits in a Python callback that C calls
    (qsort's comparator, through ctypes), where a raised exception is printed and swallowed."""
    marker = tmp_path / "importing"
    (tmp_path / "imports_under_c.py").write_text(
        "import ctypes, pathlib, time\n"
        f"pathlib.Path({str(marker)!r}).touch()\n"
        "compare = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)(lambda a, b: time.sleep(0.01) or 0)\n"
        "items = (ctypes.c_int * 20000)()\n"
        "ctypes.CDLL(None).qsort(items, len(items), ctypes.sizeof(ctypes.c_int), compare)\n")
    orchestrator = (
        "import pathlib, sys, time\n"
        "from harness.orchestrator import forkserver\n"
        "server = forkserver.server_for(('imports_under_c',))\n"
        f"while not pathlib.Path({str(marker)!r}).exists():\n"
        "    time.sleep(0.05)\n"
        "print(server.proc.pid, flush=True)\n")
    env = dict(harness_env(), PYTHONPATH=os.pathsep.join([str(tmp_path), harness_env().get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", orchestrator], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    server_pid = int(proc.stdout.readline())
    try:
        out, err = proc.communicate(timeout=60)    # its pipes close when the server has exited too
    except subprocess.TimeoutExpired:
        os.kill(server_pid, signal.SIGKILL)
        pytest.fail("the server went on importing after its orchestrator had exited")
    assert proc.returncode == 0
    assert err == ""
