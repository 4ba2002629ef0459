"""How fast is the kernel table on a large Kineto trace, and against HTA on the same file?

Real models' traces reach hundreds of MB (record_shapes adds every op's shapes). We build one
by replicating a real H100 trace: its profiled iterations are copied N times, each copy shifted
in time and with fresh ids (External id, correlation, flow ids), renumbered harness_iter_*
markers, until the JSON reaches --mb. Then:
- `kernel_table` in this process on the plain JSON, its gzip and a re-saved (compact) copy
  (the full-parse path), each checked to give the base trace's per-iteration table;
- end to end, each in a fresh process on the same plain JSON: `python -m harness.kernels
  TRACE` and HTA's kernel breakdown (`TraceAnalysis(trace_dir=...).get_gpu_kernel_breakdown()`,
  `pip install HolisticTraceAnalysis`, or point --hta-python at an environment that has it),
  interleaved, best of --repeat: wall and CPU seconds (ours: the CLI and the two processes
  it scans the trace in) and the ratio (goal: HTA / ours >= 10, wall).
The machine may be shared: CPU time is what a program costs, wall time what a user waits.

    python scripts/bench_kernel_parser.py                    # ~100 MB from the eager fp8 trace
    python scripts/bench_kernel_parser.py --mb 50 --base tests/fixtures/traces/<trace>.json.gz
"""
from __future__ import annotations

import argparse
import gc
import gzip
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.collect.kernel_table import kernel_table  # noqa: E402
from harness.collect.trace_io import read_bytes, read_trace  # noqa: E402

from repo_env import repo_env  # noqa: E402

DEFAULT_BASE = REPO / "tests/fixtures/traces/h100_fp8_linear_fwd_bwd_eager.trace.json.gz"
GOAL_MB_S = 50.0
GOAL_RATIO = 10.0
HTA_BREAKDOWN = ("import sys; from hta.trace_analysis import TraceAnalysis; "
                 "TraceAnalysis(trace_dir=sys.argv[1]).get_gpu_kernel_breakdown(visualize=False)")

_FIELDS = re.compile(rb'("ts": )(-?[\d.]+)|("(?:External id|correlation|Ev Idx|id)": )(\d+)|'
                     rb'(harness_iter_)(\d+)')


def replicate(text: bytes, target_bytes: int) -> tuple[bytes, int]:
    """`text` (a Kineto trace in Kineto's own layout) with its events repeated until it is
    about `target_bytes`: copy k shifted by k trace spans, ids by k * 10M, markers renumbered.
    Done on the text, so the copies keep Kineto's exact layout (what the parser sees in the
    wild), not a re-serialised one."""
    begin = text.index(b'"traceEvents": [') + len(b'"traceEvents": [')
    end = text.rindex(b"\n  ]")
    body = text[begin:end]
    stamps = [float(v) for v in re.findall(rb'"ts": (-?[\d.]+)', body)]
    span = max(stamps) - min(stamps) + 1000.0
    iters = len(set(re.findall(rb'"cat": "user_annotation", "name": "harness_iter_(\d+)"', body)))
    copies = max(1, target_bytes // len(body))

    def shifted(k: int) -> bytes:
        def sub(m: re.Match) -> bytes:
            if m.group(1):
                return m.group(1) + b"%.3f" % (float(m.group(2)) + k * span)
            if m.group(3):
                return m.group(3) + b"%d" % (int(m.group(4)) + k * 10_000_000)
            return m.group(5) + b"%d" % (int(m.group(6)) + k * iters)
        return _FIELDS.sub(sub, body) if k else body

    big = text[:begin] + b",".join(shifted(k) for k in range(copies)) + text[end:]
    return big, copies * iters


def timed(fn, repeat: int) -> tuple[float, float]:
    """Best (wall, CPU) seconds of `repeat` runs in this process."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def run_timed(command: list[str]) -> tuple[float, float]:
    """(wall, CPU of the child) seconds of one fresh process; its output is discarded."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    proc = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env=repo_env())
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def end_to_end(trace: Path, hta_python: str, repeat: int) -> dict[str, tuple[float, float]]:
    """Our CLI and HTA's kernel breakdown on `trace`, interleaved so both meet the same load."""
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / trace.name).symlink_to(trace)   # HTA reads every trace in a folder
        commands = {"ours": [sys.executable, "-m", "harness.kernels", str(trace)],
                    "hta": [hta_python, "-c", HTA_BREAKDOWN, folder]}
        best = {name: (float("inf"), float("inf")) for name in commands}
        for _ in range(repeat):
            for name, command in commands.items():
                wall, cpu = run_timed(command)
                best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return best


