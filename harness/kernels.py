"""`python -m harness.kernels TRACE [TRACE...]`: any profiler trace -> kernel table.

Works offline on a trace a user already has: a PyTorch Kineto `trace.json[.gz]` or a JAX
`perfetto_trace.json.gz`. Prints the top kernels and torchao's time-by-category summary with
one column per trace; two traces also get a diff (per category and per kernel, B - A).

    python -m harness.kernels eager.trace.json.gz inductor.trace.json.gz --top 15
    python -m harness.kernels run/perfetto_trace.json.gz --device "NVIDIA H100 80GB HBM3" \\
        --hlo-dir run/xla_dump --csv kernels.csv
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import pandas as pd

from harness.collect.kernels import (category_diff, category_summary, kernel_diff, kernel_table,
                                     launch_overhead)
from harness.errors import InputError, die

NAME_WIDTH = 70


def labels_for(paths: list[str]) -> list[str]:
    """Short column labels: file stems without trace suffixes and without a shared prefix
    ("h100_fp8_linear_fwd_bwd_eager.trace.json.gz", "..._inductor..." -> "eager", "inductor")."""
    stems = [re.sub(r"(\.(json|gz|trace|perfetto_trace|pt\.trace))+$", "", Path(p).name)
             for p in paths]
    if len(stems) > 1:
        prefix = Path(stems[0]).name
        for s in stems[1:]:
            while not s.startswith(prefix):
                prefix = prefix[:-1]
        cut = prefix.rfind("_") + 1 if "_" in prefix else 0
        short = [s[cut:] for s in stems]
        if all(short) and len(set(short)) == len(short):
            stems = short
    if len(set(stems)) < len(stems):
        stems = [f"{i}:{s}" for i, s in enumerate(stems)]
    return stems


_NOISE = re.compile(r"\bvoid |at::native::|\(anonymous namespace\)::|c10::|at::|std::|cuda::|"
                    r"\bdetail::|binary_internal::")
_TOKENS = re.compile(r"\b(\w+Functor|\w+_kernel_cuda|launch_\w+|\w+Ops|\w+Op)\b")


def short_name(kernel: str, width: int = NAME_WIDTH) -> str:
    """A readable name for a printed table; the DataFrame keeps the full one.

    Eager kernels are long C++ templates that differ only deep inside:
    "void at::native::vectorized_elementwise_kernel<4, at::native::AbsFunctor<c10::BFloat16>,
    std::array<char*, 2ul> >(int, ...)" -> "vectorized_elementwise_kernel<4, AbsFunctor>".
    """
    if len(kernel) <= width and "<" not in kernel:
        return kernel
    text = _NOISE.sub("", kernel)
    outer, sep, inner = text.partition("<")
    if sep:
        lead = re.match(r"\s*(\d+(?:,\s*\d+)*)", inner)
        tokens = list(dict.fromkeys(_TOKENS.findall(inner)))
        parts = ([lead.group(1)] if lead else []) + tokens
        text = f"{outer}<{', '.join(parts)}>" if parts else outer
    return text if len(text) <= width else text[:width - 3] + "..."


def _num(value: float, digits: int = 1) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:,.{digits}f}"


def format_table(table: pd.DataFrame, top: int) -> str:
    """Top kernels by time; a suspect % of peak is printed with '?' (not reported as fact)."""
    shown = table.head(top)
    rows = []

    def pct(value: float, suspect: bool) -> str:
        return _num(value, 1) + ("?" if suspect and value == value else "")

    for r in shown.itertuples(index=False):
        name = short_name(r.kernel)
        rows.append({
            "kernel": name, "category": r.category, "calls/iter": _num(r.calls_per_iter, 2),
            "us/iter": _num(r.time_us_per_iter, 1), "share%": _num(100 * r.share, 1),
            "TFLOP/s": _num(r.achieved_tflops, 1), "GB/s": _num(r.achieved_gbps, 0),
            "%peak_flops": pct(r.pct_peak_flops, r.suspect),
            "%peak_bw": pct(r.pct_peak_bw, r.suspect),
        })
    text = pd.DataFrame(rows).to_string(index=False, justify="left")
    hidden = len(table) - len(shown)
    if hidden > 0:
        rest = table["time_us_per_iter"].iloc[top:].sum()
        text += f"\n... {hidden} more kernels, {rest:,.1f} us/iter"
    return text


def header(label: str, table: pd.DataFrame) -> str:
    a = table.attrs
    device = a.get("device_spec") or "unknown device (no % of peak; pass --device)"
    dump = f", HLO dump {a['hlo_dir']}" if a.get("hlo_dir") else ""
    return (f"== {label}: {a.get('trace')}{dump}\n"
            f"   {a.get('source')} trace, {a.get('iters')} iteration(s) "
            f"[{a.get('iters_source')}], device {device}, "
            f"kernels {a.get('kernel_us_per_iter', 0):,.1f} us/iter, GPU busy "
            f"{a.get('gpu_busy_us_per_iter', 0):,.1f} us/iter, "
            f"{a.get('launches_excluded', 0)} launches outside the iterations")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.kernels",
                                description="Kernel table and time by category of GPU traces "
                                            "(PyTorch Kineto or JAX perfetto, plain or .gz).")
    p.add_argument("traces", nargs="+", metavar="TRACE")
    p.add_argument("--iters", type=int, help="profiled iterations (default: count the "
                                             "harness_iter_* markers)")
    p.add_argument("--top", type=int, default=20, help="kernels to print per trace (20)")
    p.add_argument("--device", help='GPU name or key, e.g. "NVIDIA H100 80GB HBM3", h100_sxm '
                                    "(default: from the Kineto trace)")
    p.add_argument("--sm-clock-mhz", type=float, help="measured SM clock, scales the peaks")
    p.add_argument("--hlo-dir", help="XLA dump folder for XLA FLOPs/bytes and fp8 detection")
    p.add_argument("--wall-us", type=float, nargs="+", metavar="US",
                   help="measured wall time per iteration, one per trace: prints the "
                        "host/launch gap")
    p.add_argument("--csv", help="write all rows (with a trace column) as CSV")
    p.add_argument("--parquet", help="write all rows (with a trace column) as Parquet")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.iters is not None and args.iters <= 0:
        die("--iters: expected a positive integer")
    if args.top <= 0:
        die("--top: expected a positive integer")
    if args.wall_us and len(args.wall_us) != len(args.traces):
        die(f"--wall-us: expected {len(args.traces)} value(s), one per trace")
    labels = labels_for(args.traces)
    tables: dict[str, pd.DataFrame] = {}
    for label, path in zip(labels, args.traces):
        hlo_dir = args.hlo_dir
        # a harness run dir keeps XLA's dump next to the trace (`xla_dump/`); a saved trace
        # may carry it as `<name>.xla_dump/`: use it unless told otherwise
        name = Path(path).name
        stem = name.split(".perfetto")[0] if ".perfetto" in name else name.split(".")[0]
        siblings = [Path(path).parent / "xla_dump", Path(path).parent / f"{stem}.xla_dump"]
        found = next((d for d in siblings if d.is_dir()), None)
        if hlo_dir is None and "perfetto" in name and found is not None:
            hlo_dir = str(found)
        try:
            tables[label] = kernel_table(path, iters=args.iters, device=args.device,
                                         hlo_dir=hlo_dir, sm_clock_mhz=args.sm_clock_mhz)
        except InputError as e:
            die(str(e))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            die(f"{path}: unexpected trace content ({type(e).__name__}: {e}); expected a "
                "Kineto or JAX perfetto trace")

    for i, (label, table) in enumerate(tables.items()):
        print(header(label, table))
        print(format_table(table, args.top))
        if args.wall_us:
            gap = launch_overhead(table, args.wall_us[i])
            print(f"   wall {gap['wall_us_per_iter']:,.1f} us/iter, GPU busy "
                  f"{gap['gpu_busy_us_per_iter']:,.1f}, gap (host/launch overhead) "
                  f"{gap['gap_us_per_iter']:,.1f} us = {100 * gap['gap_share']:.0f}% of wall")
        print()

    print("Summary of time (ms) by kernel category, per iteration")
    print(category_summary(tables).round(3).to_string())
    if len(tables) == 2:
        (la, a), (lb, b) = tables.items()
        print(f"\nDiff by category (ms per iteration, {lb} - {la})")
        print(category_diff(a, b, (la, lb)).round(3).to_string())
        diff = kernel_diff(a, b, (la, lb)).head(args.top)
        diff["kernel"] = [short_name(k) for k in diff["kernel"]]
        print(f"\nDiff by kernel (us per iteration, {lb} - {la}, largest first)")
        print(diff.round(1).to_string(index=False))

    if args.csv or args.parquet:
        rows = pd.concat([t.assign(trace=label) for label, t in tables.items()],
                         ignore_index=True)
        rows = rows[["trace"] + [c for c in rows.columns if c != "trace"]]
        try:
            if args.csv:
                rows.to_csv(args.csv, index=False)
            if args.parquet:
                rows.to_parquet(args.parquet, index=False)
        except OSError as e:
            die(f"cannot write output: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
