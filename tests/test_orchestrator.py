"""The foundation's promises: one record per run, failures cost one row, user mistakes one line."""
from __future__ import annotations

import json
import shutil

import pytest

from conftest import REPO, records, run_harness
from harness.orchestrator.run import run_id
from harness.record import write_json_atomic

pytestmark = pytest.mark.slow


@pytest.mark.xdist_group("cpu_sweep")
def test_sweep_eager_and_inductor_gives_two_ok_records(cpu_sweep_run):
    # the session's shared sweep (conftest), fp8_linear x eager, inductor among its runs: the
    # same CLI command this test ran on its own, compiled once for every test that reads it
    recs = {r["backend"]: r for r in records(cpu_sweep_run.path) if r["workload"] == "fp8_linear"}
    assert set(recs) == {"eager", "inductor"}
    for r in recs.values():
        assert r["status"] == "ok", r["reason"]
        assert r["numerics"]["passed"] is True
        assert len(r["timing"]["samples_ms"]) == 5
        assert r["timing"]["p10_ms"] <= r["timing"]["median_ms"] <= r["timing"]["p90_ms"]
        assert r["schema_version"] == 2 and r["environment"]["versions"]["torch"]
        assert r["params"]["preset"] == "cpu_small"   # no GPU here: the small preset is picked
    assert "fp8_linear[fwd,tensorwise,cpu_small]" in cpu_sweep_run.stdout


def test_faults_cost_one_row_each(sweep_dir):
    proc = run_harness("-m", "workload=faulty", "workload.fault=none,crash,segfault,wrong,raise",
                       "backend=eager", "bench=quick", f"hydra.sweep.dir={sweep_dir}")
    assert proc.returncode == 0, proc.stderr
    # the hang alone: whether the worker is still starting or already hanging when the limit
    # strikes, the record says timeout, so the limit need not leave room for a loaded machine
    proc = run_harness("-m", "workload=faulty", "workload.fault=hang", "backend=eager", "bench=quick",
                       "bench.timeout_s=8", f"hydra.sweep.dir={sweep_dir}")
    assert proc.returncode == 0, proc.stderr
    by_fault = {r["config"]["workload"]["fault"]: r for r in records(sweep_dir)}
    assert len(by_fault) == 6
    assert by_fault["none"]["status"] == "ok"
    assert by_fault["crash"]["reason"] == "worker killed by signal SIGABRT"
    assert by_fault["segfault"]["reason"] == "worker killed by signal SIGSEGV"
    assert by_fault["hang"]["reason"].startswith("timeout: worker still running after 8 s")
    assert by_fault["wrong"]["reason"].startswith("numerics: SQNR")
    assert by_fault["wrong"]["numerics"]["passed"] is False
    assert by_fault["raise"]["reason"] == "RuntimeError: faulty workload raised on request"
    assert "faulty workload raised on request" in by_fault["raise"]["stderr_tail"]
    for fault in ("crash", "segfault", "hang", "wrong", "raise"):
        assert by_fault[fault]["status"] == "failed"


def test_a_spawned_worker_fails_as_a_forked_one(sweep_dir):
    # the fork server is the default (above); a spawned worker's death and failure read the same
    # (the time limit is watched by the same code for both; the orchestrator's death under
    # spawn: tests/test_node_integrity.py)
    proc = run_harness("-m", "workload=faulty", "workload.fault=crash,raise", "backend=eager", "bench=quick",
                       "bench.isolation=spawn", f"hydra.sweep.dir={sweep_dir}")
    assert proc.returncode == 0, proc.stderr
    by_fault = {r["config"]["workload"]["fault"]: r for r in records(sweep_dir)}
    assert by_fault["crash"]["reason"] == "worker killed by signal SIGABRT"
    assert by_fault["raise"]["reason"] == "RuntimeError: faulty workload raised on request"
    assert "faulty workload raised on request" in by_fault["raise"]["stderr_tail"]


def test_unknown_workload_is_one_line_naming_the_options():
    proc = run_harness("workload=nope")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ["error: unknown workload 'nope'; available: conv, faulty, fp8_linear, qwen_decoder"] \
        or (len(lines) == 1 and lines[0].startswith("error: unknown workload 'nope'; available: "))
    assert "Traceback" not in proc.stderr


def test_domain_error_is_one_line_with_the_key_and_exit_2(tmp_path):
    proc = run_harness("workload=fp8_linear", "workload.M=-3", "bench=quick", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: workload.M: expected a positive integer, got -3"]
    assert not (tmp_path / "run").exists()      # checked before any worker or dir (issue 28)


def test_typo_in_key_is_rejected_by_hydra(tmp_path):
    proc = run_harness("workload=fp8_linear", "workload.MM=3", f"hydra.run.dir={tmp_path}")
    assert proc.returncode != 0
    assert "MM" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "record.json").exists()


def test_rerun_into_same_dir_skips_ok_and_keeps_failed_attempts(tmp_path):
    first = run_harness("workload=faulty", "workload.fault=raise", "bench=quick", f"hydra.run.dir={tmp_path}")
    assert first.returncode == 1
    second = run_harness("workload=faulty", "workload.fault=raise", "bench=quick", f"hydra.run.dir={tmp_path}")
    assert second.returncode == 1
    kept = sorted(p.name for p in tmp_path.glob("record.*.failed.json"))
    assert len(kept) == 1   # the first attempt, moved aside, not overwritten


def test_record_is_never_overwritten(tmp_path):
    path = tmp_path / "record.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(FileExistsError):
        write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]   # no temp file left behind


def test_run_id_is_stable_and_ignores_output_location():
    cfg = {"workload": {"name": "x", "M": 1}, "backend": {"name": "eager"}, "bench": {}, "device": "cpu", "seed": 0}
    assert run_id(cfg) == run_id(dict(cfg, hydra={"anything": 1}))
    assert run_id(cfg) != run_id(dict(cfg, seed=1))


@pytest.mark.xdist_group("cpu_sweep")
def test_recollect_rebuilds_tables_and_leaves_the_record(cpu_sweep, tmp_path):
    # a copy of the shared sweep's Inductor run (its output code is what memory.parquet is
    # collected from): re-collecting needs no new compile
    (src,) = cpu_sweep.glob("faulty_inductor_*")
    run = shutil.copytree(src, tmp_path / "run")
    assert json.loads((run / "record.json").read_text())["status"] == "ok"
    record = (run / "record.json").read_bytes()
    (run / "memory.parquet").unlink()
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "scripts/recollect.py", str(run)], cwd=REPO, capture_output=True,
                         text=True, check=True)
    assert "rewrote memory.parquet, memory_buffers.parquet" in out.stdout
    assert (run / "memory.parquet").is_file() and (run / "record.json").read_bytes() == record
    assert not (run / ".recollect").exists()
