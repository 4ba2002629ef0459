"""One GPU per job: faked on CPU through CUDA_VISIBLE_DEVICES, which is all a worker sees."""
from __future__ import annotations

import pytest

from conftest import records, run_harness
from harness.orchestrator import gpus

pytestmark = pytest.mark.slow


def test_pool_spec():
    assert gpus.pool([0, 2]) == ["0", "2"]
    assert gpus.pool("none") == []
    with pytest.raises(Exception, match="gpu_pool"):
        gpus.pool(["a"])


def test_acquire_hands_out_distinct_gpus(tmp_path, monkeypatch):
    monkeypatch.setattr(gpus, "LOCK_DIR", tmp_path)
    with gpus.acquire(["0", "1"]) as first, gpus.acquire(["0", "1"]) as second:
        assert {first, second} == {"0", "1"}
    with gpus.acquire(["0", "1"]) as again:
        assert again == "0"   # released on exit


def test_parallel_sweep_one_gpu_per_job(sweep_dir, tmp_path):
    proc = run_harness("-m", "hydra/launcher=local_gpus", "gpu_pool=[0,1]", "device=cpu", "workload=faulty",
                       "workload.size=32,48,64,80", "backend=eager", "bench=quick",
                       f"hydra.sweep.dir={sweep_dir}")
    assert proc.returncode == 0, proc.stderr
    recs = records(sweep_dir)
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs)
    for r in recs:   # the worker saw exactly the GPU its orchestrator took
        assert r["environment"]["cuda_visible_devices"] == r["environment"]["gpu_slot"]
    assert {r["environment"]["gpu_slot"] for r in recs} == {"0", "1"}
    # never two jobs on one GPU at once
    for gpu in ("0", "1"):
        spans = sorted((r["started_at"], r["finished_at"]) for r in recs if r["environment"]["gpu_slot"] == gpu)
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
