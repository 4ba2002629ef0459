"""Float8 training linear with dynamic tensorwise scaling, as torchao's Float8Linear does it
(`recipe=tensorwise`, written out here), or torchao's own Float8Linear (`recipe=torchao`).

Seeds 000/001 show the program Inductor sees: per tensor, amax = max|t| in float64 clamped at
1e-12, scale = finfo(fp8).max / amax as float32, t_fp8 = clamp(t * scale) cast to fp8; then
`_scaled_mm` with the reciprocal scales and a bf16 output. e4m3 for x and w, e5m2 for the
gradient. `_scaled_mm` wants its first operand row-major and its second column-major, hence
the transposed copies in the backward (the `clone` of a `permute` in seed 000's graphs).
"""
from __future__ import annotations

from typing import Any

import torch

from harness.errors import ConfigError, Unsupported
from harness.params import resolve
from harness.worker.workload import Workload, fp8_supported, torch_dtype
from workloads.fp8_linear import DEFAULT_PRESET, FP8_RECIPES, PRESETS, validate

# fp8 is lossy: e4m3 keeps 3 mantissa bits, e5m2 2. These fail a broken scale or layout
# (tests show those land far below) while passing the recipe's own rounding.
DEFAULT_MIN_SQNR_DB = {("tensorwise", "fwd"): 25.0, ("tensorwise", "fwd_bwd"): 18.0,
                       ("torchao", "fwd"): 25.0, ("torchao", "fwd_bwd"): 18.0,
                       ("bf16", "fwd"): 40.0, ("bf16", "fwd_bwd"): 40.0}

E4M3, E5M2 = torch.float8_e4m3fn, torch.float8_e5m2


def tensorwise_scale(t: torch.Tensor, fp8_dtype: torch.dtype) -> torch.Tensor:
    amax = t.abs().max().to(torch.float64).clamp(min=1e-12)
    return (torch.finfo(fp8_dtype).max / amax).to(torch.float32)


