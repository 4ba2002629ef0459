"""A GPU node never turns into a quiet CPU run; parallel jobs get a GPU and CPU cores each; no
run is lost or orphaned whatever happens to its orchestrator; bad settings are one line.

A stub `nvidia-smi` on PATH plays a node with two GPUs (this CPU machine's torch sees none).
"""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FIXTURES, REPO, ProcessWatch, harness_env, records, run_harness
from harness.orchestrator import gpus

TOPO = ("\tGPU0\tGPU1\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\n"
        "GPU0\t X \tNV18\t0\t0\t\tN/A\n"
        "GPU1\tNV18\t X \t1\t0\t\tN/A\n")


@pytest.fixture
def two_gpu_node(tmp_path, monkeypatch) -> dict[str, str]:
    """PATH with an nvidia-smi that lists GPUs 0 and 1 and their affine cores."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\ncase \"$*\" in\n"
                   "  *--query-gpu=index*) printf '0\\n1\\n' ;;\n"
                   f"  *topo*) printf '{TOPO.encode('unicode_escape').decode()}' ;;\n"
                   "  *) exit 1 ;;\nesac\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HARNESS_GPU_LOCK_DIR": str(tmp_path / "locks")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def harness(*args: str, env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    full = dict(harness_env(), **(env or {}))
    return subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=REPO, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


# --- the pool -----------------------------------------------------------------------------------

def test_the_pool_is_the_nodes_gpus_whatever_the_launcher_set(two_gpu_node, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")        # what submitit's local executor sets
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")      # ... and how it marks its jobs
    assert gpus.pool("auto") == ["0", "1"]
    monkeypatch.delenv("SUBMITIT_EXECUTOR")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert gpus.pool("auto") == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")       # an allocation (Slurm) is kept
    assert gpus.pool("auto") == ["1"]


def test_the_affinity_of_a_real_two_gpu_h200_node():
    # `nvidia-smi topo -m` on nvidia-h200-x2 (2026-11-30): both GPUs on NUMA node 0, cores 0-31,
    # with the terminal's underline escapes around the header
    affinity = gpus.gpu_affinity((FIXTURES / "nvidia_smi" / "h200x2_topo_m.txt").read_text())
    assert affinity == {"0": list(range(32)), "1": list(range(32))}
    assert gpus.cpu_sets(["0", "1"], list(range(32)), affinity) == {"0": list(range(16)), "1": list(range(16, 32))}


def test_cpu_sets_follow_the_affinity_column_else_split_evenly():
    affinity = gpus.gpu_affinity("\tGPU0\tGPU1\tNIC0\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\n"
                                 "GPU0\t X \tNV18\tSYS\t0-15,32-47\t0\t\tN/A\n"
                                 "GPU1\tNV18\t X \tSYS\t16-31,48-63\t1\t\tN/A\n")
    assert affinity["0"] == [*range(0, 16), *range(32, 48)] and affinity["1"] == [*range(16, 32), *range(48, 64)]
    assert gpus.cpu_sets(["0", "1"], list(range(64)), affinity) == affinity
    # two GPUs on one NUMA node (the same affine cores): split between them
    shared = {"0": list(range(32)), "1": list(range(32))}
    assert gpus.cpu_sets(["0", "1"], list(range(32)), shared) == {"0": list(range(16)), "1": list(range(16, 32))}
    assert gpus.cpu_sets(["0", "1"], list(range(8)), {}) == {"0": [0, 1, 2, 3], "1": [4, 5, 6, 7]}


@pytest.mark.slow
def test_documented_parallel_sweep_on_a_gpu_node_never_runs_on_the_cpu(two_gpu_node, sweep_dir):
    proc = run_harness("-m", "hydra/launcher=local_gpus", "workload=fp8_linear,conv", "workload.mode=fwd,fwd_bwd",
                       "backend=inductor", "bench=quick", f"hydra.sweep.dir={sweep_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = records(sweep_dir)
    assert len(recs) == 4
    for r in recs:
        assert r["status"] == "failed"
        assert r["reason"].startswith("cpu fallback: this node lists 2 GPU(s)"), r["reason"]
        assert [f["code"] for f in r["flags"]] == ["cpu_fallback"]
    assert {r["environment"]["gpu_slot"] for r in recs} == {"0", "1"}
    assert {tuple(r["environment"]["cpu_set"]) for r in recs} == {(0,), (1,)}


def test_item08_a_users_own_empty_cuda_visible_devices_means_no_gpu(two_gpu_node, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    for executor in (None, "slurm"):       # the user's value, or one a Slurm job inherited
        if executor:
            monkeypatch.setenv("SUBMITIT_EXECUTOR", executor)
        assert gpus.hidden_by_user() and gpus.pool("auto") == []
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    assert not gpus.hidden_by_user() and gpus.pool("auto") == ["0", "1"]


@pytest.mark.slow
def test_item08_a_run_with_an_empty_cuda_visible_devices_stays_off_the_gpu(two_gpu_node, tmp_path):
    """On a node whose nvidia-smi lists two GPUs, `CUDA_VISIBLE_DEVICES= python -m harness ...`
    is a CPU run that measures (not GPU 0, not a cpu_fallback failure)."""
    proc = run_harness("workload=faulty", "backend=eager", "bench=quick", f"hydra.run.dir={tmp_path}",
                       env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    assert proc.returncode == 0, proc.stderr[-2000:]
    (r,) = records(tmp_path)
    assert r["status"] == "ok" and r["environment"]["device"] == "cpu"
    assert r["environment"]["gpu_slot"] is None and r["environment"]["cuda_visible_devices"] == ""
    assert "on GPU" not in proc.stderr


@pytest.mark.slow
def test_device_cpu_stays_available_on_a_gpu_node(two_gpu_node, tmp_path):
    proc = run_harness("workload=faulty", "backend=eager", "bench=quick", "device=cpu", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (r,) = records(tmp_path)
    assert r["status"] == "ok" and r["environment"]["device"] == "cpu"


# --- one run, one owner -------------------------------------------------------------------------

@pytest.mark.slow
def test_two_sweeps_into_one_dir_lose_nothing(sweep_dir):
    args = ("-m", "workload=faulty", "workload.size=32,48", "backend=eager", "bench=quick",
            f"hydra.sweep.dir={sweep_dir}")
    first, second = harness(*args), harness(*args)
    out = [p.communicate(timeout=600) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, out
    assert "Traceback" not in out[0][1] + out[1][1]
    run_dirs = sorted(p.parent for p in sweep_dir.rglob("record.json"))
    assert len(run_dirs) == 2
    for run_dir in run_dirs:
        assert records(run_dir)[0]["status"] == "ok"
        assert not list(run_dir.glob("record.*.json"))     # no failed attempt beside it
    # one sweep measured each run; the other found its record (after waiting, if it had to)
    stdout = out[0][0] + out[1][0]
    assert stdout.count("already ok, skipped") == 2


# --- the orchestrator's death -------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("isolation", ["forkserver", "spawn"])
@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGKILL])
def test_no_worker_outlives_its_orchestrator(sig, isolation, tmp_path):
    proc = harness("workload=faulty", "workload.fault=hang", "backend=eager", "bench=quick",
                   "bench.timeout_s=300", f"bench.isolation={isolation}", f"hydra.run.dir={tmp_path}")
    watch = ProcessWatch(proc)
    watch.wait_for_worker()
    time.sleep(3)                                  # the worker is inside the hanging step now
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    watch.assert_all_gone()                        # the workers, their fork server, anything they started
    if sig == signal.SIGHUP:
        (r,) = records(tmp_path)
        assert r["status"] == "failed" and r["reason"].startswith("interrupted: the orchestrator received SIGHUP")


# --- limits and bad settings --------------------------------------------------------------------

@pytest.mark.slow
def test_host_memory_limit_names_itself(tmp_path):
    proc = run_harness("workload=fp8_linear", "workload.M=4194304", "device=cpu", "bench=quick",
                       "bench.max_host_mem_gb=3", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 1
    (r,) = records(tmp_path)
    assert r["status"] == "failed"
    assert r["reason"].startswith("host memory above 3 GiB (bench.max_host_mem_gb)"), r["reason"]


def test_item14_a_small_memory_limit_is_printed_with_its_digits():
    """A limit of 0.05 GiB on a process holding ~0.2 GiB: the reason says 0.05, not 0.0."""
    from harness.orchestrator import spawn
    proc = subprocess.Popen([sys.executable, "-c", "import time; b = b'x' * (200 << 20); time.sleep(60)"],
                            start_new_session=True)
    try:
        failure, interrupted = spawn._wait(proc, timeout_s=60, mem_limit_gb=0.05)
    finally:
        spawn._kill_group(proc)
    assert interrupted == "" and proc.poll() is not None
    assert failure.startswith("host memory above 0.05 GiB (bench.max_host_mem_gb): the worker and its "
                              "children held 0.2"), failure
    assert failure.endswith(" GiB, killed")


@pytest.mark.parametrize("override,line", [
    ("bench.repeats=0", "error: bench.repeats: expected an integer >= 1, got 0"),
    ("bench.processes=0", "error: bench.processes: expected an integer >= 1, got 0"),
    ("bench.timeout_s=-1", "error: bench.timeout_s: expected a number of seconds > 0, got -1.0"),
    ("bench.compile_cache=tepid", "error: bench.compile_cache: expected cold or warm, got 'tepid'"),
    ("bench.warmup=-2", "error: bench.warmup: expected an integer >= 0, got -2"),
    ("bench.min_repeat_ms=-5", "error: bench.min_repeat_ms: expected a number >= 0, got -5.0"),
    ("bench.max_host_mem_gb=0", "error: bench.max_host_mem_gb: expected null (80% of this machine's memory) "
                                "or a number of GiB > 0, got 0.0"),
])
def test_bad_bench_values_are_one_line(override, line, tmp_path):
    proc = run_harness("workload=faulty", override, f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [line]


def test_an_unwritable_results_dir_is_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    proc = run_harness("workload=faulty", f"hydra.run.dir={blocker}/run")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: cannot write results to {blocker}/run: Not a directory"]


@pytest.mark.slow
def test_a_run_dir_lost_after_the_measurement_keeps_the_outcome(tmp_path):
    run_dir = tmp_path / "run"
    proc = harness("workload=faulty", "workload.size=256", "backend=eager", "bench=quick", "bench.repeats=40",
                   "bench.min_repeat_ms=50", f"hydra.run.dir={run_dir}")
    deadline = time.time() + 120
    while not (run_dir / ".harness.lock").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    run_dir.rename(tmp_path / "moved")          # the dir goes away and a file takes its place
    run_dir.write_text("")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr
    assert "faulty[" in stdout and " ok " in stdout          # the outcome is still printed
    [line] = [l for l in stderr.splitlines() if l.startswith("error: cannot write")]
    fallback = Path(line.rsplit("the record is at ", 1)[1])
    assert fallback.is_file() and '"status": "ok"' in fallback.read_text()
