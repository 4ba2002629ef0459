"""The classification table: kernel names from the seeds and the H100 traces -> categories."""
from __future__ import annotations

import pytest

from harness.collect.kernel_categories import (CATEGORIES, OP_RULES, RULES, Rule, classify,
                                               classify_cached, explain, op_category)

FP8 = "fp8_trace"


def kineto(kernel: str, op: str = "", dtypes: str = "", features: str = "") -> str:
    return classify({"kernel": kernel, "op": op, "dtypes": dtypes, "features": features},
                    "kineto")


def xla(kernel: str, op: str = "", hlo: str = "", features: str = "") -> str:
    return classify({"kernel": kernel, "op": op, "hlo": hlo, "features": features}, "perfetto")


# Seed 001 (Inductor output code of torchao's float8 linear) and the H100 traces: every Triton
# kernel of tensorwise scaling is what torchao calls 1_f8_overhead.
@pytest.mark.parametrize("name", [
    "triton_red_fused_abs_max_0",
    "triton_per_fused__to_copy_abs_clamp_max_mul_reciprocal_1",
    "triton_per_fused_abs_max_2",
    "triton_per_fused_abs_max_3",
    "triton_poi_fused__scaled_mm__to_copy_clamp_mul_reciprocal_view_5",
    "triton_poi_fused__to_copy_clamp_clone_mul_reciprocal_7",
    "triton_red_fused_abs_max_t_2",                                       # H100 inductor trace
    "triton_poi_fused__scaled_mm__to_copy_clamp_clone_mul_reciprocal_t_4",
])
def test_inductor_fp8_scaling_kernels_are_fp8_cast(name):
    assert kineto(name, op=name) == "fp8_cast"


def test_a_clone_that_writes_fp8_is_a_cast_not_a_copy():
    # seed 001's triton_poi_fused_clone_8 reads bf16 x and writes its e4m3 transpose; torchao's
    # name rule files it under 2_other, the operand dtypes say what it does
    name = "triton_poi_fused_clone_8"
    assert kineto(name, op=name, dtypes="c10::BFloat16 float c10::Float8_e4m3fn",
                  features="fp8_operand dtype_change") == "fp8_cast"
    assert kineto(name, op=name, dtypes="c10::BFloat16 c10::BFloat16",
                  features="same_dtype") == "copy"


@pytest.mark.parametrize("kernel,op", [
    ("nvjet_sm90_qqtst_128x256_128x4_2x1_v_bz_coopA_TNN", "aten::_scaled_mm"),   # H100 traces
    ("nvjet_sm90_qrtst_128x160_128x5_2x1_v_bz_coopA_algo2_TNT", "aten::_scaled_mm"),
    ("sm90_xmma_gemm_e4m3bf16_e4m3f32_f32_tn_n_tilesize128x128x128_warpgroupsize1x1x1_execute"
     "_segment_k_off_kernel__5x_cublas", ""),
    ("cutlass3x_sm90_tensorop_gemm_bf16_bf16_f32_bf16_bf16_128x256x64_1x2x1_0_tnn_align8", ""),
    ("ampere_bf16_s16816gemm_bf16_128x128_ldg8_f2f_stages_32x5_tn", "aten::mm"),
    ("void cublasLt::splitKreduce_kernel<32, 16, int, float, float, float>", "aten::addmm"),
    ("triton_tem_fused__scaled_mm_0", "triton_tem_fused__scaled_mm_0"),
    ("triton_tem_fused_mm_1", "triton_tem_fused_mm_1"),
])
def test_gemms(kernel, op):
    assert kineto(kernel, op=op, features="fp8_operand " + FP8) == "gemm"


def test_specific_before_generic():
    # attention kernels are CUTLASS GEMMs inside, implicit-GEMM convolutions say "gemm"
    assert kineto("fmha_cutlassF_bf16_aligned_64x64_rf_sm80") == "attention"
    assert kineto("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128>>",
                  op="aten::_scaled_dot_product_flash_attention") == "attention"
    assert kineto("sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc") == "conv"
    assert kineto("anything", op="aten::cudnn_convolution") == "conv"
    # Inductor's conv epilogue (bias + relu) is pointwise work, not the convolution
    assert kineto("triton_poi_fused_convolution_relu_0",
                  op="triton_poi_fused_convolution_relu_0") == "elementwise"


