"""What a Kineto op costs: FLOPs and bytes from the shapes `record_shapes` wrote.

    {"cat": "cpu_op", "name": "aten::_scaled_mm", "args": {"Input Dims": [[2048, 4096],
     [4096, 8192], [], []], "Input type": ["c10::Float8_e4m3fn", "c10::Float8_e4m3fn", "float",
     "float"], "Concrete Inputs": ["", "", "", "", "", "15", "False"], ...}}

FLOPs are torch.utils.flop_counter's formulas for the ops that have one worth counting (the
matmul family, convolutions and their backward, the SDPA variants), written out here: torch
is not imported, because importing it costs seconds and the trace CLI needs none of it
(tests check that every formula equals flop_counter's on the same shapes). Bytes are the
tensor operands read plus the matmul result written. An op without a formula has NaN FLOPs:
unknown is not zero.
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable

import pandas as pd

from harness.collect.devices import peak_dtype
from harness.collect.trace_io import OpCost

Shape = list[int]

# Kineto `Input type` spellings -> bytes per element. Anything else ("Scalar", "ScalarList",
# "TensorList", "") is not a tensor operand we can size.
ITEMSIZE = {
    "float": 4, "double": 8, "c10::Half": 2, "c10::BFloat16": 2, "c10::Float8_e4m3fn": 1,
    "c10::Float8_e5m2": 1, "c10::Float8_e4m3fnuz": 1, "c10::Float8_e5m2fnuz": 1,
    "c10::Float8_e8m0fnu": 1, "c10::Float4_e2m1fn_x2": 1, "long int": 8, "int": 4,
    "short int": 2, "signed char": 1, "unsigned char": 1, "bool": 1,
    "c10::complex<float>": 8, "c10::complex<double>": 16,
}
# c10::ScalarType codes as `Concrete Inputs` prints an `out_dtype` argument ("15" = bfloat16).
_SCALAR_TYPE_ITEMSIZE = {0: 1, 1: 1, 2: 2, 3: 4, 4: 8, 5: 2, 6: 4, 7: 8, 11: 1, 15: 2, 23: 1,
                         24: 1, 25: 1, 26: 1, 44: 1}


# ---------------------------------------------------------- flop_counter's formulas, torch-free

def mm_flops(a: Shape, b: Shape) -> int:
    (m, k), (k2, n) = a, b
    if k != k2:
        raise ValueError(f"mm: inner dimensions {k} and {k2} differ")
    return 2 * m * n * k


def bmm_flops(a: Shape, b: Shape) -> int:
    (batch, m, k), (batch2, k2, n) = a, b
    if batch != batch2 or k != k2:
        raise ValueError(f"bmm: shapes {a} and {b} do not match")
    return 2 * batch * m * n * k


def conv_flops(x: Shape, w: Shape, out: Shape, transposed: bool) -> int:
    """Multiply-adds of a convolution (bias ignored), as flop_counter.conv_flop_count."""
    spatial = (x if transposed else out)[2:]
    c_out, c_in, *window = w
    return 2 * math.prod(spatial) * math.prod(window) * x[0] * c_out * c_in


def conv_backward_flops(grad_out: Shape, x: Shape, w: Shape, transposed: bool,
                        mask: list[bool]) -> int:
    """grad_input (a transposed conv of grad_out) and grad_weight (a conv of x by grad_out)."""
    def t(shape: Shape) -> Shape:
        return [shape[1], shape[0]] + list(shape[2:])
    flops = conv_flops(grad_out, w, x, not transposed) if mask[0] else 0
    if mask[1]:
        flops += conv_flops(t(grad_out), t(x), t(w), False) if transposed \
            else conv_flops(t(x), t(grad_out), t(w), False)
    return flops


def _check_sdpa(q: Shape, k: Shape, v: Shape) -> None:
    (b, h_q, _, d_q), (b2, h_kv, s_k, d_k), (b3, h_v, s_v, _) = q, k, v
    if not (b == b2 == b3 and h_kv == h_v and d_q == d_k and s_k == s_v) or h_q % h_kv:
        raise ValueError(f"sdpa: query {q}, key {k}, value {v} do not match")


def sdpa_flops(q: Shape, k: Shape, v: Shape) -> int:
    """q @ k^T and p @ v over (batch, heads, seq, dim); grouped KV heads broadcast."""
    _check_sdpa(q, k, v)
    (b, h, s_q, d_q), (_, _, s_k, _), (_, _, _, d_v) = q, k, v
    return 2 * b * h * s_q * s_k * (d_q + d_v)


def sdpa_backward_flops(grad_out: Shape, q: Shape, k: Shape, v: Shape) -> int:
    """Four matmuls of the forward's size (dV, dP, dQ, dK) plus recomputing q @ k^T."""
    _check_sdpa(q, k, v)
    (b, h, s_q, d_q), (_, _, s_k, _), (_, _, _, d_v) = q, k, v
    if list(grad_out) != [b, h, s_q, d_v]:
        raise ValueError(f"sdpa backward: grad_out {grad_out} does not match query {q}")
    return 2 * b * h * s_q * s_k * (3 * d_q + 2 * d_v)


