"""XLA through torchax: the workload's own module and inputs, traced to JAX, `jax.jit` -> XLA.

The jitted program is the functional form `step(params, buffers, state, others, cotangents)`
of `workload.forward(module, *inputs)` (`XlaProgram`, built in steps as torchax's
`JittableModule` is: conversion, the functional call, autograd Functions as custom VJPs,
layout):
- `state` holds the module buffers the torch forward updates in place (a KV cache,
  `Workload.state_buffers`). torchax applies in-place writes to its tensor wrappers but the
  jit boundary drops them, so the step returns them as extra outputs, the state argument is
  donated and the new arrays are carried into the next call: the cache is updated in place,
  not copied (the buffer assignment shows the aliasing).
- fwd_bwd: `jax.vjp` over the functional call w.r.t. what torch differentiates (inputs with
  requires_grad, then parameters in module order), cotangents = `workload.grad_outputs`.
- the workload's named steps (`Workload.steps`, a generation's decode beside its prefill) are
  jitted programs of their own over the same params, buffers and donated state.

Compile is explicit (`lower()` then `compile()`, timed apart) on the first call of each step
with each input shape (a cache that grows is a new shape every step); the compiled executable
runs every call after. XLA dumps only our module and keeps the after-optimisations
HLO, buffer assignment and memory-usage report.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import time
import warnings
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Callable, Sequence

import torch

from backends.xla import CACHE_SUBDIR, PLATFORMS
from backends.xla import dump
from backends.xla.convert import is_channels_last, jax_to_torch, to_nchw, to_nhwc, torch_to_numpy
from harness.worker.backend import TRACE, Artifact, Prepared, RunContext
from harness.errors import ConfigError, Unsupported
from harness.worker.workload import LazyMapping, Workload, as_outputs, run_torch

TRACE_NAME = "perfetto_trace.json.gz"


def unavailable() -> str | None:
    for package in ("jax", "torchax"):
        if importlib.util.find_spec(package) is None:
            return f"{package} is not installed"
    # Not imported here: prepare() must run eager torch once before torchax is imported.
    return None


def select_device(platform: str):
    import jax

    from backends.xla.compat import backends_started
    if platform not in PLATFORMS:
        raise ConfigError("backend.platform", f"expected one of {', '.join(PLATFORMS)}, got {platform!r}")
    if platform == "cpu":
        if not backends_started():
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


def channels_last_outputs(workload: Workload) -> tuple[bool, ...]:
    """Which outputs eager returns channels_last (conv's y, grad_x, grad_w): they leave the
    program as NHWC arrays and become channels_last tensors again, so XLA pays no trailing
    transpose the torch backends do not run either. Eager runs once to learn it, *before*
    torchax is imported (after it, torch's CUDA autograd fails with "PyTorch is not linked
    with support for jax devices", seen on the H100 for conv fwd_bwd)."""
    module = workload.module
    if workload.state_buffers or not any(
            is_channels_last(t) for t in (*workload.inputs, *module.parameters(), *module.buffers())):
        return ()
    return tuple(is_channels_last(o) for o in run_torch(workload, workload.forward, workload.inputs))


MAIN_STEP = "step"


def _program_name(step: str) -> str:
    """What jax.jit names the module (`jit_<name>`): dump.STEP_NAME, plus the step's own name."""
    return dump.STEP_NAME if step == MAIN_STEP else f"{dump.STEP_NAME}_{step}"


class XlaProgram:
    """The workload as compiled XLA executables (its forward and its named steps, each per input
    shape) and the state they carry between calls."""

    def __init__(self, workload: Workload, env, jax_device, nhwc_outputs: tuple[bool, ...]):
        from torchax.interop import JittableModule

        self.workload, self.env, self.device, self.nhwc_outputs = workload, env, jax_device, nhwc_outputs
        jm = JittableModule(workload.module, dedup_parameters=True)
        _dedup_buffers(jm)
        self.jm = jm
        self.train = workload.mode == "fwd_bwd"
        self.state_names = tuple(workload.state_buffers)
        missing = set(self.state_names) - set(jm.buffers)
        if missing:
            raise ConfigError("workload", f"state buffers not in the module: {', '.join(sorted(missing))}")
        # Layout: channels_last tensors cross as their NHWC memory (convert.is_channels_last).
        self.nhwc = {k for k, v in {**jm.params, **jm.buffers}.items() if is_channels_last(v)}
        self.nhwc_inputs = tuple(is_channels_last(t) for t in workload.inputs)
        self.params = {k: self.put(v, k in self.nhwc) for k, v in jm.params.items()}
        self.buffers = {k: self.put(v, k in self.nhwc) for k, v in jm.buffers.items() if k not in self.state_names}
        self.state = {k: self.put(jm.buffers[k]) for k in self.state_names}
        # What fwd_bwd differentiates: inputs that require grad, then parameters in module order.
        self.grad_inputs = tuple(i for i, t in enumerate(workload.inputs) if self.train and t.requires_grad)
        name_of = {id(v): k for k, v in jm.params.items()}
        self.grad_params = tuple(name_of[id(p)] for p in workload.module.parameters()
                                 if self.train and p.requires_grad)
        self.nhwc_cots = tuple(is_channels_last(g) for g in workload.grad_outputs) if self.train else ()
        self.cotangents = tuple(self.put(g, nhwc) for g, nhwc in zip(workload.grad_outputs or (), self.nhwc_cots))
        import jax
        self.jitted = {}
        for name, forward in {MAIN_STEP: workload.forward, **workload.steps}.items():
            self.jitted[name] = jax.jit(self._program(name, forward), donate_argnums=(2,) if self.state_names else ())
        self.compiled: dict[tuple, Any] = {}      # (step, input shapes and dtypes) -> executable
        self.info: dict[str, Any] = {"compiles": []}

    # -- conversion ---------------------------------------------------------------------------
    def put(self, t: torch.Tensor, nhwc: bool = False):
        import jax
        return jax.device_put(torch_to_numpy(t.permute(0, 2, 3, 1) if nhwc else t), self.device)

    def convert(self, inputs: Sequence[torch.Tensor]) -> tuple:
        return tuple(self.put(t, nhwc) for t, nhwc in zip(inputs, self.nhwc_inputs))

    def to_torch(self, outs) -> tuple[torch.Tensor, ...]:
        return tuple(jax_to_torch(x).permute(0, 3, 1, 2) if i < len(self.nhwc_outputs) and self.nhwc_outputs[i]
                     else jax_to_torch(x) for i, x in enumerate(outs))

    def state_as_torch(self) -> Mapping[str, torch.Tensor]:
        """The carried state as torch tensors, each copied to the host only when asked for."""
        return LazyMapping(tuple(self.state), lambda name: jax_to_torch(self.state[name]))

    # -- the traced program -------------------------------------------------------------------
    def _program(self, step: str, forward):
        # Channels-last inputs are the main step's (the workload's inputs); a named step takes its own.
        nhwc_inputs = self.nhwc_inputs if step == MAIN_STEP else ()

        def program(params, buffers, state, inputs, cots):
            return self.harness_xla_step(forward, nhwc_inputs, params, buffers, state, inputs, cots)
        program.__name__ = program.__qualname__ = _program_name(step)   # jax.jit names the module by it
        return program

    def _forward(self, forward, params, buffers, state, inputs):
        """jax in, jax out: (outputs, new state). The state tensors are updated in place by the
        torch forward; reading them back after the call is what carries the writes out."""
        env = self.env
        p_t, b_t, s_t, in_t = env.j2t_iso((params, buffers, state, list(inputs)))
        res = self.jm.functional_call(forward, p_t, {**b_t, **s_t}, *in_t)
        outs = tuple(env.t2j_iso(as_outputs(res)))
        return outs, {k: env.t2j_iso(env.v2t_iso(s_t[k])) for k in self.state_names}

    def harness_xla_step(self, forward, nhwc_inputs, params, buffers, state, inputs, cots):
        """The traced program of one step (jax.jit names the HLO module after `_program`'s closure,
        jit_harness_xla_step[_<step>]: the dump keeps it)."""
        from backends.xla.autograd import autograd_functions_as_custom_vjp, entered
        import jax
        params = {k: to_nchw(v) if k in self.nhwc else v for k, v in params.items()}
        buffers = {k: to_nchw(v) if k in self.nhwc else v for k, v in buffers.items()}
        inputs = [to_nchw(a) if i < len(nhwc_inputs) and nhwc_inputs[i] else a for i, a in enumerate(inputs)]
        cots = tuple(to_nchw(a) if nhwc else a for a, nhwc in zip(cots, self.nhwc_cots))
        with entered(self.env), autograd_functions_as_custom_vjp(self.env):
            if not self.train:
                outs, new_state = self._forward(forward, params, buffers, state, inputs)
                return self._physical(outs), new_state

            def differentiable(g_in, g_par):
                call = list(inputs)
                for i, a in zip(self.grad_inputs, g_in):
                    call[i] = a
                return self._forward(forward, {**params, **dict(zip(self.grad_params, g_par))}, buffers, state, call)

            targets = (tuple(inputs[i] for i in self.grad_inputs), tuple(params[k] for k in self.grad_params))
            outs, vjp, new_state = jax.vjp(differentiable, *targets, has_aux=True)
            g_in, g_par = vjp(tuple(c.astype(o.dtype) for c, o in zip(cots, outs)))
            return self._physical(outs + tuple(g_in) + tuple(g_par)), new_state

    def _physical(self, outs):
        return tuple(to_nhwc(o) if i < len(self.nhwc_outputs) and self.nhwc_outputs[i] else o
                     for i, o in enumerate(outs))

    # -- compile and run ----------------------------------------------------------------------
    def __call__(self, *inputs):
        return self.run(MAIN_STEP, *inputs)

    def run(self, step: str, *inputs):
        args = (self.params, self.buffers, self.state, tuple(inputs), self.cotangents)
        key = (step, tuple((x.shape, x.dtype) for x in inputs))
        compiled = self.compiled.get(key)
        if compiled is None:
            compiled = self.compiled[key] = self._compile(step, args)
        outs, self.state = compiled(*args)
        return outs

    def _compile(self, step: str, args):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            # torchax casts to float64/int64, which JAX without x64 truncates (as intended here)
            warnings.filterwarnings("ignore", message="Explicitly requested dtype")
            try:
                lowered = self.jitted[step].lower(*args)
            except NotImplementedError as e:
                # A tensor subclass torchax's trace cannot go through (measured: torchao's
                # Float8TrainingTensor refuses the aten.squeeze torchax dispatches to it).
                raise Unsupported(f"torchax cannot trace this program (step {step!r}): {type(e).__name__}: {e}") from e
        t1 = time.perf_counter()
        compiled = lowered.compile()
        times = dict(lower_s=t1 - t0, xla_compile_s=time.perf_counter() - t1)
        shapes = list(dict.fromkeys(tuple(x.shape) for x in args[3]))     # a cache's 2 x layers shapes once
        self.info["compiles"].append(dict(step=step, input_shapes=[list(x) for x in shapes], **times))
        if not any(c["step"] == step for c in self.info["compiles"][:-1]):
            # The first program of each step says what it is; the main step's at the top level.
            facts = dict(times, cost=_cost(compiled), memory=_memory(compiled))
            facts.update(program_facts(lowered, compiled, args, len(self.state_names), self.device.platform))
            if step == MAIN_STEP:
                self.info.update(facts)
            else:
                self.info.setdefault("steps", {})[step] = facts
        return compiled


def program_facts(lowered, compiled, args, n_state: int, platform: str) -> dict[str, Any]:
    """What the optimised program says about itself: fp8 dots before and GEMM custom calls
    after XLA's passes, and whether the donated state is aliased to the outputs."""
    import jax

    from harness.collect.hlo import fp8_dot_generals, hlo_op_counts, input_output_aliases
    facts: dict[str, Any] = {}
    try:
        facts["fp8_dot_generals_before_opt"] = fp8_dot_generals(lowered.as_text())
    except Exception:  # noqa: BLE001 - a JAX without as_text(): the fact is left out
        pass
    hlo = compiled.as_text() or ""
    counts = hlo_op_counts(hlo)
    facts["hlo_ops_after_opt"] = counts
    facts["fp8_gemm_custom_call"] = counts["fp8_gemm_custom_call"] > 0 if platform == "gpu" else None
    aliases = input_output_aliases(hlo)
    facts["input_output_aliases"] = aliases
    # Flattened parameter numbers of the state argument: after params and buffers.
    first = len(jax.tree_util.tree_leaves((args[0], args[1])))
    facts["state_parameters"] = list(range(first, first + n_state))
    facts["state_donated_and_aliased"] = bool(n_state) and set(facts["state_parameters"]) <= {
        a["parameter"] for a in aliases}
    facts["optimized_hlo_first_line"] = hlo.split("\n", 1)[0]
    return facts


def _dedup_buffers(jm) -> None:
    """One argument per tensor: JittableModule dedups tied *trainable* parameters only, so a tied
    frozen embedding / lm_head (qwen_decoder) would otherwise be passed, and held, twice."""
    from backends.xla.compat import tie
    first: dict[int, str] = {}
    for name in list(jm.buffers):
        key = id(jm.buffers[name])
        if key in first:
            tie(jm, first[key], name)
            del jm.buffers[name]
        else:
            first[key] = name


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
    names = {"argument_bytes": "argument_size_in_bytes", "output_bytes": "output_size_in_bytes",
             "alias_bytes": "alias_size_in_bytes", "temp_bytes": "temp_size_in_bytes",
             "generated_code_bytes": "generated_code_size_in_bytes", "peak_bytes": "peak_memory_in_bytes"}
    return {key: int(getattr(stats, attr)) for key, attr in names.items()
            if getattr(stats, attr, None) is not None}


def dump_facts(run_dir: Path, artifacts: list[Artifact], info: dict[str, Any]) -> dict[str, Any]:
    """Does the kept dump hold the program that ran, with the state aliased?"""
    from harness.worker.backend import XLA_BUFFER_ASSIGNMENT, XLA_OPTIMIZED_HLO
    from harness.collect.xla_buffer_assignment import aliased_parameters
    facts: dict[str, Any] = {"dump_files": len(artifacts)}
    opt = next((a for a in artifacts if a.kind == XLA_OPTIMIZED_HLO), None)
    facts["optimized_hlo"] = opt.path if opt else None
    if opt and info.get("optimized_hlo_first_line"):
        facts["dump_matches_compiled"] = info["optimized_hlo_first_line"] in (run_dir / opt.path).read_text()
    assignment = next((a for a in artifacts if a.kind == XLA_BUFFER_ASSIGNMENT), None)
    if assignment is not None and info.get("state_parameters"):
        live_out = set(aliased_parameters((run_dir / assignment.path).read_text()))
        facts["buffer_assignment_state_aliased"] = set(info["state_parameters"]) <= live_out
    return facts


def compile_phases(compile_info: dict[str, Any], first_call_s: float) -> dict[str, Any]:
    """JAX's own split: `lower()` (torchax tracing to StableHLO) and `compile()` (XLA's HLO
    passes, GEMM autotuning, LLVM/PTX codegen: one call, not separable from outside), summed
    over the programs compiled so far (a generation compiles its prefill and its decode step)."""
    compiles = compile_info.get("compiles") or []
    if not compiles:
        return {"notes": ["no lower/compile split recorded"]}
    lower, comp = sum(c["lower_s"] for c in compiles), sum(c["xla_compile_s"] for c in compiles)
    return {"capture_s": lower, "graph_codegen_s": comp, "kernel_compile_wait_s": None,
            "other_s": max(first_call_s - lower - comp, 0.0),
            "notes": ["XLA compile() covers HLO optimisation, autotuning and PTX/cubin codegen together; "
                      "kernel_compile_wait_s is not separable through JAX's API"]}


def profile(fn: Callable[[], Any], iters: int, out_dir: Path) -> Artifact:
    """A JAX profiler pass; its perfetto trace moved to `out_dir/perfetto_trace.json.gz`."""
    import jax
    out_dir = Path(out_dir)
    trace_dir = out_dir / "jax_trace"
    jax.block_until_ready(fn())  # nothing queued from the timing pass in the profiled window
    with jax.profiler.trace(str(trace_dir), create_perfetto_trace=True):
        for i in range(iters):
            # One marker per iteration: the kernel collector divides by their count.
            with jax.profiler.TraceAnnotation(f"harness_iter_{i}"):
                jax.block_until_ready(fn())
    found = sorted(trace_dir.rglob(TRACE_NAME), key=lambda p: p.stat().st_mtime)
    if not found:
        raise RuntimeError(f"jax.profiler wrote no {TRACE_NAME} under {trace_dir}")
    shutil.move(str(found[-1]), out_dir / TRACE_NAME)
    return Artifact(TRACE, TRACE_NAME, "perfetto")


def count_cache_events(info: dict[str, Any]) -> None:
    """JAX's persistent compilation cache, as JAX itself counts it: requests that used the
    cache and hits (a warm run must hit; a cold one must not)."""
    import jax
    counts = info.setdefault("persistent_cache", {"requests": 0, "hits": 0})
    names = {"/jax/compilation_cache/compile_requests_use_cache": "requests",
             "/jax/compilation_cache/cache_hits": "hits"}

    def listen(event: str, **kwargs) -> None:
        if event in names:
            counts[names[event]] += 1
    jax.monitoring.register_event_listener(listen)


def use_compile_cache(cache_dir: Path) -> None:
    """JAX's persistent compilation cache in the run's cache dir, from the RunContext: JAX reads
    its JAX_* variables when it is imported, which a fork server did before this run's
    environment existed. Every executable is cached, however small or quick to compile (JAX's
    defaults skip those), so that a warm run hits."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache
    if jax.config.jax_compilation_cache_dir != str(cache_dir):
        compilation_cache.reset_cache()     # a cache another prepare in this process opened (tests)
        compilation_cache.set_cache_dir(str(cache_dir))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def prepare(workload: Workload, cfg: dict, ctx: RunContext) -> Prepared:
    from backends.xla.compat import backends_started
    flags = dump.xla_flags(cfg, ctx.run_dir)
    import jax
    use_compile_cache(ctx.compile_cache_dir / CACHE_SUBDIR)
    started = backends_started()
    # XLA reads XLA_FLAGS once, when JAX starts its backends: after `import jax` is fine (the
    # worker's case), after the first device query or computation is too late (a second
    # prepare in one process: the flags are recorded as not applied).
    if not started:
        os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""), *flags]))
    jax_device = select_device(cfg.get("platform", "auto"))
    nhwc_outputs = channels_last_outputs(workload)

    import torchax

    from backends.xla import lowerings
    env = torchax.default_env()
    lowered_ops = lowerings.register(env)
    program = XlaProgram(workload, env, jax_device, nhwc_outputs)
    count_cache_events(program.info)
    buffers = dump.command_buffers(cfg, flags, jax_device.platform)
    program.info.update({
        "platform": jax_device.platform, "jax_device": str(jax_device),
        "xla_flags": os.environ.get("XLA_FLAGS", "") if not started else " ".join(flags),
        "xla_flags_applied": not started,     # False: a backend started before prepare, flags ignored
        "command_buffers": buffers, "lowered_ops": lowered_ops,
        "state_buffers": list(program.state_names), "donated_argnums": [2] if program.state_names else [],
        "grad_targets": [f"input{i}" for i in program.grad_inputs] + list(program.grad_params),
        "channels_last_args": sorted(f"input{i}" for i, n in enumerate(program.nhwc_inputs) if n)
        + sorted(program.nhwc) + [f"grad_output{i}" for i, n in enumerate(program.nhwc_cots) if n],
        "channels_last_outputs": [i for i, nhwc in enumerate(nhwc_outputs) if nhwc],
    })

    def artifacts() -> list[Artifact]:
        kept = dump.prune(ctx.run_dir)
        program.info.update(dump_facts(ctx.run_dir, kept, program.info))
        return kept

    def peak_memory_bytes() -> int | None:
        # A process peak (XLA's allocator cannot be reset); None on the CPU.
        stats = jax_device.memory_stats() if hasattr(jax_device, "memory_stats") else None
        return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None

    return Prepared(
        step=program,
        inputs=program.convert(workload.inputs),
        convert=program.convert,
        synchronize=lambda out: jax.block_until_ready(out),
        to_torch=program.to_torch,
        profile=profile,
        trace_note=dump.trace_note(buffers),
        peak_memory_bytes=peak_memory_bytes,
        peak_memory_source="jax memory_stats peak_bytes_in_use (process peak)",
        artifacts=artifacts,
        compile_info=program.info,
        compile_phases=lambda first_call_s: compile_phases(program.info, first_call_s),
        graphs_compiled=lambda: len(program.compiled),
        state=program.state_as_torch,
        steps={name: functools.partial(program.run, name) for name in workload.steps},
    )
