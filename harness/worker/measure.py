"""The measurement of one worker process: `measure(task) -> WorkerResult`, and `run`, which
sends the result back through a pipe and dies with its orchestrator.

Spawned: `python -m harness.worker.measure RESULT_FD LIFELINE_FD < task.json`; forked by the
fork server (harness/worker/server.py): `run` in the forked child. The task and the result are
`harness.protocol` dataclasses: no file names between the two sides, so no stale result of a
killed attempt can be taken for this one and nothing in the run dir is ever deleted. A config
error or a CPU fallback is a status of the result, not a line to parse. Progress goes to
stderr, one line per phase, which the orchestrator streams; the process exits 0 whenever it
sent a result, and anything else is a failure the orchestrator records from the exit status
and stderr tail.

One process measures one config once; `bench.processes=N` runs N of them. The first also
checks numerics, keeps the compiler's artifacts, profiles and collects the tables; the others
only time (their compile hits the cache the first one filled). A step and a generation go
through the same skeleton (`measure`); what differs is their `Parts`.
"""
from __future__ import annotations

import json
import os
import random
import select
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from harness.errors import ConfigError, CpuFallback, Unsupported
from harness.protocol import CONFIG_ERROR, CPU_FALLBACK, FAILED, SKIPPED, Artifact, WorkerResult, WorkerTask


def progress(message: str) -> None:
    print(f"[worker] {message}", file=sys.stderr, flush=True)


def resolve_device(requested: str, task: WorkerTask):
    """`auto` is the GPU where torch sees one. On a node whose GPUs nvidia-smi lists, a torch
    that sees none is a failed run, never a quiet CPU run (submitit's local executor once gave
    every job CUDA_VISIBLE_DEVICES="" and a GPU sweep ran on the CPU)."""
    import torch

    if requested not in ("auto", "cuda", "cpu"):
        raise ConfigError("device", f"expected auto, cuda or cpu, got {requested!r}")
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "cuda":
        raise ConfigError("device", "cuda requested but torch.cuda.is_available() is False")
    if task.gpus_listed or task.gpu_slot is not None:
        raise CpuFallback(f"this node lists {task.gpus_listed} GPU(s) (nvidia-smi)"
                           f"{'' if task.gpu_slot is None else f' and the run was given GPU {task.gpu_slot}'}"
                           f", but torch sees none (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); "
                           "device=cpu runs on the CPU on purpose")
    return torch.device("cpu")


def setup(task: WorkerTask):
    """Device, workload and prepared backend; `why_not` when the backend cannot run here."""
    import numpy as np
    import torch

    from harness.orchestrator import plugins
    from harness.worker.backend import RunContext

    cfg = task.config
    device = resolve_device(cfg.get("device", "auto"), task)
    random.seed(cfg["seed"]); np.random.seed(cfg["seed"]); torch.manual_seed(cfg["seed"])
    backend = plugins.load(plugins.backend_spec(cfg["backend"]["name"]).module)
    why_not = backend.unavailable()
    if why_not:
        return device, None, None, why_not
    progress(f"building workload {cfg['workload']['name']} on {device.type}")
    try:
        workload = plugins.load(plugins.workload_spec(cfg["workload"]["name"]).build)(cfg["workload"], device)
    except Unsupported as e:    # a library the workload's form needs is missing here (torchao): skipped
        return device, None, None, str(e)
    progress(f"preparing backend {cfg['backend']['name']}")
    ctx = RunContext(Path(task.run_dir), device, Path(task.compile_cache_dir))
    return device, workload, backend.prepare(workload, cfg["backend"], ctx), None


