"""What can be known to be wrong before anything runs: torch-free, before any worker process
starts and before Hydra creates a run or sweep dir.

`check_run(cfg)`: the bench values, the device, the seed, the GPU pool, and the workload's
parameters resolved as the worker will resolve them (the presets and `validate` its package
declares beside its schema). `Preflight` is a Hydra callback (conf/config.yaml) that calls it
on a run's config (`on_run_start`) and on every job of a sweep (`on_multirun_start`), both of
which Hydra calls before it creates a directory: `workload.M=-3` or `bench.repeats=0` is one
line naming the key, exit 2, and leaves nothing behind (it used to take 7 s, start a worker
and write a failed record, or leave an empty run dir).

`check_writable(dir)`: results can be written there, tried without creating anything.
"""
from __future__ import annotations

import errno
import functools
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf

from harness.errors import ConfigError, die
from harness.orchestrator import gpus, plugins
from harness.orchestrator.config import check_bench

DEVICES = ("auto", "cuda", "cpu")
CPU_PINNING = ("auto", "none")
# numpy's RandomState takes seeds 0 .. 2**32 - 1 (the worker seeds random, numpy and torch).
MAX_SEED = 2 ** 32 - 1
# What the probe of a results dir writes and syncs: an empty file is created even on a full
# disk, and Hydra's first config file then died there with an ENOSPC traceback.
PROBE_BYTES = 1 << 20


@functools.lru_cache(maxsize=1)
def _auto_device() -> str:
    """What `device=auto` becomes in the worker, as far as the orchestrator can tell."""
    return "cuda" if gpus.visible_gpus() else "cpu"


def device_types(device: Any, remote: bool = False) -> tuple[str, ...]:
    """The device types a run may resolve its workload for: `auto` is the GPU where this host
    has one, except for jobs a launcher sends to other hosts (Slurm), which may land on either."""
    if device not in DEVICES:
        raise ConfigError("device", f"expected one of {', '.join(DEVICES)}, got {device!r}")
    if device != "auto":
        return (device,)
    return ("cuda", "cpu") if remote else (_auto_device(),)


def check_run(cfg: Mapping[str, Any], remote: bool = False) -> dict[str, Any]:
    """Every value of a resolved run config that can be checked without torch; the workload's
    resolved parameters (for the first device type it is valid on; `remote`: the job runs on
    another host). ConfigError naming the key on the first wrong one."""
    check_bench(cfg["bench"])
    seed = cfg.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise ConfigError("seed", f"expected an integer from 0 to {MAX_SEED}, got {seed!r}")
    if cfg.get("cpu_pinning", "auto") not in CPU_PINNING:
        raise ConfigError("cpu_pinning", f"expected one of {', '.join(CPU_PINNING)}, "
                          f"got {cfg.get('cpu_pinning')!r}")
    if cfg.get("gpu_pool", "auto") != "auto":
        gpus.pool(cfg["gpu_pool"])
    plugins.backend_spec(cfg["backend"]["name"])
    spec = plugins.workload_spec(cfg["workload"]["name"])
    errors = []
    for device in device_types(cfg.get("device", "auto"), remote):
        try:
            return spec.resolve(dict(cfg["workload"]), device)
        except ConfigError as e:
            errors.append(e)
    raise errors[0]


def run_config(config: DictConfig) -> dict[str, Any]:
    """The run's own keys of a composed config (not `hydra`), interpolations resolved."""
    out = {}
    for key in config:
        if key == "hydra":
            continue
        value = config[key]
        out[key] = (OmegaConf.to_container(value, resolve=True)
                    if isinstance(value, (DictConfig, ListConfig)) else value)
    return out


def sweep_jobs(config: DictConfig) -> list[list[str]] | None:
    """Each job's overrides, as Hydra's basic sweeper will launch them; None for another
    sweeper (its jobs are checked when each runs)."""
    # Hydra's basic sweeper, or ours, which launches the same jobs (grouped where they interleave)
    if not str(config.hydra.sweeper.get("_target_", "")).endswith(("BasicSweeper", "InterleaveSweeper")):
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    loader = GlobalHydra.instance().config_loader()
    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    overrides = OverridesParser.create(config_loader=loader).parse_overrides(
        params + list(config.hydra.overrides.task))
    return [list(job) for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


class Preflight(Callback):
    """`check_run` before Hydra creates anything: one line, exit 2, on a config error."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_run(run_config(config))
        except ConfigError as e:
            die(str(e))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        jobs = sweep_jobs(config)
        if jobs is None:
            return
        remote = "Slurm" in str(config.hydra.launcher.get("_target_", ""))
        from hydra.core.global_hydra import GlobalHydra
        loader = GlobalHydra.instance().config_loader()
        checked: set[tuple[str, ...]] = set()
        for job in jobs:
            # What check_run looks at does not depend on the backend's options: composing a
            # job costs ~0.1-0.2 s, so jobs that differ only there are composed once.
            key = tuple(o for o in job if not o.startswith(("backend=", "backend.")))
            if key in checked:
                continue
            checked.add(key)
            try:
                check_run(run_config(loader.load_sweep_config(config, job)), remote)
            except ConfigError as e:
                die(f"{e} (sweep job: {' '.join(job) or 'the defaults'})")


def check_writable(directory: Path) -> None:
    """One line naming the path (exit 2) when results cannot be written there. Creates
    nothing: the nearest folder on the way that exists gets a probe file of PROBE_BYTES,
    written, synced and removed."""
    directory = Path(directory)
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".harness-probe-") as probe:
            probe.write(b"\0" * PROBE_BYTES)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as e:
        raise ConfigError("output", f"cannot write results to {directory}: {e.strerror or e}") from None
