"""`python -m harness.kernels TRACE [TRACE...]` as a user runs it on traces they already have."""
from __future__ import annotations

import gzip
import os
import subprocess
import sys

import pandas as pd
import pytest

from harness.collect.kernel_table import COLUMNS
from harness.kernels import labels_for, main, short_name

from conftest import REPO, with_repo_path
TRACES = REPO / "tests" / "fixtures" / "traces"
EAGER = TRACES / "h100_fp8_linear_fwd_bwd_eager.trace.json.gz"
INDUCTOR = TRACES / "h100_fp8_linear_fwd_bwd_inductor.trace.json.gz"


def test_one_trace_prints_table_and_summary(capsys):
    assert main([str(INDUCTOR), "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert "5 iteration(s) [harness_iter], device h100_sxm" in out
    assert "nvjet_sm90_qrtst_128x160_128x5_2x1_v_bz_coopA_algo2_TNT" in out
    assert "... 9 more kernels" in out
    assert "Summary of time (ms) by kernel category, per iteration" in out
    assert "0.502" in out and "Diff" not in out


def test_two_traces_side_by_side_with_diffs(capsys):
    assert main([str(EAGER), str(INDUCTOR), "--top", "3", "--wall-us", "3000", "980"]) == 0
    out = capsys.readouterr().out
    # labels: file stems without the shared prefix
    assert "== eager:" in out and "== inductor:" in out
    summary = out[out.index("Summary of time"):]
    assert summary.splitlines()[1].split() == ["eager", "inductor"]
    assert "Diff by category (ms per iteration, inductor - eager)" in out
    assert "Diff by kernel" in out
    assert "gap (host/launch overhead)" in out
    # eager's long template names are shortened for print, not cut at the front
    assert "elementwise_kernel<128, 2, BinaryFunctor, MulFunctor>" in out


def test_csv_and_parquet(tmp_path, capsys):
    csv, parquet = tmp_path / "k.csv", tmp_path / "k.parquet"
    assert main([str(EAGER), str(INDUCTOR), "--csv", str(csv), "--parquet", str(parquet)]) == 0
    capsys.readouterr()
    rows = pd.read_csv(csv)
    assert list(rows.columns) == ["trace"] + COLUMNS
    assert set(rows["trace"]) == {"eager", "inductor"}
    pd.testing.assert_frame_equal(pd.read_parquet(parquet), rows, check_dtype=False)


@pytest.mark.parametrize("case,expected", [
    ("missing", "no such file"),
    ("truncated", "truncated or invalid JSON"),
    ("empty", "no GPU kernel events"),
    ("unknown", "unknown trace format"),
])
def test_malformed_input_is_one_line_and_exit_2(tmp_path, capsys, case, expected):
    path = tmp_path / f"{case}.json"
    if case == "truncated":
        path.write_bytes(gzip.decompress(INDUCTOR.read_bytes())[:20000])
    elif case == "empty":
        path.write_text('{"schemaVersion": 1, "traceEvents": []}')
    elif case == "unknown":
        path.write_text('{"hello": "world"}')
    with pytest.raises(SystemExit) as e:
        main([str(path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err and len(err.splitlines()) == 1


def test_as_a_user_runs_it(tmp_path):
    """The real entry point, in its own process: exit 2, one line, no traceback."""
    bad = tmp_path / "trace.json.gz"
    bad.write_bytes(INDUCTOR.read_bytes()[:3000])
    env = with_repo_path(dict(os.environ))
    proc = subprocess.run([sys.executable, "-m", "harness.kernels", str(bad)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {bad}: truncated or corrupt gzip (Error -5 while " \
                                  "decompressing data: incomplete or truncated stream)"
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_labels_and_short_names():
    assert labels_for(["a/h100_x_eager.trace.json.gz", "b/h100_x_xla.perfetto_trace.json.gz"]) \
        == ["eager", "xla"]
    assert labels_for(["run/trace.json.gz"]) == ["trace"]
    assert labels_for(["a/trace.json.gz", "b/trace.json.gz"]) == ["0:trace", "1:trace"]
    name = ("void at::native::reduce_kernel<512, 1, at::native::ReduceOp<c10::BFloat16, "
            "at::native::func_wrapper_t<c10::BFloat16, at::native::MaxNanFunctor<float> >, "
            "unsigned int, c10::BFloat16, 4, 4> >(at::native::ReduceOp<c10::BFloat16, ...>)")
    assert short_name(name) == "reduce_kernel<512, 1, ReduceOp, MaxNanFunctor>"
    assert short_name("triton_red_fused_abs_max_0") == "triton_red_fused_abs_max_0"


def test_unknown_device_is_an_error_naming_the_known_ones(capsys):
    with pytest.raises(SystemExit) as e:
        main([str(INDUCTOR), "--device", "bogus"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --device: unknown GPU 'bogus'; expected one of h100_pcie")
    assert "h200 (H200 SXM)" in err and "b200" in err and len(err.splitlines()) == 1


def test_a_trace_without_iteration_markers_says_its_figures_are_totals(tmp_path, capsys):
    path = tmp_path / "user.trace.json"
    path.write_bytes(gzip.decompress(INDUCTOR.read_bytes()).replace(b"harness_iter_", b"step_"))
    assert main([str(path), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert ("no iteration markers (harness_iter_N, ProfilerStep#N) and no --iters: figures are "
            "totals over the whole trace, not per iteration") in out
    assert "us total" in out and "us/iter" not in out and "iteration(s)" not in out
    assert "Summary of time (ms) by kernel category, whole trace, not per iteration" in out
    assert main([str(path), "--top", "3", "--iters", "5"]) == 0
    assert "5 iteration(s) [argument]" in capsys.readouterr().out


def test_source_op_columns_and_summary(capsys):
    assert main([str(EAGER), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "op category" in out and "aten::mul" in out
    assert "By the category of the source PyTorch op (op_category), per iteration" in out


def test_reader_that_stops_early_ends_it_quietly():
    """`python -m harness.kernels TRACE | head`: stdout closed before anything is written."""
    read, write = os.pipe()
    os.close(read)
    env = with_repo_path(dict(os.environ))
    proc = subprocess.run([sys.executable, "-m", "harness.kernels", str(INDUCTOR)], stdout=write,
                          stderr=subprocess.PIPE, env=env, text=True, timeout=300)
    os.close(write)
    assert proc.returncode == 0 and proc.stderr == ""