def check_numerics(workload, prepared, first, check_inputs) -> dict[str, Any]:
    """Outputs over the check steps (the first call is step 0) against the float32 reference,
    then the state buffers the steps wrote (a KV cache) against the reference's."""
    from harness.worker import numerics
    outputs = [prepared.to_torch(first)]
    for inputs in check_inputs[1:]:
        out = prepared.step(*inputs)
        prepared.synchronize(out)
        outputs.append(prepared.to_torch(out))
    progress(f"numerics over {len(outputs)} step(s)")
    check = numerics.compare(outputs, workload.reference(), workload.min_sqnr_db, workload.output_names)
    if workload.state_probe is not None and workload.reference_state is not None:
        expected = workload.reference_state()
        got = workload.state_probe(prepared.state())
        state = numerics.compare([[got[k] for k in expected]], [list(expected.values())], workload.min_sqnr_db,
                                 tuple(expected))
        check = numerics.with_state(check, state)
    return check.to_dict()


def time_it(prepared, bench: dict[str, Any], after_sample: Callable[[], None] | None = None) -> dict[str, Any]:
    from harness.worker import timing
    fn = lambda: prepared.step(*prepared.inputs)  # noqa: E731
    t = timing.measure(fn, prepared.synchronize, warmup=bench["warmup"], repeats=bench["repeats"],
                       min_repeat_ms=bench["min_repeat_ms"], max_iters=bench["max_iters_per_repeat"],
                       warmup_ms=bench["warmup_ms"], after_sample=after_sample)
    out = asdict(t)
    if bench.get("reference_timer"):
        progress("reference timer")
        out["reference_median_ms"], out["reference_timer"] = timing.reference_median_ms(
            fn, prepared.synchronize, prepared.cuda_events)
    return out


@dataclass
class Parts:
    """What differs between measuring a step and a generation; `measure` runs the rest."""
    first_label: str                                    # the progress line of the first call
    first_call: Callable[[], Any]                       # compile + one execution (step 0 of numerics)
    numerics: Callable[[Any], dict[str, Any]]           # the first call's output -> the check
    # after_sample (called after each timed sample, outside its window: the GPU's state)
    # -> (this process's timing, its generation section or None)
    timed: Callable[[Callable[[], None] | None], tuple[dict[str, Any], dict[str, Any] | None]]
    profiled: Callable[[], Any]                         # one iteration under the profiler
    profile_iters: int
    # the first call's output -> (entries for `compile`, flags): what the first call showed
    after_first: Callable[[Any], tuple[dict[str, Any], list[dict[str, str]]]] = lambda first: ({}, [])


def step_parts(workload, prepared, bench: dict[str, Any]) -> Parts:
    """One step (the workload's forward, or forward and backward), timed in calibrated samples."""
    check_inputs = [prepared.convert(inputs) for inputs in workload.check_inputs]

    def first_call():
        out = prepared.step(*check_inputs[0])
        prepared.synchronize(out)
        return out
    return Parts("first call (compile)", first_call,
                 numerics=lambda first: check_numerics(workload, prepared, first, check_inputs),
                 timed=lambda after_sample: (time_it(prepared, bench, after_sample), None),
                 profiled=lambda: prepared.step(*prepared.inputs), profile_iters=bench["profile_iters"])


def generation_parts(task: WorkerTask, workload, prepared, bench: dict[str, Any]) -> Parts:
    """Whole generations timed token by token (harness/worker/generate.py); the profiled
    iterations are decode steps after a prefill, within the generation's positions."""
    from harness.worker import generate
    if generate.DECODE not in prepared.steps:
        raise Unsupported(f"backend {task.config['backend']['name']} prepares no named steps (Prepared.steps): "
                          "a generation needs its decode step beside the prefill")
    gen, steps = workload.generation, generate.Steps.prepared(prepared)
    n, prompt_len = gen.new_tokens, workload.params["prompt_len"]
    watch = generate.CompileWatch(prepared.graphs_compiled, prompt_len)

    def after_first(latencies_ms: list[float]):
        compiles = watch.summary(latencies_ms)
        flag = generate.recompile_flag(compiles, gen.growing)
        return compiles, [flag] if flag else []

    def numerics(first) -> dict[str, Any]:
        progress(f"numerics: {gen.check_tokens} greedy tokens against eager")
        return generate.check_tokens(workload, prepared)
    return Parts(f"first generation (compile): {n} tokens", lambda: generate.generate(steps, n, on_token=watch),
                 numerics=numerics,
                 timed=lambda after_sample: generate.time_generations(
                     steps, n, bench, workload.params["batch"], prompt_len, after_sample),
                 profiled=generate.decode_steps(steps), profile_iters=min(bench["profile_iters"], n - 2),
                 after_first=after_first)


