"""A throwaway single-node Slurm for the tests: scripts/slurm_cluster.sh, started once per session.

The tests talk to it only through Slurm's own clients (squeue, sacct, scontrol, scancel) with
SLURM_CONF pointing at it, exactly as a user on a real cluster would.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "slurm_cluster.sh"
START_TIMEOUT_S = 180


def unavailable() -> str | None:
    """Why the cluster cannot run here (one line), or None."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])   # the daemons' home
    missing = [c for c in ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "sbatch")
               if shutil.which(c, path=path) is None]
    if missing:
        return (f"no Slurm here ({', '.join(missing)} not found): `bash scripts/slurm_cluster.sh "
                f"install` (root, apt-get) brings it; Slurm tests skipped")
    if os.geteuid() != 0:
        return "the throwaway Slurm cluster needs root (munged runs as munge); Slurm tests skipped"
    return None


@dataclass
class SlurmCluster:
    root: Path
    env: dict[str, str]     # os.environ + SLURM_CONF: for Slurm's clients and for the harness CLI

    def client(self, *cmd: str) -> str:
        return subprocess.run(cmd, env=self.env, check=True, capture_output=True, text=True,
                              timeout=60).stdout

    def states(self, job_id: str) -> list[str]:
        """Every attempt of the job, oldest first (-D: a requeued job has one row per start)."""
        out = self.client("sacct", "-D", "-X", "-n", "-P", "-o", "State", "-j", job_id)
        return [line.split()[0] for line in out.splitlines() if line.strip()]

    def worker_running(self, job_id: str) -> bool:
        """The job's task has a child process: the orchestrator is waiting on its worker.

        `scontrol listpids` lists the task itself with its local id and its descendants
        with `-`, whatever the harness names its processes.
        """
        try:
            # listpids wants the raw id: array task 7_0 may be job 8
            raw_id = self.client("squeue", "-h", "-o", "%A", "-j", job_id).strip()
            out = self.client("scontrol", "listpids", raw_id) if raw_id else ""
        except subprocess.CalledProcessError:
            return False   # not started yet, or already gone
        rows = [line.split() for line in out.splitlines()[1:]]
        return any(row[2] != "batch" and row[3] == "-" for row in rows if len(row) >= 4)

    def wait_idle(self, timeout_s: float = 300) -> None:
        wait_until(lambda: not self.client("squeue", "-h", "-o", "%i").strip(), timeout_s,
                   "the cluster to finish its jobs")


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"gave up waiting for {what} after {timeout_s:g} s")


@contextmanager
def started() -> Iterator[SlurmCluster]:
    # Not under pytest's tmp_path: that is mode 700, and munged (user munge) must reach its socket.
    root = Path(tempfile.mkdtemp(prefix="harness-slurm-"))
    try:
        proc = subprocess.run(["bash", str(SCRIPT), "start", str(root)], capture_output=True,
                              text=True, timeout=START_TIMEOUT_S)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise RuntimeError(f"scripts/slurm_cluster.sh start failed: {last} (logs: {root}/log)")
        conf = next(line.split("=", 1)[1] for line in proc.stdout.splitlines()
                    if line.startswith("export SLURM_CONF="))
        yield SlurmCluster(root=root, env=dict(os.environ, SLURM_CONF=conf))
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(root)], capture_output=True, timeout=120)
    shutil.rmtree(root, ignore_errors=True)   # kept (with its logs) when something failed
