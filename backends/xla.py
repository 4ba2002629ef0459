"""XLA through torchax: the workload's own module and inputs, traced to JAX, `jax.jit` -> XLA.

The jitted program is the functional form `step(params, buffers, state, others[, cotangents])`
of `workload.forward(module, *inputs)`:
- `state` holds the inputs the torch forward mutates in place (a KV cache). torchax applies
  in-place writes to its tensor wrappers but `JittableModule` drops them at the jit boundary,
  so the step returns them as extra outputs, the state argument is donated and the new
  arrays are carried into the next call: the cache is updated in place, not copied.
- fwd_bwd: `jax.vjp` over the functional call w.r.t. what torch differentiates (inputs with
  requires_grad, then parameters in module order), cotangents = `workload.grad_outputs`.
  A `torch.autograd.Function` is traced as a `jax.custom_vjp` of its own forward and backward
  (see `_autograd_function_as_custom_vjp`), so a hand-written backward (fp8_linear's three
  fp8 GEMMs) is the program XLA runs, not JAX's derivative of the forward.

Compile is explicit (`lower()` then `compile()`, timed apart) on the first call; the compiled
executable runs every call after. XLA dumps only our module (`--xla_dump_hlo_module_re`) and
keeps the after-optimisations HLO, buffer assignment and memory-usage report.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shlex
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from harness.backend import Prepared
from harness.errors import ConfigError
from harness.workload import Workload, as_outputs, run_torch

PLATFORMS = ("auto", "gpu", "cpu")
STEP_NAME = "harness_xla_step"          # jax.jit names the module jit_harness_xla_step
DUMP_DIR = "xla_dump"
FP8_GEMM_TARGET = "__cublas$lt$matmul$f8"
# What stays of the dump: everything else (LLVM IR, object files, PTX, other modules) goes.
KEEP_DUMP_SUFFIXES = ("after_optimizations.txt", "-buffer-assignment.txt", "-buffer-assignment-values.txt",
                      "-memory-usage-report.txt", "-live-range.txt")


def unavailable() -> str | None:
    for package in ("jax", "torchax"):
        if importlib.util.find_spec(package) is None:
            return f"{package} is not installed"
    # Not imported here: prepare() must run eager torch once before torchax is imported.
    # (torchax 0.0.13 fails to import against torch 2.13: that surfaces as a failed run.)
    return None


# ---------------------------------------------------------------------------------- conversion

def _jax_dtype(dtype: torch.dtype):
    from torchax.ops import mappings
    return mappings.t2j_dtype(dtype)


_SAME_WIDTH_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def torch_to_numpy(t: torch.Tensor) -> np.ndarray:
    """Exact: bf16 and fp8 (no numpy dtype in torch) go through their bits as ml_dtypes arrays."""
    t = t.detach().cpu().contiguous()
    if t.dtype in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2, torch.float8_e4m3fnuz,
                   torch.float8_e5m2fnuz):
        return t.view(_SAME_WIDTH_INT[t.element_size()]).numpy().view(_jax_dtype(t.dtype))
    return t.numpy()


def jax_to_torch(x) -> torch.Tensor:
    import jax
    from torchax.ops import mappings
    arr = np.array(jax.device_get(x))           # a writable copy on the host
    dtype = mappings.j2t_dtype(arr.dtype)
    if arr.dtype.kind == "V" or dtype in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2,
                                          torch.float8_e4m3fnuz, torch.float8_e5m2fnuz):
        return torch.from_numpy(arr.view(f"u{arr.dtype.itemsize}" if arr.dtype.itemsize == 1
                                         else f"i{arr.dtype.itemsize}")).view(dtype)
    return torch.from_numpy(arr)


class Carried:
    """Stands for a mutated input (KV cache) in converted inputs: the backend owns that state
    after the first call and ignores what is passed for it later."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor

    def __repr__(self) -> str:
        return f"Carried({tuple(self.tensor.shape)}, {self.tensor.dtype})"


