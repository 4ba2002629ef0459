"""The measurement, in a fresh interpreter: `python -m harness.worker.measure RESULT_FD < task.json`.

The orchestrator writes a `WorkerTask` (JSON) to stdin and reads the result (JSON) from the
pipe whose write end is RESULT_FD: no file names between the two, so no stale result of a
killed attempt can be taken for this one and nothing in the run dir is ever deleted. Progress
goes to stderr, one line per phase, which the orchestrator streams. Exit code 2 means a config
error (the message is the last stderr line); anything else non-zero is a failure the
orchestrator records from the exit status and stderr tail.

One process measures one config once; `bench.processes=N` runs N of them. The first also
checks numerics, keeps the compiler's artifacts, profiles and collects the tables; the others
only time (their compile hits the cache the first one filled).
"""
from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CONFIG_ERROR_PREFIX = "config error: "
CPU_FALLBACK_PREFIX = "cpu fallback: "


@dataclass
class WorkerTask:
    config: dict[str, Any]          # the resolved run config
    run_dir: str
    compile_cache_dir: str          # the backend's declared cache dirs live under it
    process_index: int = 0          # 0: the process that also checks, profiles and collects
    processes: int = 1
    prime_only: bool = False        # fill the compile cache (first call) and stop
    gpus_listed: int = 0            # GPUs nvidia-smi lists on this node (0: none, or no nvidia-smi)
    gpu_slot: str | None = None     # the GPU the orchestrator gave this run
    orchestrator_pid: int = 0
    deadline_s: float = 0.0         # the worker kills itself this long after starting (0: never)

    @property
    def first(self) -> bool:
        return self.process_index == 0 and not self.prime_only


def progress(message: str) -> None:
    print(f"[worker] {message}", file=sys.stderr, flush=True)


def resolve_device(requested: str, task: WorkerTask):
    """`auto` is the GPU where torch sees one. On a node whose GPUs nvidia-smi lists, a torch
    that sees none is a failed run, never a quiet CPU run (submitit's local executor once gave
    every job CUDA_VISIBLE_DEVICES="" and a GPU sweep ran on the CPU)."""
    import torch

    from harness.errors import ConfigError
    if requested not in ("auto", "cuda", "cpu"):
        raise ConfigError("device", f"expected auto, cuda or cpu, got {requested!r}")
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "cuda":
        raise ConfigError("device", "cuda requested but torch.cuda.is_available() is False")
    if task.gpus_listed or task.gpu_slot is not None:
        raise RuntimeError(f"{CPU_FALLBACK_PREFIX}this node lists {task.gpus_listed} GPU(s) (nvidia-smi)"
                           f"{'' if task.gpu_slot is None else f' and the run was given GPU {task.gpu_slot}'}"
                           f", but torch sees none (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); "
                           "device=cpu runs on the CPU on purpose")
    return torch.device("cpu")


def setup(task: WorkerTask):
    """Device, workload and prepared backend; `why_not` when the backend cannot run here.
    Shared with scripts/fidelity.py."""
    import numpy as np
    import torch

    from harness.errors import Unsupported
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


def time_it(prepared, bench: dict[str, Any], after_sample=None) -> dict[str, Any]:
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


def measure(task: WorkerTask) -> dict[str, Any]:
    from harness.worker import environment
    from harness.orchestrator import plugins
    from harness.errors import Unsupported
    from harness.worker.backend import Artifact

    cfg = task.config
    result: dict[str, Any] = {"status": "ok", "reason": "", "artifacts": [], "flags": []}
    device, workload, prepared, why_not = setup(task)
    result["environment"] = environment.capture(device.type, plugins.backend_spec(cfg["backend"]["name"]).packages)
    if why_not:
        result.update(status="skipped", reason=why_not)
        return result
    result["params"] = workload.params
    result["throughput_basis"] = {"flops_per_iter": workload.flops, "min_bytes_per_iter": workload.min_bytes,
                                  "tokens_per_iter": workload.tokens_per_iter}
    if workload.generation is not None:      # whole generations, timed token by token
        from harness.worker.generate import measure_generation
        return measure_generation(task, workload, prepared, result)
    bench = cfg["bench"]

    # First call = numerics step 0: its time is compile + one execution.
    check_inputs = [prepared.convert(inputs) for inputs in workload.check_inputs]
    progress("first call (compile)")
    t0 = work_start = time.perf_counter()
    try:
        first = prepared.step(*check_inputs[0])
        prepared.synchronize(first)
    except Unsupported as e:     # the backend cannot run this program: skipped, with the op named
        result.update(status="skipped", reason=str(e))
        return result
    result["first_call_s"] = time.perf_counter() - t0
    phases = prepared.compile_phases(result["first_call_s"])
    artifacts: list[Artifact] = prepared.artifacts() if task.first else []
    result["compile"] = dict(prepared.compile_info, phases=phases, cache=bench["compile_cache"])
    if task.prime_only:
        return result
    if task.first and bench["check_numerics"]:
        result["numerics"] = check_numerics(workload, prepared, first, check_inputs)
        if not result["numerics"]["passed"]:
            # wrong numbers: no figure of this run could be used, so none is measured
            result.update(status="failed", reason=f"numerics: {result['numerics']['detail']}")
            return result

    return time_and_collect(task, prepared, result, artifacts, work_start, lambda after: time_it(prepared, bench, after),
                            lambda: prepared.step(*prepared.inputs), bench["profile_iters"])


