"""Reports from sweep directories.

    python -m harness.report SWEEP_DIR [SWEEP_DIR...] [--out DIR]   tables + plots + report.md
    python -m harness.report compare BASE NEW [--threshold 0.05] [--alpha 0.05] [--k 3]
                                           [--out FILE]
                                           [--allow-missing]
                                           exit 1 when something regressed; 3 when nothing
                                           matched or an ok run of BASE is missing from NEW
                                           (unless --allow-missing); else 0
    python -m harness.report history SWEEP_DIR [...] [--store results/history] [--night DATE]
    python -m harness.report regressions STORE [--json] [--since DATE] [--min-effect 0.03]
                                           changes across the nights of a history store; exit 1
                                           while a regression is open, else 0
    python -m harness.report explain SWEEP_DIR [...]                 findings, ranked
    python -m harness.report findings-doc [--check] [NAME ...]       the findings docs of
                                           docs/findings.toml, rendered from the records
                                           (--check: exit 1 where a committed doc differs)
    python -m harness.report findings-doc --template T.md.j2 [--out FILE] SWEEP_DIR [...]
    python -m harness.report dashboard STORE [--out DIR]             static site of the nights

User mistakes (no records, a corrupt record.json, a record of an unknown schema_version) are
one line naming the file, exit 2.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from harness.cli_args import Parser, number
from harness.errors import InputError, die

COMMANDS = ("compare", "history", "regressions", "explain", "findings-doc", "dashboard")
EXIT_REGRESSED = 1
EXIT_INCOMPLETE = 3     # 2 is a user mistake (harness.errors)


def _report(argv: list[str]) -> int:
    p = Parser(prog="python -m harness.report",
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
    p = Parser(prog="python -m harness.report compare",
               description="Per matching run, NEW/BASE of the median with a verdict "
                           "from a rank test and a minimum effect, and whether the "
                           "kernels or the host changed. Exit 1 if anything regressed, 3 if "
                           "nothing matched or an ok run of BASE is missing "
                           "from NEW.")
    p.add_argument("base", metavar="BASE")
    p.add_argument("new", metavar="NEW")
    p.add_argument("--threshold", type=number(minimum=0), default=0.05,
                   help="smallest relative change counted (0.05 = 5%%)")
    p.add_argument("--alpha", type=number(above=0), default=0.05,
                   help="a change must also pass a one-sided Mann-Whitney U test at this level, "
                        "on the samples (every process of NEW beyond every process of BASE where "
                        "processes ran) or on the process medians where enough ran (0.05)")
    p.add_argument("--k", type=number(minimum=0), default=3.0,
                   help="where one process ran on a side, a change must also exceed k x the "
                        "robust spread of the samples (1.4826 x MAD / median), combined over "
                        "both sides (3)")
    p.add_argument("--out", help="also write the Markdown here (and FILE.csv beside it)")
    p.add_argument("--allow-missing", action="store_true",
                   help="accept on purpose that nothing matched or that ok runs of BASE are "
                        "missing from NEW (still listed); exit 0 unless something regressed")
    args = p.parse_args(argv)
    if not args.alpha < 1:
        p.error(f"argument --alpha: expected a level below 1, e.g. 0.05, got {args.alpha:g}")
    from harness.report.compare import (CompareConfig, compare, incomplete_reason,
                                        render_markdown)
    from harness.report.load import load
    c = compare(load([args.base], skip_unusable=True), load([args.new], skip_unusable=True),
                CompareConfig(threshold=args.threshold, alpha=args.alpha, k=args.k))
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
    for note in c.duplicates:
        print(f"compare: {note}", file=sys.stderr)
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
    p = Parser(prog="python -m harness.report history",
               description="Append sweeps' summaries to a Parquet store "
                           "partitioned by date (idempotent) and plot the trend.")
    p.add_argument("sweeps", nargs="+", metavar="SWEEP_DIR")
    p.add_argument("--store", default=str(DEFAULT_STORE), help=f"default {DEFAULT_STORE}/")
    p.add_argument("--night", metavar="YYYY-MM-DD",
                   help="the night these sweeps belong to (scripts/nightly.sh passes its "
                        "NIGHTLY_DATE); default: the day each record was written (UTC)")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    from harness.report.regressions import parse_date
    night = parse_date(args.night, "--night") if args.night is not None else None
    a = append(args.sweeps, args.store, plot=not args.no_plot, night=night)
    print(f"{a.rows_new} run(s) appended to {a.store}, {a.rows_skipped} already there"
          + (f"; trend: {a.trend}" if a.trend else ""))
    return 0


def _regressions(argv: list[str]) -> int:
    from harness.report.regressions import METHODS, RegressionConfig
    default = RegressionConfig()
    p = Parser(prog="python -m harness.report regressions",
               description="Changes across the nights of a history store, per workload variant "
                           "x backend x device: regressions, improvements and single suspicious "
                           "nights, with the night and commit range where each began. Exit 1 "
                           "while a regression is open (its level is the latest), else 0; 2 on "
                           "bad input.")
    p.add_argument("store", metavar="STORE", help="a store written by `history` "
                                                  "(<store>/date=YYYY-MM-DD/*.parquet)")
    p.add_argument("--json", action="store_true", help="a JSON list of changes instead")
    p.add_argument("--since", metavar="YYYY-MM-DD",
                   help="only changes that began on or after this night (earlier nights still "
                        "make the baselines)")
    p.add_argument("--min-effect", type=number(minimum=0), default=default.min_effect,
                   help=f"smallest relative change of a level called a change "
                        f"({default.min_effect:g} = {100 * default.min_effect:g}%%)")
    p.add_argument("--min-nights", type=number(integer=True, minimum=1),
                   default=default.min_nights,
                   help=f"nights a new level must hold to be a regression ({default.min_nights})")
    p.add_argument("--alpha", type=number(above=0), default=default.alpha,
                   help=f"chance that a series of pure noise shows a change "
                        f"({default.alpha:g})")
    p.add_argument("--method", choices=METHODS, default=default.method,
                   help="change-point library (otava and e_divisive where installed)")
    args = p.parse_args(argv)
    if not args.alpha < 1:
        p.error(f"argument --alpha: expected a level below 1, e.g. 0.03, got {args.alpha:g}")
    from harness.report.history import read_store
    from harness.report.regressions import (detect, method_missing, night_series,
                                            open_regressions, parse_date, render_text, to_json)
    missing = method_missing(args.method)
    if missing:
        die(missing)
    since = parse_date(args.since) if args.since is not None else None
    history = read_store(Path(args.store), must_exist=True)
    cfg = RegressionConfig(min_effect=args.min_effect, min_nights=args.min_nights,
                           alpha=args.alpha, method=args.method)
    nights = night_series(history)
    changes = detect(history, cfg, since, nights)
    print(to_json(changes) if args.json else render_text(changes, nights, args.store, cfg, since))
    return EXIT_REGRESSED if open_regressions(changes) else 0


def _explain(argv: list[str]) -> int:
    p = Parser(prog="python -m harness.report explain",
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
        try:
            found.to_csv(args.csv, index=False)
        except OSError as e:
            die(f"{args.csv}: cannot write ({e.strerror or e})")
    return 0


def _findings_doc(argv: list[str]) -> int:
    from harness.report import docs
    p = Parser(prog="python -m harness.report findings-doc",
                                description="Render the findings docs from the records: every "
                                            "doc of the manifest (docs/findings.toml), or one "
                                            "template over the given sweeps.")
    p.add_argument("names", nargs="*", metavar="NAME|SWEEP_DIR",
                   help="docs of the manifest to render (default: all); with --template, the "
                        "sweep directories to load")
    p.add_argument("--manifest", default=str(docs.MANIFEST), help=f"default {docs.MANIFEST}")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 naming each file whose committed text differs "
                        "from its rendering (a number that drifted from the records)")
    p.add_argument("--template", help="render this template over the SWEEP_DIRs instead")
    p.add_argument("--out", help="with --template: write here (default: stdout)")
    args = p.parse_args(argv)
    if args.template:
        if not args.names:
            die("--template needs the SWEEP_DIRs to load, e.g. findings-doc --template "
                "docs/templates/findings-h200.md.j2 results/reference/h200")
        text = docs.render(Path(args.template), [Path(n) for n in args.names])
        if args.out:
            try:
                Path(args.out).write_text(text)
            except OSError as e:
                die(f"{args.out}: cannot write ({e.strerror or e})")
            print(f"{args.out}: rendered from {args.template}")
        else:
            print(text, end="")
        return 0
    outputs = docs.render_all(Path(args.manifest), args.names)
    drifted = [o for o in outputs if o.drifted]
    if args.check:
        for o in drifted:
            print(f"{os.path.normpath(o.path)}: differs from its rendering ({', '.join(o.docs)}); run "
                  f"`python -m harness.report findings-doc` and review the diff:\n{o.diff()}")
        if not drifted:
            print(f"{len(outputs)} file(s) match their rendering from the records")
        return 1 if drifted else 0
    for o in outputs:
        if o.drifted:
            o.path.write_text(o.text)
        print(f"{os.path.normpath(o.path)}: {'rewritten' if o.drifted else 'unchanged'} "
              f"({', '.join(o.docs)})")
    return 0


def _dashboard(argv: list[str]) -> int:
    p = Parser(prog="python -m harness.report dashboard",
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
        handler = {"compare": _compare, "history": _history, "regressions": _regressions,
                   "explain": _explain, "findings-doc": _findings_doc, "dashboard": _dashboard}[argv.pop(0)]
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
