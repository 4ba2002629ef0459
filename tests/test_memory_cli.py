"""`python -m harness.memory`: the tables a user sees, the files it writes, and one-line
errors (exit 2, no traceback) for truncated or garbled copies of every real fixture."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.collect.memory_table import KINDS, memory_table_from_files, runtime_peak_row
from harness.memory import main

FIXTURES = Path(__file__).parent / "fixtures"
SEED_004 = FIXTURES / "seeds/004_xla_gpu_buffer_assignment_qwen_decode.txt"
SEED_001 = FIXTURES / "seeds/001_torchao_float8_profile_inductor_output_code.txt"
XLA = FIXTURES / "xla"
from conftest import with_repo_path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = with_repo_path(dict(os.environ))
    return subprocess.run([sys.executable, "-m", "harness.memory", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_prints_summary_and_top_buffers(capsys):
    main([str(SEED_004), "--top", "3"])
    out = capsys.readouterr().out
    assert "1093622736" in out and "1.02 GiB" in out
    assert "p44.801.0" in out and "bf16[2,4233,16,8,128]" in out
    assert "p8.54.0" not in out          # 6th largest: beyond --top 3


def test_cli_writes_csv_and_parquet(tmp_path, capsys):
    main([str(SEED_004), str(SEED_001), "--csv", str(tmp_path / "m.csv"), "--parquet", str(tmp_path / "m.parquet")])
    summary = pd.read_csv(tmp_path / "m.csv")
    assert list(summary.columns) == ["graph", "kind", "bytes", "buffers", "source", "note"]
    assert set(summary["graph"]) == {"004_xla_gpu_buffer_assignment_qwen_decode", "0_forward", "0_backward"}
    buffers = pd.read_parquet(tmp_path / "m.buffers.parquet")
    assert len(buffers) == len(pd.read_csv(tmp_path / "m.buffers.csv")) > 100
    # NA bytes (Inductor's workspace/constant): <NA> in Parquet's Int64, empty in the CSV.
    assert pd.read_parquet(tmp_path / "m.parquet")["bytes"].dropna().tolist() == summary["bytes"].dropna().tolist()


def test_split_dump_siblings_are_found_from_the_buffer_assignment(tmp_path, capsys):
    for p in XLA.glob("torchax_mlp.gpu.*"):
        shutil.copy(p, tmp_path / p.name.replace("torchax_mlp.gpu.", "module_0007.jit_jax_func.sm_9.0a_gpu_after_optimizations-"))
    main([str(tmp_path / "module_0007.jit_jax_func.sm_9.0a_gpu_after_optimizations-buffer-assignment.txt")])
    out = capsys.readouterr().out
    assert "module_0007.jit_jax_func.sm_9.0a_gpu_after_optimizations" in out and "3544088" in out


def test_content_not_name_decides(tmp_path):
    shutil.copy(SEED_001, tmp_path / "anything.log")
    shutil.copy(SEED_004, tmp_path / "dump.bin")
    summary, _ = memory_table_from_files([tmp_path / "anything.log", tmp_path / "dump.bin"])
    assert set(summary["source"]) == {"inductor_output_code", "xla_buffer_assignment"}


def test_runtime_peak_row_joins_the_summary():
    summary, _ = memory_table_from_files([SEED_004])
    table = pd.concat([summary, runtime_peak_row(1_100_000_000, "jax.memory_stats")], ignore_index=True)
    assert list(table["kind"]) == ["parameter", "output", "temp", "workspace", "constant", "total", "runtime_peak"]
    assert set(table["kind"]) <= set(KINDS)
    assert table["bytes"].dtype == "Int64" and table.iloc[-1]["bytes"] == 1_100_000_000


# --- errors: one line, exit 2 ---------------------------------------------------------

def _cut_copies(tmp_path: Path) -> list[Path]:
    """Each real fixture cut, in a folder of its own (siblings stay complete): XLA files in
    half, Inductor output code inside its last `call`, just before the return."""
    sources = [SEED_004, SEED_001, FIXTURES / "inductor/mlp_train.cuda.1.py"] + [
        XLA / f"jax_mlp_cublas.gpu.{s}" for s in
        ("buffer-assignment.txt", "buffer-assignment-values.txt", "live-range.txt", "memory-usage-report.txt")]
    cut = []
    for k, src in enumerate(sources):
        folder = tmp_path / str(k)
        folder.mkdir()
        for sibling in XLA.glob("jax_mlp_cublas.gpu.*") if src.parent == XLA else []:
            shutil.copy(sibling, folder / sibling.name)
        text = src.read_text()
        end = text.rindex("return (") + 12 if src.suffix == ".py" or src == SEED_001 else len(text) // 2
        (folder / src.name).write_text(text[:end])
        main_file = folder / ("jax_mlp_cublas.gpu.buffer-assignment.txt" if src.parent == XLA else src.name)
        cut.append((folder / src.name, main_file))
    return cut


def test_truncated_copies_of_every_fixture_fail_in_one_line(tmp_path, capsys):
    for cut, given in _cut_copies(tmp_path):
        with pytest.raises(SystemExit) as info:
            main([str(given)])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: {cut}:"), err
        assert int(err.split(":")[2]) >= 1


@pytest.mark.parametrize("make, expected", [
    (lambda d: d / "missing.txt", "missing.txt: no such file"),
    (lambda d: (d / "notes.txt").write_text("hello\n") and d / "notes.txt", "notes.txt:1: unknown format"),
    (lambda d: (d / "sizes.txt").write_text(SEED_004.read_text().replace(
        "allocation 0: size 311164928", "allocation 0: size 311164929")) and d / "sizes.txt",
     "sizes.txt:192: allocation sizes add up to 1093622737 bytes"),
])
def test_cli_errors_exit_2_without_traceback(tmp_path, make, expected):
    result = run_cli(str(make(tmp_path)))
    assert result.returncode == 2
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and expected in result.stderr
    assert result.stderr.count("\n") == 1


def test_reader_that_stops_early_ends_it_quietly(tmp_path):
    """`python -m harness.memory DUMP | head`: stdout closed; the CSV is still written."""
    read, write = os.pipe()
    os.close(read)
    env = with_repo_path(dict(os.environ))
    proc = subprocess.run([sys.executable, "-m", "harness.memory", str(SEED_004), "--csv",
                           str(tmp_path / "m.csv")], stdout=write, stderr=subprocess.PIPE,
                          env=env, text=True, timeout=120)
    os.close(write)
    assert proc.returncode == 0 and proc.stderr == ""
    assert len(pd.read_csv(tmp_path / "m.csv")) == 6
