"""Reports over sweeps: `python -m harness.report SWEEP_DIR [...]`.

load (records + per-run tables) -> tables (summary, kernel categories, top kernels, memory;
CSV + Parquet) -> plots (PNG) -> report.md, all written into the sweep directory.
`compare` (two sweeps, noise-aware verdicts), `history` (a Parquet store over nights) and
`explain` (findings) build on the same loaded tables.
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pandas as pd

from harness.errors import InputError
from harness.report import generation as G
from harness.report import tables as T
from harness.report.graphs import graphs_markdown, graphs_table
from harness.describe import flagged_text
from harness.report.load import Sweep, by_sweep, load
from harness.report.pairs import pair_table, pairs_markdown

PLOTS_DIR = "plots"
REPORT_NAME = "report.md"


@dataclass
class Report:
    out_dir: Path
    markdown: Path
    tables: dict[str, pd.DataFrame]
    plots: dict[str, Path] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)


def build_tables(sweep: Sweep) -> dict[str, pd.DataFrame]:
    return {
        "summary": sweep.summary,
        "kernels_by_category": T.category_long(sweep),
        "kernels_top": T.top_kernels(sweep),
        "memory_by_kind": T.memory_long(sweep),
        "memory_top_buffers": _buffers(sweep),
        "speedup": T.speedup_table(sweep.summary),
        "compile": T.compile_table(sweep),
        "flags": T.flags_long(sweep),
        "pairs": pair_table(sweep.summary),
        "graphs": graphs_table(sweep),
        "generation": G.generation_table(sweep),
        "generation_positions": G.positions_long(sweep),
    }


def _call(job: tuple):
    fn, *args = job
    return fn(*args)


class _Plots:
    """The plots, drawn in worker processes while this one computes findings, writes tables and
    renders report.md: drawing is over half of a large report's CPU time, and the figures are
    independent of each other and of the rest. A figure is waited for where report.md first
    needs to know whether it exists (`get`, `in`). One process where there is one CPU."""

    def __init__(self, jobs: dict[str, tuple]):
        self.drawn: dict[str, Path | None] = {}
        self.futures: dict[str, concurrent.futures.Future] = {}
        workers = min(len(jobs), os.cpu_count() or 1)
        self.pool = None
        if workers < 2:
            self.drawn = {key: _call(job) for key, job in jobs.items()}
            return
        ctx = multiprocessing.get_context("fork")
        self.pool = concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
        self.futures = {key: self.pool.submit(_call, job) for key, job in jobs.items()}

    def __enter__(self) -> "_Plots":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def get(self, key: str) -> Path | None:
        if key not in self.drawn and key in self.futures:
            self.drawn[key] = self.futures[key].result()
        return self.drawn.get(key)

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def all(self) -> dict[str, Path]:
        return {key: path for key in [*self.drawn, *self.futures]
                if (path := self.get(key)) is not None}


class _SweepPlots:
    """One sweep's figures among those being drawn (keys `sweep|figure`), for its report.md
    section: rendered while the figures are drawn, waiting for each where it is embedded."""

    def __init__(self, drawing: _Plots, sweep: str):
        self.drawing, self.prefix = drawing, f"{sweep}|"

    def get(self, key: str) -> Path | None:
        return self.drawing.get(self.prefix + key)

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None


# What report.md reads plots from: drawn paths by key, or the plots being drawn.
Plots = "dict[str, Path] | _Plots"


def _buffers(sweep: Sweep, n: int = 10) -> pd.DataFrame:
    b = sweep.buffers
    if len(b):
        b = b.assign(_b=pd.to_numeric(b["bytes"], errors="coerce"))
        b = b.sort_values(["run_id", "_b"], ascending=[True, False], kind="stable")
        b = b.groupby("run_id", sort=False).head(n).drop(columns="_b").reset_index(drop=True)
    return T._with_missing(b, sweep, "memory_buffers")


def _plot_jobs(sweep: Sweep, tables: dict[str, pd.DataFrame], plot_dir: Path) -> dict[str, tuple]:
    """Each figure's function and the rows it draws (each job's rows are sent to a worker):
    the costliest first, so that no worker is left with it at the end, then in the order
    report.md embeds them, so that rendering it seldom waits."""
    from harness.report import plots as P
    workloads = list(dict.fromkeys(sweep.summary["workload"]))
    categories, memory = tables["kernels_by_category"], tables["memory_by_kind"]
    jobs = {"compile": (P.compile_phases, tables["compile"], plot_dir),
            "speedup": (P.speedup, tables["speedup"], plot_dir)}
    jobs.update({f"categories:{w}": (P.category_stacked, categories[categories["workload"] == w],
                                     w, plot_dir) for w in workloads})
    jobs["generation"] = (G.latency_by_position, tables["generation_positions"], plot_dir)
    jobs["roofline"] = (P.roofline, tables["kernels_top"], sweep.summary[["device"]], plot_dir)
    jobs.update({f"memory:{w}": (P.memory_by_kind, memory[memory["workload"] == w], w, plot_dir)
                 for w in workloads})
    return jobs


def generate(roots: list[str | Path], out_dir: str | Path | None = None,
             findings: bool = True) -> Report:
    """Load the sweeps, write tables, plots and report.md into out_dir (default: the first
    sweep directory). Runs are reported per sweep directory (harness.report.load.by_sweep):
    where several are loaded, each has its own section, plots and comparisons, and the tables
    written beside report.md hold all runs with their `sweep`."""
    sweep = load(roots)
    out = Path(out_dir) if out_dir is not None else Path(roots[0])
    if out.is_file():
        out = out.parent
    try:
        return _write_report(sweep, out, findings)
    except OSError as e:     # --out /proc/nope, a read-only sweep, a full disk: one line
        where = f" ({e.filename})" if e.filename and Path(e.filename) != out else ""
        raise InputError(f"{out}: cannot write the report there: {e.strerror or e}{where}") from None


def _write_report(sweep: Sweep, out: Path, findings: bool) -> Report:
    parts = by_sweep(sweep)
    several = len(parts) > 1
    per_sweep = {name: build_tables(sub) for name, sub in parts}
    tables = per_sweep[parts[0][0]] if not several else _stack(per_sweep)
    out.mkdir(parents=True, exist_ok=True)

    jobs = {}
    for name, sub in parts:
        plot_dir = out / PLOTS_DIR / (_slug(name) if several else "")
        plot_dir.mkdir(parents=True, exist_ok=True)
        jobs.update({f"{name}|{key}": job for key, job in _plot_jobs(sub, per_sweep[name], plot_dir).items()})
    # the figures are drawn in worker processes while this one writes the tables, makes the
    # findings and renders report.md (which waits for a figure only where it embeds it)
    with _Plots(jobs) as drawing:
        written = T.write_tables(tables, out)
        found = None
        if findings:
            from harness.report.findings import findings_by_sweep
            found = findings_by_sweep([(name, sub, per_sweep[name]) for name, sub in parts])
            tables["findings"] = found
            written += T.write_tables({"findings": found}, out)
        body = ([f"## Sweep `{name}`\n\n" + _demoted(render_body(sub, per_sweep[name],
                                                                 _SweepPlots(drawing, name), out))
                 for name, sub in parts] if several else
                [render_body(sweep, tables, _SweepPlots(drawing, parts[0][0]), out)])
        md = "\n".join([_header(sweep), *_findings_section(found), *body])
        drawn = drawing.all()
    plots = {name: {key.split("|", 1)[1]: path for key, path in drawn.items()
                    if key.split("|", 1)[0] == name} for name, _ in parts}
    path = out / REPORT_NAME
    path.write_text(md)
    written += [path, *drawn.values()]
    return Report(out_dir=out, markdown=path, tables=tables,
                  plots=plots[parts[0][0]] if not several else drawn, written=written)


def _stack(per_sweep: dict[str, dict[str, pd.DataFrame]]) -> dict[str, pd.DataFrame]:
    """Each table over all sweeps, with the sweep named in each row."""
    out = {}
    for key in next(iter(per_sweep.values())):
        frames = [t[key] if "sweep" in t[key].columns else t[key].assign(sweep=name)
                  for name, t in per_sweep.items()]
        frames = [f for f in frames if len(f)] or frames[:1]
        out[key] = pd.concat(frames, ignore_index=True)
    return out


def _slug(name: str) -> str:
    return name.strip("/").replace("/", "_") or "sweep"


def _demoted(markdown: str) -> str:
    """A sweep's section inside a report of several: its headings one level down."""
    return re.sub(r"^(#+ )", r"#\1", markdown, flags=re.M)


