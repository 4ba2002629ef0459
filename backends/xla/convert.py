"""Tensors across the torch / JAX boundary: exact bits (bf16 and fp8 included) and layout.

A channels_last torch tensor crosses as its NHWC memory and is permuted back to NCHW inside
the program (see `is_channels_last`).
"""
from __future__ import annotations

import numpy as np
import torch

# torch dtypes numpy has no type for: they cross as their bits (ml_dtypes arrays on the JAX side)
BIT_CAST = (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2, torch.float8_e4m3fnuz, torch.float8_e5m2fnuz)
_SAME_WIDTH_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def jax_dtype(dtype: torch.dtype):
    from torchax.ops import mappings
    return mappings.t2j_dtype(dtype)


def torch_to_numpy(t: torch.Tensor) -> np.ndarray:
    """Exact: bf16 and fp8 (no numpy dtype in torch) go through their bits as ml_dtypes arrays."""
    t = t.detach().cpu().contiguous()
    if t.dtype in BIT_CAST:
        return t.view(_SAME_WIDTH_INT[t.element_size()]).numpy().view(jax_dtype(t.dtype))
    return t.numpy()


def jax_to_torch(x) -> torch.Tensor:
    import jax
    from torchax.ops import mappings
    arr = np.array(jax.device_get(x))           # a writable copy on the host
    dtype = mappings.j2t_dtype(arr.dtype)
    if arr.dtype.kind == "V" or dtype in BIT_CAST:
        return torch.from_numpy(arr.view(f"u{arr.dtype.itemsize}" if arr.dtype.itemsize == 1
                                         else f"i{arr.dtype.itemsize}")).view(dtype)
    return torch.from_numpy(arr)


def is_channels_last(t: torch.Tensor) -> bool:
    """A 4-d tensor whose memory is NHWC. It is handed to XLA as that memory (an NHWC array)
    and permuted back to NCHW inside the program: XLA's layout assignment then folds the
    permute into the convolution's layout (cuDNN's NHWC for bf16) instead of running a
    transpose of the input and the weights on every call, which Inductor, given the
    channels_last tensors themselves, does not pay."""
    return (t.dim() == 4 and not t.is_contiguous()
            and t.is_contiguous(memory_format=torch.channels_last))


def to_nchw(a):
    import jax.numpy as jnp
    return jnp.transpose(a, (0, 3, 1, 2))


def to_nhwc(a):
    import jax.numpy as jnp
    return jnp.transpose(a, (0, 2, 3, 1))