def to_fp8(t: torch.Tensor, fp8_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    scale = tensorwise_scale(t, fp8_dtype)
    fmax = torch.finfo(fp8_dtype).max
    return (t.to(torch.float32) * scale).clamp(-fmax, fmax).to(fp8_dtype), scale


def scaled_mm(a: torch.Tensor, a_dtype: torch.dtype, b: torch.Tensor, b_dtype: torch.dtype,
              out_dtype: torch.dtype, fast_accum: bool = False) -> torch.Tensor:
    """a @ b in fp8. a is made row-major and b column-major, as `_scaled_mm` requires."""
    a8, sa = to_fp8(a, a_dtype)
    b8, sb = to_fp8(b, b_dtype)
    a8 = a8 if a8.is_contiguous() else a8.contiguous()
    b8 = b8 if b8.t().is_contiguous() else b8.t().contiguous().t()
    return torch._scaled_mm(a8, b8, scale_a=sa.reciprocal(), scale_b=sb.reciprocal(),
                            out_dtype=out_dtype, use_fast_accum=fast_accum)


class _Float8Matmul(torch.autograd.Function):
    """y = x @ w.T with all three matmuls of training in fp8 (forward, grad_x, grad_w)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return scaled_mm(x, E4M3, w.t(), E4M3, x.dtype, fast_accum=True)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, w = ctx.saved_tensors
        grad_x = scaled_mm(g, E5M2, w, E4M3, g.dtype)           # [M,N] @ [N,K]
        grad_w = scaled_mm(g.t(), E5M2, x, E4M3, g.dtype)       # [N,M] @ [M,K]
        return grad_x, grad_w


class Float8Linear(torch.nn.Module):
    def __init__(self, weight: torch.Tensor, recipe: str):
        super().__init__()
        self.weight = torch.nn.Parameter(weight)
        self.recipe = recipe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.recipe == "bf16":
            return torch.nn.functional.linear(x, self.weight)
        return _Float8Matmul.apply(x, self.weight)


def torchao_linear(weight: torch.Tensor) -> torch.nn.Module:
    """The same linear as torchao's users build it: an `nn.Linear` swapped for torchao's own
    Float8Linear by `convert_to_float8_training`, with its tensorwise recipe (dynamic scaling,
    e4m3 for x and w, e5m2 for the gradient, fast accumulation in the forward GEMM only: the
    recipe `Float8Linear` above copies by hand). Unsupported (the run is skipped) without torchao."""
    try:
        from torchao.float8 import Float8LinearConfig, convert_to_float8_training
    except Exception as e:      # missing, or built for another torch (it fails in many ways then)
        raise Unsupported(f"workload.recipe=torchao needs torchao for this torch (pip install torchao, or the "
                          f"harness[torchao] extra): {type(e).__name__}: {e}") from None
    n, k = weight.shape
    # built on the meta device: its own weight, replaced at once, is never allocated nor initialised
    linear = torch.nn.Linear(k, n, bias=False, device="meta", dtype=weight.dtype)
    linear.weight = torch.nn.Parameter(weight)
    return convert_to_float8_training(torch.nn.Sequential(linear),
                                      config=Float8LinearConfig.from_recipe_name("tensorwise"))


def forward(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module(x)


def build(cfg: dict[str, Any], device: torch.device) -> Workload:
    p = resolve(cfg, PRESETS, device.type, DEFAULT_PRESET, validate)
    dtype = torch_dtype(p["dtype"])
    if p["recipe"] in FP8_RECIPES and not fp8_supported(device):
        cap = ".".join(map(str, torch.cuda.get_device_capability(device)))
        raise ConfigError("workload.recipe", f"{p['recipe']} fp8 needs compute capability >= 8.9, "
                          f"this GPU has {cap}; use workload.recipe=bf16")
    M, K, N = p["M"], p["K"], p["N"]
    train = p["mode"] == "fwd_bwd"
    x = torch.randn(M, K, device=device, dtype=dtype, requires_grad=train)
    w = torch.randn(N, K, device=device, dtype=dtype) / K ** 0.5
    g = torch.randn(M, N, device=device, dtype=dtype) if train else None
    module = torchao_linear(w) if p["recipe"] == "torchao" else Float8Linear(w, p["recipe"]).to(device)
    for weight in module.parameters():
        weight.requires_grad_(train)

    def reference() -> list[tuple[torch.Tensor, ...]]:
        xf, wf = x.detach().cpu().float(), w.detach().cpu().float()
        y = xf @ wf.t()
        if not train:
            return [(y,)]
        gf = g.cpu().float()
        return [(y, gf @ wf, gf.t() @ xf)]

    elem = torch.finfo(dtype).bits // 8
    fwd_bytes = (M * K + N * K + M * N) * elem
    threshold = p["min_sqnr_db"] if p["min_sqnr_db"] is not None else DEFAULT_MIN_SQNR_DB[(p["recipe"], p["mode"])]
    # torch's CPU `_scaled_mm` is `_scaled_mm_out_cpu_emulated` (torch 2.13): both fp8 operands
    # upcast and multiplied in float. Measured at 64x128x256 on one thread of the 2-core helper
    # machine: 0.215 ms a call against 0.032 ms for the same matmul in bf16.
    emulated = ("fp8 _scaled_mm is emulated on the CPU (torch upcasts the fp8 operands and "
                "multiplies in float, _scaled_mm_out_cpu_emulated): the time is the emulation's, "
                "not an fp8 GEMM's; on the CPU use "
                "workload.recipe=bf16, or run on a GPU with fp8 (compute capability >= 8.9)"
                if p["recipe"] in FP8_RECIPES and device.type == "cpu" else "")
    return Workload(
        name="fp8_linear", params=p, module=module, inputs=(x,), forward=forward,
        flops=2.0 * M * N * K * (3 if train else 1),
        # fwd+bwd: also read g once and write grad_x and grad_w once
        min_bytes=float(fwd_bytes + ((M * N + M * K + N * K) * elem if train else 0)),
        reference=reference, min_sqnr_db=threshold, mode=p["mode"],
        grad_outputs=(g,) if train else None,
        output_names=("y", "grad_x", "grad_w") if train else ("y",),
        shape=f"M={M} K={K} N={N} ({p['dtype']} x[{M},{K}] @ w[{N},{K}]^T)", emulated=emulated,
    )