def _variant_tables(lines: list[str], s: pd.DataFrame, plots: "Plots", out: Path, plot: str,
                    alt: str, wide_of) -> Iterator[tuple[str, str]]:
    """Per workload its heading and plot, then per variant its title and wide table (`wide_of(w,
    v)`); yields each (workload, variant) for what its section adds below the table."""
    flags = {(r.workload, r.variant, r.backend): r.flags for r in s.itertuples()}
    for workload in dict.fromkeys(s["workload"]):
        lines.append(f"### {workload}\n")
        lines.append(_img(plots, f"{plot}:{workload}", out, f"{workload} {alt}"))
        for w, v in T.variants(s[s["workload"] == workload]):
            wide = wide_of(w, v)
            lines.append(f"**{w} [{v}]**\n")
            if not wide.empty:
                wide = wide.rename(columns=lambda b: flagged_text(b, flags.get((w, v, b), "")))
                lines.append(T.md_table(wide, index=True))
            yield w, v


def _img(plots: "Plots", key: str, out: Path, alt: str) -> str:
    p = plots.get(key)
    return f"![{alt}]({p.relative_to(out).as_posix()})\n" if p else ""


def _missing_note(long: pd.DataFrame, workload: str, variant: str, what: str) -> str:
    sub = long[(long["workload"] == workload) & (long["variant"] == variant)]
    col = "category" if "category" in long.columns else "kind"
    gone = sub[sub[col].isna()]
    return "".join(f"- no {what} for **{backend}**: {T.md_escape(reason)}\n"
                   for backend, reason in zip(gone["backend"].tolist(), gone["reason"].tolist()))