def test_eager_fp8_recipe_only_in_an_fp8_trace():
    abs_kernel = "void at::native::vectorized_elementwise_kernel<8, at::native::AbsFunctor<c10::BFloat16>>"
    max_kernel = ("void at::native::reduce_kernel<512, 1, at::native::ReduceOp<c10::BFloat16, "
                  "at::native::func_wrapper_t<c10::BFloat16, at::native::MaxNanFunctor<float>>>>")
    copy_kernel = "void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda>"
    mul_kernel = "void at::native::elementwise_kernel<128, 2, BinaryFunctor<MulFunctor<float>>>"
    assert kineto(abs_kernel, op="aten::abs", features="same_dtype " + FP8) == "fp8_cast"
    assert kineto(max_kernel, op="aten::max", features="same_dtype " + FP8) == "fp8_cast"
    assert kineto(copy_kernel, op="aten::copy_", features="dtype_change " + FP8) == "fp8_cast"
    assert kineto(mul_kernel, op="aten::mul", features="same_dtype scalar_operand " + FP8) \
        == "fp8_cast"
    # the same ops in a model without fp8 tensors
    assert kineto(abs_kernel, op="aten::abs", features="same_dtype") == "elementwise"
    assert kineto(max_kernel, op="aten::max", features="same_dtype") == "reduction"
    assert kineto(copy_kernel, op="aten::copy_", features="dtype_change") == "elementwise"
    assert kineto(mul_kernel, op="aten::mul", features="same_dtype scalar_operand") \
        == "elementwise"
    # a bf16 layout copy stays a copy even in an fp8 trace (eager's w.t().contiguous())
    assert kineto(copy_kernel, op="aten::copy_", features="same_dtype " + FP8) == "copy"


@pytest.mark.parametrize("kernel,op,expected", [
    ("Memcpy DtoD (Device -> Device)", "aten::copy_", "copy"),
    ("Memset (Device)", "aten::_scaled_mm", "copy"),          # kept as copy, as the brief says
    ("triton_per_fused_native_layer_norm_0", "triton_per_fused_native_layer_norm_0", "norm"),
    ("void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<float, float>",
     "aten::native_layer_norm", "norm"),
    ("triton_per_fused__softmax_0", "triton_per_fused__softmax_0", "reduction"),
    ("triton_red_fused_sum_1", "triton_red_fused_sum_1", "reduction"),
    ("triton_poi_fused_add_mul_0", "triton_poi_fused_add_mul_0", "elementwise"),
    ("triton_poi_fused_cat_8", "triton_poi_fused_cat_8", "copy"),
    ("void at::native::(anonymous namespace)::CatArrayBatchedCopy<float, 4>", "aten::cat", "copy"),
    ("some_custom_kernel", "", "other"),
])
def test_other_kineto_kinds(kernel, op, expected):
    assert kineto(kernel, op=op) == expected


def test_xla_by_hlo_op_name():
    assert xla("loop_multiply_fusion", op="loop_multiply_fusion.2") == "elementwise"
    assert xla("loop_convert_fusion", op="loop_convert_fusion.1") == "elementwise"  # no dump
    assert xla("input_reduce_fusion", op="input_reduce_fusion") == "reduction"
    assert xla("loop_transpose_fusion", op="loop_transpose_fusion") == "copy"
    assert xla("sm90_xmma_gemm_e4m3bf16_e4m3f32_f32_tn_n", op="custom-call.3") == "gemm"
    assert xla("nvjet_sm90_qqtst_128x256_128x4_2x1_v_bz_coopA_TNN", op="cublas-lt-matmul.1") \
        == "gemm"
    assert xla("gemm_fusion_dot_1_impl", op="gemm_fusion_dot.1") == "gemm"
    assert xla("sm90_xmma_fprop_implicit_gemm", op="cudnn-conv.1") == "conv"
    assert xla("MemcpyD2H") == "copy"
    assert xla("Memset") == "copy"


