"""Does the harness time what a reference timer times, and how much do fresh processes differ?

    python scripts/fidelity.py SWEEP_DIR [SWEEP_DIR ...]          # a table from finished runs
    python scripts/fidelity.py --run OUT_DIR -- workload=fp8_linear backend=inductor,xla ...

`--run` sweeps the overrides with `bench.processes=5 bench.reference_timer=true` (each process
also times the same callable with triton's `do_bench` where torch runs on CUDA, a
block_until_ready loop for JAX, a plain loop on CPU). The table: harness median (median of the
process medians), the reference's median, their ratio, the within-process CV, the spread of
the process medians, the GPU's busy share of the step, and the verdict against the goal: a
run whose GPU is busy >= 90% of its step within 2% of the reference with CV < 2%; any other
run is host-bound and must say so (flag `host_bound`).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.report.fidelity import AGREE, HOST_BOUND_FLAGGED, markdown  # noqa: E402
from harness.report.fidelity import rows as fidelity_rows  # noqa: E402


def rows(sweeps: list[Path]) -> list[dict]:
    records = []
    for path in sorted(p for s in sweeps for p in Path(s).rglob("record.json")):
        records.append(json.loads(path.read_text()))
    return fidelity_rows(records)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sweeps", nargs="*", type=Path)
    p.add_argument("--run", type=Path, metavar="OUT_DIR", help="sweep the overrides after -- into OUT_DIR first")
    p.add_argument("--processes", type=int, default=5)
    args, overrides = p.parse_known_args(argv)
    overrides = [o for o in overrides if o != "--"]
    if args.run:
        cmd = [sys.executable, "-m", "harness", "-m", *overrides, f"bench.processes={args.processes}",
               "bench.reference_timer=true", f"hydra.sweep.dir={args.run}"]
        subprocess.run(cmd, cwd=REPO, check=False)
        args.sweeps.append(args.run)
    if not args.sweeps:
        p.error("give SWEEP_DIRs, or --run OUT_DIR -- OVERRIDES")
    table = rows(args.sweeps)
    print(markdown(table))
    return 0 if all(r["verdict"] in (AGREE, HOST_BOUND_FLAGGED) for r in table) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
