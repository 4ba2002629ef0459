"""`python -m harness.kernels TRACE [TRACE...]`: any profiler trace -> kernel table.

Works offline on a trace a user already has: a PyTorch Kineto `trace.json[.gz]` or a JAX
`perfetto_trace.json.gz`. Prints the top kernels (with the PyTorch op each comes from and that
op's category) and torchao's time-by-category summary with one column per trace, by kernel
category and by source-op category; two traces also get a diff (per category and per kernel,
B - A). Iterations: the harness's markers, else ProfilerStep#N, else --iters; with none the
figures are whole-trace totals and every heading says so.

    python -m harness.kernels eager.trace.json.gz inductor.trace.json.gz --top 15
    python -m harness.kernels run/perfetto_trace.json.gz --device "NVIDIA H100 80GB HBM3" \\
        --hlo-dir run/xla_dump --csv kernels.csv
"""
from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from harness.cli_args import Parser, number
from harness.collect.devices import DEVICES, lookup_device
from harness.collect.kineto_scan import Scan, scan_in_background
from harness.collect.trace_read import gc_paused
from harness.errors import InputError, die, exit_quietly_on_broken_pipe

if TYPE_CHECKING:
    import pandas as pd

# pandas and the table code are imported in the functions that use them: `main` first starts
# each trace's text scan in a child process, and the imports (about a third of a 100 MB
# trace's time) then run beside the scans instead of before them. The cyclic garbage
# collector is paused for the whole run (`main`): the imports, the scans' results and the
# table are many objects made at once and kept, and it would rescan them over and over
# (about a tenth of pandas' import alone).

NAME_WIDTH = 70
OP_WIDTH = 40
NO_ITERATIONS = ("no iteration markers (harness_iter_N, ProfilerStep#N) and no --iters: "
                 "figures are totals over the whole trace, not per iteration")


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
    """Top kernels by time; a suspect % of peak is printed with '?' (not reported as fact).
    Without known iterations the figures are totals, and the columns say so."""
    shown = table.head(top)
    per = "/iter" if table.attrs.get("per_iteration", True) else " total"
    rows = []

    def pct(value: float, suspect: bool) -> str:
        return _num(value, 1) + ("?" if suspect and value == value else "")

    for r in shown.itertuples(index=False):
        rows.append({
            "kernel": short_name(r.kernel), "category": r.category,
            "op": short_name(r.op or "", OP_WIDTH), "op category": r.op_category,
            f"calls{per}": _num(r.calls_per_iter, 2), f"us{per}": _num(r.time_us_per_iter, 1),
            "share%": _num(100 * r.share, 1),
            "TFLOP/s": _num(r.achieved_tflops, 1), "GB/s": _num(r.achieved_gbps, 0),
            "%peak_flops": pct(r.pct_peak_flops, r.suspect),
            "%peak_bw": pct(r.pct_peak_bw, r.suspect),
        })
    import pandas as pd
    text = pd.DataFrame(rows).to_string(index=False, justify="left")
    hidden = len(table) - len(shown)
    if hidden > 0:
        rest = table["time_us_per_iter"].iloc[top:].sum()
        text += f"\n... {hidden} more kernels, {rest:,.1f} us{per}"
    return text


def header(label: str, table: pd.DataFrame) -> str:
    a = table.attrs
    device = a.get("device_spec") or "unknown device (no % of peak; pass --device)"
    dump = f", HLO dump {a['hlo_dir']}" if a.get("hlo_dir") else ""
    iters = (f"{a.get('iters')} iteration(s) [{a.get('iters_source')}]"
             if a.get("per_iteration", True) else NO_ITERATIONS)
    per = "us/iter" if a.get("per_iteration", True) else "us in total"
    return (f"== {label}: {a.get('trace')}{dump}\n"
            f"   {a.get('source')} trace, {iters}, device {device}, "
            f"kernels {a.get('kernel_us_per_iter', 0):,.1f} {per}, GPU busy "
            f"{a.get('gpu_busy_us_per_iter', 0):,.1f} {per}, "
            f"{a.get('launches_excluded', 0)} launches outside the iterations"
            + "".join(f"\n   note: {note}" for note in a.get("notes") or []))


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m harness.kernels",
               description="Kernel table and time by category of GPU traces "
                           "(PyTorch Kineto or JAX perfetto, plain or .gz).")
    p.add_argument("traces", nargs="+", metavar="TRACE")
    p.add_argument("--iters", type=number(integer=True, minimum=1),
                   help="profiled iterations (default: count the harness_iter_N, else "
                        "ProfilerStep#N markers)")
    p.add_argument("--top", type=number(integer=True, minimum=1), default=20,
                   help="kernels to print per trace (20)")
    p.add_argument("--device", help='GPU name or key, e.g. "NVIDIA H100 80GB HBM3", h100_sxm '
                                    "(default: from the Kineto trace)")
    p.add_argument("--sm-clock-mhz", type=number(above=0), help="measured SM clock, scales the peaks")
    p.add_argument("--hlo-dir", help="XLA dump folder for XLA FLOPs/bytes and fp8 detection")
    p.add_argument("--wall-us", type=number(above=0), nargs="+", metavar="US",
                   help="measured wall time per iteration, one per trace: prints the "
                        "host/launch gap")
    p.add_argument("--csv", help="write all rows (with a trace column) as CSV")
    p.add_argument("--parquet", help="write all rows (with a trace column) as Parquet")
    return p