def _header(sweep: Sweep) -> str:
    s = sweep.summary
    counts = s["status"].value_counts().to_dict()
    devices = ", ".join(sorted(set(d for d in s["device"] if d))) or "unknown"
    sweeps = list(dict.fromkeys(s["sweep"]))
    return "\n".join([
        "# Benchmark report\n",
        f"Sweeps: {', '.join(f'`{r}`' for r in sweep.roots)}"
        + (f" ({len(sweeps)} sweep directories, each compared within itself: "
           f"{', '.join(f'`{n}`' for n in sweeps)})" if len(sweeps) > 1 else "") + "  ",
        f"Runs: {len(s)} ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}); "
        f"device: {devices}; generated {time.strftime('%Y-%m-%d %H:%M:%S')}.\n",
        "Times are per iteration. Blank cells are unknown (not zero); % of peak only where "
        "the device is in the peak table. `!code` after a figure: the flags of its run.\n"])


def _findings_section(found: pd.DataFrame | None) -> list[str]:
    if found is None:
        return []
    from harness.report.findings import render_markdown
    return ["## Findings\n", render_markdown(found)]


def render_body(sweep: Sweep, tables: dict[str, pd.DataFrame], plots: dict[str, Path],
                out: Path) -> str:
    """The sections of one sweep's runs: summary, flags, pairs, graphs, categories, memory..."""
    s = sweep.summary
    lines: list[str] = []
    lines += ["## Summary\n", T.summary_markdown(s)]
    flagged = T.flags_markdown(tables["flags"])
    if flagged:
        lines += ["### Flags\n", "What a run did not measure as asked; its figures above hold "
                  "only with this in mind.\n", flagged]
    bad = s[s["status"] != "ok"]
    if len(bad):
        lines.append("### Failed and skipped runs\n")
        for r in bad.itertuples(index=False):
            lines.append(f"- **{r.workload} [{r.variant}] {r.backend}** {r.status}: "
                         f"{T.md_escape(r.reason) or '(no reason recorded)'} (`{r.run_dir}`)")
        lines.append("")
    lines += ["## Inductor vs XLA: the headline and control pairs\n",
              pairs_markdown(tables["pairs"], s)]
    lines += ["## CUDA graphs and command buffers\n",
              "Per graph-mode run (Inductor reduce-overhead / max-autotune) and per XLA run: "
              "whether CUDA graphs were recorded and replayed, skips with their reasons, graph "
              "partitions; XLA's command-buffer settings and whether the profile kept them.\n",
              graphs_markdown(tables["graphs"])]
    if "speedup" in plots:
        lines += ["## Speedup over eager\n", _img(plots, "speedup", out, "speedup over eager")]

    lines.append("## Time by kernel category (ms per iteration)\n")
    lines.append("Categories are those of each kernel's source PyTorch op where the kernel table "
                 "names it (so attention means the same on Inductor and XLA), else of the kernel "
                 "itself; where ops are known, the split by kernel category follows.\n")
    # each variant's rows, split once: filtering the whole long tables per variant was most
    # of rendering a 100-run report
    cat = T.by_variant(tables["kernels_by_category"])
    top = T.by_variant(tables["kernels_top"])
    for w, v in _variant_tables(lines, s, plots, out, "categories", "time by category",
                                lambda w, v: T.category_wide(cat[w, v], w, v)):
        split = T.category_split(cat[w, v], w, v)
        if not split.empty:
            lines += ["<details><summary>by source op and kernel category</summary>\n",
                      T.md_table(split), "</details>\n"]
        lines.append(_missing_note(cat[w, v], w, v, "kernel table"))
        sub = top[w, v]
        sub = sub[sub["kernel"].notna()]
        if len(sub):
            ops = [c for c in ("op", "op_category") if c in sub.columns
                   and sub[c].notna().any()]
            view = sub[["backend", "rank", "kernel", *ops, "category", "time_us_per_iter",
                        "share", "achieved_tflops", "achieved_gbps", "pct_peak_flops",
                        "pct_peak_bw", "suspect"]].copy()
            view = view[view["rank"] <= 5]
            view["kernel"] = view["kernel"].map(lambda k: k if len(k) <= 60 else k[:57] + "...")
            view["share"] = view["share"] * 100.0
            view.columns = ["backend", "#", "kernel", *[o.replace("_", " ") for o in ops],
                            "category", "us/iter", "share %", "TFLOP/s", "GB/s",
                            "% peak FLOP/s", "% peak BW", "suspect"]
            lines.append("<details><summary>top kernels</summary>\n")
            lines.append(T.md_table(view, {"suspect": lambda v: "suspect" if v is True or
                                                       v == True else ""}))  # noqa: E712
            lines.append("</details>\n")
    lines.append(G.render_markdown(tables["generation"], plots.get("generation"), out))
    lines += ["## Roofline (top kernels)\n",
              _img(plots, "roofline", out, "roofline") or
              "_No kernel with both FLOPs and bytes known (CPU runs, or not profiled)._\n"]

    lines.append("## Memory by kind (MiB)\n")
    mem = T.by_variant(tables["memory_by_kind"])
    for w, v in _variant_tables(lines, s, plots, out, "memory", "memory by kind",
                                lambda w, v: T.memory_wide(mem[w, v], w, v)):
        lines.append(_missing_note(mem[w, v], w, v, "memory table"))
    lines.append("## Compile time by phase (s)\n")
    lines.append(_img(plots, "compile", out, "compile phases"))
    comp = tables["compile"].drop(columns=["run_id", "status", "reason"])
    if not comp.empty:
        lines.append(T.md_table(comp))
    lines.append("capture: Dynamo tracing / torchax tracing + `lower()`; graph_codegen: AOTAutograd + "
                 "Inductor lowering and codegen / XLA `compile()`; kernel_compile_wait: waiting on "
                 "Triton/C++ compiles (not separable on XLA); other: the rest of the first call. "
                 "Blank = the compiler does not separate it.\n")
    lines.append("Tables: `summary`, `kernels_by_category`, `kernels_top`, `memory_by_kind`, "
                 "`memory_top_buffers`, `speedup`, `compile`, `flags`, `pairs`, `graphs` (and "
                 "`findings`), each as `.csv` and `.parquet` beside this file.\n")
    return "\n".join(lines)
