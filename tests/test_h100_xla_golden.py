"""Golden tests on what the harness itself captured on the H100 (backend=xla, torch 2.11,
jax 0.11.2): the fp8 linear fwd+bwd perfetto trace with its optimised HLO, and the
qwen3_0_6b decode step (static cache, batch 16) trace and buffer assignment."""
from __future__ import annotations

import pytest

from conftest import FIXTURES
from harness.collect.kernels import category_summary, kernel_table
from harness.collect.memory_table import memory_table_from_files

TRACES = FIXTURES / "traces"
H100 = "NVIDIA H100 80GB HBM3"


@pytest.fixture(scope="module")
def fp8_xla():
    return kernel_table(TRACES / "h100_fp8_linear_fwd_bwd_xla.perfetto_trace.json.gz", device=H100,
                        hlo_dir=TRACES / "h100_fp8_linear_fwd_bwd_xla.xla_dump")


def test_fp8_fwd_bwd_on_xla_runs_three_fp8_gemms_per_iteration(fp8_xla):
    assert fp8_xla.attrs["iters"] == 5 and fp8_xla.attrs["iters_source"] == "harness_iter"
    assert (fp8_xla["calls_per_iter"] % 1 == 0).all()
    gemm = fp8_xla[fp8_xla["category"] == "gemm"]
    assert gemm["calls_per_iter"].sum() == 3
    assert gemm["flops"].sum() == 3 * 2 * 2048 * 4096 * 8192
    assert gemm["kernel"].str.startswith("nvjet_sm90_q").all()   # cuBLASLt fp8 kernels
    assert not gemm["suspect"].any()
    assert fp8_xla["share"].sum() == pytest.approx(1.0)


def test_fp8_fwd_bwd_on_xla_categories(fp8_xla):
    by = fp8_xla.groupby("category")["time_us_per_iter"].sum().round(1).to_dict()
    # XLA keeps cuBLASLt's f32 result and scales + casts it to bf16 in three kLoop fusions
    # XLA names 'gemm_fusion_dot_general.N': elementwise, not GEMM time.
    assert by == {"gemm": 319.5, "fp8_cast": 208.1, "elementwise": 114.9, "copy": 2.4}
    summary = category_summary({"xla": fp8_xla})
    assert summary.loc["All", "xla"] == pytest.approx(0.6448, abs=1e-4)


def test_qwen_decode_on_xla_transposes_the_kv_cache_every_step():
    t = kernel_table(TRACES / "h100_qwen3_0_6b_decode_static_xla.perfetto_trace.json.gz", device=H100)
    copies = t[t["category"] == "copy"].set_index("kernel")
    # one transpose of k and one of v per layer (28 layers), near the HBM bandwidth
    assert copies.loc["wrapped_transpose", "calls_per_iter"] == 28
    assert copies.loc["wrapped_transpose_1", "calls_per_iter"] == 28
    assert copies["time_us_per_iter"].sum() / t["time_us_per_iter"].sum() > 0.45


def test_qwen_decode_buffer_assignment_donates_the_cache():
    (path,) = (FIXTURES / "xla" / "h100_qwen3_0_6b_decode_static").glob("*-buffer-assignment.txt")
    summary, buffers = memory_table_from_files([path])
    by_kind = dict(zip(summary["kind"], summary["bytes"]))
    assert by_kind["total"] == 5025415251
    # 28 layers x (k, v) x bf16[16,2048,8,128] donated and updated in place
    assert "3758096384 bytes donated" in summary.set_index("kind").loc["parameter", "note"]
    assert 3758096384 == 28 * 2 * 16 * 2048 * 8 * 128 * 2
    cache = buffers[buffers["shape"].str.startswith("bf16[16,2048,8,128]")]
    assert set(cache["storage"]) >= {f"allocation {i}" for i in range(1, 57)}