# ------------------------------------------------------------------------- autograd.Function

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
        with _entered(env):
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
        with _entered(env):
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
def _autograd_functions_as_custom_vjp(env):
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
def _entered(env):
    if env.enabled:
        yield env
    else:
        with env:
            yield env


# ------------------------------------------------------------------------------- XLA flags, HLO

def _xla_flags(cfg: dict, run_dir: Path) -> list[str]:
    flags = []
    if cfg.get("dump_hlo", True):
        flags += [f"--xla_dump_to={Path(run_dir).resolve() / DUMP_DIR}", "--xla_dump_hlo_as_text",
                  f"--xla_dump_hlo_module_re={STEP_NAME}"]
    if cfg.get("autotune_level") is not None and cfg.get("platform", "auto") != "cpu":
        flags.append(f"--xla_gpu_autotune_level={int(cfg['autotune_level'])}")
    flags += shlex.split(cfg.get("xla_flags") or "")
    return flags


def _backends_started() -> bool:
    from jax._src import xla_bridge
    probe = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(probe()) if probe else bool(getattr(xla_bridge, "_backends", {}))


def _select_device(platform: str):
    import jax
    if platform not in PLATFORMS:
        raise ConfigError("backend.platform", f"expected one of {', '.join(PLATFORMS)}, got {platform!r}")
    if platform == "cpu":
        if not _backends_started():
            jax.config.update("jax_platforms", "cpu")
        return jax.devices("cpu")[0]
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    if platform == "gpu" and not gpus:
        raise ConfigError("backend.platform", "gpu requested but jax sees no GPU "
                          f"(devices: {', '.join(str(d) for d in jax.devices())})")
    return gpus[0] if gpus else jax.devices("cpu")[0]


