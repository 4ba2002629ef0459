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


def run_harness(*overrides: str, cwd: Path = REPO, timeout: float = 600) -> subprocess.CompletedProcess:
    """The CLI exactly as a user runs it, in its own process."""
    env = dict(os.environ, PYTHONPATH=str(REPO), HYDRA_FULL_ERROR="0")
    return subprocess.run([sys.executable, "-m", "harness", *overrides], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def records(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(root).rglob("record.json"))]


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    return tmp_path / "sweep"


def resolve(model, cfg: dict, device_type: str) -> dict:
    """A workload's validated parameters for a device type, without building anything."""
    from harness.workload import resolve as resolve_params
    return resolve_params(cfg, model.PRESETS, device_type, model.DEFAULT_PRESET, model.validate)
