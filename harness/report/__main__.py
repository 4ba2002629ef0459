"""Reports from sweep directories.

    python -m harness.report SWEEP_DIR [SWEEP_DIR...] [--out DIR]   tables + plots + report.md
    python -m harness.report compare BASE NEW [--threshold 0.05] [--k 3] [--out FILE]
                                           [--allow-missing]
                                           exit 1 when something regressed; 3 when nothing
                                           matched or an ok run of BASE is missing from NEW
                                           (unless --allow-missing); else 0
    python -m harness.report history SWEEP_DIR [...] [--store results/history]
    python -m harness.report explain SWEEP_DIR [...]                 findings, ranked
    python -m harness.report dashboard STORE [--out DIR]             static site of the nights

User mistakes (no records, a corrupt record.json, a record of an unknown schema_version) are
one line naming the file, exit 2.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness.errors import InputError, die

COMMANDS = ("compare", "history", "explain", "dashboard")
EXIT_REGRESSED = 1
EXIT_INCOMPLETE = 3     # 2 is a user mistake (harness.errors)


def _report(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.report",
                                description="Tables (CSV, Parquet), plots (PNG) and report.md "
                                            "for one or more sweep directories. Subcommands: "
                                            "compare BASE NEW, history SWEEP_DIR, explain "
                                            "SWEEP_DIR.")
    p.add_argument("sweeps", nargs="+", metavar="SWEEP_DIR")
    p.add_argument("--out", help="where to write (default: the first SWEEP_DIR)")
    p.add_argument("--no-findings", action="store_true", help="leave the Findings section out")
    args = p.parse_args(argv)
    from harness.report import generate
    report = generate(args.sweeps, args.out, findings=not args.no_findings)
    s = report.tables["summary"]
    counts = ", ".join(f"{v} {k}" for k, v in s["status"].value_counts().items())
    print(f"{len(s)} runs ({counts}) -> {report.markdown}")
    print(f"tables: {', '.join(sorted({p.stem for p in report.written if p.suffix == '.csv'}))}"
          f" (.csv, .parquet); plots: {len(report.plots)}")
    flags = report.tables["flags"]
    if len(flags):
        codes = ", ".join(f"{code} {n}" for code, n in flags["code"].value_counts().items())
        print(f"!! {flags['run_id'].nunique()} run(s) flagged ({codes}): see Flags in report.md")
    return 0


def _compare(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.report compare",
                                description="Per matching run, NEW/BASE of the median with a "
                                            "noise-aware verdict, and whether the kernels or the "
                                            "host changed. Exit 1 if anything regressed, 3 if "
                                            "nothing matched or an ok run of BASE is missing "
                                            "from NEW.")
    p.add_argument("base", metavar="BASE")
    p.add_argument("new", metavar="NEW")
    p.add_argument("--threshold", type=float, default=0.05,
                   help="smallest relative change counted (0.05 = 5%%)")
    p.add_argument("--k", type=float, default=3.0,
                   help="a change must also exceed k x sqrt(noise_base^2 + noise_new^2), noise "
                        "being the between-process CV where several processes ran, else the "
                        "within-process CV (3)")
    p.add_argument("--out", help="also write the Markdown here (and FILE.csv beside it)")
    p.add_argument("--allow-missing", action="store_true",
                   help="accept on purpose that nothing matched or that ok runs of BASE are "
                        "missing from NEW (still listed); exit 0 unless something regressed")
    args = p.parse_args(argv)
    if args.threshold < 0 or args.k < 0:
        die("--threshold and --k must be non-negative")
    from harness.report.compare import (CompareConfig, compare, incomplete_reason,
                                        render_markdown)
    from harness.report.load import load
    c = compare(load([args.base]), load([args.new]), CompareConfig(args.threshold, args.k))
    md = render_markdown(c, args.base, args.new, args.allow_missing)
    code = (EXIT_REGRESSED if c.regressed else
            EXIT_INCOMPLETE if c.incomplete and not args.allow_missing else 0)
    if args.out:
        out = Path(args.out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(md)
            c.table.to_csv(out.with_suffix(".csv"), index=False)
        except OSError as e:
            die(f"{out}: cannot write ({e})")
    if c.incomplete and not args.allow_missing:
        # The gate's reason on stderr too: a nightly log shows it without the Markdown.
        print(f"compare: incomplete, {incomplete_reason(c)} (exit {EXIT_INCOMPLETE} unless "
              "something regressed; --allow-missing accepts this)", file=sys.stderr)
    try:
        print(md, flush=True)   # flushed here: a pipe closed early fails now, not at exit
    except BrokenPipeError:   # `compare ... | head`: the verdict's exit code still counts
        _stdout_closed()
    return code


def _history(argv: list[str]) -> int:
    from harness.report.history import DEFAULT_STORE, append
    p = argparse.ArgumentParser(prog="python -m harness.report history",
                                description="Append sweeps' summaries to a Parquet store "
                                            "partitioned by date (idempotent) and plot the trend.")
    p.add_argument("sweeps", nargs="+", metavar="SWEEP_DIR")
    p.add_argument("--store", default=str(DEFAULT_STORE), help=f"default {DEFAULT_STORE}/")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    a = append(args.sweeps, args.store, plot=not args.no_plot)
    print(f"{a.rows_new} run(s) appended to {a.store}, {a.rows_skipped} already there"
          + (f"; trend: {a.trend}" if a.trend else ""))
    return 0


def _explain(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.report explain",
                                description="Where and why backends differ: ranked findings "
                                            "with their numbers and evidence.")
    p.add_argument("sweeps", nargs="+", metavar="SWEEP_DIR")
    p.add_argument("--csv", help="also write the findings table here")
    args = p.parse_args(argv)
    from harness.report import build_tables
    from harness.report.findings import findings, render_text
    from harness.report.load import load
    sweep = load(args.sweeps)
    found = findings(sweep, build_tables(sweep))
    print(render_text(found))
    if args.csv:
        found.to_csv(args.csv, index=False)
    return 0


def _dashboard(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.report dashboard",
                                description="A static site of a history store's nights (works "
                                            "from file://, no network): open regressions, every "
                                            "series over nights, the fair pairs' ratio.")
    p.add_argument("store", metavar="STORE", help="the history store (results/history)")
    p.add_argument("--out", help="where to write the site (default: STORE/_dashboard)")
    args = p.parse_args(argv)
    try:
        from harness.report.dashboard import build
    except ImportError as e:
        die(f"the dashboard needs plotly ({e}): pip install plotly, or install harness with "
            "its dependencies")
    site = build(args.store, args.out or Path(args.store) / "_dashboard")
    print(f"dashboard: {site.series} series over {site.nights} night(s), "
          f"{site.open_regressions} open regression(s) -> {site.index} "
          f"({len(site.pages)} pages; {site.out / 'plotly.min.js'} "
          f"{site.plotly_js_bytes / 1e6:.1f} MB)")
    return 0


def _stdout_closed() -> None:
    """Python would print a traceback when it flushes a closed stdout at exit: point stdout at
    devnull instead (the `signal` docs' recipe for SIGPIPE)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    handler = _report
    if argv and argv[0] in COMMANDS:
        handler = {"compare": _compare, "history": _history, "explain": _explain,
                   "dashboard": _dashboard}[argv.pop(0)]
    try:
        code = handler(argv)
        sys.stdout.flush()
        return code
    except InputError as e:
        die(str(e))
    except BrokenPipeError:   # `... | head` closed the pipe: the reader has what it wanted
        _stdout_closed()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
