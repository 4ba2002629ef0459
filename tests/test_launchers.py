"""Sweeps through hydra-submitit-launcher's local executor: the Slurm code path, on CPU."""
from __future__ import annotations

import json

import pytest

from conftest import records, run_harness

pytestmark = pytest.mark.slow


def test_nightly_shaped_sweep_resumes_and_retries(sweep_dir):
    # one process a run (nightly.yaml asks for 3): resuming and retrying are per run
    overrides = ["-m", "hydra/launcher=local", "+experiment=nightly", "workload=faulty",
                 "workload.fault=none,raise", "backend=eager,inductor", "bench=quick",
                 "bench.processes=1", f"hydra.sweep.dir={sweep_dir}"]
    first = run_harness(*overrides)
    assert first.returncode == 0, first.stderr
    recs = records(sweep_dir)
    assert sorted((r["backend"], r["status"]) for r in recs) == [
        ("eager", "failed"), ("eager", "ok"), ("inductor", "failed"), ("inductor", "ok")]
    ok_mtimes = {p: p.stat().st_mtime_ns for p in sweep_dir.rglob("record.json")
                 if json.loads(p.read_text())["status"] == "ok"}

    second = run_harness(*overrides)
    assert second.returncode == 0, second.stderr
    # finished runs were skipped: their records are untouched
    assert {p: p.stat().st_mtime_ns for p in ok_mtimes} == ok_mtimes
    # failed runs were retried, the first attempt kept beside the new record
    assert len(list(sweep_dir.rglob("record.*.failed.json"))) == 2
    assert len(records(sweep_dir)) == 4


def test_slurm_launcher_config_renders():
    proc = run_harness("hydra/launcher=slurm", "hydra.launcher.partition=gpu", "--cfg", "hydra",
                       "--package", "hydra.launcher")
    assert proc.returncode == 0, proc.stderr
    assert "SlurmLauncher" in proc.stdout
    assert "partition: gpu" in proc.stdout and "gpus_per_node: 1" in proc.stdout