def test_xla_fp8_needs_the_hlo_dump():
    convert = ("loop_convert_fusion.1 = f8e4m3fn[2048,4096]{1,0} fusion(bf16[2048,4096]{1,0} p, "
               "f32[] s), kind=kLoop\n  convert.5 = f8e4m3fn[2048,4096]{1,0} convert(clamp.2)")
    amax = ("input_reduce_fusion = f32[] fusion(bf16[2048,4096]{1,0} p)\n"
            "  abs.1 = bf16[2048,4096]{1,0} abs(p.1)\n"
            "  reduce.2 = f32[] reduce(convert.1, c), dimensions={0,1}, to_apply=max")
    assert xla("loop_convert_fusion", op="loop_convert_fusion.1", hlo=convert) == "fp8_cast"
    assert xla("input_reduce_fusion", op="input_reduce_fusion", hlo=amax) == "fp8_cast"
    transpose = "loop_transpose_fusion = f8e5m2[8192,2048]{1,0} fusion(f8e5m2[2048,8192]{1,0} p)"
    assert xla("loop_transpose_fusion", op="loop_transpose_fusion", hlo=transpose) == "fp8_cast"
    gemm = ('custom-call.3 = (bf16[2048,8192]{1,0}, s8[33554432]{0}) custom-call(f8e4m3fn[2048,'
            '4096]{1,0} a, f8e4m3fn[8192,4096]{1,0} b), custom_call_target="__cublas$lt$matmul$f8"')
    assert xla("sm90_xmma_gemm_e4m3bf16", op="custom-call.3", hlo=gemm) == "gemm"
    # without a dump, XLA's op_name metadata can still name the fp8 convert
    assert classify({"kernel": "loop_convert_fusion", "op": "loop_convert_fusion.1",
                     "scope": "jit(step)/convert_element_type[new_dtype=float8_e4m3fn "
                              "weak_type=False]"}, "perfetto") == "fp8_cast"


def test_the_table_is_well_formed():
    assert set(RULES) == {"kineto", "perfetto"}
    for rules in RULES.values():
        for rule in rules:
            assert rule.category in CATEGORIES
            assert rule.why and rule.match
    with pytest.raises(ValueError):
        Rule("gemms", {"kernel": "x"}, "typo in the category")
    with pytest.raises(ValueError):
        Rule("gemm", {"kernel_name": "x"}, "typo in the field")


def test_explain_and_cache_agree_with_classify():
    record = {"kernel": "triton_red_fused_abs_max_0", "op": "triton_red_fused_abs_max_0"}
    rule = explain(record, "kineto")
    assert rule is not None and rule.category == "fp8_cast" and "amax" in rule.why
    assert classify_cached("kineto", "triton_red_fused_abs_max_0",
                           "triton_red_fused_abs_max_0") == "fp8_cast"
    assert explain({"kernel": "mystery"}, "kineto") is None


def test_cublas_epilogue_is_elementwise_also_as_the_entry_root():
    root = ("  ROOT %gemm_fusion_dot_general.1 = bf16[2048,8192]{1,0} fusion(%cublas-gemm.1#0, "
            "%fusion.3), kind=kLoop, calls=%fused_computation.2")
    assert xla("gemm_fusion_dot_general_1", op="", hlo=root) == "elementwise"
    assert xla("gemm_fusion_dot_general_1", op="", hlo=root.replace("  ROOT ", "  ")) \
        == "elementwise"
    assert xla("gemm_fusion_dot_general_1", op="",
               hlo=root.replace("kind=kLoop", "kind=kCustom")) == "gemm"   # a Triton GEMM


@pytest.mark.parametrize("op,category,expected", [
    ("aten::scaled_dot_product_attention", "gemm", "attention"),     # eager/Inductor, Kineto
    ("scaled_dot_product_attention/aten::bmm", "gemm", "attention"),  # XLA op_name path
    ("scaled_dot_product_attention/aten::_softmax", "reduction", "attention"),
    ("aten::_scaled_dot_product_flash_attention_backward", "other", "attention"),
    ("aten::rms_norm", "elementwise", "norm"),
    ("aten::native_layer_norm", "reduction", "norm"),
    ("aten::_scaled_mm", "elementwise", "gemm"),   # XLA's cuBLASLt epilogue
    ("linear", "gemm", "gemm"),
    ("aten::linear", "copy", "gemm"),
    ("aten::conv2d", "elementwise", "conv"),
    ("aten::convolution_backward", "gemm", "conv"),
    ("aten::mul.Tensor", "fp8_cast", "fp8_cast"),  # no op rule: the kernel's category
    ("aten::index_copy_/aten::index_put_", "copy", "copy"),
    ("", "elementwise", "elementwise"),
    ("aten::mmx", "other", "other"),
])
def test_op_category(op, category, expected):
    assert op_category(op, category) == expected


def test_op_rules_are_well_formed():
    assert [name for name, _, _ in OP_RULES] == ["attention", "conv", "norm", "gemm"]
    assert all(why for _, _, why in OP_RULES)