def measure(task: WorkerTask) -> WorkerResult:
    """The one skeleton: setup, first call (compile), numerics, timing with the compiles and
    graph replays around it and the memory peak, then (first process) the profiled iterations
    and the tables."""
    from harness.orchestrator import plugins
    from harness.worker import environment

    cfg = task.config
    bench, run_dir = cfg["bench"], Path(task.run_dir)
    result = WorkerResult()
    device, workload, prepared, why_not = setup(task)
    result.environment = environment.capture(device.type, plugins.backend_spec(cfg["backend"]["name"]).packages)
    if why_not:
        return _with(result, SKIPPED, why_not)
    result.params, result.shape = workload.params, workload.shape
    if workload.emulated:
        result.flags.append({"code": "emulated", "detail": workload.emulated})
    result.throughput_basis = {"flops_per_iter": workload.flops, "min_bytes_per_iter": workload.min_bytes,
                               "tokens_per_iter": workload.tokens_per_iter}
    try:
        parts = (step_parts(workload, prepared, bench) if workload.generation is None
                 else generation_parts(task, workload, prepared, bench))
        # The first call is numerics step 0: its time is compile + one execution.
        progress(parts.first_label)
        work_start = time.perf_counter()
        first = parts.first_call()
    except Unsupported as e:     # the backend cannot run this program: skipped, with the op named
        return _with(result, SKIPPED, str(e))
    result.first_call_s = time.perf_counter() - work_start
    artifacts: list[Artifact] = prepared.artifacts() if task.first else []
    compiles, flags = parts.after_first(first)
    result.compile = dict(prepared.compile_info, phases=prepared.compile_phases(result.first_call_s),
                          cache=bench["compile_cache"], **compiles)
    result.flags.extend(flags)
    if task.prime_only:
        return result
    if task.first and bench["check_numerics"]:
        result.numerics = parts.numerics(first)
        if not result.numerics["passed"]:
            # wrong numbers: no figure of this run could be used, so none is measured
            return _with(result, FAILED, f"numerics: {result.numerics['detail']}")

    timed_window(task, prepared, parts, result)
    result.memory = {"runtime_peak_bytes": prepared.peak_memory_bytes(),
                     "runtime_peak_source": prepared.peak_memory_source}
    if task.first and bench["profile"] and prepared.profile is not None and parts.profile_iters > 0:
        progress(f"profiling {parts.profile_iters} iterations")
        try:
            artifacts.append(prepared.profile(parts.profiled, parts.profile_iters, run_dir))
            result.profile_iters, result.trace_note = parts.profile_iters, prepared.trace_note
        except OSError as e:   # an unwritable run dir: the timing above still stands
            result.flags.append({"code": "collector", "detail": f"profiler: {type(e).__name__}: {e}"})
    # Compile + numerics + timing + profiling: what a run is for. The rest is harness overhead.
    result.work_s = time.perf_counter() - work_start
    if task.first:
        collect(run_dir, artifacts, result)
    result.artifacts = artifacts
    return result