def _int_list(text: str) -> list[int]:
    return [int(t) for t in re.findall(r"-?\d+", text or "")]


# Convolutions: where stride/padding/dilation/transposed sit among the recorded inputs, to
# compute the output shape (profile_analysis ignored padding: wrong for every padded conv).
# cudnn_convolution has no `transposed` and a different order.
_CONV_ARGS = {
    "aten::convolution": (3, 4, 5, 6), "aten::_convolution": (3, 4, 5, 6),
    "aten::convolution_overrideable": (3, 4, 5, 6), "aten::cudnn_convolution": (3, 2, 4, None),
    "aten::_slow_conv2d_forward": (4, 5, None, None),
}


def _conv(name: str, dims: list, concrete: list) -> int:
    s_i, p_i, d_i, t_i = _CONV_ARGS[name]
    x, w = dims[0], dims[1]
    n = len(x) - 2
    stride = _int_list(concrete[s_i]) if s_i is not None else [1] * n
    pad = _int_list(concrete[p_i]) if p_i is not None else [0] * n
    dil = _int_list(concrete[d_i]) if d_i is not None else [1] * n
    stride, pad, dil = ([v[0]] * n if len(v) == 1 else v for v in (stride, pad, dil))
    out = [x[0], w[0]] + [(x[i + 2] + 2 * pad[i] - dil[i] * (w[i + 2] - 1) - 1) // stride[i] + 1
                          for i in range(n)]
    return conv_flops(x, w, out, t_i is not None and concrete[t_i] == "True")


def _conv_backward(dims: list, concrete: list) -> int:
    mask = [m == "True" for m in re.findall(r"True|False", concrete[10])]
    return conv_backward_flops(dims[0], dims[1], dims[2], concrete[7] == "True", mask)


_SDPA = ("flash", "efficient", "cudnn")
# aten op as Kineto names it -> FLOPs from (Input Dims, Concrete Inputs)
FORMULAS: dict[str, Callable[[list, list], int]] = {
    "aten::mm": lambda d, c: mm_flops(d[0], d[1]),
    "aten::addmm": lambda d, c: mm_flops(d[1], d[2]),
    "aten::_scaled_mm": lambda d, c: mm_flops(d[0], d[1]),
    "aten::bmm": lambda d, c: bmm_flops(d[0], d[1]),
    "aten::baddbmm": lambda d, c: bmm_flops(d[1], d[2]),
    **{f"aten::_scaled_dot_product_{k}_attention": (lambda d, c: sdpa_flops(d[0], d[1], d[2]))
       for k in _SDPA},
    **{f"aten::_scaled_dot_product_{k}_attention_backward":
       (lambda d, c: sdpa_backward_flops(d[0], d[1], d[2], d[3])) for k in _SDPA},
    **{name: (lambda d, c, name=name: _conv(name, d, c)) for name in _CONV_ARGS},
    "aten::convolution_backward": _conv_backward,
}

# Output shapes of the matmul family, to count the result's write in `bytes`, and how many
# leading inputs are operands: a tensor of the output's shape after them is an `out=` buffer
# (Inductor calls `extern_kernels._scaled_mm(..., out=buf9)`), already counted as an input.
_MM_OUT = {
    "aten::mm": (2, lambda d: [d[0][0], d[1][-1]]),
    "aten::_scaled_mm": (2, lambda d: [d[0][0], d[1][-1]]),
    "aten::addmm": (3, lambda d: [d[1][0], d[2][-1]]),
    "aten::bmm": (2, lambda d: [d[0][0], d[0][1], d[1][-1]]),
    "aten::baddbmm": (3, lambda d: [d[1][0], d[1][1], d[2][-1]]),
}


