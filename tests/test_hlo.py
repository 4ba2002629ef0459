"""HLO text on the H100 dumps: module facts (what backends/xla.py reports), each instruction's
source PyTorch op from its op_name metadata, and the layout copies attributed to their reader."""
from __future__ import annotations

import pytest

from conftest import FIXTURES
from harness.collect import hlo
from harness.collect.xla_buffer_assignment import aliased_parameters

FP8_DUMP = next((FIXTURES / "traces/h100_fp8_linear_fwd_bwd_xla.xla_dump").glob("*.txt"))
QWEN = FIXTURES / "xla/h100_qwen3_0_6b_decode_static"


def test_module_facts():
    header = ("HloModule jit_harness_xla_step, is_scheduled=true, input_output_alias={ {1}: (21, "
              "{}, may-alias), {2}: (22, {}, may-alias) }, entry_computation_layout={(f32[2]{0})"
              "->f32[2]{0}}")
    assert hlo.input_output_aliases(header) == [
        {"output_index": "1", "parameter": 21, "kind": "may-alias"},
        {"output_index": "2", "parameter": 22, "kind": "may-alias"}]
    assert hlo.input_output_aliases(FP8_DUMP.read_text()) == []
    stablehlo = ("%0 = stablehlo.dot_general %a, %b, contracting_dims = [1] x [0] : "
                 "(tensor<64x128xf8E4M3FN>, tensor<128x256xf8E5M2>) -> tensor<64x256xf32>\n"
                 "%1 = stablehlo.dot_general %c, %d, contracting_dims = [1] x [0] : "
                 "(tensor<64x128xbf16>, tensor<128x256xbf16>) -> tensor<64x256xf32>")
    assert hlo.fp8_dot_generals(stablehlo) == 1
    # the fp8 linear fwd+bwd on the H100: three cuBLASLt fp8 GEMMs, no plain dots
    assert hlo.hlo_op_counts(FP8_DUMP.read_text()) == {
        "dot": 0, "convolution": 0, "fp8_gemm_custom_call": 3, "gemm_custom_call": 3}


def test_aliased_parameters_of_the_donated_kv_cache():
    inline = ("allocation 8: size 16384, parameter 21, shape |f32[2,16,4,2,16]| at ShapeIndex {}, "
              "maybe-live-out:\nallocation 10: size 16384, parameter 2, shape |f32[64,64]| at "
              "ShapeIndex {}:\n")
    assert aliased_parameters(inline) == [21]
    # jax 0.11 on the H100 writes `size 67108864, page 0, parameter 228, ...`: 28 layers x (k, v)
    (dump,) = QWEN.glob("*-buffer-assignment.txt")
    assert aliased_parameters(dump.read_text()) == list(range(228, 284))


@pytest.mark.parametrize("op_name,source", [
    ("jit(harness_xla_step)/scaled_dot_product_attention/aten::bmm/dot_general",
     "scaled_dot_product_attention/aten::bmm"),
    ("jit(harness_xla_step)/scaled_dot_product_attention/aten::transpose.int/transpose;"
     "jit(harness_xla_step)/aten::transpose.int/transpose",
     "scaled_dot_product_attention/aten::transpose.int"),
    ("jit(harness_xla_step)/linear/...a,ba->...b/dot_general", "linear"),
    ("jit(harness_xla_step)/transpose(jvp(aten::_scaled_mm))/convert_element_type",
     "aten::_scaled_mm"),
    ("jit(harness_xla_step)/jvp(aten::clamp)/jit(clip)/max", "aten::clamp"),
    ("jit(harness_xla_step)/aten::index_copy_/aten::index_put_/aten::index_put/scatter",
     "aten::index_copy_/aten::index_put_/aten::index_put"),
    ("jit(harness_xla_step)/jvp()/convert_element_type", ""),
    ("jit(step)/convert_element_type[new_dtype=float8_e4m3fn weak_type=False]", ""),
    ("params_j[\\'weight\\']", ""),
    ("reduce_sum", ""),
    ("", ""),
])
def test_source_op_of_real_op_names(op_name, source):
    assert hlo.source_op(op_name) == source


def test_fp8_dump_source_ops():
    module = hlo.parse_module(FP8_DUMP.read_text())
    ops = module.source_ops
    # cuBLASLt's f32 result scaled and cast to bf16: elementwise work of aten::_scaled_mm
    assert ops["gemm_fusion_dot_general.5"] == "aten::_scaled_mm"
    assert ops["cublas-gemm.0"] == "aten::_scaled_mm"
    assert ops["input_reduce_fusion"] == "aten::max"
    # XLA's own transposes of fp8 operands carry no op_name: no source op, not a guess
    assert ops["wrapped_transpose.1"] == "" and ops["loop_convert_fusion.1"] == ""
    assert "fused_convert.1" not in ops          # fusion bodies are not kernels


def test_qwen_decode_source_ops_from_the_buffer_assignment_values():
    """The optimised module of this run was not kept; the values file prints each entry
    instruction with its op_name and its readers."""
    (module,) = hlo.hlo_index(QWEN).values()
    assert module.name == "jit_harness_xla_step" and module.costs == {}
    ops = module.source_ops
    assert ops["gemm_fusion_dot_general.170"] == "scaled_dot_product_attention/aten::bmm"
    assert ops["triton_softmax.333"] == "scaled_dot_product_attention/aten::_softmax"
    # k: the model's transpose merged into SDPA's own; v: the model's `v.transpose(1, 2)`,
    # a view PyTorch hands SDPA for free, read only by SDPA's second bmm
    assert ops["wrapped_transpose"] == "scaled_dot_product_attention/aten::transpose.int"
    assert ops["wrapped_transpose.1"] == "scaled_dot_product_attention/aten::bmm"
    assert ops["loop_dynamic_update_slice_fusion"].startswith("aten::index_copy_/")
    assert module.by_kernel["wrapped_transpose_1"] == "wrapped_transpose.1"
