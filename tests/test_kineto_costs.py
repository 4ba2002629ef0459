"""Kineto op costs without torch: the FLOP formulas equal torch.utils.flop_counter's on the
same shapes (the convolution output shapes checked against torch's own meta kernels), and
the trace CLI never imports torch (importing it cost 6.4 s of an 8.3 s run)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import flop_registry

from conftest import FIXTURES, REPO
from harness.collect import kineto_costs as kc

aten = torch.ops.aten
MM_SHAPES = [(2048, 4096, 8192), (1, 7, 3), (16, 1024, 128), (128, 2048, 2)]


@pytest.mark.parametrize("m,k,n", MM_SHAPES)
def test_matmul_family_equals_flop_counter(m, k, n):
    b = 12
    cases = [
        ("aten::mm", [[m, k], [k, n]], aten.mm, ([m, k], [k, n])),
        ("aten::addmm", [[n], [m, k], [k, n]], aten.addmm, ([n], [m, k], [k, n])),
        ("aten::_scaled_mm", [[m, k], [k, n], [], []], aten._scaled_mm, ([m, k], [k, n], [], [])),
        ("aten::bmm", [[b, m, k], [b, k, n]], aten.bmm, ([b, m, k], [b, k, n])),
        ("aten::baddbmm", [[b, m, n], [b, m, k], [b, k, n]], aten.baddbmm,
         ([b, m, n], [b, m, k], [b, k, n])),
    ]
    for name, dims, op, shapes in cases:
        assert kc.op_flops(name, dims, [""] * len(dims)) == flop_registry[op](*shapes), name


@pytest.mark.parametrize("q,k", [((4, 16, 2048, 128), (4, 16, 2048, 128)),
                                 ((16, 16, 1, 128), (16, 8, 4096, 128)),     # GQA decode
                                 ((2, 8, 77, 64), (2, 2, 300, 64))])
def test_sdpa_forward_and_backward_equal_flop_counter(q, k):
    v = k
    for kind in ("flash", "efficient", "cudnn"):
        fwd = getattr(aten, f"_scaled_dot_product_{kind}_attention")
        bwd = getattr(aten, f"_scaled_dot_product_{kind}_attention_backward")
        assert kc.op_flops(f"aten::_scaled_dot_product_{kind}_attention", [list(q), list(k),
                           list(v)], []) == flop_registry[fwd](q, k, v)
        assert kc.op_flops(f"aten::_scaled_dot_product_{kind}_attention_backward",
                           [list(q), list(q), list(k), list(v)], []) \
            == flop_registry[bwd](q, q, k, v)


def conv_case(x, w, stride, padding, dilation, transposed=False):
    """Kineto's recorded inputs of aten::convolution and torch's formula on the real output."""
    meta = torch.empty(x, device="meta"), torch.empty(w, device="meta")
    conv = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[len(x)]
    out = list(conv(*meta, stride=stride, padding=padding, dilation=dilation).shape)
    concrete = ["", "", "", str(list(stride)), str(list(padding)), str(list(dilation)),
                str(transposed), "[0]", "1"]
    expected = flop_registry[aten.convolution](x, w, None, stride, padding, dilation, transposed,
                                               out_val=out)
    return [list(x), list(w), []], concrete, expected, out


@pytest.mark.parametrize("x,w,stride,padding,dilation", [
    ((8, 64, 56, 56), (128, 64, 3, 3), (1, 1), (1, 1), (1, 1)),
    ((8, 64, 56, 56), (128, 64, 3, 3), (2, 2), (0, 0), (1, 1)),
    ((2, 16, 31, 17), (32, 16, 5, 3), (2, 1), (2, 1), (2, 3)),
    ((4, 8, 100), (16, 8, 7), (3,), (3,), (1,)),
    ((1, 4, 9, 10, 11), (8, 4, 3, 3, 3), (1, 2, 1), (1, 1, 0), (1, 1, 2)),
])
def test_convolution_and_its_backward_equal_flop_counter(x, w, stride, padding, dilation):
    dims, concrete, expected, out = conv_case(x, w, stride, padding, dilation)
    for name in ("aten::convolution", "aten::_convolution", "aten::convolution_overrideable"):
        assert kc.op_flops(name, dims, concrete) == expected, name
    # cudnn_convolution records (input, weight, padding, stride, dilation, ...)
    cudnn = ["", "", str(list(padding)), str(list(stride)), str(list(dilation)), "1"]
    assert kc.op_flops("aten::cudnn_convolution", [list(x), list(w)], cudnn) == expected
    for mask in ([True, True, False], [True, False, False], [False, True, True]):
        concrete = ["", "", "", "[0]", str(list(stride)), str(list(padding)),
                    str(list(dilation)), "False", "[0]", "1", str(mask)]
        expected = flop_registry[aten.convolution_backward](
            out, x, w, None, stride, padding, dilation, False, None, 1, mask,
            out_val=[x, w, None])
        assert kc.op_flops("aten::convolution_backward", [out, list(x), list(w)],
                           concrete) == expected, mask


def test_transposed_convolution_equals_flop_counter():
    x, w, out = [2, 16, 10, 10], [16, 8, 3, 3], [2, 8, 21, 21]
    expected = flop_registry[aten.convolution](x, w, None, [2, 2], [0, 0], [1, 1], True,
                                               out_val=out)
    assert kc.conv_flops(x, w, out, transposed=True) == expected
    mask = [True, True, False]
    assert kc.conv_backward_flops(out, x, w, True, mask) == flop_registry[
        aten.convolution_backward](out, x, w, None, None, None, None, True, None, None, mask,
                                   out_val=[x, w, None])


def test_shapes_a_formula_does_not_accept_are_unknown_not_zero():
    assert kc.op_flops("aten::mm", [[4, 5], [6, 7]], []) != kc.op_flops("aten::mm", [[4, 5],
                                                                                     [5, 7]], [])
    for dims in ([[4, 5], [6, 7]], [[4, 5]], [], [[4], [4, 5]]):
        value = kc.op_flops("aten::mm", dims, [])
        assert value != value, dims           # NaN
    assert kc.op_flops("aten::relu", [[8]], []) != kc.op_flops("aten::relu", [[8]], [])


def test_the_trace_cli_never_imports_torch():
    program = ("import sys; from harness.kernels import main; "
               f"main([{str(FIXTURES / 'traces/h100_fp8_linear_fwd_bwd_eager.trace.json.gz')!r}]); "
               "assert 'torch' not in sys.modules, 'torch was imported'")
    proc = subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Summary of time (ms) by kernel category" in proc.stdout
