from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SEEDS = FIXTURES / "seeds"


def harness_env(base: dict[str, str] | None = None) -> dict[str, str]:
    return dict(os.environ if base is None else base, PYTHONPATH=str(REPO), HYDRA_FULL_ERROR="0")


def run_harness(*overrides: str, cwd: Path = REPO, timeout: float = 600,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The CLI exactly as a user runs it, in its own process (env: e.g. with SLURM_CONF)."""
    return subprocess.run([sys.executable, "-m", "harness", *overrides], cwd=cwd, env=harness_env(env),
                          capture_output=True, text=True, timeout=timeout)


def start_harness(*overrides: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The CLI in the background, for tests that act on its jobs while it waits for them."""
    return subprocess.Popen([sys.executable, "-m", "harness", *overrides], cwd=REPO, env=harness_env(env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def records(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(root).rglob("record.json"))]


def workload_cfg(name: str, **overrides) -> dict:
    """A workload's config as Hydra composes it (its schema's defaults), with the overrides."""
    import dataclasses
    from harness.orchestrator import plugins
    return {**dataclasses.asdict(plugins.workload_spec(name).schema(name=name)), **overrides}


def build_workload(name: str, **overrides):
    """A workload as the worker builds it on the CPU: its schema's defaults, the overrides, seed 0."""
    import torch
    from harness.orchestrator import plugins
    cfg = workload_cfg(name, **overrides)
    torch.manual_seed(0)
    return plugins.load(plugins.workload_spec(name).build)(cfg, torch.device("cpu"))


def check_steps(prepared, workload):
    """What the worker does up to numerics: every check step through the prepared backend
    (the first one compiles), then the outputs against the workload's float32 reference."""
    from harness.worker.numerics import compare
    outputs = []
    for inputs in [prepared.convert(i) for i in workload.check_inputs]:
        out = prepared.step(*inputs)
        prepared.synchronize(out)
        outputs.append(prepared.to_torch(out))
    return outputs, compare(outputs, workload.reference(), workload.min_sqnr_db, workload.output_names)


@pytest.fixture(scope="session")
def slurm_cluster():
    """One throwaway Slurm for the session (scripts/slurm_cluster.sh), stopped at the end."""
    import slurm_cluster as slurm
    reason = slurm.unavailable()
    if reason:
        pytest.skip(reason)
    with slurm.started() as cluster:
        yield cluster


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    return tmp_path / "sweep"


def resolve(model, cfg: dict, device_type: str) -> dict:
    """A workload's validated parameters for a device type, without building anything."""
    from harness.params import resolve as resolve_params
    return resolve_params(cfg, model.PRESETS, device_type, model.DEFAULT_PRESET, model.validate)