def timed_window(task: WorkerTask, prepared, parts: Parts, result: WorkerResult) -> None:
    """The timed samples into `result.timing`, with what happened around them: the host's load
    on the run's cores and the GPU's state after each sample (outside its window), when the
    warm-up began, and the compiles and graph replays during the window."""
    from harness.worker import gpu_state, host_load
    progress(f"timing (process {task.process_index + 1} of {task.processes})")
    graphs_before = prepared.graphs_compiled()
    evidence_before = prepared.run_evidence()
    prepared.reset_peak_memory()
    timing_started_at = time.time()
    load_before = host_load.snapshot()
    with gpu_state.recording((result.environment or {}).get("device")) as state:
        result.timing, result.generation = parts.timed(state.after_sample)
    result.timing["host_load"] = host_load.window(load_before, host_load.snapshot())
    readings = state.state()
    if readings is not None:
        result.timing["gpu_state"] = readings
    result.timing["started_at"] = timing_started_at     # epoch seconds: this process's warm-up began
    result.compile.update(_evidence(evidence_before, prepared.run_evidence()))
    graphs_after = prepared.graphs_compiled()
    if graphs_before is not None:
        result.compile["recompiles_during_timing"] = graphs_after - graphs_before
        if graphs_after != graphs_before:
            result.flags.append({"code": "recompiled", "detail": (
                f"{graphs_after - graphs_before} graph(s) compiled during timing: the timing mixes compile and run")})


def _with(result: WorkerResult, status: str, reason: str) -> WorkerResult:
    result.status, result.reason = status, reason
    return result


def _evidence(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """How the compiled program ran, with the graph replays of the timed window apart."""
    out = {}
    for key, value in after.items():
        value = dict(value)
        if "graph_replays" in value and key in before:
            value["replays_during_timing"] = value["graph_replays"] - before[key].get("graph_replays", 0)
        out[key] = value
    return out


def collect(run_dir: Path, artifacts: list[Artifact], result: WorkerResult) -> None:
    from harness.worker import run_tables
    env, memory = result.environment, result.memory
    peak = memory.get("runtime_peak_bytes")
    tables = run_tables.collect(run_dir, artifacts, gpu_name=env.get("gpu_name"), sm_clock_mhz=env.get("sm_clock_mhz"),
                                on_gpu=env.get("device") == "cuda", profile_iters=result.profile_iters,
                                runtime_peak=(peak, memory["runtime_peak_source"]) if peak is not None else None)
    artifacts.extend(tables.artifacts)
    if tables.memory_by_kind:
        memory["by_kind"] = tables.memory_by_kind
    result.kernels = tables.kernels
    result.flags.extend(tables.flags)


def _watchdog(lifeline_fd: int, deadline_s: float) -> None:
    """Die with the orchestrator and at the deadline, whatever the main thread is stuck in.
    The orchestrator holds the write end of the lifeline and nobody writes to it: it becomes
    readable (end of file) only when every copy of that end is closed, i.e. when the
    orchestrator is gone, whether it spawned this process or a fork server forked it.
    (PR_SET_PDEATHSIG covers the direct parent too; this covers a parent that died before it.)"""
    started = time.monotonic()
    poller = select.poll()
    poller.register(lifeline_fd, select.POLLIN | select.POLLHUP)
    while True:
        orphaned = bool(poller.poll(500))
        late = deadline_s and time.monotonic() - started > deadline_s
        if orphaned or late:
            print(f"[worker] {'orchestrator gone' if orphaned else 'past its deadline'}: exiting",
                  file=sys.stderr, flush=True)
            os.killpg(os.getpgid(0), signal.SIGKILL)


def run(task: WorkerTask, result_fd: int, lifeline_fd: int) -> int:
    """Measure and send the result; the exit code (0: a result was sent)."""
    threading.Thread(target=_watchdog, args=(lifeline_fd, task.deadline_s), daemon=True).start()
    try:
        result = measure(task)
    except ConfigError as e:
        result = WorkerResult(status=CONFIG_ERROR, reason=e.message, config_key=e.key)
    except CpuFallback as e:
        result = WorkerResult(status=CPU_FALLBACK, reason=str(e))
    except Exception as e:  # recorded as a failed run, with the traceback in the stderr tail
        traceback.print_exc()
        result = WorkerResult(status=FAILED, reason=f"{type(e).__name__}: {str(e).strip()}"[:2000])
    with os.fdopen(result_fd, "w") as pipe:
        pipe.write(result.to_json())
    return 0


def main(argv: list[str]) -> int:
    result_fd, lifeline_fd = int(argv[0]), int(argv[1])
    return run(WorkerTask.from_dict(json.loads(sys.stdin.read())), result_fd, lifeline_fd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
