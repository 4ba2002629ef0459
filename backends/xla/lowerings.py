"""Our JAX lowerings of aten ops that torchax lacks, registered into a torchax Environment.

torchax (0.0.13 and the 0.0.14 dev builds) has no lowering for `aten::_scaled_mm`. Written as
an fp8 `dot_general` with a float32 `preferred_element_type`, times the scales, cast to the
output dtype, XLA:GPU on Hopper rewrites it to the cuBLASLt fp8 custom call
(`__cublas$lt$matmul$f8`, measured on the H100 with jax 0.11.2); on the CPU XLA converts the
fp8 operands to f32 first and runs an f32 dot, so the numbers match but the speed does not.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import torch
from torchax.ops import mappings

from backends.xla.compat import register_op


def _jax_dtype(dtype: Any):
    return mappings.t2j_dtype(dtype) if isinstance(dtype, torch.dtype) else dtype


def _scale(s: jax.Array | None, rows: bool) -> jax.Array | float:
    """Tensorwise (a scalar or one element) or rowwise ([M, 1] for a, [1, N] for b) scales."""
    if s is None:
        return 1.0
    s = jnp.asarray(s, jnp.float32)
    if s.size == 1:
        return s.reshape(())
    return s.reshape(-1, 1) if rows else s.reshape(1, -1)


def scaled_mm(a: jax.Array, b: jax.Array, scale_a: jax.Array, scale_b: jax.Array,
              bias: jax.Array | None = None, scale_result: jax.Array | None = None,
              out_dtype: Any = None, use_fast_accum: bool = False) -> jax.Array:
    """`torch._scaled_mm`: a [M, K] fp8 @ b [K, N] fp8, accumulated in float32, times
    scale_a * scale_b (+ bias), cast to out_dtype (default: a's dtype).

    `use_fast_accum` maps to the dot's precision: XLA:GPU turns cuBLASLt's fp8 fast accumulation
    on exactly when the precision is DEFAULT (stream_executor/cuda/cuda_blas_lt.cc,
    `IsFastAccumEnabled`: f8 operands and compute_precision == 0), so HIGHEST keeps torch's
    `use_fast_accum=False` (fp8_linear's two backward GEMMs) precise. Ignored on the CPU."""
    precision = jax.lax.Precision.DEFAULT if use_fast_accum else jax.lax.Precision.HIGHEST
    out = jax.lax.dot_general(a, b, (((1,), (0,)), ((), ())), precision=precision,
                              preferred_element_type=jnp.float32)
    out = out * _scale(scale_a, rows=True) * _scale(scale_b, rows=False)
    if bias is not None:
        out = out + bias.astype(jnp.float32)
    if scale_result is not None:
        out = out * _scale(scale_result, rows=True)
    return out.astype(_jax_dtype(out_dtype) if out_dtype is not None else a.dtype)


# aten op (packet: every overload) -> JAX function taking and returning jax arrays.
LOWERINGS: dict[Any, Callable[..., Any]] = {
    torch.ops.aten._scaled_mm: scaled_mm,
}


def register(env) -> list[str]:
    """Put our lowerings into `env`'s op table, every overload of each op."""
    names = []
    for packet, func in LOWERINGS.items():
        for key in (packet, *(getattr(packet, o) for o in packet.overloads())):
            register_op(env, key, func)
        names.append(f"aten::{packet.__name__}")
    return names
