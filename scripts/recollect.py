"""Re-run the collectors on finished run dirs: `python scripts/recollect.py RUN_DIR [...]`.

For runs whose tables are missing or came from an older parser (the record's `flags` say
which collector failed). Rewrites only the derived tables (memory.parquet,
memory_buffers.parquet, kernels.parquet) from the run's own artifacts; record.json, the
measurement, is never touched.
"""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.worker import collect_tables  # noqa: E402


TABLES = {"memory": ("memory.parquet", "memory_buffers.parquet"), "kernel": ("kernels.parquet",)}


def main(run_dirs: list[str]) -> None:
    for run_dir in map(Path, run_dirs):
        if not (run_dir / "record.json").is_file():
            print(f"{run_dir}: no record.json, skipped")
            continue
        record = json.loads((run_dir / "record.json").read_text())
        result = copy.deepcopy(record)
        result["flags"] = []
        # Move the old tables aside; put back those whose collector fails now (e.g. a dump
        # that was not kept), so a re-collection never loses a table it cannot rebuild.
        backups = {}
        for names in TABLES.values():
            for name in names:
                if (run_dir / name).exists():
                    backups[name] = (run_dir / name).rename(run_dir / f".{name}.old")
        collect_tables(run_dir, result)
        for collector, names in TABLES.items():
            failed = any(f.startswith(f"{collector} collector") for f in result["flags"])
            for name in names:
                old = backups.pop(name, None)
                if old is None:
                    continue
                if failed or not (run_dir / name).exists():
                    old.rename(run_dir / name)
                else:
                    old.unlink()
        tables = sorted(set(result["artifacts"]) - set(record["artifacts"]) | {
            k for k in ("memory_table", "memory_buffers", "kernel_table") if k in result["artifacts"]})
        print(f"{run_dir}: {', '.join(tables) or 'no tables'}"
              + (f"  flags: {result['flags']}" if result["flags"] else ""))


if __name__ == "__main__":
    main(sys.argv[1:])
