"""Harness overhead per run: process start to record written, minus the work it measured.

    python scripts/bench_overhead.py [--runs 5]

Runs the CLI as a user does (`python -m harness workload=faulty ...`, a 64x64 matmul with
profiling off) and subtracts the worker's own `work_s` (compile + numerics + timing) from
the wall time of the whole command. Goal: < 3 s per run on CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def one_run(out_dir: Path) -> tuple[float, float]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", "workload=faulty", "backend=eager", "bench=quick",
                    "bench.profile=false", f"hydra.run.dir={out_dir}"],
                   cwd=REPO, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    record = json.loads((out_dir / "record.json").read_text())
    return wall, wall - record["work_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [one_run(Path(tmp) / f"run{i}") for i in range(args.runs)]
    walls, overheads = zip(*rows)
    print(f"runs: {args.runs}  wall per run: median {statistics.median(walls):.2f} s")
    print(f"harness overhead per run (wall - work_s): median {statistics.median(overheads):.2f} s, "
          f"min {min(overheads):.2f} s, max {max(overheads):.2f} s  (goal < 3 s)")


if __name__ == "__main__":
    main()
