"""Re-run the collectors on finished run dirs: `python scripts/recollect.py RUN_DIR [...]`.

For runs whose tables are missing or came from an older parser (the record's `collector` flags
say which failed). Rewrites only the derived tables (memory.parquet, memory_buffers.parquet,
kernels.parquet) from the run's own typed artifacts; record.json, the measurement, is never
touched. A table whose collector fails now is left as it was.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.worker import run_tables  # noqa: E402
from harness.worker.backend import KERNEL_TABLE, MEMORY_BUFFERS, MEMORY_TABLE, Artifact  # noqa: E402

TABLES = (KERNEL_TABLE, MEMORY_TABLE, MEMORY_BUFFERS)


def recollect(run_dir: Path) -> str:
    record = json.loads((run_dir / "record.json").read_text())
    if not isinstance(record.get("artifacts"), list):
        return "schema 1 record (artifacts by name): not re-collected"
    kept = [Artifact(**a) for a in record["artifacts"] if a["kind"] not in TABLES]
    inputs = [a for a in kept if (run_dir / a.path).exists()]     # a snapshot may keep the tables alone
    missing = [a.path for a in kept if a not in inputs]
    # Collect into a scratch dir first: a collector that fails now leaves the old table alone.
    scratch = run_dir / ".recollect"
    scratch.mkdir(exist_ok=True)
    for a in inputs:
        target = scratch / a.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to((run_dir / a.path).resolve())
    env, memory = record.get("environment") or {}, record.get("memory") or {}
    peak = memory.get("runtime_peak_bytes")
    tables = run_tables.collect(scratch, inputs, gpu_name=env.get("gpu_name"), sm_clock_mhz=env.get("sm_clock_mhz"),
                                on_gpu=env.get("device") == "cuda", profile_iters=record.get("profile_iters"),
                                runtime_peak=(peak, memory.get("runtime_peak_source", "")) if peak is not None else None)
    for table in tables.artifacts:
        (scratch / table.path).replace(run_dir / table.path)
    for leftover in sorted(scratch.rglob("*"), key=lambda p: -len(p.parts)):
        leftover.rmdir() if leftover.is_dir() else leftover.unlink()
    scratch.rmdir()
    failed = "; ".join(f["detail"] for f in tables.flags)
    return (f"rewrote {', '.join(t.path for t in tables.artifacts) or 'nothing'}"
            + (f" (not here: {', '.join(missing)})" if missing else "") + (f" (failed: {failed})" if failed else ""))


def main(run_dirs: list[str]) -> None:
    for run_dir in map(Path, run_dirs):
        if not (run_dir / "record.json").is_file():
            print(f"{run_dir}: no record.json, skipped")
            continue
        print(f"{run_dir}: {recollect(run_dir)}")


if __name__ == "__main__":
    main(sys.argv[1:])
