"""The measurement, in a fresh interpreter: `python -m harness.worker RUN_DIR`.

Reads RUN_DIR/run_config.json, writes RUN_DIR/worker_result.json. Progress goes to stderr,
one line per phase, which the orchestrator streams. Exit code 2 means a config error
(the message is the last stderr line); anything else non-zero is a failure the orchestrator
records from the exit status and stderr tail.
"""
from __future__ import annotations

import json
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any

RESULT_NAME = "worker_result.json"
CONFIG_NAME = "run_config.json"
CONFIG_ERROR_PREFIX = "config error: "


def progress(message: str) -> None:
    print(f"[worker] {message}", file=sys.stderr, flush=True)


def resolve_device(requested: str) -> str:
    import torch
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        from harness.errors import ConfigError
        raise ConfigError("device", "cuda requested but torch.cuda.is_available() is False")
    if requested not in ("cuda", "cpu"):
        from harness.errors import ConfigError
        raise ConfigError("device", f"expected auto, cuda or cpu, got {requested!r}")
    return requested


def setup(cfg: dict[str, Any], run_dir: Path):
    """Device, workload and prepared backend for one resolved config; None if the backend is
    unavailable here (then `reason` says why). Shared with scripts/fidelity.py."""
    import numpy as np
    import torch

    from harness.registry import backend_module, workload_module

    device = torch.device(resolve_device(cfg.get("device", "auto")))
    random.seed(cfg["seed"]); np.random.seed(cfg["seed"]); torch.manual_seed(cfg["seed"])
    backend = backend_module(cfg["backend"]["name"])
    why_not = backend.unavailable()
    if why_not:
        return device, None, None, why_not
    progress(f"building workload {cfg['workload']['name']} on {device.type}")
    workload = workload_module(cfg["workload"]["name"]).build(cfg["workload"], device)
    progress(f"preparing backend {cfg['backend']['name']}")
    prepared = backend.prepare(workload, cfg["backend"], device, run_dir)
    return device, workload, prepared, None


