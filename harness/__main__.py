"""`python -m harness workload=fp8_linear backend=inductor` (one run) or `-m ...` (a sweep).

The Hydra app is only an orchestrator: each job's measurement runs in its own worker process.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from harness.config import register_configs
from harness.errors import ConfigError, die
from harness.describe import summary_line
from harness.orchestrator import execute, existing_record
from harness.record import RECORD_NAME
from harness.registry import config_options

register_configs()


def _check_group_choices(argv: list[str]) -> None:
    """`workload=nope` gets one line naming the options, before Hydra's multi-line message."""
    for arg in argv:
        for group in ("workload", "backend", "bench"):
            if arg.startswith(f"{group}="):
                options = config_options(group)
                values = arg.split("=", 1)[1]
                if any(ch in values for ch in "()[]$"):
                    continue  # a sweep function such as choice(...): Hydra checks those itself
                for value in values.split(","):
                    if value not in options:
                        die(f"unknown {group} {value!r}; available: {', '.join(options)}")


@hydra.main(version_base=None, config_path="../conf", config_name="config")
def app(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    label = f"job {hc.job.num}" if multirun else "run"
    overrides = " ".join(hc.overrides.task)
    print(f"[{label}] {overrides or '(defaults)'} -> {run_dir}", file=sys.stderr, flush=True)

    previous = existing_record(run_dir)
    if previous is not None:
        if previous.get("status") == "ok" and not cfg.force:
            print(f"[{label}] already ok, skipped (resume): {summary_line(previous)}", flush=True)
            return
        # Keep the earlier attempt beside the new one: results are never overwritten.
        stamp = time.strftime("%Y%m%d-%H%M%S")
        (run_dir / RECORD_NAME).rename(run_dir / f"record.{stamp}.{previous.get('status')}.json")

    container = OmegaConf.to_container(cfg, resolve=True)
    try:
        record = execute(container, run_dir)
    except ConfigError as e:
        die(str(e))
    print(summary_line(record.to_dict()), flush=True)
    if not multirun and record.status == "failed":
        code = 2 if record.reason.startswith("config error: ") else 1
        if code == 2:
            print(f"error: {record.reason[len('config error: '):]}", file=sys.stderr)
        raise SystemExit(code)


def main() -> None:
    _check_group_choices(sys.argv[1:])
    app()


if __name__ == "__main__":
    main()