_HLO_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\(?\w+)\[")


def fp8_dot_generals(stablehlo: str) -> int:
    """Dots whose two operands are fp8, in the lowered StableHLO (before XLA's passes), e.g.
    `stablehlo.dot_general %a, %b, ... : (tensor<64x128xf8E4M3FN>, tensor<128x256xf8E5M2>) -> ...`"""
    count = 0
    for line in stablehlo.splitlines():
        if "dot_general" not in line:
            continue
        m = re.search(r":\s*\((tensor<[^>]*>),\s*(tensor<[^>]*>)\)", line)
        if m and all("xf8" in t for t in m.groups()):
            count += 1
    return count


def hlo_op_counts(hlo: str) -> dict[str, int]:
    return {
        "dot": len(re.findall(r"\sdot\(", hlo)),
        "convolution": len(re.findall(r"\sconvolution\(", hlo)),
        "fp8_gemm_custom_call": hlo.count(f'custom_call_target="{FP8_GEMM_TARGET}"'),
        "gemm_custom_call": len(re.findall(r'custom_call_target="__cublas\$(?:lt\$)?(?:gemm|matmul)', hlo)),
    }


def input_output_aliases(hlo: str) -> list[dict[str, Any]]:
    """From the HloModule header, e.g. `input_output_alias={ {1}: (2, {}, may-alias) }`:
    output index {1} reuses parameter 2's buffer."""
    header = hlo.split("\n", 1)[0]
    m = re.search(r"input_output_alias=\{(.*?)\}\s*(?:,\s*\w+=|$)", header)
    if not m:
        return []
    return [{"output_index": out.strip(), "parameter": int(param), "kind": kind}
            for out, param, kind in re.findall(r"\{([\d,\s]*)\}:\s*\((\d+),\s*\{[^}]*\},\s*([\w-]+)\)", m.group(1))]


def _cost(compiled) -> dict[str, Any]:
    try:
        cost = compiled.cost_analysis()
    except Exception as e:  # not every backend implements it
        return {"error": f"{type(e).__name__}: {e}"[:300]}
    if isinstance(cost, (list, tuple)):        # older JAX: one dict per device program
        cost = cost[0] if cost else {}
    cost = cost or {}
    return {"flops": cost.get("flops"), "bytes_accessed": cost.get("bytes accessed"),
            "transcendentals": cost.get("transcendentals")}


def _memory(compiled) -> dict[str, Any]:
    try:
        stats = compiled.memory_analysis()
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"[:300]}
    if stats is None:
        return {}
    names = {"argument_bytes": ("argument_size_in_bytes",), "output_bytes": ("output_size_in_bytes",),
             "alias_bytes": ("alias_size_in_bytes",), "temp_bytes": ("temp_size_in_bytes",),
             "generated_code_bytes": ("generated_code_size_in_bytes",),
             "peak_bytes": ("peak_memory_in_bytes",)}
    out = {}
    for key, candidates in names.items():
        for attr in candidates:
            value = getattr(stats, attr, None)
            if value is not None:
                out[key] = int(value)
                break
    return out


def _dump_files(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / DUMP_DIR
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def prune_dump(run_dir: Path) -> list[Path]:
    """Keep our module's after-optimisations HLO, buffer assignment and memory report."""
    kept = []
    for path in _dump_files(run_dir):
        if STEP_NAME in path.name and path.name.endswith(KEEP_DUMP_SUFFIXES):
            kept.append(path)
        else:
            path.unlink()
    root = Path(run_dir) / DUMP_DIR
    if root.is_dir():
        for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
    return kept


def _artifact_name(path: Path) -> str:
    # module_0008.jit_harness_xla_step.cpu_after_optimizations-buffer-assignment.txt -> xla_buffer_assignment
    tail = path.name.split("after_optimizations", 1)[-1].removesuffix(".txt").strip("-.")
    return "xla_" + (tail.replace("-", "_") if tail else "optimized_hlo")


def aliased_parameters(buffer_assignment: str) -> list[int]:
    """Parameters whose buffer is also an output's, from XLA's buffer assignment, e.g.
    `allocation 8: size 16384, parameter 21, shape |f32[2,16,4,2,16]| at ShapeIndex {}, maybe-live-out:`
    (the cache write, a scatter, then runs in that same allocation)."""
    return sorted(int(m) for m in re.findall(r"^allocation \d+: size \d+, parameter (\d+),[^\n]*maybe-live-out",
                                             buffer_assignment, flags=re.M))


# ------------------------------------------------------------------------------------- prepare

def _is_channels_last(t: torch.Tensor) -> bool:
    """A 4-d tensor whose memory is NHWC. It is handed to XLA as that memory (an NHWC array)
    and permuted back to NCHW inside the program: XLA's layout assignment then folds the
    permute into the convolution's layout (cuDNN's NHWC for bf16) instead of running a
    transpose of the input and the weights on every call, which Inductor, given the
    channels_last tensors themselves, does not pay."""
    return (t.dim() == 4 and not t.is_contiguous()
            and t.is_contiguous(memory_format=torch.channels_last))


def _nchw(a):
    import jax.numpy as jnp
    return jnp.transpose(a, (0, 3, 1, 2))


def _dedup_buffers(jm) -> None:
    """One argument per tensor: JittableModule dedups tied *trainable* parameters only, so a tied
    frozen embedding / lm_head (qwen_decoder) would otherwise be passed, and held, twice."""
    first: dict[int, str] = {}
    for name in list(jm.buffers):
        key = id(jm.buffers[name])
        if key in first:
            jm._extra_dumped_weights.setdefault(first[key], []).append(name)
            del jm.buffers[name]
        else:
            first[key] = name


def prepare(workload: Workload, cfg: dict, device: torch.device, run_dir: Path) -> Prepared:
    run_dir = Path(run_dir)
    flags = _xla_flags(cfg, run_dir)
    import jax
    started = _backends_started()
    # XLA reads XLA_FLAGS once, when JAX starts its backends: after `import jax` is fine (the
    # worker's case), after the first device query or computation is too late (a second
    # prepare in one process: the flags are recorded as not applied).
    if not started:
        os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""), *flags]))
    jax_device = _select_device(cfg.get("platform", "auto"))

    # Eager runs once, *before* torchax is imported (after it, torch's CUDA autograd fails with
    # "PyTorch is not linked with support for jax devices", seen on the H100 for conv fwd_bwd).
    eager_nhwc_outputs: tuple[bool, ...] = ()
    if not workload.mutated_inputs and (
            any(_is_channels_last(t) for t in workload.inputs)
            or any(_is_channels_last(t) for t in workload.module.parameters())
            or any(_is_channels_last(t) for t in workload.module.buffers())):
        eager_nhwc_outputs = tuple(_is_channels_last(o) for o in run_torch(workload, workload.forward, workload.inputs))

    import jax.numpy as jnp
    import torchax
    from torchax.interop import JittableModule

    from backends import _xla_ops

    env = torchax.default_env()
    lowered_ops = _xla_ops.register(env)
    module = workload.module
    jm = JittableModule(module, dedup_parameters=True)
    _dedup_buffers(jm)

    def put(t: torch.Tensor, physical: bool = False):
        # physical: a channels_last tensor goes over as its NHWC memory (see _is_channels_last)
        return jax.device_put(torch_to_numpy(t.permute(0, 2, 3, 1) if physical else t), jax_device)

    nhwc_params = {k for k, v in jm.params.items() if _is_channels_last(v)}
    nhwc_buffers = {k for k, v in jm.buffers.items() if _is_channels_last(v)}
    params = {k: put(v, k in nhwc_params) for k, v in jm.params.items()}
    buffers = {k: put(v, k in nhwc_buffers) for k, v in jm.buffers.items()}
    mutated = tuple(sorted(workload.mutated_inputs))
    n_inputs = len(workload.inputs)
    train = workload.mode == "fwd_bwd"

    grad_inputs = tuple(i for i, t in enumerate(workload.inputs) if train and t.requires_grad)
    if set(grad_inputs) & set(mutated):
        raise ConfigError("workload.mode", "fwd_bwd through a mutated input is not supported on xla")
    name_of = {id(v): k for k, v in jm.params.items()}
    grad_params = tuple(name_of[id(p)] for p in module.parameters() if train and p.requires_grad)
    nhwc_inputs = {i for i, t in enumerate(workload.inputs) if i not in mutated and _is_channels_last(t)}
    others_nhwc = tuple(i in nhwc_inputs for i in range(n_inputs) if i not in mutated)
    nhwc_cots = tuple(_is_channels_last(g) for g in workload.grad_outputs) if train else ()
    cotangents = tuple(put(g, nhwc) for g, nhwc in zip(workload.grad_outputs, nhwc_cots)) if train else ()

    def forward(params_j, buffers_j, inputs_j):
        """jax in, jax out: (outputs, new mutated state). Called inside the env and the
        autograd.Function patch."""
        p_t, b_t, in_t = env.j2t_iso((params_j, buffers_j, list(inputs_j)))
        res = jm.functional_call(workload.forward, p_t, b_t, *in_t)
        outs = tuple(env.t2j_iso(as_outputs(res)))
        state = tuple(env.t2j_iso(env.v2t_iso(in_t[i])) for i in mutated)
        return outs, state

    def assemble(state, others):
        inputs, s, o = [], iter(state), iter(others)
        for i in range(n_inputs):
            inputs.append(next(s) if i in mutated else next(o))
        return inputs

    # Outputs that eager returns channels_last (conv's y, grad_x, grad_w) leave the program as
    # NHWC arrays and become channels_last torch tensors again in to_torch: no trailing
    # transpose that the torch backends do not run either. Eager runs once to learn them.
    nhwc_outputs = eager_nhwc_outputs

    def physical_outputs(outs):
        return tuple(jnp.transpose(o, (0, 2, 3, 1)) if i < len(nhwc_outputs) and nhwc_outputs[i] else o
                     for i, o in enumerate(outs))

    def harness_xla_step(params_j, buffers_j, state, others, cots):
        params_j = {k: _nchw(v) if k in nhwc_params else v for k, v in params_j.items()}
        buffers_j = {k: _nchw(v) if k in nhwc_buffers else v for k, v in buffers_j.items()}
        others = tuple(_nchw(a) if nhwc else a for a, nhwc in zip(others, others_nhwc))
        cots = tuple(_nchw(a) if nhwc else a for a, nhwc in zip(cots, nhwc_cots))
        with _entered(env), _autograd_functions_as_custom_vjp(env):
            if not train:
                outs, new_state = forward(params_j, buffers_j, assemble(state, others))
                return physical_outputs(outs), new_state

            def differentiable(g_in, g_par):
                inputs = assemble(state, others)
                for i, a in zip(grad_inputs, g_in):
                    inputs[i] = a
                return forward({**params_j, **dict(zip(grad_params, g_par))}, buffers_j, inputs)

            targets_in = tuple(assemble(state, others)[i] for i in grad_inputs)
            targets_par = tuple(params_j[k] for k in grad_params)
            outs, vjp, new_state = jax.vjp(differentiable, targets_in, targets_par, has_aux=True)
            cts = tuple(c.astype(o.dtype) for c, o in zip(cots, outs))
            g_in, g_par = vjp(cts)
            return physical_outputs(outs + tuple(g_in) + tuple(g_par)), new_state

    jitted = jax.jit(harness_xla_step, donate_argnums=(2,) if mutated else ())

    compile_info: dict[str, Any] = {
        "platform": jax_device.platform, "jax_device": str(jax_device),
        "xla_flags": os.environ.get("XLA_FLAGS", "") if not started else " ".join(flags),
        "xla_flags_applied": not started,     # False: a backend started before prepare, flags ignored
        "lowered_ops": lowered_ops, "mutated_inputs": list(mutated), "donated_argnums": [2] if mutated else [],
        "grad_targets": [f"input{i}" for i in grad_inputs] + list(grad_params),
        "channels_last_args": sorted(f"input{i}" for i in nhwc_inputs) + sorted(nhwc_params | nhwc_buffers)
        + [f"grad_output{i}" for i, nhwc in enumerate(nhwc_cots) if nhwc],
        "channels_last_outputs": [i for i, nhwc in enumerate(nhwc_outputs) if nhwc],
    }
    box: dict[str, Any] = {"compiled": None, "state": None}

    def compile_now(args):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            # torchax casts to float64/int64, which JAX without x64 truncates (as intended here)
            warnings.filterwarnings("ignore", message="Explicitly requested dtype")
            lowered = jitted.lower(*args)
        t1 = time.perf_counter()
        compiled = lowered.compile()
        t2 = time.perf_counter()
        compile_info.update(lower_s=t1 - t0, xla_compile_s=t2 - t1)
        compile_info["cost"] = _cost(compiled)
        compile_info["memory"] = _memory(compiled)
        with contextlib.suppress(Exception):
            compile_info["fp8_dot_generals_before_opt"] = fp8_dot_generals(lowered.as_text())
        hlo = compiled.as_text() or ""
        counts = hlo_op_counts(hlo)
        compile_info["hlo_ops_after_opt"] = counts
        compile_info["fp8_gemm_custom_call"] = (counts["fp8_gemm_custom_call"] > 0
                                                if jax_device.platform == "gpu" else None)
        aliases = input_output_aliases(hlo)
        compile_info["input_output_aliases"] = aliases
        # Flattened parameter numbers of the state argument: after params and buffers.
        first = len(jax.tree_util.tree_leaves((args[0], args[1])))
        state_params = set(range(first, first + len(mutated)))
        compile_info["state_donated_and_aliased"] = (bool(mutated) and
                                                     state_params <= {a["parameter"] for a in aliases})
        # The dump is written by compile(): the worker copies compile_info right after the
        # first call, before collect_artifacts, so the dump facts are recorded here.
        kept = prune_dump(run_dir)
        opt = next((p for p in kept if p.name.endswith("after_optimizations.txt")), None)
        compile_info["optimized_hlo"] = str(opt.relative_to(run_dir)) if opt else None
        compile_info["dump_files"] = len(kept)
        if opt:
            compile_info["dump_matches_compiled"] = hlo.split("\n", 1)[0] in opt.read_text()
        assignment = next((p for p in kept if p.name.endswith("-buffer-assignment.txt")), None)
        if assignment is not None and mutated:
            live_out = set(aliased_parameters(assignment.read_text()))
            compile_info["buffer_assignment_state_aliased"] = state_params <= live_out
        return compiled

    def step(*inputs):
        if box["state"] is None:
            box["state"] = tuple(put(inputs[i].tensor if isinstance(inputs[i], Carried) else inputs[i])
                                 for i in mutated)
        others = tuple(x for i, x in enumerate(inputs) if i not in mutated)
        args = (params, buffers, box["state"], others, cotangents)
        if box["compiled"] is None:
            box["compiled"] = compile_now(args)
        outs, box["state"] = box["compiled"](*args)
        return outs

    step.carried_state = lambda: box["state"]   # the mutated inputs as the last call left them

    def convert(inputs: Sequence[torch.Tensor]) -> tuple:
        return tuple(Carried(t) if i in mutated else put(t, i in nhwc_inputs) for i, t in enumerate(inputs))

    def collect_artifacts(run_dir_: Path) -> dict[str, str]:
        return {_artifact_name(p): str(p.relative_to(run_dir_)) for p in prune_dump(run_dir_)}

    def peak_memory_bytes() -> int | None:
        # A process peak (XLA's allocator cannot be reset); None on the CPU.
        stats = jax_device.memory_stats() if hasattr(jax_device, "memory_stats") else None
        return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None

    return Prepared(
        step=step,
        inputs=convert(workload.inputs),
        convert=convert,
        synchronize=lambda out: jax.block_until_ready(out),
        to_torch=lambda out: tuple(jax_to_torch(x).permute(0, 3, 1, 2) if i < len(nhwc_outputs) and nhwc_outputs[i]
                                   else jax_to_torch(x) for i, x in enumerate(out)),
        profile=profile,
        peak_memory_bytes=peak_memory_bytes,
        peak_memory_source="jax memory_stats peak_bytes_in_use (process peak)",
        collect_artifacts=collect_artifacts,
        compile_info=compile_info,
        compile_phases=lambda first_call_s: compile_phases(compile_info, first_call_s),
    )