def measure(cfg: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    from harness import environment, numerics, timing

    result: dict[str, Any] = {"status": "ok", "reason": "", "artifacts": {}}
    device, workload, prepared, why_not = setup(cfg, run_dir)
    result["environment"] = environment.capture(device.type)
    if why_not:
        result.update(status="skipped", reason=why_not)
        return result
    result["params"] = workload.params
    bench = cfg["bench"]

    # First call = numerics step 0: its time is compile + one execution.
    check_inputs = [prepared.convert(inputs) for inputs in workload.check_inputs]
    progress("first call (compile)")
    t0 = work_start = time.perf_counter()
    first = prepared.step(*check_inputs[0])
    prepared.synchronize(first)
    result["compile_s"] = time.perf_counter() - t0
    result["compile"] = dict(prepared.compile_info)
    result["compile"]["phases"] = prepared.compile_phases(result["compile_s"])
    result["compile"]["cache"] = bench["compile_cache"]
    if bench.get("prime_only"):
        return result
    result["artifacts"].update(prepared.collect_artifacts(run_dir))

    if bench["check_numerics"]:
        outputs = [prepared.to_torch(first)]
        for inputs in check_inputs[1:]:
            out = prepared.step(*inputs)
            prepared.synchronize(out)
            outputs.append(prepared.to_torch(out))
        progress(f"numerics over {len(outputs)} step(s)")
        check = numerics.compare(outputs, workload.reference(), workload.min_sqnr_db, workload.output_names)
        result["numerics"] = check.to_dict()
        if not check.passed:
            result.update(status="failed", reason=f"numerics: {check.detail}")

    progress("timing")
    fn = lambda: prepared.step(*prepared.inputs)  # noqa: E731
    graphs_before = prepared.graphs_compiled()
    prepared.reset_peak_memory()
    t = timing.measure(fn, prepared.synchronize, warmup=bench["warmup"], repeats=bench["repeats"],
                       min_repeat_ms=bench["min_repeat_ms"], max_iters=bench["max_iters_per_repeat"],
                       warmup_ms=bench["warmup_ms"])
    result["timing"] = t.__dict__
    graphs_after = prepared.graphs_compiled()
    if graphs_before is not None:
        result["compile"]["recompiles_during_timing"] = graphs_after - graphs_before
        if graphs_after != graphs_before:
            result.setdefault("flags", []).append(
                f"recompiled during timing ({graphs_after - graphs_before} graph(s)): the timing mixes compile and run")
    result["memory"] = {"runtime_peak_bytes": prepared.peak_memory_bytes(),
                        "runtime_peak_source": prepared.peak_memory_source}
    seconds = t.median_ms / 1e3
    result["throughput"] = {
        "flops_per_iter": workload.flops,
        "min_bytes_per_iter": workload.min_bytes,
        "tflops": workload.flops / seconds / 1e12 if workload.flops else None,
        "gbps_min_bytes": workload.min_bytes / seconds / 1e9 if workload.min_bytes else None,
        "tokens_per_s": workload.tokens_per_iter / seconds if workload.tokens_per_iter else None,
    }

    if bench["profile"] and prepared.profile is not None:
        progress(f"profiling {bench['profile_iters']} iterations")
        trace = prepared.profile(fn, bench["profile_iters"], run_dir)
        result["artifacts"]["trace"] = Path(trace).name
        result["profile_iters"] = bench["profile_iters"]
    # Compile + numerics + timing + profiling: what a run is for. The rest is harness overhead.
    result["work_s"] = time.perf_counter() - work_start
    collect_tables(run_dir, result)
    return result


def collect_tables(run_dir: Path, result: dict[str, Any]) -> None:
    """The run's normalised memory and kernel tables, as Parquet beside the record. A parser
    that fails on our own artifacts flags the run instead of failing it: the timing holds."""
    artifacts = result["artifacts"]
    # XLA's buffer assignment (its -values/-live-range siblings are found by the parser) or
    # Inductor's output code
    dumps = [run_dir / p for p in artifacts.values()
             if p.endswith("-buffer-assignment.txt") or p.startswith("inductor_output_code")]
    peak = (result.get("memory") or {}).get("runtime_peak_bytes")
    if not dumps and peak is None and "trace" not in artifacts:
        return   # nothing to collect: spare the run pandas' import (~1 s of harness overhead)
    from harness.collect import memory
    try:
        summary, buffers = memory.memory_table_from_files(dumps) if dumps else (None, None)
        if peak is not None:
            row = memory.runtime_peak_row(peak, result["memory"].get("runtime_peak_source", "runtime peak"))
            summary = row if summary is None else memory.pd.concat([summary, row], ignore_index=True)
        if summary is not None:
            summary.to_parquet(run_dir / "memory.parquet")
            artifacts["memory_table"] = "memory.parquet"
            result["memory"]["by_kind"] = {
                f"{g}:{k}" if g else k: (None if memory.pd.isna(b) else int(b))
                for g, k, b in summary[["graph", "kind", "bytes"]].itertuples(index=False)}
        if buffers is not None and len(buffers):
            buffers.to_parquet(run_dir / "memory_buffers.parquet")
            artifacts["memory_buffers"] = "memory_buffers.parquet"
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        result.setdefault("flags", []).append(f"memory collector: {type(e).__name__}: {e}")

    trace = artifacts.get("trace")
    if trace and result["environment"].get("device") == "cuda":   # CPU traces have no GPU kernels
        from harness.collect import kernels
        env = result["environment"]
        try:
            hlo_dir = run_dir / "xla_dump"
            table = kernels.kernel_table(run_dir / trace, iters=result.get("profile_iters"),
                                         device=env.get("gpu_name"), sm_clock_mhz=env.get("sm_clock_mhz"),
                                         hlo_dir=hlo_dir if hlo_dir.is_dir() else None)
            table.to_parquet(run_dir / "kernels.parquet")
            artifacts["kernel_table"] = "kernels.parquet"
            summary = dict(table.attrs)
            if result.get("timing"):
                summary.update(kernels.launch_overhead(table, result["timing"]["median_ms"] * 1e3))
            summary["by_category_us_per_iter"] = {
                k: float(v) for k, v in table.groupby("category")["time_us_per_iter"].sum().items()}
            result["kernels"] = json.loads(json.dumps(summary, default=str))
        except Exception as e:  # noqa: BLE001
            result.setdefault("flags", []).append(f"kernel collector: {type(e).__name__}: {e}")



def main(argv: list[str]) -> int:
    run_dir = Path(argv[0])
    cfg = json.loads((run_dir / CONFIG_NAME).read_text())
    from harness.errors import ConfigError
    from harness.record import write_json_atomic
    try:
        result = measure(cfg, run_dir)
    except ConfigError as e:
        print(f"{CONFIG_ERROR_PREFIX}{e}", file=sys.stderr, flush=True)
        return 2
    except Exception as e:  # recorded as a failed run, with the traceback in the stderr tail
        traceback.print_exc()
        result = {"status": "failed", "reason": f"{type(e).__name__}: {e}".strip()[:2000]}
    write_json_atomic(run_dir / RESULT_NAME, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