def time_and_collect(task: WorkerTask, prepared, result: dict[str, Any], artifacts: list, work_start: float,
                     time_fn, profile_fn, profile_iters: int) -> dict[str, Any]:
    """After the first call and the numerics: `time_fn(after_sample)` -> the timing, with the
    GPU's state after each sample (harness/worker/gpu_state.py), the compiles and graph replays
    around it and the memory peak, then (first process) `profile_iters` calls of `profile_fn`
    under the profiler and the tables."""
    from harness.worker import gpu_state
    bench, run_dir = task.config["bench"], Path(task.run_dir)
    progress(f"timing (process {task.process_index + 1} of {task.processes})")
    graphs_before = prepared.graphs_compiled()
    evidence_before = prepared.run_evidence()
    prepared.reset_peak_memory()
    with gpu_state.recording(result["environment"].get("device")) as state:
        result["timing"] = time_fn(state.after_sample)
    if state.state() is not None:
        result["timing"]["gpu_state"] = state.state()
    result["compile"].update(_evidence(evidence_before, prepared.run_evidence()))
    graphs_after = prepared.graphs_compiled()
    if graphs_before is not None:
        result["compile"]["recompiles_during_timing"] = graphs_after - graphs_before
        if graphs_after != graphs_before:
            result["flags"].append({"code": "recompiled", "detail": (
                f"{graphs_after - graphs_before} graph(s) compiled during timing: the timing mixes compile and run")})
    result["memory"] = {"runtime_peak_bytes": prepared.peak_memory_bytes(),
                        "runtime_peak_source": prepared.peak_memory_source}
    if task.first and bench["profile"] and prepared.profile is not None and profile_iters > 0:
        progress(f"profiling {profile_iters} iterations")
        try:
            artifacts.append(prepared.profile(profile_fn, profile_iters, run_dir))
            result["profile_iters"], result["trace_note"] = profile_iters, prepared.trace_note
        except OSError as e:   # an unwritable run dir: the timing above still stands
            result["flags"].append({"code": "collector", "detail": f"profiler: {type(e).__name__}: {e}"})
    # Compile + numerics + timing + profiling: what a run is for. The rest is harness overhead.
    result["work_s"] = time.perf_counter() - work_start
    if task.first:
        collect(run_dir, artifacts, result)
    result["artifacts"] = [a.to_dict() for a in artifacts]
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


def collect(run_dir: Path, artifacts: list, result: dict[str, Any]) -> None:
    from harness.worker import run_tables
    env = result["environment"]
    peak = result["memory"].get("runtime_peak_bytes")
    tables = run_tables.collect(run_dir, artifacts, gpu_name=env.get("gpu_name"), sm_clock_mhz=env.get("sm_clock_mhz"),
                                on_gpu=env.get("device") == "cuda", profile_iters=result.get("profile_iters"),
                                runtime_peak=(peak, result["memory"]["runtime_peak_source"]) if peak is not None else None)
    artifacts.extend(tables.artifacts)
    if tables.memory_by_kind:
        result["memory"]["by_kind"] = tables.memory_by_kind
    result["kernels"] = tables.kernels
    result["flags"].extend(tables.flags)


def _watchdog(task: WorkerTask) -> None:
    """Die with the orchestrator and at the deadline, whatever the main thread is stuck in.
    (The orchestrator also sets PR_SET_PDEATHSIG; this covers a parent that died before it.)"""
    started = time.monotonic()
    while True:
        time.sleep(0.5)
        orphaned = task.orchestrator_pid and os.getppid() != task.orchestrator_pid
        late = task.deadline_s and time.monotonic() - started > task.deadline_s
        if orphaned or late:
            print(f"[worker] {'orchestrator gone' if orphaned else 'past its deadline'}: exiting",
                  file=sys.stderr, flush=True)
            os.killpg(os.getpgid(0), 9)


def main(argv: list[str]) -> int:
    result_fd = int(argv[0])
    task = WorkerTask(**json.loads(sys.stdin.read()))
    threading.Thread(target=_watchdog, args=(task,), daemon=True).start()
    from harness.errors import ConfigError
    try:
        result = measure(task)
    except ConfigError as e:
        print(f"{CONFIG_ERROR_PREFIX}{e}", file=sys.stderr, flush=True)
        return 2
    except Exception as e:  # recorded as a failed run, with the traceback in the stderr tail
        traceback.print_exc()
        text = str(e).strip()
        reason = text if text.startswith(CPU_FALLBACK_PREFIX) else f"{type(e).__name__}: {text}"
        result = {"status": "failed", "reason": reason[:2000],
                  "flags": [{"code": "cpu_fallback", "detail": text}] if text.startswith(CPU_FALLBACK_PREFIX) else []}
    with os.fdopen(result_fd, "w") as pipe:
        json.dump(result, pipe, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
