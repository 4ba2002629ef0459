"""What `host_busy` sees: the harness pinned to one core, alone and beside a busy loop pinned
to the same core, and the share of that core other work took while it was timed.

    python scripts/host_busy.py                  # the idlest core, 3 runs each way
    python scripts/host_busy.py --core 0 --runs 5 --mode alone
    python scripts/host_busy.py --mode busy --json   # one JSON line per run (tests/test_host_load.py)

Each run is `python -m harness workload=faulty backend=eager device=cpu bench=quick` with 20
samples of >= 20 ms (a timed window of about a second), started with the core as its whole
CPU set, as the orchestrator starts a worker with its GPU's cores on a GPU node. The busy loop
is a process of another session (`while True: pass`), so it is never the worker's own time.
Before each run the core's busy share over a second, with nothing of ours on it, is printed:
it says how idle "alone" was.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.describe import THRESHOLDS, flag_codes  # noqa: E402
from harness.worker.host_load import core_busy_share  # noqa: E402
from repo_env import repo_env  # noqa: E402

HARNESS = ("workload=faulty", "backend=eager", "device=cpu", "bench=quick", "bench.repeats=20",
           "bench.min_repeat_ms=20")


def run_on_core(core: int, run_dir: Path, busy_loop: bool) -> dict:
    """One harness run on `core` (with a busy loop there too if asked) -> its record."""
    pin = lambda: os.sched_setaffinity(0, {core})  # noqa: E731
    loop = (subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=pin,
                             start_new_session=True) if busy_loop else None)
    try:
        proc = subprocess.run([sys.executable, "-m", "harness", *HARNESS, f"hydra.run.dir={run_dir}"],
                              cwd=REPO, env=repo_env(), preexec_fn=pin,
                              capture_output=True, text=True, timeout=600)
    finally:
        if loop is not None:
            loop.kill()
            loop.wait()
    if proc.returncode != 0:
        raise SystemExit(f"harness run failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads((run_dir / "record.json").read_text())


def idlest_core(seconds: float = 0.5) -> tuple[int, float]:
    """(core, its busy share now) of the least busy core this process may use."""
    return min(((c, core_busy_share(c, seconds)) for c in sorted(os.sched_getaffinity(0))),
               key=lambda x: x[1])


def figures(record: dict, mode: str, core: int, before: float) -> dict:
    (process,) = record["timing"]["processes"]
    load = process["host_load"]
    return {"mode": mode, "core": core, "core_busy_before": before, **load,
            "median_ms": record["timing"]["median_ms"], "cv": record["timing"]["cv"],
            "flags": flag_codes(record)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--core", type=int, help="default: the idlest core now")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mode", choices=("alone", "busy", "both"), default="both")
    parser.add_argument("--json", action="store_true", help="one JSON object per run")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be 1 or more, got {args.runs}")
    core = args.core if args.core is not None else idlest_core()[0]
    if core not in os.sched_getaffinity(0):
        parser.error(f"--core {core} is not one of this process's cores {sorted(os.sched_getaffinity(0))}")
    modes = ("alone", "busy") if args.mode == "both" else (args.mode,)
    if not args.json:
        print(f"core {core}; host_busy above {100 * THRESHOLDS.host_busy_other_share:g}% of the "
              f"run's cores (and {THRESHOLDS.host_busy_min_other_cpu_s} CPU-s)")
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            for i in range(args.runs):
                before = core_busy_share(core)
                record = run_on_core(core, Path(tmp) / f"{mode}{i}", busy_loop=mode == "busy")
                f = figures(record, mode, core, before)
                print(json.dumps(f) if args.json else
                      f"{mode:<5} core busy before {100 * before:5.1f}%  other {100 * f['other_share']:5.1f}% "
                      f"({f['other_cpu_s']:.2f} of {f['window_s']:.2f} s, own {f['own_cpu_s']:.2f} s)  "
                      f"load {f['loadavg_1m_before']:.2f}->{f['loadavg_1m_after']:.2f}  "
                      f"median {f['median_ms']:.4g} ms cv {100 * f['cv']:.0f}%  flags {','.join(f['flags']) or '-'}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