def compile_phases(compile_info: dict[str, Any], first_call_s: float) -> dict[str, Any]:
    """JAX's own split: `lower()` (torchax tracing to StableHLO) and `compile()` (XLA's HLO
    passes, GEMM autotuning, LLVM/PTX codegen: one call, not separable from outside)."""
    lower, comp = compile_info.get("lower_s"), compile_info.get("xla_compile_s")
    if lower is None or comp is None:
        return {"notes": ["no lower/compile split recorded"]}
    return {"capture_s": lower, "graph_codegen_s": comp, "kernel_compile_wait_s": None,
            "other_s": max(first_call_s - lower - comp, 0.0),
            "notes": ["XLA compile() covers HLO optimisation, autotuning and PTX/cubin codegen together; "
                      "kernel_compile_wait_s is not separable through JAX's API"]}


def profile(fn: Callable[[], Any], iters: int, out_dir: Path) -> Path:
    """A JAX profiler pass; the perfetto trace is moved to `out_dir/perfetto_trace.json.gz`
    (the worker records the trace by file name, relative to the run dir)."""
    import jax
    out_dir = Path(out_dir)
    trace_dir = out_dir / "jax_trace"
    jax.block_until_ready(fn())  # nothing queued from the timing pass in the profiled window
    with jax.profiler.trace(str(trace_dir), create_perfetto_trace=True):
        for i in range(iters):
            # One marker per iteration: the kernel collector divides by their count.
            with jax.profiler.TraceAnnotation(f"harness_iter_{i}"):
                jax.block_until_ready(fn())
    found = sorted(trace_dir.rglob("perfetto_trace.json.gz"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise RuntimeError(f"jax.profiler wrote no perfetto_trace.json.gz under {trace_dir}")
    dest = out_dir / "perfetto_trace.json.gz"
    shutil.move(str(found[-1]), dest)
    return dest
