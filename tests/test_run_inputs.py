"""What a run leaves behind when its input is wrong (issue 28, items 7, 10, 11, 12 and 13):
a config error is one line and creates nothing, an unreadable record is kept and named, a full
disk or an unwritable --out is one line, and records are readable by colleagues."""
from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, records, run_harness, with_repo_path
from harness.orchestrator import preflight
from harness.record import RunRecord, write_record
from schema2 import FP8_FWD, copy_reference
from test_report import report_cli


# ------------------------------------------------------------------ item 13: config errors

@pytest.mark.parametrize("override,line", [
    ("workload.M=-3", "error: workload.M: expected a positive integer, got -3"),
    ("workload.min_sqnr_db=nan", "error: workload.min_sqnr_db: expected null (the workload's "
                                 "default) or a finite number, got nan"),
    ("seed=-1", "error: seed: expected an integer from 0 to 4294967295, got -1"),
    ("bench.repeats=0", "error: bench.repeats: expected an integer >= 1, got 0"),
    ("workload.preset=huge", "error: workload.preset: unknown preset 'huge'; expected one of: "
                             "auto, seed, cpu_small, square_4k, llama3_8b_ffn_up, "
                             "llama3_8b_ffn_down, llama3_70b_ffn_up"),
])
def test_item13_a_bad_workload_value_is_one_line_before_anything_is_created(tmp_path, override,
                                                                            line):
    run_dir = tmp_path / "results" / "run"
    proc = run_harness("workload=fp8_linear", override, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [line] and proc.stdout == ""   # no worker, no [run] line
    assert list(tmp_path.iterdir()) == []                             # nothing created


def test_item13_one_bad_job_stops_a_sweep_before_its_dir_exists(tmp_path):
    proc = run_harness("-m", "workload=fp8_linear", "workload.M=64,-3", "backend=eager,inductor",
                       f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: workload.M: expected a positive integer, got -3 (sweep job: workload=fp8_linear "
        "workload.M=-3 backend=eager)"]
    assert list(tmp_path.iterdir()) == []


def test_item13_the_checks_are_the_workloads_own_and_need_no_torch():
    """The orchestrator resolves a workload's parameters with the presets and validate its
    package declares (the worker's build uses the same), without importing torch."""
    code = ("import sys; from harness.orchestrator import preflight; "
            "cfg = dict(bench=dict(warmup=1, warmup_ms=0.0, repeats=1, min_repeat_ms=0.0, "
            "max_iters_per_repeat=1, processes=1, timeout_s=1.0, max_host_mem_gb=None, "
            "profile_iters=1, compile_cache='cold', isolation='spawn'), seed=0, device='cpu', "
            "backend=dict(name='eager'), workload=dict(name='qwen_decoder', preset='auto', "
            "phase='generate', new_tokens=6, mode='fwd', dtype=None, min_sqnr_db=None)); "
            "p = preflight.check_run(cfg); "
            "print(p['preset'], p['max_len'], sorted(m for m in ('torch', 'jax', 'pandas') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True, env=with_repo_path(dict(os.environ)))
    assert out.stdout.split() == ["cpu_tiny", "14", "[]"]      # prompt 8 + 6 new tokens
    from harness.orchestrator import plugins
    import workloads.qwen_decoder.model as qwen
    assert plugins.workload_spec("qwen_decoder").validate is qwen.validate
    assert plugins.workload_spec("qwen_decoder").presets is qwen.PRESETS


# ------------------------------------------------------------- item 10: unreadable record

@pytest.mark.slow
def test_item10_a_truncated_record_in_the_run_dir_is_named_kept_and_measured_again(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cut = b'{"run_id": "abc", "status": "ok", "timing": {"median_ms": 0.0'
    (run_dir / "record.json").write_bytes(cut)
    proc = run_harness("workload=faulty", "backend=eager", "bench=quick", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    (kept,) = run_dir.glob("record.*.unreadable.json")
    assert kept.read_bytes() == cut                                   # the bytes, as they were
    assert (f"[run] {run_dir / 'record.json'}: unreadable record (JSONDecodeError: "
            in proc.stderr and f"kept as {kept.name}, measuring again" in proc.stderr)
    assert records(run_dir)[0]["status"] == "ok"


# ------------------------------------------------------------------- item 11: a full disk

def test_item11_a_full_disk_at_the_start_is_one_line_and_creates_nothing(tmp_path, monkeypatch):
    """The probe writes and syncs bytes: an empty file still fits on a full disk."""
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(preflight.os, "fsync", full)
    target = tmp_path / "results" / "run"
    with pytest.raises(Exception) as e:
        preflight.check_writable(target)
    assert str(e.value) == f"output: cannot write results to {target}: No space left on device"
    monkeypatch.setattr(preflight.os, "fsync", real_fsync)
    assert list(tmp_path.iterdir()) == []          # no probe left, no dir made
    preflight.check_writable(target)
    assert list(tmp_path.iterdir()) == []


def _tmpfs(path: Path) -> bool:
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a full tmpfs needs root")
def test_item11_a_real_full_filesystem_is_one_line(tmp_path):
    disk = tmp_path / "disk"
    if not _tmpfs(disk):
        pytest.skip("cannot mount a tmpfs here")
    try:
        (disk / "fill").write_bytes(b"\0" * 65536)
        for args in (["workload=faulty", f"hydra.run.dir={disk}/runs/x"],
                     ["-m", "workload=faulty", f"hydra.sweep.dir={disk}/sweep"]):
            proc = run_harness(*args)
            assert proc.returncode == 2 and "Traceback" not in proc.stderr
            where = args[-1].split("=", 1)[1]
            assert proc.stderr.splitlines() == [
                f"error: cannot write results to {where}: No space left on device"]
        assert sorted(p.name for p in disk.iterdir()) == ["fill"]
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# ----------------------------------------------------------- item 12: report --out nowhere

def test_item12_a_report_out_that_cannot_be_made_is_one_line(tmp_path):
    sweep = copy_reference(tmp_path / "sweep", FP8_FWD["eager"])
    proc = report_cli(sweep, "--out", "/proc/nope/report")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("error: /proc/nope/report: cannot write the report there: No such "
                           "file or directory (/proc/nope)\n")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    proc = report_cli(sweep, "--out", blocker / "report")
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: {blocker / 'report'}: cannot "
                                                           "write the report there: Not a directory")


# ------------------------------------------------------------ item 7: records for colleagues

@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_item07_record_json_honours_the_umask_like_every_other_file(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = write_record(tmp_path, RunRecord(run_id="r", status="ok"))
        beside = tmp_path / "kernels.parquet"
        beside.write_bytes(b"")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode == stat.S_IMODE(beside.stat().st_mode)
    assert json.loads(path.read_text())["run_id"] == "r"


def test_item13_a_job_sent_to_another_host_is_checked_for_either_device(capsys):
    """`device=auto` is this host's GPU or CPU; a Slurm job may land on a GPU node while the
    login node has none: a value valid there (prompt 512 in the GPU preset's 2048-long cache)
    is not refused for the CPU preset (a 32-long cache), and one wrong on both still is."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    from harness.orchestrator.config import register_configs
    register_configs()

    def multirun_start(*overrides: str) -> None:
        """What `python -m harness -m OVERRIDES` hands the callback, before any dir exists."""
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
            cfg = GlobalHydra.instance().hydra.compose_config(
                "config", list(overrides), run_mode=RunMode.MULTIRUN, with_log_configuration=False)
            preflight.Preflight().on_multirun_start(cfg)

    decode_512 = ("workload=qwen_decoder", "workload.prompt_len=512", "backend=eager,inductor")
    multirun_start("hydra/launcher=slurm", *decode_512)
    assert capsys.readouterr().err == ""
    with pytest.raises(SystemExit) as e:
        multirun_start(*decode_512)                 # runs here, on this CPU machine
    assert e.value.code == 2 and capsys.readouterr().err.startswith(
        "error: workload.max_len: expected at least prompt_len + 3 decode steps = 515, got 32")
    with pytest.raises(SystemExit) as e:
        multirun_start("hydra/launcher=slurm", "workload=qwen_decoder", "workload.batch=-1")
    assert e.value.code == 2 and capsys.readouterr().err.startswith(
        "error: workload.batch: expected a positive integer, got -1")
