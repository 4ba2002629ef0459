"""How fast the XLA buffer-assignment parser reads a large dump (goal: 100 MB under 5 s).

    python scripts/bench_memory_parser.py [--mb 100]

Builds a consistent dump in a temporary folder by repeating seed 004's allocations and used
values with fresh allocation numbers and value ids (the live ranges are kept once, as they
refer to names), so the total, value-count and peak checks all run and pass; then times
the parser alone and the whole `memory_table_from_files` (DataFrames included).
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.collect.memory_table import memory_table_from_files  # noqa: E402
from harness.collect.xla_buffer_assignment import parse_buffer_assignment  # noqa: E402

SEED = REPO / "tests/fixtures/seeds/004_xla_gpu_buffer_assignment_qwen_decode.txt"
_ALLOC = re.compile(r"^allocation (\d+):", re.M)
_ID = re.compile(r"<(\d+) ")


def build(target_bytes: int) -> str:
    text = SEED.read_text()
    head, rest = text.split("\nTotal bytes used: ", 1)
    allocs = head[len("BufferAssignment:\n"):]
    _, rest = rest.split("\nUsed values:\n", 1)
    used, live = rest.split("\n\n\nHloLiveRange", 1)
    n_allocs = len(_ALLOC.findall(allocs))
    total = sum(int(s) for s in re.findall(r"^allocation \d+: size (\d+)", allocs, re.M))
    copies = max(1, target_bytes // (len(allocs) + len(used)))
    id_step = 10 ** len(str(max(int(i) for i in _ID.findall(used))))
    alloc_parts, used_parts = [], []
    for k in range(copies):
        shift = k * id_step
        renumber = (lambda m, k=k: f"allocation {int(m[1]) + k * n_allocs}:")
        alloc_parts.append(_ID.sub(lambda m: f"<{int(m[1]) + shift} ", _ALLOC.sub(renumber, allocs)))
        used_parts.append(_ID.sub(lambda m: f"<{int(m[1]) + shift} ", used))
    grand = total * copies
    return ("BufferAssignment:\n" + "".join(alloc_parts) + f"\nTotal bytes used: {grand} (big)\n\nUsed values:\n"
            + "\n".join(used_parts) + "\n\n\nHloLiveRange" + live)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big-buffer-assignment.txt"
        path.write_text(build(int(args.mb * 1e6)))
        size_mb = path.stat().st_size / 1e6
        # Wall time and this process's CPU time: on a shared machine the wall time also
        # counts the waits for a core; the CPU time is what the parser itself costs.
        w0, c0 = time.perf_counter(), time.process_time()
        ba = parse_buffer_assignment(path.read_text(), str(path))
        parse = time.perf_counter() - w0, time.process_time() - c0
        w0, c0 = time.perf_counter(), time.process_time()
        summary, buffers = memory_table_from_files([path])
        table = time.perf_counter() - w0, time.process_time() - c0
    print(f"dump: {size_mb:.1f} MB, {len(ba.allocations)} allocations, "
          f"{sum(len(a.values) for a in ba.allocations)} values, total {ba.total_bytes} bytes")
    for label, (wall, cpu) in (("parse (read + parse + checks)", parse),
                               (f"memory_table_from_files (parse + tables of {len(buffers)} buffers)", table)):
        print(f"{label}: {wall:.2f} s wall ({size_mb / wall:.0f} MB/s), {cpu:.2f} s CPU ({size_mb / cpu:.0f} MB/s)")


if __name__ == "__main__":
    main()
