"""A `torch.autograd.Function` traced by torchax becomes a `jax.custom_vjp` of its own forward
and backward, so a hand-written backward (fp8_linear's three fp8 GEMMs) is the program XLA
runs, not JAX's derivative of the forward (through an fp8 cast and a dot with a float32
preferred type, not the Function's e5m2 backward).

torchax itself has no handling: torchax tensors do not require grad, so torch's `apply` just
runs `forward`.
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch


class _Ctx:
    """What a torch.autograd.Function's forward/backward use of `ctx`."""

    def __init__(self, needs_input_grad: tuple[bool, ...]):
        self.needs_input_grad = needs_input_grad
        self.saved_tensors: tuple = ()
        self.materialize_grads = True

    def save_for_backward(self, *tensors) -> None:
        self.saved_tensors = tensors

    def mark_non_differentiable(self, *tensors) -> None:
        pass

    def mark_dirty(self, *tensors) -> None:
        pass

    def set_materialize_grads(self, value: bool) -> None:
        self.materialize_grads = value


def _custom_vjp_apply(cls, env, args: tuple):
    """`cls.apply(*args)` on torchax tensors, as a jax.custom_vjp of cls.forward / cls.backward.

    The primal and forward rule run `cls.forward` through torchax; the residuals are the saved
    tensors (and any tensor left on ctx); the backward rule runs `cls.backward` through torchax.
    Non-tensor arguments are closed over (static at trace time)."""
    import jax
    from torchax.tensor import Tensor

    args = tuple(env.v2t_iso(list(args)))
    positions = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
    primals = [args[i].jax() for i in positions]
    needs_grad = tuple(isinstance(a, Tensor) and (a.dtype.is_floating_point or a.dtype.is_complex)
                       for a in args)
    # New-style Functions: forward(*args) plus setup_context(ctx, inputs, output).
    separate_setup = cls.setup_context is not torch.autograd.Function.setup_context
    side: dict[str, Any] = {}

    def run_forward(*arrays):
        ctx = _Ctx(needs_grad)
        call = list(args)
        for i, a in zip(positions, arrays):
            call[i] = Tensor(a, env)
        with entered(env):
            if separate_setup:
                out = cls.forward(*call)
                cls.setup_context(ctx, tuple(call), out)
            else:
                out = cls.forward(ctx, *call)
        extra = {k: v for k, v in vars(ctx).items() if isinstance(v, Tensor)}
        saved = tuple(t.jax() if isinstance(t, Tensor) else t for t in ctx.saved_tensors)
        side.update(ctx=ctx, extra_names=list(extra), saved_is_tensor=[isinstance(t, Tensor) for t in ctx.saved_tensors])
        residuals = (tuple(s for s, is_t in zip(saved, side["saved_is_tensor"]) if is_t),
                     tuple(v.jax() for v in extra.values()))
        return env.t2j_iso(env.v2t_iso(out)), residuals

    def primal(*arrays):
        return run_forward(*arrays)[0]

    def bwd(residuals, cotangent):
        saved_arrays, extra_arrays = residuals
        ctx = side["ctx"]
        it = iter(saved_arrays)
        ctx.saved_tensors = tuple(Tensor(next(it), env) if is_t else t
                                  for t, is_t in zip(ctx.saved_tensors, side["saved_is_tensor"]))
        for name, arr in zip(side["extra_names"], extra_arrays):
            setattr(ctx, name, Tensor(arr, env))
        cts = cotangent if isinstance(cotangent, tuple) else (cotangent,)
        with entered(env):
            grads = cls.backward(ctx, *[Tensor(c, env) for c in cts])
        grads = grads if isinstance(grads, tuple) else (grads,)
        result = []
        for i, p in zip(positions, primals):
            g = grads[i] if i < len(grads) else None
            if g is None or not needs_grad[i]:
                result.append(None)
            else:
                result.append(g.jax().astype(p.dtype).reshape(p.shape))
        return tuple(result)

    f = jax.custom_vjp(primal)
    f.defvjp(run_forward, bwd)
    return env.j2t_iso(f(*primals))


@contextlib.contextmanager
def autograd_functions_as_custom_vjp(env):
    """While tracing, `SomeFunction.apply(...)` on torchax tensors becomes a jax.custom_vjp.

    torchax itself has no handling: torchax tensors do not require grad, so torch's apply just
    runs `forward` and JAX would differentiate the forward's ops (through an fp8 cast and a
    dot with a float32 preferred type, not the Function's e5m2 backward)."""
    from torchax.tensor import Tensor
    from torchax.view import View

    base = torch.autograd.Function
    original = base.__dict__["apply"]

    def apply(cls, *args, **kwargs):
        if kwargs or cls.backward is base.backward or not any(isinstance(a, (Tensor, View)) for a in args):
            return original.__get__(None, cls)(*args, **kwargs)
        return _custom_vjp_apply(cls, env, args)

    base.apply = classmethod(apply)
    try:
        yield
    finally:
        base.apply = original


@contextlib.contextmanager
def entered(env):
    if env.enabled:
        yield env
    else:
        with env:
            yield env


