from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.orchestrator.forkserver import with_repo_path  # noqa: F401 (the tests' CLIs start with it)

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SEEDS = FIXTURES / "seeds"


def harness_env(base: dict[str, str] | None = None) -> dict[str, str]:
    return dict(with_repo_path(dict(os.environ if base is None else base)), HYDRA_FULL_ERROR="0")


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


def composed(*overrides: str, hydra: bool = False) -> dict:
    """The run config Hydra composes for these overrides (conf/config.yaml), as a plain dict."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from harness.orchestrator.config import register_configs
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)
        return OmegaConf.to_container(cfg, resolve=not hydra)


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


def report_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.report", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env=with_repo_path(dict(os.environ)))


@dataclass(frozen=True)
class SweepRun:
    path: Path
    stdout: str       # the CLI's console lines


@pytest.fixture(scope="session")
def cpu_sweep_run(tmp_path_factory) -> SweepRun:
    """One real sweep for the whole session, read by the report, compare, history and
    orchestrator tests (xdist group `cpu_sweep`: one worker builds it): fp8_linear and faulty x
    eager and inductor, plus a faulty run that raises. The CPU has no GPU trace, so the two
    fp8_linear runs get the kernel tables of the committed H100 traces and small memory tables,
    as a GPU worker writes them. Tests that change it work on a copy (copy_sweep)."""
    import pandas as pd
    from harness.collect.kernel_table import kernel_table

    sweep = tmp_path_factory.mktemp("report") / "sweep"
    proc = run_harness("-m", "workload=fp8_linear,faulty", "backend=eager,inductor", "bench=quick",
                       f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    stdout = proc.stdout
    proc = run_harness("-m", "workload=faulty", "workload.fault=raise", "backend=eager",
                       "bench=quick", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    for backend, temp in (("eager", 2e6), ("inductor", 8e6)):
        (run,) = sweep.glob(f"fp8_linear_{backend}_*")
        kernel_table(FIXTURES / "traces" / f"h100_fp8_linear_fwd_bwd_{backend}.trace.json.gz"
                     ).to_parquet(run / "kernels.parquet")
        pd.DataFrame({"kind": ["parameter", "output", "temp", "total", "runtime_peak"],
                      "bytes": [4e6, 1e6, temp, 5e6 + temp, 6e6 + temp],
                      "buffers": [2, 1, 3, 6, 0], "source": "test"}).to_parquet(
            run / "memory.parquet")
        pd.DataFrame({"name": ["buf0", "buf1"], "bytes": [temp * 0.75, temp * 0.25],
                      "shape": ["(2048, 8192)", "(2048,)"], "kind": ["temp", "temp"],
                      "dtype": ["float8_e4m3fn", "float32"]}).to_parquet(
            run / "memory_buffers.parquet")
    return SweepRun(sweep, stdout + proc.stdout)


@pytest.fixture(scope="session")
def cpu_sweep(cpu_sweep_run) -> Path:
    return cpu_sweep_run.path


def copy_sweep(src: Path, dst: Path) -> Path:
    """A sweep's records and run tables, without what a report writes (nor compile caches)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("compile_cache", "plots", "*.csv",
                                                            "report.md", "summary.parquet",
                                                            "kernels_*.parquet", "memory_by_kind*",
                                                            "memory_top*", "speedup*",
                                                            "findings*"))
    return dst


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


# --- processes a run leaves (tests/test_forkserver.py, tests/test_node_integrity.py) ---------------

def process_tree(root: int) -> dict[int, tuple[int, bytes]]:
    """pid -> (ppid, command line) of every descendant of `root`: its fork server and workers."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                table[int(entry.name)] = (ppid, (entry / "cmdline").read_bytes())
            except (OSError, ValueError, IndexError):
                continue
    found: dict[int, tuple[int, bytes]] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, cmd) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = (ppid, cmd)
                frontier.append(pid)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class ProcessWatch:
    """Every process an orchestrator's tree held while it ran (workers come and go)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.seen = proc, {}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.proc.poll() is None:
            seen = dict(self.seen)
            for pid, (ppid, cmd) in process_tree(self.proc.pid).items():
                if cmd or pid not in seen:      # an exiting process reads as an empty command line
                    seen[pid] = (ppid, cmd)
            self.seen = seen                    # replaced whole: readers keep a consistent one
            time.sleep(0.1)

    def servers(self) -> list[int]:
        return [pid for pid, (ppid, cmd) in self.seen.items()
                if b"harness.worker.server" in cmd and ppid == self.proc.pid]

    def workers(self) -> list[int]:
        """Spawned workers, and what a fork server forked (its command line is the server's)."""
        servers = self.servers()
        return [pid for pid, (ppid, cmd) in self.seen.items()
                if b"harness.worker.measure" in cmd or ppid in servers]

    def wait_for_worker(self, timeout_s: float = 120) -> None:
        deadline = time.time() + timeout_s
        while not self.workers() and time.time() < deadline and self.proc.poll() is None:
            time.sleep(0.2)
        assert self.workers(), "no worker started"

    def assert_all_gone(self, within_s: float = 10) -> None:
        self.thread.join(timeout=5)
        deadline = time.time() + within_s
        while any(alive(p) for p in list(self.seen)) and time.time() < deadline:
            time.sleep(0.2)
        seen = self.seen
        left = {p: seen[p][1] for p in seen if alive(p)}
        assert not left, f"left behind by {self.proc.pid} after {within_s} s: {left}"
