"""Harness overhead per run, under spawn and under the fork server (bench.isolation).

    python scripts/bench_overhead.py [--repeats 3] [--runs 3]

- one run: the CLI as a user runs it (`python -m harness workload=faulty backend=eager
  bench=quick bench.profile=false`, a 64x64 matmul), process start to record written, minus the
  worker's own `work_s` (compile + numerics + timing): what the harness costs around the work;
- an 8-run sweep (`-m ... seed=0,...,7`): its wall time, and per run (wall - the runs' work_s) / 8;
- against 8 bare `python -c "import torch"` one after another: the floor a fresh interpreter
  per run pays.
Each figure is the median over `--repeats` rounds; the isolations alternate within a round, so
that a loaded machine weighs on both alike. Goal: 1.0 s or less per run in a sweep.
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

from repo_env import repo_env

REPO = Path(__file__).resolve().parent.parent
ISOLATIONS = ("spawn", "forkserver")
TRIVIAL = ("workload=faulty", "backend=eager", "bench=quick", "bench.profile=false")
SWEEP_RUNS = 8


def harness(*overrides: str) -> float:
    env = repo_env()
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", *overrides], cwd=REPO, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def records(root: Path) -> list[dict]:
    return sorted((json.loads(p.read_text()) for p in root.rglob("record.json")), key=lambda r: r["started_at"])


def work_s(root: Path) -> list[float]:
    return [r["work_s"] for r in records(root)]


def one_run(out: Path, isolation: str) -> tuple[float, float]:
    """(wall, wall - work_s) of one trivial run."""
    wall = harness(*TRIVIAL, f"bench.isolation={isolation}", f"hydra.run.dir={out}")
    return wall, wall - sum(work_s(out))


def sweep(out: Path, isolation: str) -> tuple[float, float, dict[str, float]]:
    """(wall, overhead per run, where the overhead went) of an 8-run sweep."""
    seeds = ",".join(map(str, range(SWEEP_RUNS)))
    started = time.time()
    wall = harness("-m", *TRIVIAL, f"seed={seeds}", f"bench.isolation={isolation}", f"hydra.sweep.dir={out}")
    recs = records(out)
    assert len(recs) == SWEEP_RUNS, f"{len(recs)} records in {out}"
    worker_overheads = [r["wall_s"] - r["work_s"] for r in recs]
    parts = {
        # the orchestrator's start: Python, Hydra, the plugins, Hydra's check of the 8 configs
        "command start to first worker start": recs[0]["started_at"] - started,
        "first worker: start to exit, minus work_s": worker_overheads[0],
        "each later worker: start to exit, minus work_s": statistics.median(worker_overheads[1:]),
        # Hydra's job (compose, .hydra files, logging), the lock, the GPU pool, the record
        "between two workers (orchestrator, Hydra)": statistics.median(
            b["started_at"] - a["finished_at"] for a, b in zip(recs, recs[1:])),
        "last worker's exit to command exit": started + wall - recs[-1]["finished_at"],
    }
    return wall, (wall - sum(r["work_s"] for r in recs)) / SWEEP_RUNS, parts


def bare_imports() -> float:
    start = time.perf_counter()
    for _ in range(SWEEP_RUNS):
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="rounds; each figure is their median")
    parser.add_argument("--runs", type=int, default=3, help="single runs per isolation per round")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    single = {i: [] for i in ISOLATIONS}
    sweeps = {i: [] for i in ISOLATIONS}
    bare: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            order = ISOLATIONS if r % 2 == 0 else ISOLATIONS[::-1]
            for isolation in order:
                single[isolation] += [one_run(Path(tmp) / f"{isolation}-{r}-{k}", isolation) for k in range(args.runs)]
                sweeps[isolation].append(sweep(Path(tmp) / f"sweep-{isolation}-{r}", isolation))
            bare.append(bare_imports())
            print(f"round {r + 1}/{args.repeats} done", file=sys.stderr, flush=True)

    def med(rows, i):
        return statistics.median(row[i] for row in rows)
    print(f"machine: {os.cpu_count()} cores, load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after; "
          f"medians of {args.repeats} rounds ({args.runs} single runs each)")
    print(f"| {'what':<46} | {'spawn':>8} | {'forkserver':>10} |")
    print(f"|{'-' * 48}|{'-' * 10}|{'-' * 12}|")
    rows = [("one run: wall (s)", lambda i: med(single[i], 0)),
            ("one run: overhead, wall - work_s (s)", lambda i: med(single[i], 1)),
            (f"{SWEEP_RUNS}-run sweep: wall (s)", lambda i: med(sweeps[i], 0)),
            (f"{SWEEP_RUNS}-run sweep: overhead per run (s)", lambda i: med(sweeps[i], 1))]
    for name, figure in rows:
        print(f"| {name:<46} | {figure('spawn'):>8.2f} | {figure('forkserver'):>10.2f} |")
    bare_s = statistics.median(bare)
    bare_name = f'{SWEEP_RUNS} x python -c "import torch" (s)'
    print(f"| {bare_name:<46} | {bare_s:>8.2f} | {bare_s:>10.2f} |")
    print(f"| {f'{SWEEP_RUNS}-run sweep / {SWEEP_RUNS} bare imports':<46} | "
          f"{med(sweeps['spawn'], 0) / bare_s:>8.2f} | {med(sweeps['forkserver'], 0) / bare_s:>10.2f} |")
    print(f"| {f'where a {SWEEP_RUNS}-run sweep spends its overhead (s):':<46} | {'':>8} | {'':>10} |")
    for part in sweeps["spawn"][0][2]:
        print(f"| {'  ' + part:<46} | {statistics.median(row[2][part] for row in sweeps['spawn']):>8.2f} | "
              f"{statistics.median(row[2][part] for row in sweeps['forkserver']):>10.2f} |")
    print("goal: overhead per run in a sweep <= 1.0 s")


if __name__ == "__main__":
    main()
