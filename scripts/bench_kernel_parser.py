"""How fast does `kernel_table` read a large Kineto trace? Prints MB/s of JSON.

Real models' traces reach hundreds of MB (record_shapes adds every op's shapes). We build one
by replicating a real H100 trace: its profiled iterations are copied N times, each copy shifted
in time and with fresh ids (External id, correlation, flow ids), renumbered harness_iter_*
markers, until the JSON reaches --mb. Then `kernel_table` is timed on the plain JSON and on
its gzip, and the per-iteration table is checked to be the same as the original's.

    python scripts/bench_kernel_parser.py                    # ~200 MB from the eager fp8 trace
    python scripts/bench_kernel_parser.py --mb 50 --base tests/fixtures/traces/<trace>.json.gz
"""
from __future__ import annotations

import argparse
import copy
import gzip
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.collect.kernels import kernel_table, read_trace  # noqa: E402

DEFAULT_BASE = REPO / "tests/fixtures/traces/h100_fp8_linear_fwd_bwd_eager.trace.json.gz"
GOAL_MB_S = 50.0

try:
    import orjson

    def dumps(obj) -> bytes:
        return orjson.dumps(obj)
except ImportError:  # pragma: no cover
    import json

    def dumps(obj) -> bytes:
        return json.dumps(obj).encode()


def replicate(data: dict, target_bytes: int) -> tuple[dict, int]:
    """`data` with its timed events repeated until the JSON is about `target_bytes`."""
    events = data["traceEvents"]
    meta = [e for e in events if e.get("ph") == "M"]
    timed = [e for e in events if e.get("ph") != "M"]
    t0 = min(e["ts"] for e in timed if "ts" in e)
    t1 = max(e["ts"] + e.get("dur", 0) for e in timed if "ts" in e)
    span = (t1 - t0) + 1000.0
    iters = sum(1 for e in timed if e.get("cat") == "user_annotation"
                and e["name"].startswith("harness_iter_"))
    per_copy = len(dumps(timed))
    copies = max(1, target_bytes // per_copy)
    id_step = 10_000_000
    out = list(meta)
    for k in range(copies):
        for e in timed:
            c = dict(e)
            if "ts" in c:
                c["ts"] = e["ts"] + k * span
            if "id" in c and isinstance(c["id"], int):  # flow events
                c["id"] = e["id"] + k * id_step
            a = e.get("args")
            if a:
                a = dict(a)
                for key in ("External id", "correlation", "Ev Idx"):
                    if isinstance(a.get(key), int):
                        a[key] += k * id_step
                c["args"] = a
            if e.get("cat") in ("user_annotation", "gpu_user_annotation") and \
                    e["name"].startswith("harness_iter_"):
                c["name"] = f"harness_iter_{k * iters + int(e['name'].rsplit('_', 1)[1])}"
            out.append(c)
    big = copy.copy(data)
    big["traceEvents"] = out
    return big, copies * iters


def timed(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", type=Path, default=DEFAULT_BASE)
    p.add_argument("--mb", type=float, default=200.0, help="size of the synthetic JSON (200)")
    p.add_argument("--repeat", type=int, default=2, help="best of N timings (2)")
    p.add_argument("--keep", type=Path, help="write the synthetic trace here and keep it")
    args = p.parse_args()

    data, _ = read_trace(args.base)
    small = kernel_table(args.base)
    big, iters = replicate(data, int(args.mb * 1e6))
    blob = dumps(big)
    del big, data
    with tempfile.TemporaryDirectory() as tmp:
        plain = args.keep or Path(tmp) / "big.trace.json"
        plain.write_bytes(blob)
        gz = Path(tmp) / "big.trace.json.gz"
        gz.write_bytes(gzip.compress(blob, compresslevel=1))
        mb = len(blob) / 1e6
        gz_mb = gz.stat().st_size / 1e6
        del blob

        t_read = timed(lambda: read_trace(plain), 1)
        t_plain = timed(lambda: kernel_table(plain), args.repeat)
        t_gz = timed(lambda: kernel_table(gz), args.repeat)
        table = kernel_table(plain)

    same = (table.attrs["iters"] == iters and
            (table.set_index("kernel")["time_us_per_iter"]
             - small.set_index("kernel")["time_us_per_iter"]).abs().max() < 1e-6)
    print(f"base      {args.base.name}: {len(small)} kernels, {small.attrs['iters']} iterations")
    print(f"synthetic {mb:,.0f} MB JSON ({gz_mb:,.0f} MB gzip), {iters} iterations, "
          f"{table.attrs['launches_in_window']:,} kernel launches")
    print(f"read+parse JSON only        {t_read:6.2f} s  {mb / t_read:6.0f} MB/s")
    print(f"kernel_table(plain JSON)    {t_plain:6.2f} s  {mb / t_plain:6.0f} MB/s of JSON")
    print(f"kernel_table(gzip)          {t_gz:6.2f} s  {mb / t_gz:6.0f} MB/s of JSON")
    print(f"per-iteration table equals the base trace's: {same}")
    ok = mb / t_plain >= GOAL_MB_S and same
    print(f"goal >= {GOAL_MB_S:.0f} MB/s: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
