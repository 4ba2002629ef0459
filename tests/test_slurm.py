"""Sweeps submitted with hydra/launcher=slurm to a real (throwaway, single-node) Slurm.

What Slurm does to our jobs, and what each leaves behind: a job array with a record per job,
the nightly script end to end, a job past its time limit (USR2, then TERM), scancel, requeue.
The cluster comes from the `slurm_cluster` fixture (scripts/slurm_cluster.sh); CPU shapes only.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from conftest import REPO, records, run_harness, start_harness
from slurm_cluster import SlurmCluster, unavailable, wait_until

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.xdist_group("slurm")]   # one cluster
if unavailable():
    pytest.skip(unavailable(), allow_module_level=True)   # one line for the whole module

# The real launcher config, sized for a CPU node of two cores.
SLURM = ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.mem_gb=2"]
CPU_QUICK = ["bench=quick", "bench.processes=1", "device=cpu"]   # nightly.yaml asks for 3 processes
INTERRUPTED = re.compile(r"interrupted: the orchestrator received (SIGUSR2|SIGTERM)\b")
WAIT_S = 240


def run_dirs(sweep: Path) -> dict[str, Path]:
    """Run dir by the faulty workload's fault (or by workload_backend for other sweeps)."""
    out = {}
    for cfg in sweep.glob("*/.hydra/config.yaml"):
        try:
            c = OmegaConf.load(cfg)
            key = c.workload.fault if c.workload.name == "faulty" else f"{c.workload.name}_{c.backend.name}"
        except Exception:   # a job writing it right now (empty or half-written): the next poll sees it
            continue
        out[key] = cfg.parent.parent
    return out


def slurm_job_id(run_dir: Path) -> str:
    """The Slurm job (array task) that ran this run dir last: Hydra keeps it in .hydra/hydra.yaml."""
    return str(OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra.job.id)


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "record.json").read_text())


def earlier_attempts(run_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(run_dir.glob("record.*.failed.json"))]


def running_job(cluster: SlurmCluster, run_dir: Path, not_job: str | None = None) -> str:
    """Wait until this run's job has its worker running; its Slurm job id."""
    def started():
        try:
            job = slurm_job_id(run_dir)
        except Exception:   # not written yet, or being written
            return None
        return job if job != not_job and cluster.worker_running(job) else None
    return wait_until(started, WAIT_S, f"a worker running for {run_dir.name}")


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=WAIT_S)
    return proc.returncode, out, err


