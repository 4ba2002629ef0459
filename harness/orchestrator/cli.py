"""`python -m harness workload=fp8_linear backend=inductor` (one run) or `-m ...` (a sweep).

The Hydra app is only an orchestrator: each job's measurement runs in its own worker processes.
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from harness.orchestrator.config import CONF_DIR, options, register_configs
from harness.describe import summary_line
from harness.errors import ConfigError, die

try:
    register_configs()
except ConfigError as e:      # a plugin that does not import
    die(str(e))

# Where Hydra puts runs when the command line does not say (conf/config.yaml).
DEFAULT_OUTPUT = {"hydra.run.dir": "results/runs", "hydra.sweep.dir": "results/sweeps"}


def _check_group_choices(argv: list[str]) -> None:
    """`workload=nope` gets one line naming the options, before Hydra's multi-line message."""
    for arg in argv:
        for group in ("workload", "backend", "bench"):
            if arg.startswith(f"{group}="):
                known = options(group)
                values = arg.split("=", 1)[1]
                if any(ch in values for ch in "()[]$"):
                    continue  # a sweep function such as choice(...): Hydra checks those itself
                for value in values.split(","):
                    if value not in known:
                        die(f"unknown {group} {value!r}; available: {', '.join(known)}")


def _check_output(argv: list[str]) -> None:
    """Hydra creates the run dir before our code runs and fails with a traceback where it
    cannot: say it in one line first. A dir given with interpolations is checked up to them."""
    from harness.orchestrator.preflight import check_writable
    key = "hydra.sweep.dir" if {"-m", "--multirun"} & set(argv) else "hydra.run.dir"
    given = next((a.split("=", 1)[1] for a in argv if a.startswith(f"{key}=")), DEFAULT_OUTPUT[key])
    fixed = given.split("$", 1)[0]
    target = Path(fixed) if fixed.endswith("/") or fixed == given else Path(fixed).parent
    try:
        check_writable(target)
    except ConfigError as e:
        die(str(e).split(": ", 1)[1])


@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="config")
def app(cfg: DictConfig) -> None:
    from harness.orchestrator.config import check_bench
    from harness.orchestrator.run import run
    from harness.orchestrator.spawn import Interrupted
    try:
        check_bench(cfg.bench)
    except ConfigError as e:
        die(str(e))
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    label = f"job {hc.job.num}" if multirun else "run"
    overrides = " ".join(hc.overrides.task)
    if cfg.get("interleave_backends"):
        return _interleaved(cfg, hc, label)
    _say_not_interleaved(cfg, hc, multirun)
    print(f"[{label}] {overrides or '(defaults)'} -> {run_dir}", file=sys.stderr, flush=True)
    container = OmegaConf.to_container(cfg, resolve=True)
    try:
        record, where = run(container, run_dir, label)
    except ConfigError as e:
        die(str(e))
    except Interrupted as e:   # before any worker ran (waiting for the run's lock or a GPU): nothing to record
        raise SystemExit(f"interrupted: received {e} before the run started; nothing measured in {run_dir}")
    if record is None:
        return
    print(summary_line(record.to_dict()), flush=True)
    if not where.startswith(str(run_dir)):
        raise SystemExit(2)          # the record went to the fallback path `save` named
    if record.reason.startswith("interrupted:"):
        raise SystemExit(f"{record.reason}; failed record written to {run_dir}")
    if not multirun and record.status == "failed":
        if record.config_error:
            print(f"error: {record.config_error['key']}: {record.config_error['message']}", file=sys.stderr)
            raise SystemExit(2)
        raise SystemExit(1)


def _start_servers(argv: list[str]) -> None:
    """The fork servers of the backends the command line names start in the background now,
    not when the first run asks (a backend from an experiment or the defaults starts then)."""
    if "bench.isolation=spawn" in argv:
        return
    from harness.orchestrator import forkserver
    named = [a.split("=", 1)[1] for a in argv if a.startswith("backend=") and not any(ch in a for ch in "()[]$")]
    forkserver.start_early([option for values in named for option in values.split(",")])


def _interleaved(cfg: DictConfig, hc, label: str) -> None:
    """A job of the interleaving sweeper: its members' processes in turn (orchestrator/interleave.py)."""
    from harness.orchestrator import interleave
    from harness.orchestrator.spawn import Interrupted
    backends = list(cfg.interleave_backends)
    print(f"[{label}] {' '.join(interleave.member_overrides(hc.overrides.task, '|'.join(backends)))} "
          f"-> {len(backends)} runs interleaved", file=sys.stderr, flush=True)
    members = interleave.compose_members(list(hc.overrides.task), backends, hc.job.config_name, Path(hc.sweep.dir))
    try:
        results = interleave.run_group(members, label)
    except ConfigError as e:
        die(str(e))
    except Interrupted as e:
        raise SystemExit(f"interrupted: received {e} before the runs started; nothing measured")
    for (record, where), (_, run_dir) in zip(results, members):
        if record is None:
            continue
        print(summary_line(record.to_dict()), flush=True)
        if not where.startswith(str(run_dir)):
            raise SystemExit(2)
        if record.reason.startswith("interrupted:"):
            raise SystemExit(f"{record.reason}; failed records written")


def _say_not_interleaved(cfg: DictConfig, hc, multirun: bool) -> None:
    """bench.interleave asked for but this job is one run alone: say why, in one line."""
    if not cfg.bench.get("interleave"):
        return
    if not multirun:
        print("[run] bench.interleave: a single run has nothing to alternate with; it applies to sweeps (-m)",
              file=sys.stderr, flush=True)
    elif not str(hc.sweeper.get("_target_", "")).endswith("InterleaveSweeper"):
        print(f"[job {hc.job.num}] bench.interleave: the sweeper {hc.sweeper.get('_target_')} does not group "
              "runs (hydra/sweeper=interleave does); runs one after another", file=sys.stderr, flush=True)


def main() -> None:
    argv = sys.argv[1:]
    _check_group_choices(argv)
    if not any(a.startswith(("--cfg", "--help", "-h", "--info", "--hydra-help", "-c")) for a in argv):
        _check_output(argv)
        _start_servers(argv)
    app()


if __name__ == "__main__":
    main()
