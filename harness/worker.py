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
    prepared.reset_peak_memory()
    t = timing.measure(fn, prepared.synchronize, warmup=bench["warmup"], repeats=bench["repeats"],
                       min_repeat_ms=bench["min_repeat_ms"], max_iters=bench["max_iters_per_repeat"],
                       warmup_ms=bench["warmup_ms"])
    result["timing"] = t.__dict__
    result["memory"] = {"runtime_peak_bytes": prepared.peak_memory_bytes()}
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
    return result


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