@pytest.fixture
def launch(slurm_cluster):
    """Start the CLI against the cluster in the background; a launcher left waiting is killed."""
    started: list[subprocess.Popen] = []

    def launch_(*overrides: str) -> subprocess.Popen:
        started.append(start_harness(*overrides, env=slurm_cluster.env))
        return started[-1]
    yield launch_
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_sweep_is_one_job_array_with_a_record_per_job(slurm_cluster, sweep_dir):
    # eager only: compiling costs CI minutes and tells nothing more about Slurm
    proc = run_harness("-m", *SLURM, "+experiment=nightly", "workload=fp8_linear,conv,faulty",
                       "backend=eager", *CPU_QUICK, f"hydra.sweep.dir={sweep_dir}",
                       env=slurm_cluster.env, timeout=WAIT_S * 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted((r["workload"], r["status"]) for r in records(sweep_dir)) == [
        ("conv", "ok"), ("faulty", "ok"), ("fp8_linear", "ok")]
    jobs = sorted(slurm_job_id(d) for d in run_dirs(sweep_dir).values())
    assert len({j.split("_")[0] for j in jobs}) == 1                  # one array...
    assert sorted(j.split("_")[1] for j in jobs) == ["0", "1", "2"]   # ...of three tasks
    assert [slurm_cluster.states(j) for j in jobs] == [["COMPLETED"]] * 3


def test_nightly_script_submits_to_slurm_and_reports(slurm_cluster, tmp_path):
    env = dict(slurm_cluster.env,
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
               NIGHTLY_LAUNCHER=" ".join(SLURM),
               NIGHTLY_ROOT=str(tmp_path / "nightly"),
               NIGHTLY_HISTORY=str(tmp_path / "history"),
               # two sweeps into the night's dir, one run failing on purpose
               NIGHTLY_SWEEPS="+experiment=nightly workload=faulty workload.fault=none,raise backend=eager\n"
                              "+experiment=nightly workload=faulty workload.size=32 backend=eager")
    nights = {}
    for day in ("2026-01-01", "2026-01-02"):
        nights[day] = subprocess.run(["bash", "scripts/nightly.sh", *CPU_QUICK], cwd=REPO,
                                     env=dict(env, NIGHTLY_DATE=day), capture_output=True, text=True,
                                     timeout=WAIT_S * 2)
        sweep = tmp_path / "nightly" / day
        assert sorted((r["config"]["workload"]["size"], r["status"]) for r in records(sweep)) == [
            (32, "ok"), (64, "failed"), (64, "ok")], nights[day].stderr[-3000:]
        assert (sweep / "report.md").is_file()
    first, second = nights.values()
    assert first.returncode == 0, first.stderr[-3000:]
    assert "nothing to compare against" in first.stdout
    # The exit code is the regressions verdict over both nights: two nights hold no
    # regression (it must last 2 nights after a change); a failed sweep would say so on stderr.
    assert second.returncode == 0, second.stderr[-3000:]
    assert "sweep failed" not in second.stderr
    compared = (tmp_path / "nightly" / "2026-01-02" / "compare.md").read_text()
    assert "3 matched run(s)" in compared and "0 only in BASE, 0 only in NEW" in compared
    assert (tmp_path / "nightly" / "2026-01-02" / "regressions.txt").is_file()
    assert (tmp_path / "nightly" / "dashboard" / "index.html").is_file()
    history = pd.read_parquet(tmp_path / "history")
    assert len(history) == 6 and history["record_sha"].nunique() == 6
    assert sorted(history["date"].astype(str).unique()) == ["2026-01-01", "2026-01-02"]


def test_job_past_its_time_limit_fails_with_the_signal_and_the_sweep_resumes(slurm_cluster, launch,
                                                                            sweep_dir):
    # Slurm checks limits every 30 s and signals up to 30 s before signal_delay_s: with a
    # 1-minute limit and a 5 s delay, USR2 comes 25-55 s into the job, after the orchestrator
    # has taken the run (earlier, submitit would take it for a preemption and requeue the job),
    # and the job ends before the launcher's sacct poll at 64 s (the next is at 128 s).
    overrides = ["-m", *SLURM, "hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=5",
                 "workload=faulty", "workload.fault=none,hang", "backend=eager", *CPU_QUICK,
                 f"hydra.sweep.dir={sweep_dir}"]
    first = run_harness(*overrides, env=slurm_cluster.env, timeout=WAIT_S)
    assert first.returncode != 0   # the launcher reports the job that ended without a result
    dirs = run_dirs(sweep_dir)
    assert record(dirs["none"])["status"] == "ok"
    hung = record(dirs["hang"])
    assert hung["status"] == "failed" and INTERRUPTED.match(hung["reason"]), hung["reason"]
    hung_job = slurm_job_id(dirs["hang"])
    assert slurm_cluster.states(hung_job) in (["FAILED"], ["TIMEOUT"])
    ok_record_ns = (dirs["none"] / "record.json").stat().st_mtime_ns

    # Re-run into the same dir: the ok run is skipped, the failed one runs again. That attempt
    # would hang to the limit again; cancel it once it runs.
    again = launch(*overrides)
    rerun_job = running_job(slurm_cluster, dirs["hang"], not_job=hung_job)
    slurm_cluster.client("scancel", rerun_job)
    finish(again)
    slurm_cluster.wait_idle()
    assert (dirs["none"] / "record.json").stat().st_mtime_ns == ok_record_ns
    assert not earlier_attempts(dirs["none"])
    assert [a["reason"] for a in earlier_attempts(dirs["hang"])] == [hung["reason"]]
    retried = record(dirs["hang"])
    assert retried["status"] == "failed" and "SIGTERM" in retried["reason"]


def test_scancel_fails_that_run_and_the_rest_of_the_array_finishes(slurm_cluster, launch, sweep_dir):
    proc = launch("-m", *SLURM, "workload=faulty", "workload.fault=hang,none", "backend=eager",
                  *CPU_QUICK, f"hydra.sweep.dir={sweep_dir}")
    dirs = wait_until(lambda: len(run_dirs(sweep_dir)) == 2 and run_dirs(sweep_dir), WAIT_S,
                      "both jobs of the array to start")
    job = running_job(slurm_cluster, dirs["hang"])
    slurm_cluster.client("scancel", job)
    returncode, _, _ = finish(proc)
    slurm_cluster.wait_idle()
    assert returncode != 0   # the launcher reports the cancelled job
    cancelled = record(dirs["hang"])
    assert cancelled["status"] == "failed"
    assert cancelled["reason"].startswith("interrupted: the orchestrator received SIGTERM")
    assert record(dirs["none"])["status"] == "ok"
    assert slurm_cluster.states(job) == ["CANCELLED"]
    assert slurm_cluster.states(slurm_job_id(dirs["none"])) == ["COMPLETED"]


def test_requeued_job_starts_again_and_leaves_one_record(slurm_cluster, launch, sweep_dir):
    # requeued as soon as its worker runs: the worker's start alone (importing torch) takes
    # longer than the test needs to see it and requeue
    proc = launch("-m", *SLURM, "workload=faulty", "backend=eager", *CPU_QUICK,
                  f"hydra.sweep.dir={sweep_dir}")
    run_dir = wait_until(lambda: run_dirs(sweep_dir).get("none"), WAIT_S, "the job to start")
    job = running_job(slurm_cluster, run_dir)
    slurm_cluster.client("scontrol", "requeue", job)   # what preemption with PreemptMode=REQUEUE does
    returncode, _, err = finish(proc)
    # the launcher returns once the result is written; Slurm records the job COMPLETED when its
    # batch step has exited, a moment later (sacct still said RUNNING on a loaded machine)
    slurm_cluster.wait_idle()
    wait_until(lambda: slurm_cluster.states(job)[-1:] not in (["PENDING"], ["RUNNING"], ["COMPLETING"]),
               60, "sacct to record the job's end")
    assert returncode == 0, err[-3000:]   # the launcher waited through the requeue for the result
    assert slurm_cluster.states(job) == ["REQUEUED", "COMPLETED"]
    assert len(list(sweep_dir.rglob("record.json"))) == 1
    assert record(run_dir)["status"] == "ok"
    [preempted] = earlier_attempts(run_dir)
    assert preempted["reason"].startswith("interrupted: the orchestrator received SIGTERM")