def has_hta(python: str) -> bool:
    return subprocess.run([python, "-c", "import hta.trace_analysis"],
                          capture_output=True).returncode == 0


def in_process(base: Path, blob: bytes, iters: int, repeat: int, tmp: Path) -> bool:
    small = kernel_table(base)
    plain, gz, compact = tmp / "big.trace.json", tmp / "big.trace.json.gz", tmp / "big.json"
    gz.write_bytes(gzip.compress(blob, compresslevel=1))
    compact.write_bytes(orjson.dumps(read_trace(plain)[0]))   # any other layout: full parse
    mb = len(blob) / 1e6
    times = [("kernel_table(Kineto JSON)", timed(lambda: kernel_table(plain), repeat)),
             ("kernel_table(Kineto JSON, gzip)", timed(lambda: kernel_table(gz), repeat)),
             ("kernel_table(other layout: full)", timed(lambda: kernel_table(compact), 1))]
    table = kernel_table(plain)
    same_full = table.equals(kernel_table(compact))
    key = ["kernel", "category", "op", "op_category"]
    same = (table.attrs["iters"] == iters and
            (table.set_index(key)["time_us_per_iter"]
             - small.set_index(key)["time_us_per_iter"]).abs().max() < 1e-6)
    print(f"base      {base.name}: {len(small)} rows, {small.attrs['iters']} iterations")
    print(f"synthetic {mb:,.0f} MB JSON ({gz.stat().st_size / 1e6:,.0f} MB gzip), {iters} "
          f"iterations, {table.attrs['launches_in_window']:,} kernel launches")
    print(f"{'':34s} {'wall':>7s} {'MB/s':>6s} {'CPU':>7s} {'MB/s':>6s}")
    for label, (wall, cpu) in times:
        print(f"{label:34s} {wall:6.2f}s {mb / wall:6.0f} {cpu:6.2f}s {mb / cpu:6.0f}")
    print(f"per-iteration table equals the base trace's: {same}; "
          f"full-parse path gives the same table: {same_full}")
    ok = mb / times[0][1][0] >= GOAL_MB_S and same and same_full
    print(f"goal >= {GOAL_MB_S:.0f} MB/s (wall, plain JSON): {'met' if ok else 'NOT met'}")
    return ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", type=Path, default=DEFAULT_BASE)
    p.add_argument("--mb", type=float, default=100.0, help="size of the synthetic JSON (100)")
    p.add_argument("--repeat", type=int, default=2, help="best of N timings (2)")
    p.add_argument("--hta-python", default=sys.executable,
                   help="a Python with HolisticTraceAnalysis installed (this one)")
    p.add_argument("--no-hta", action="store_true", help="skip the end-to-end comparison")
    args = p.parse_args()
    if not args.no_hta and not has_hta(args.hta_python):
        raise SystemExit(f"{args.hta_python}: cannot import hta; `pip install "
                         "HolisticTraceAnalysis` there, pass --hta-python, or --no-hta")
    blob, iters = replicate(read_bytes(args.base), int(args.mb * 1e6))
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        (tmp / "big.trace.json").write_bytes(blob)
        ok = in_process(args.base, blob, iters, args.repeat, tmp)
        mb = len(blob) / 1e6
        del blob
        if args.no_hta:
            return 0 if ok else 1
        best = end_to_end(tmp / "big.trace.json", args.hta_python, args.repeat)
    (ours_wall, ours_cpu), (hta_wall, hta_cpu) = best["ours"], best["hta"]
    print(f"\nend to end on the same {mb:,.0f} MB Kineto JSON, fresh processes, best of "
          f"{args.repeat} ({os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
          f"load average {os.getloadavg()[0]:.1f})")
    print(f"  python -m harness.kernels      {ours_wall:6.2f} s wall {ours_cpu:6.2f} s CPU")
    print(f"  HTA get_gpu_kernel_breakdown   {hta_wall:6.2f} s wall {hta_cpu:6.2f} s CPU")
    ratio = hta_wall / ours_wall
    print(f"  HTA / ours: {ratio:.1f}x wall, {hta_cpu / ours_cpu:.1f}x CPU; goal >= "
          f"{GOAL_RATIO:.0f}x wall: {'met' if ratio >= GOAL_RATIO else 'NOT met'}")
    return 0 if ok and ratio >= GOAL_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
