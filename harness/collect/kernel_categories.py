"""Which category a GPU kernel's time belongs to: one rule table per trace source.

A rule is a set of regexes over the fields a kernel record carries; all must match (searched,
case-insensitive). Rules are tried top to bottom and the first match wins, so the order below
is part of the data: specific before generic (attention and conv kernels are GEMMs inside,
`triton_poi_fused__scaled_mm_...` is an fp8 cast, not a GEMM).

Fields of a kernel record:
- `kernel`: the GPU kernel name as the profiler wrote it. Kineto: demangled C++
  ("void at::native::vectorized_elementwise_kernel<4, at::native::abs_kernel_cuda...>"), cuBLAS
  ("sm90_xmma_gemm_e4m3bf16_e4m3f32_f32_tn_n_tilesize128x128x128..."), Triton
  ("triton_red_fused_abs_max_0"), or "Memcpy DtoD (Device -> Device)". XLA: the fusion's
  kernel name ("loop_convert_fusion_1", "input_reduce_fusion") or cuBLAS's.
- `op`: what launched it. Kineto: the innermost CPU op (`aten::_scaled_mm`, or for Inductor the
  Triton kernel's own record `triton_poi_fused_...`). XLA: the HLO instruction (`hlo_op` arg:
  "custom-call.3", "loop_convert_fusion.1", "gemm_fusion_dot.2").
- `dtypes`: operand dtypes of the launching op, space separated (Kineto `Input type` with
  record_shapes; XLA: from the optimised HLO when an HLO dump is given).
- `features`: derived tokens: `fp8_operand` (the launching op reads or writes an fp8 tensor),
  `fp8_trace` (some op in the trace does), `same_dtype` / `dtype_change` (the op's tensor
  operands do / do not share one dtype), `scalar_operand` (one operand is a 0-dim tensor).
- `hlo`: XLA only, with an HLO dump: the text of the fused computation the kernel runs.
- `scope`: XLA only: the op_name metadata XLA annotates a kernel with (the `name` arg,
  "jit(step)/convert_element_type[new_dtype=float8_e4m3fn]"), the longest prefix shared by
  the fusion's ops, so it names a framework op only when the fusion holds one kind.

How fp8 overhead is recognised (torchao's `1_f8_overhead`, seed 000): torchao keys on the CPU
kernel name and calls it overhead when it has "abs" and "max" (amax), "clamp" (the saturating
cast), "scaled_mm" (casts Inductor fused into the GEMM's input) or "roll" (amax history). We
keep those name rules and add what the trace knows and the name does not: a kernel whose
launching op reads or writes an fp8 tensor is casting to or from fp8 (Inductor's
`triton_poi_fused_clone_8` of seed 001 transposes *and* casts to fp8 but is named after the
clone only; torchao files it under `2_other`). Eager kernels are named after single aten ops:
`aten::abs`, `aten::max`, `aten::clamp`, `aten::reciprocal` count as fp8 overhead only in a
trace that has fp8 tensors at all, with torchao's own caveat: a model that uses them for other
purposes is over-counted. Likewise the rest of eager's tensorwise recipe: a dtype-changing
copy (`t.to(torch.float32)`) and a multiply by a 0-dim tensor (`* scale`) in such a trace. A
same-dtype layout copy (`w.t().contiguous()` in bf16) stays `copy`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

CATEGORIES = ("gemm", "attention", "conv", "fp8_cast", "norm", "elementwise", "reduction",
              "copy", "other")
FIELDS = ("kernel", "op", "dtypes", "features", "hlo", "scope")


@dataclass(frozen=True)
class Rule:
    category: str
    match: dict[str, str]          # field -> regex; all must match
    why: str                       # an example name it is for, and why it sits where it sits
    compiled: tuple[tuple[str, re.Pattern[str]], ...] = field(init=False, repr=False,
                                                              compare=False)

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"unknown category {self.category!r}")
        unknown = set(self.match) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown rule field(s) {sorted(unknown)}")
        object.__setattr__(self, "compiled", tuple(
            (f, re.compile(p, re.IGNORECASE)) for f, p in self.match.items()))

    def matches(self, record: dict[str, str]) -> bool:
        return all(p.search(record.get(f) or "") for f, p in self.compiled)


# Name fragments shared by both sources (cuBLAS/cuDNN/CUTLASS kernels look alike under either).
_ATTENTION_KERNEL = r"flash|fmha|attention|_mha|mha_|sdpa|xformers"
_CONV_KERNEL = (r"convolution|conv[123]d|\bconv_|_conv\b|fprop|dgrad|wgrad|implicit_?gemm|"
                r"winograd|cudnn::.*conv|im2col")
_GEMM_KERNEL = r"gemm|cutlass|xmma|nvjet|cublas|gemv|matmul|\bsplitk"
_NORM = r"layer_?norm|rms_?norm|batch_?norm|group_?norm|instance_?norm|native_norm"
_MEMCPY = r"^(memcpy|memset)"

KINETO_RULES: tuple[Rule, ...] = (
    Rule("copy", {"kernel": _MEMCPY},
         "'Memcpy DtoD (Device -> Device)', 'Memset (Device)': Kineto cat gpu_memcpy/gpu_memset"),
    Rule("attention", {"kernel": _ATTENTION_KERNEL},
         "'flash_fwd_kernel', 'fmha_cutlassF_bf16_aligned_64x64_rf_sm80': before gemm, they are "
         "GEMMs inside"),
    Rule("attention", {"op": r"scaled_dot_product|flash_attention|efficient_attention|"
                             r"flex_attention|cudnn_attention"},
         "any kernel under aten::_scaled_dot_product_flash_attention; "
         "Inductor 'triton_tem_fused_flex_attention_0'"),
    Rule("conv", {"op": r"^aten::(_?convolution|cudnn_convolution|convolution_backward|"
                        r"_slow_conv2d|conv\w*)|^triton_tem_fused_convolution"},
         "cuDNN 'sm90_xmma_fprop_implicit_gemm_...' under aten::cudnn_convolution: before gemm"),
    Rule("conv", {"kernel": rf"^(?!triton_).*?({_CONV_KERNEL})"},
         "'sm80_xmma_dgrad_implicit_gemm...', 'cudnn::...conv...' without a launching op; not "
         "Inductor's 'triton_poi_fused_convolution_relu_0' (the bias + relu epilogue)"),
    Rule("gemm", {"kernel": r"^triton_tem_"},
         "Inductor GEMM templates 'triton_tem_fused_mm_0', 'triton_tem_fused__scaled_mm_1'"),
    Rule("gemm", {"op": r"^aten::(mm|addmm|bmm|baddbmm|_scaled_mm|_scaled_grouped_mm|"
                      r"_grouped_mm|matmul|linear|addmv|mv|dot|_int_mm)$"},
         "everything aten::_scaled_mm launches (the cuBLASLt kernel) is GEMM time, as torchao's "
         "0_gemm"),
    Rule("gemm", {"kernel": _GEMM_KERNEL, "op": r"^(?!triton_)"},
         "'sm90_xmma_gemm_e4m3bf16_e4m3f32_f32_tn_n_tilesize128x128x128...', "
         "'nvjet_qqtst_128x256_64x4_2x1_v_bz_coopB_NNT', 'cutlass3x_sm90_tensorop_gemm...'"),
    Rule("fp8_cast", {"features": r"\bfp8_operand\b"},
         "a kernel whose launching op reads or writes float8: Inductor 'triton_poi_fused_clone_8' "
         "(transpose + cast to e4m3), eager aten::_to_copy / aten::copy_ to Float8_e4m3fn"),
    Rule("fp8_cast", {"kernel": r"^triton_.*(abs.*max|max.*abs|amax)"},
         "amax: 'triton_red_fused_abs_max_0', "
         "'triton_per_fused__to_copy_abs_clamp_max_mul_reciprocal_1' (torchao: abs and max)"),
    Rule("fp8_cast", {"kernel": r"^triton_.*(clamp|_scaled_mm|roll)"},
         "saturating cast: 'triton_poi_fused__scaled_mm__to_copy_clamp_mul_reciprocal_view_5', "
         "'triton_poi_fused__to_copy_clamp_clone_mul_reciprocal_7' (torchao: clamp, scaled_mm, "
         "roll)"),
    Rule("fp8_cast", {"op": r"^aten::(abs|amax|max|clamp|clamp_min|clamp_max|reciprocal)$",
                      "features": r"\bfp8_trace\b"},
         "eager tensorwise scaling: aten::abs, aten::max, aten::clamp, aten::reciprocal, only "
         "in a trace with fp8 tensors (torchao's false-positive caveat applies)"),
    Rule("fp8_cast", {"op": r"^aten::(copy_|_to_copy)$",
                      "features": r"(?=.*\bfp8_trace\b).*\bdtype_change\b"},
         "eager `t.to(torch.float32)` before scaling, `amax.to(torch.float64)`: a "
         "dtype-changing copy in a trace with fp8 tensors ('direct_copy_kernel_cuda')"),
    Rule("fp8_cast", {"op": r"^aten::(mul|div)$",
                      "features": r"(?=.*\bfp8_trace\b).*\bscalar_operand\b"},
         "eager `t * scale` with a 0-dim scale tensor in a trace with fp8 tensors"),
    Rule("norm", {"kernel": _NORM},
         "'triton_per_fused_native_layer_norm_0', 'void at::native::(anonymous "
         "namespace)::vectorized_layer_norm_kernel<...>'"),
    Rule("norm", {"op": r"^aten::(native_)?(layer|rms|batch|group|instance)_norm"},
         "anything aten::native_layer_norm launches"),
    Rule("copy", {"op": r"^aten::(copy_|_to_copy|clone|contiguous|cat|stack|_unsafe_view|"
                        r"index_copy_|index_select|gather|scatter_?|t|transpose|permute)$",
                  "features": r"\bsame_dtype\b"},
         "layout copies: aten::clone/contiguous/cat with one dtype ('direct_copy_kernel_cuda', "
         "'CatArrayBatchedCopy'); a dtype-changing copy is elementwise"),
    Rule("copy", {"kernel": r"^triton_\w*?_fused_(clone|cat|permute|transpose|copy_|"
                            r"constant_pad_nd|index|slice_scatter)(_\d+)?$"},
         "Inductor pure layout kernels: 'triton_poi_fused_clone_3', 'triton_poi_fused_cat_8'"),
    Rule("copy", {"kernel": r"CatArrayBatchedCopy|direct_copy_kernel|memcpy|transpose",
                  "features": r"^(?!.*\bdtype_change\b)"},
         "eager layout kernels ('direct_copy_kernel_cuda') unless the op changes the dtype"),
    Rule("reduction", {"kernel": r"^triton_(red|per)_"},
         "Inductor reductions: 'triton_red_fused_sum_0', 'triton_per_fused_softmax_1' (softmax "
         "is a row reduction here, not a norm)"),
    Rule("reduction", {"kernel": r"reduce_kernel|softmax|reduction|cub::|argmax|topk|cumsum|"
                                 r"scan_kernel"},
         "eager 'void at::native::reduce_kernel<512, 1, at::native::ReduceOp<...MaxOps...>>'"),
    Rule("reduction", {"op": r"^aten::(sum|mean|max|min|amax|amin|argmax|argmin|norm|"
                             r"linalg_vector_norm|var|std|var_mean|prod|cumsum|_softmax|softmax|"
                             r"_log_softmax|logsumexp|topk|sort)$"},
         "anything a reducing aten op launches"),
    Rule("elementwise", {"kernel": r"^triton_poi_|^triton_"},
         "Inductor pointwise 'triton_poi_fused_add_mul_0'"),
    Rule("elementwise", {"kernel": r"elementwise|vectorized|unrolled|FillFunctor|"
                                   r"distribution_|pointwise"},
         "eager 'void at::native::vectorized_elementwise_kernel<4, ...MulFunctor...>'"),
    Rule("elementwise", {"op": r"^aten::"},
         "any other aten op's kernel: a dtype-changing copy, mul, add, ..."),
)

XLA_RULES: tuple[Rule, ...] = (
    Rule("copy", {"kernel": _MEMCPY},
         "device events 'MemcpyH2D', 'MemcpyD2D', 'Memset' (args memcpy_details/memset_details)"),
    Rule("attention", {"kernel": _ATTENTION_KERNEL},
         "cuDNN 'cudnn_generated_fort_native_sdpa_sm90_knob_...', flash kernels"),
    Rule("attention", {"op": r"fmha|flash|attention"},
         "custom-call '__cudnn$fmhaSoftmax' instructions"),
    Rule("conv", {"op": r"conv(?!ert)"},
         "'cudnn-conv.1', 'convolution.3' (XLA calls cuDNN for convolutions); not "
         "'loop_convert_fusion'"),
    Rule("conv", {"hlo": r"custom_call_target=\"__cudnn\$conv|\bconvolution\("},
         "an HLO dump shows the instruction is a cuDNN convolution"),
    Rule("conv", {"kernel": _CONV_KERNEL},
         "cuDNN 'sm90_xmma_fprop_implicit_gemm_...' without an hlo_op"),
    Rule("elementwise", {"hlo": r"^\s*(ROOT\s+)?%gemm_fusion[\w.]* = [^\n]*\bkind=kLoop\b"},
         "XLA names the epilogue of a cuBLAS call after its dot ('gemm_fusion_dot_general.5' = "
         "fusion(cublas-gemm.0, ...), kind=kLoop: the f32 result times the scales, cast to bf16; "
         "H100 fp8 fwd+bwd dump), but a kLoop fusion is elementwise, not a GEMM; also when it is "
         "the entry's ROOT (H200 fp8 forward: 'ROOT %gemm_fusion_dot_general.1 = bf16[2048,8192]"
         "{1,0} fusion(...), kind=kLoop')"),
    Rule("gemm", {"op": r"gemm|cublas|matmul|^dot|triton_gemm|__cublas"},
         "'gemm_fusion_dot.2' (Triton GEMM), 'cublas-gemm.1', 'cublas-lt-matmul.3'"),
    Rule("gemm", {"hlo": r"custom_call_target=\"__cublas|\bdot\("},
         "HLO dump: custom-call '__cublas$lt$matmul$f8' / '__cublas$gemm', fusions with a dot"),
    Rule("gemm", {"kernel": _GEMM_KERNEL},
         "cuBLAS 'sm90_xmma_gemm_e4m3bf16_e4m3f32...', 'nvjet_qqtst_...', Triton "
         "'gemm_fusion_dot_1_impl', 'triton_gemm_dot_1'"),
    Rule("fp8_cast", {"hlo": r"\bf8e\d"},
         "HLO dump: the fusion produces or reads an f8e4m3fn/f8e5m2 value (quantise, transpose "
         "+ quantise)"),
    Rule("fp8_cast", {"hlo": r"(?s)(?=.*\babs\().*\breduce\("},
         "HLO dump: abs feeding a reduce (amax of the tensorwise scale)"),
    Rule("fp8_cast", {"features": r"\bfp8_operand\b"},
         "operand dtypes from the HLO dump include fp8"),
    Rule("fp8_cast", {"hlo": r"(?s)(?=.*\breduce\().*\bmaximum\(", "features": r"\bfp8_trace\b"},
         "the second stage of a two-stage amax ('input_reduce_fusion.3': bf16[2048] -> bf16[] "
         "max) in a module with fp8 values, as eager's aten::max in an fp8 trace"),
    Rule("fp8_cast", {"features": r"(?=.*\bfp8_trace\b).*\bscalar_output\b"},
         "scale arithmetic on 0-dim values ('loop_divide_fusion': 448 / max(amax, 1e-12), "
         "'fusion.20': the product of two scales) in a module with fp8 values"),
    Rule("fp8_cast", {"scope": r"float8|f8e[45]m|amax"},
         "no dump, but XLA's op_name metadata names an fp8 convert: "
         "'jit(step)/convert_element_type[new_dtype=float8_e4m3fn weak_type=False]'"),
    Rule("norm", {"kernel": _NORM},
         "'cudnn_norm', fusions named after a layer norm"),
    Rule("norm", {"op": _NORM}, "hlo_op 'layer_norm_fusion'"),
    Rule("copy", {"op": r"transpose|^copy|concatenate|dynamic.update.slice|^slice|bitcast|"
                        r"^pad|^gather|^scatter"},
         "'loop_transpose_fusion', 'wrapped_transpose', 'copy.3', 'input_concatenate_fusion'"),
    Rule("copy", {"kernel": r"transpose|^copy|concatenate|dynamic_update_slice"},
         "kernel names of the same when hlo_op is missing (command buffers)"),
    Rule("reduction", {"op": r"reduce|reduction|scatter|sort|topk|argmax"},
         "'input_reduce_fusion', 'loop_reduce_fusion.1', 'reduce-window'"),
    Rule("reduction", {"kernel": r"reduce|reduction|sort|topk|softmax"},
         "kernel 'input_reduce_fusion_1', 'row_reduction', 'triton_softmax_333' (a row "
         "reduction, as Inductor's softmax)"),
    Rule("elementwise", {"op": r"fusion|convert|multiply|add|subtract|divide|exp|select|"
                               r"broadcast|maximum|minimum|clamp|negate|abs|iota"},
         "'loop_convert_fusion.1', 'loop_multiply_fusion', 'wrapped_convert'"),
    Rule("elementwise", {"kernel": r"fusion|loop_|wrapped_|convert"},
         "kernel 'loop_multiply_fusion_2' when hlo_op is missing"),
)

RULES: dict[str, tuple[Rule, ...]] = {"kineto": KINETO_RULES, "perfetto": XLA_RULES}

# The category of the PyTorch op a kernel comes from (`op`: Kineto's outermost aten op around
# the launch, XLA's op_name path such as "scaled_dot_product_attention/aten::bmm"), searched
# anywhere in the path, first match wins. What matches none keeps the kernel's own category:
# fp8 casts, elementwise and copies are told apart by the kernel and its dtypes, not the op.
_OP = r"(^|/)(aten::)?"
_END_OP = r"($|[./])"
OP_RULES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (category, re.compile(pattern), why) for category, pattern, why in (
        ("attention", r"scaled_dot_product|flash_attention|efficient_attention|"
                      r"cudnn_attention|flex_attention|multi_head_attention|(^|/)attention",
         "aten::scaled_dot_product_attention on Inductor; XLA's 'scaled_dot_product_attention/"
         "aten::bmm' dots, '.../aten::_softmax' and the KV-cache transposes feeding them"),
        ("conv", _OP + r"(_?convolution\w*|conv\d?d|conv_transpose\d?d|cudnn_convolution\w*|"
                 r"_slow_conv\w*)" + _END_OP,
         "aten::conv2d / aten::convolution and their backward"),
        ("norm", r"(layer|rms|batch|group|instance)_norm|native_norm",
         "aten::layer_norm, aten::rms_norm (a hand-written norm is its parts: mul, mean, rsqrt)"),
        ("gemm", _OP + r"(mm|addmm|bmm|baddbmm|_scaled_mm|_scaled_grouped_mm|_grouped_mm|"
                 r"matmul|linear|addmv|mv|dot|_int_mm|einsum)" + _END_OP,
         "aten::linear, aten::_scaled_mm (its cuBLASLt epilogue on XLA too: a kLoop fusion XLA "
         "names 'gemm_fusion_dot_general.N' is elementwise by kernel, gemm by op)"),
    ))


@lru_cache(maxsize=None)
def op_category(op: str, category: str) -> str:
    """The category of the source op `op`; the kernel's `category` when no op rule says."""
    for name, pattern, _ in OP_RULES:
        if op and pattern.search(op):
            return name
    return category


def classify(record: dict[str, str], source: str) -> str:
    """Category of one kernel record under `source`'s rules; `other` when none matches."""
    for rule in RULES[source]:
        if rule.matches(record):
            return rule.category
    return "other"


@lru_cache(maxsize=None)
def classify_cached(source: str, kernel: str, op: str = "", dtypes: str = "",
                    features: str = "", hlo: str = "", scope: str = "") -> str:
    """`classify` for hashable inputs: a trace repeats the same few hundred kernels."""
    return classify({"kernel": kernel, "op": op, "dtypes": dtypes, "features": features,
                     "hlo": hlo, "scope": scope}, source)


def explain(record: dict[str, str], source: str) -> Rule | None:
    """The rule that decides `record` (None: `other`); for debugging a surprising category."""
    for rule in RULES[source]:
        if rule.matches(record):
            return rule
    return None