def _check_args(args: argparse.Namespace) -> None:
    if args.wall_us and len(args.wall_us) != len(args.traces):
        die(f"--wall-us: expected {len(args.traces)} value(s), one per trace")
    if args.device and lookup_device(args.device) is None:
        known = ", ".join(f"{d.key} ({d.name})" for d in DEVICES)
        die(f"--device: unknown GPU {args.device!r}; expected one of {known}, or the name the "
            'driver reports, e.g. "NVIDIA H100 80GB HBM3"')


def _hlo_dir(path: str, given: str | None) -> str | None:
    """A harness run dir keeps XLA's dump next to the trace (`xla_dump/`); a saved trace may
    carry it as `<name>.xla_dump/`: use it unless told otherwise."""
    name = Path(path).name
    if given is not None or "perfetto" not in name:
        return given
    stem = name.split(".perfetto")[0] if ".perfetto" in name else name.split(".")[0]
    siblings = [Path(path).parent / "xla_dump", Path(path).parent / f"{stem}.xla_dump"]
    return next((str(d) for d in siblings if d.is_dir()), None)


def _scans(args: argparse.Namespace) -> list[Callable[[], Scan | None]]:
    """Each Kineto trace's fast-path scan, started in child processes (a trace the scan does
    not take, a perfetto one or another layout, or one that cannot be read, gives None: read
    here as usual, which names what is wrong)."""
    from harness.collect.trace_read import read_bytes
    scans = []
    for path in args.traces:
        try:
            scans.append(scan_in_background(read_bytes(path)))
        except InputError:
            scans.append(lambda: None)
    return scans


def _tables(args: argparse.Namespace,
            scans: list[Callable[[], Scan | None]]) -> dict[str, pd.DataFrame]:
    from harness.collect.kernel_table import kernel_table
    tables: dict[str, pd.DataFrame] = {}
    for label, path, scanned in zip(labels_for(args.traces), args.traces, scans):
        try:
            tables[label] = kernel_table(path, iters=args.iters, device=args.device,
                                         hlo_dir=_hlo_dir(path, args.hlo_dir),
                                         sm_clock_mhz=args.sm_clock_mhz, scanned=scanned())
        except InputError as e:
            die(str(e))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            die(f"{path}: unexpected trace content ({type(e).__name__}: {e}); expected a "
                "Kineto or JAX perfetto trace")
    return tables


def _write(tables: dict[str, pd.DataFrame], args: argparse.Namespace) -> None:
    """All rows with a trace column, written before anything is printed: a reader that stops
    early (`| head`) does not lose the files."""
    if not (args.csv or args.parquet):
        return
    import pandas as pd
    rows = pd.concat([t.assign(trace=label) for label, t in tables.items()], ignore_index=True)
    rows = rows[["trace"] + [c for c in rows.columns if c != "trace"]]
    try:
        if args.csv:
            rows.to_csv(args.csv, index=False)
        if args.parquet:
            rows.to_parquet(args.parquet, index=False)
    except OSError as e:
        die(f"cannot write output: {e}")


def _print_summaries(tables: dict[str, pd.DataFrame], top: int) -> None:
    from harness.collect.kernel_diff import category_diff, category_summary, kernel_diff
    per_iteration = all(t.attrs.get("per_iteration", True) for t in tables.values())
    per = "per iteration" if per_iteration else "whole trace, not per iteration"
    unit = "per iteration" if per_iteration else "in total"
    print(f"Summary of time (ms) by kernel category, {per}")
    print(category_summary(tables).round(3).to_string())
    print(f"\nBy the category of the source PyTorch op (op_category), {per}")
    print(category_summary(tables, by="op_category").round(3).to_string())
    if len(tables) == 2:
        (la, a), (lb, b) = tables.items()
        print(f"\nDiff by category (ms {unit}, {lb} - {la})")
        print(category_diff(a, b, (la, lb)).round(3).to_string())
        print(f"\nDiff by source-op category (ms {unit}, {lb} - {la})")
        print(category_diff(a, b, (la, lb), by="op_category").round(3).to_string())
        diff = kernel_diff(a, b, (la, lb)).head(top)
        diff["kernel"] = [short_name(k) for k in diff["kernel"]]
        print(f"\nDiff by kernel (us {unit}, {lb} - {la}, largest first)")
        print(diff.round(1).to_string(index=False))


def main(argv: list[str] | None = None) -> int:
    with gc_paused():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    _check_args(args)
    scans = _scans(args)
    from harness.collect.kernel_table import launch_overhead
    tables = _tables(args, scans)
    _write(tables, args)
    for i, (label, table) in enumerate(tables.items()):
        print(header(label, table))
        print(format_table(table, args.top))
        if args.wall_us:
            gap = launch_overhead(table, args.wall_us[i])
            print(f"   wall {gap['wall_us_per_iter']:,.1f} us/iter, GPU busy "
                  f"{gap['gpu_busy_us_per_iter']:,.1f}, gap (host/launch overhead) "
                  f"{gap['gap_us_per_iter']:,.1f} us = {100 * gap['gap_share']:.0f}% of wall")
        print()
    _print_summaries(tables, args.top)
    return 0


if __name__ == "__main__":
    exit_quietly_on_broken_pipe(main)
