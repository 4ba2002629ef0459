"""Every private torchax / JAX API the XLA backend touches, in one place.

Checked on torchax 0.0.14.dev20261026 with jax 0.10.2 (CPU, this repository's CI) and
jax 0.11.2 (GPU machine, CUDA 13). When one of these moves, this is the file to fix.
"""
from __future__ import annotations

from typing import Any, Callable


def register_op(env, key: Any, func: Callable[..., Any]) -> None:
    """Put a JAX lowering of an aten op (an OpOverload or OpOverloadPacket) into torchax's op
    table, replacing torchax's own where it has one. `Environment._ops` maps the key to an
    `Operator`; the dispatcher looks up the overload, then its packet. `is_jax_function=True`:
    torchax unwraps the arguments to jax arrays and wraps the result back."""
    from torchax.ops.ops_registry import Operator
    env._ops[key] = Operator(key, func, is_jax_function=True, is_user_defined=True,
                             needs_env=False, is_view_op=False)


def tie(jittable_module, kept: str, dropped: str) -> None:
    """Pass `dropped` as `kept` (the same tensor under two names): `JittableModule` refills its
    `_extra_dumped_weights` names from the kept one in functional_call, as it does for the
    tied parameters it finds itself."""
    jittable_module._extra_dumped_weights.setdefault(kept, []).append(dropped)


def backends_started() -> bool:
    """Has JAX initialised its backends? XLA reads XLA_FLAGS once, at that moment."""
    from jax._src import xla_bridge
    probe = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(probe()) if probe else bool(getattr(xla_bridge, "_backends", {}))
