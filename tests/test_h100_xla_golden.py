"""Golden tests on what the harness itself captured on the H100 (backend=xla, torch 2.11,
jax 0.11.2): the fp8 linear fwd+bwd perfetto trace with its optimised HLO, and the
qwen3_0_6b decode step (static cache, batch 16) trace and buffer assignment."""
from __future__ import annotations

import pytest

from conftest import FIXTURES
from harness.collect.kernel_diff import category_summary
from harness.collect.kernel_table import kernel_table
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


# ------------------------------------------------ source ops: the same categories on both sides

QWEN_DUMP = FIXTURES / "xla" / "h100_qwen3_0_6b_decode_static"


def test_qwen_decode_attention_by_source_op():
    """XLA runs torchax's math SDPA as two bmm dots, a softmax and two transposes of the KV
    cache: gemm, reduction and copy by kernel, attention by the op they come from, as Kineto's
    enclosing aten::_scaled_dot_product_* says for Inductor."""
    t = kernel_table(TRACES / "h100_qwen3_0_6b_decode_static_xla.perfetto_trace.json.gz",
                     device=H100, hlo_dir=QWEN_DUMP)
    by_op = t.groupby("op_category")["time_us_per_iter"].sum().round(1).to_dict()
    assert by_op == {"attention": 4109.7, "gemm": 747.2, "elementwise": 413.5, "copy": 124.5,
                     "reduction": 1.4}
    assert "attention" not in set(t["category"])          # no kernel is an attention kernel
    rows = t.set_index("kernel")
    for k, kind in (("wrapped_transpose", "copy"), ("wrapped_transpose_1", "copy"),
                    ("gemm_fusion_dot_general_170", "gemm"), ("triton_softmax_333", "reduction")):
        assert rows.loc[k, "category"] == kind and rows.loc[k, "op_category"] == "attention", k
        assert rows.loc[k, "op"].startswith("scaled_dot_product_attention/"), k
    # the two KV-cache transposes alone: 2.4 of the 5.4 ms step
    assert rows.loc[["wrapped_transpose", "wrapped_transpose_1"], "time_us_per_iter"].sum() \
        == pytest.approx(2442.0, abs=0.1)
    assert rows.loc["gemm_fusion_dot_113", "op"] == "linear"
    assert rows.loc["gemm_fusion_dot_113", "op_category"] == "gemm"


def test_fp8_epilogue_is_elementwise_by_kernel_and_gemm_by_op(fp8_xla):
    by_op = fp8_xla.groupby("op_category")["time_us_per_iter"].sum().round(1).to_dict()
    assert by_op == {"gemm": 434.3, "fp8_cast": 208.1, "copy": 2.4}   # 319.5 + 114.9 epilogues
    epilogue = fp8_xla[fp8_xla["kernel"].str.startswith("gemm_fusion_dot_general")]
    assert len(epilogue) == 3 and (epilogue["category"] == "elementwise").all()
    assert (epilogue["op"] == "aten::_scaled_mm").all() and (epilogue["op_category"] == "gemm").all()


def test_epilogue_that_is_the_entry_root_is_still_elementwise(tmp_path):
    """H200 fp8 forward: `ROOT %gemm_fusion_dot_general.1 = bf16[2048,8192]{1,0} fusion(...),
    kind=kLoop`. The H100 fwd+bwd dump, edited so that one epilogue is the entry's ROOT."""
    (src,) = (TRACES / "h100_fp8_linear_fwd_bwd_xla.xla_dump").glob("*.txt")
    text = src.read_text()
    assert text.count("  ROOT %tuple.1.0 = ") == 1 and text.count("  %gemm_fusion_dot_general.3 = ") == 1
    dump = tmp_path / "xla_dump"
    dump.mkdir()
    (dump / src.name).write_text(text.replace("  ROOT %tuple.1.0 = ", "  %tuple.1.0 = ").replace(
        "  %gemm_fusion_dot_general.3 = ", "  ROOT %gemm_fusion_dot_general.3 = "))
    t = kernel_table(TRACES / "h100_fp8_linear_fwd_bwd_xla.perfetto_trace.json.gz", device=H100,
                     hlo_dir=dump)
    assert t.set_index("kernel").loc["gemm_fusion_dot_general_3", "category"] == "elementwise"
    by = t.groupby("category")["time_us_per_iter"].sum().round(1).to_dict()
    assert by == {"gemm": 319.5, "fp8_cast": 208.1, "elementwise": 114.9, "copy": 2.4}