def op_flops(name: str, dims: list, concrete: list) -> float:
    formula = FORMULAS.get(name)
    if formula is None:
        return math.nan
    try:
        return float(formula(dims, concrete))
    except (IndexError, ValueError, TypeError, ZeroDivisionError):
        return math.nan  # a recorded shape the formula does not accept: unknown, not zero


def _features(tensors: list[tuple[list, str]]) -> str:
    features = ["fp8_operand"] if any("Float8" in t for _, t in tensors) else []
    if any(d == [] for d, _ in tensors):
        features.append("scalar_operand")
    if tensors:
        features.append("same_dtype" if len({t for _, t in tensors}) == 1 else "dtype_change")
    return " ".join(features)


def _result_bytes(name: str, dims: list, concrete: list, tensors: list) -> float:
    """The matmul result's write, unless an `out=` buffer of its shape is already an input."""
    operands, out_shape = _MM_OUT[name]
    try:
        out_dims = out_shape(dims)
        if any(d == out_dims for d in dims[operands:]):
            return 0.0
        code = concrete[6] if name == "aten::_scaled_mm" and len(concrete) > 6 else ""
        item = _SCALAR_TYPE_ITEMSIZE.get(int(code), 2) if code.isdigit() \
            else ITEMSIZE[tensors[0][1]]
        return float(math.prod(out_dims) * item)
    except (IndexError, TypeError):
        return 0.0


def op_cost(name: str, args: dict) -> OpCost:
    dims = args.get("Input Dims") or []
    types = args.get("Input type") or []
    concrete = args.get("Concrete Inputs") or []
    tensors = [(d, t) for d, t in zip(dims, types) if t in ITEMSIZE and isinstance(d, list)]
    nbytes = float(sum(math.prod(d) * ITEMSIZE[t] for d, t in tensors)) if tensors else math.nan
    if name in _MM_OUT and tensors:
        nbytes += _result_bytes(name, dims, concrete, tensors)
    gb = args.get("kernel_num_gb")  # Inductor's own estimate, when it was asked to record one
    if gb:
        nbytes = float(gb) * 1e9
    flops = float(args["kernel_flop"]) if args.get("kernel_flop") else op_flops(name, dims,
                                                                                 concrete)
    return OpCost(flops=flops, bytes=nbytes, dtypes=" ".join(t for _, t in tensors),
                  features=_features(tensors),
                  peak_dtype=peak_dtype(tensors[0][1]) if tensors else None)


def kineto_costs(launches: pd.DataFrame,
                 ops: tuple[dict[Any, Any], dict[Any, dict]]) -> pd.DataFrame:
    """Each launch's op (by External id): name, dtypes, features, FLOPs and bytes."""
    keys, unique = ops
    by_key = {k: (e.get("name", ""), op_cost(e.get("name", ""), e.get("args") or {}))
              for k, e in unique.items()}
    per_instance = {x: by_key[k] for x, k in keys.items()}
    fp8_trace = any("fp8_operand" in c.features for _, c in by_key.values())
    empty = ("", OpCost())
    info = [per_instance.get(x, empty) for x in launches["instance"].tolist()]
    out = launches.copy()
    out["op"] = [n for n, _ in info]
    out["hlo"] = ""
    return with_costs(out, [c for _, c in info], fp8_trace)


def with_costs(out: pd.DataFrame, costs: list[OpCost], fp8_trace: bool) -> pd.DataFrame:
    """The cost columns both readers add (`fp8_trace`: some op of the trace touches fp8)."""
    out["dtypes"] = [c.dtypes for c in costs]
    out["features"] = [(c.features + (" fp8_trace" if fp8_trace else "")).strip() for c in costs]
    out["peak_dtype"] = [c.peak_dtype for c in costs]
    out["op_flops"] = [c.flops for c in costs]
    out["op_bytes"] = [c.bytes for c in costs]
    return out
