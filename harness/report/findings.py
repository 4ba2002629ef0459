"""Findings: where and why backends differ, in one sentence each, with numbers and evidence.

Rules read the report's tables (summary, kernel table, memory table, top buffers, flags,
CUDA-graph evidence) and return `Finding`s, never text alone; the findings table is made of
them (`kind, workload, variant, backends, magnitude, unit, score, evidence, sentence`). Tests
assert on the rows; report.md and `python -m harness.report explain` render them. `score`
(0..1, the share of an iteration or of a footprint at stake) ranks findings within a
workload, after failures, flags (which qualify every other figure of their run) and the
Inductor-vs-XLA pairs. Thresholds are `FindingsConfig`: data, not constants buried in rules.

A finding says what the tables show. Where it names a cause it cannot measure (host overhead
behind an idle GPU), the sentence says "hypothesis".
"""
from __future__ import annotations

import collections
import itertools
import math
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import pandas as pd

from harness.describe import FLAG_CODES, THRESHOLDS, noise_codes
from harness.report import generation
from harness.report.finding import Finding
from harness.report.graphs import describe_command_buffers, describe_cudagraphs, known
from harness.report.load import by_sweep, noise_floor
from harness.report.pair_ratio import interval_text
from harness.report.pairs import PAIRS, pair_table
from harness.report.tables import MIB, category_basis, comparable_category
from harness.report.verdict import DEFAULT_K, FASTER, decide, noisy_text

COLUMNS = ["kind", "workload", "variant", "backends", "magnitude", "unit", "score", "evidence",
           "sentence"]
COMPUTE_CATEGORIES = ("gemm", "attention", "conv")
MEMORY_BOUND_CATEGORIES = ("fp8_cast", "norm", "elementwise", "reduction", "copy")
# Kinds shown first in a workload, in this order; the rest by score.
KIND_ORDER = {"status": 0, "flag": 1, "pair": 2}
# Single-run findings whose figure is read off the wall median (idle = wall - GPU busy).
WALL_KINDS = ("idle", "graphs")
# Summary columns a rule may read that a hand-built summary (tests, old callers) may lack.
OPTIONAL_SUMMARY = {"kernel_ms_per_iter": math.nan, "gpu_busy_ms_per_iter": math.nan,
                    "host_gap_ms": math.nan, "idle_share": math.nan, "processes": math.nan,
                    "between_cv": math.nan, "host_other_share": math.nan, "flags": ""}


@dataclass(frozen=True)
class FindingsConfig:
    # categories: a category's time differs between two backends by at least this much
    category_min_ms: float = 0.005
    category_min_share: float = 0.10      # ... and by this share of the slower run's kernel time
    categories_per_pair: int = 3
    # layout traffic: copy kernels above this share of kernel time
    copy_min_share: float = 0.10
    copy_min_ms: float = 0.002
    # GPU idle: wall minus GPU-busy above this share of the median iteration
    idle_min_share: float = 0.25
    idle_min_ms: float = 0.005
    # a graph mode is meant to keep the GPU busy: idle beyond the host-bound line is a finding
    graph_idle_min_share: float = THRESHOLDS.host_bound_idle_share
    # roofline: time-weighted % of peak below these (only kernels not flagged suspect)
    compute_pct_peak_below: float = 50.0
    bandwidth_pct_peak_below: float = 40.0
    roofline_min_share: float = 0.10      # the kernels judged carry at least this share
    # memory: one backend needs this many times the other's bytes of a kind
    memory_min_ratio: float = 1.5
    memory_min_bytes: float = 1 * MIB
    # numerics: SQNR lower by this many dB than the best backend
    numerics_min_db: float = 10.0
    numerics_cap_db: float = 100.0       # SQNR above this counts as exact
    # speed: fastest vs slowest ok backend beyond this relative difference and k x CV
    speed_min_change: float = 0.10
    speed_k_cv: float = DEFAULT_K
    evidence_kernels: int = 3
    evidence_buffers: int = 3


def _name(workload: str, variant: str) -> str:
    return f"{workload} [{variant}]" if variant else workload


def _short(kernel: str, n: int = 60) -> str:
    return kernel if len(kernel) <= n else kernel[:n - 3] + "..."


def _kernel_text(kernel: str, time_us: float, category: Any = None, group: Any = None) -> str:
    """A kernel as evidence; where kernels are grouped by op category (`group`), its own
    category is named beside it when it differs (XLA's attention: `[gemm]`, `[reduction]`)."""
    own = f" [{category}]" if group is not None and category != group else ""
    return f"{_short(kernel)}{own} ({time_us:,.1f} us)"


def _top_kernels(k: pd.DataFrame, n: int) -> str:
    """The n longest kernels."""
    k = k.sort_values("time_us_per_iter", ascending=False).head(n)
    return ", ".join(_kernel_text(kernel, t) for kernel, t in
                     zip(k["kernel"].tolist(), k["time_us_per_iter"].tolist())) or "none"


def _columns(frame: pd.DataFrame, *names: str) -> list[tuple]:
    """The rows of `frame` as named tuples of the named columns only (the values itertuples
    gives): itertuples takes every column, fifty of the summary's, for each group it is called on."""
    row = collections.namedtuple("Row", names)
    return [row._make(values) for values in zip(*(frame[name] for name in names))]


def _ms(v: float) -> str:
    return f"{v:.3g} ms" if abs(v) >= 0.01 else f"{1000 * v:.3g} us"


# -------------------------------------------------------------------------------- rules

def rule_status(ctx: "Context") -> list[Finding]:
    """A backend that did not run is the first thing to know about a comparison."""
    out = []
    for r in ctx.summary[ctx.summary["status"] != "ok"].itertuples():
        why = r.reason or "no reason recorded"
        out.append(Finding("status", r.workload, r.variant, (r.backend,), 1.0, "run", 1.0, why,
                           f"{r.backend} {r.status} on {_name(r.workload, r.variant)}: "
                           f"{why[:200]}."))
    return out


# What a flag means for the figures of its run, and how it is scored: flags that void a
# figure rank as 1; spread and idle flags by their own size.
_FLAG_FIGURES = {"host_bound": ("idle_share", "% of the step idle"),
                 "high_cv": ("cv", "% CV within a process"),
                 "process_spread": ("between_cv", "% CV between processes"),
                 "host_busy": ("host_other_share", "% of the run's cores taken by other work")}


def rule_flags(ctx: "Context") -> list[Finding]:
    """Every flag of every run, with its figures: a recompile during timing, a CV of 185% or a
    host-bound run qualifies every other number of that run, so explain names it."""
    out = []
    if ctx.flags.empty:
        return out
    by_run = ctx.summary.drop_duplicates("run_id").set_index("run_id")
    for f in ctx.flags.itertuples():
        column, unit = _FLAG_FIGURES.get(f.code, (None, "flag"))
        figure = by_run[column].get(f.run_id, math.nan) if column in by_run else math.nan
        known = figure == figure and figure is not None
        magnitude = 100.0 * float(figure) if known else 1.0
        score = float(figure) if known else 1.0
        meaning = FLAG_CODES.get(f.code, "")
        out.append(Finding("flag", f.workload, f.variant, (f.backend,), magnitude,
                           unit if known else "flag", score, f.detail,
                           f"{f.backend} on {_name(f.workload, f.variant)} is flagged {f.code}: "
                           f"{f.detail}.{f' Meaning: {meaning}.' if meaning else ''}"))
    return out


def rule_pairs(ctx: "Context") -> list[Finding]:
    """The headline and control pairs (harness/report/pairs.py), each said as such, with the
    verdict (harness/report/verdict.py: a ratio only where neither side is flagged noisy), and GPU
    time and host gap beside it, so a reader sees whether the kernels or the host decide it."""
    cfg, out = ctx.cfg, []
    meaning = {p.name: p.meaning for p in PAIRS}
    # the table's verdict is the finding's: a table built already (the report's) has the
    # default k, so another k builds its own
    table = (ctx.pairs if ctx.pairs is not None and cfg.speed_k_cv == DEFAULT_K
             else pair_table(ctx.summary, k=cfg.speed_k_cv))
    for r in table.itertuples():
        # what kept the verdict from stating a ratio, if anything
        noisy = noise_codes(f"{r.inductor_flags},{r.xla_flags}")
        ratio = r.inductor_over_xla
        ev = (f"wall {r.inductor_ms:.4g} vs {r.xla_ms:.4g} ms; GPU {_opt_ms(r.inductor_gpu_ms)} "
              f"vs {_opt_ms(r.xla_gpu_ms)}; host gap {_opt_ms(r.inductor_host_gap_ms)} vs "
              f"{_opt_ms(r.xla_host_gap_ms)}")
        interval = interval_text(r._asdict())
        if interval:
            # the interval is said where a side is noisy too, as what it is: its width shows
            # the noise, and a verdict never rests on it
            ev += (f"; Inductor / XLA {interval}" if not noisy else
                   f"; Inductor / XLA over the process medians, no verdict (a side is flagged noisy): {interval}")
        ev += f"; {r.clocks}" if r.clocks else ""
        out.append(Finding(
            "pair", r.workload, r.variant, (r.inductor, r.xla),
            ratio if not noisy else math.nan,
            "x (Inductor / XLA wall)" if not noisy else "no ratio (a side is flagged noisy)",
            abs(1.0 - min(ratio, 1.0 / ratio)), ev,
            f"{r.pair.capitalize()} pair on {_name(r.workload, r.variant)} ({r.inductor} vs "
            f"{r.xla}: {meaning[r.pair]}): {r.verdict}; {ev}."))
    return out


def _opt_ms(v: float) -> str:
    return _ms(v) if v == v else "unknown"


def rule_speed(ctx: "Context") -> list[Finding]:
    """The fastest against the slowest run of a variant, where the verdict calls one faster: by
    a ratio beyond the noise, or (a run flagged noisy) by ranges that do not overlap, no ratio."""
    cfg, out = ctx.cfg, []
    for (w, v), g in ctx.ok_groups():
        g = g[g["median_ms"] > 0]
        if len(g) < 2:
            continue
        fast, slow = g.loc[g["median_ms"].idxmin()], g.loc[g["median_ms"].idxmax()]
        said = decide(fast["backend"], fast, slow["backend"], slow, k=cfg.speed_k_cv,
                      min_change=cfg.speed_min_change)
        if said.outcome != FASTER:
            continue
        ratio = slow["median_ms"] / fast["median_ms"]
        (cv_fast, src_fast), (cv_slow, src_slow) = noise_floor(fast), noise_floor(slow)
        ranked = g.sort_values("median_ms")
        ranking = " < ".join(f"{backend} {ms:.4g} ms" for backend, ms in
                             zip(ranked["backend"], ranked["median_ms"]))
        out.append(Finding("speed", w, v, (fast["backend"], slow["backend"]), said.ratio,
                           "x" if not said.noisy else "no ratio (a run is flagged noisy)",
                           1.0 - 1.0 / ratio, f"median per iteration: {ranking}; CV "
                           f"{100 * cv_fast:.1f}% ({src_fast}) / {100 * cv_slow:.1f}% ({src_slow})",
                           f"On {_name(w, v)}, {said.text} ({fast['median_ms']:.4g} vs "
                           f"{slow['median_ms']:.4g} ms per iteration)."))
    return out


def rule_categories(ctx: "Context") -> list[Finding]:
    cfg, out = ctx.cfg, []
    for (w, v), g in ctx.ok_groups():
        runs = [r for r in ctx.runs(g) if ctx.has_kernels(r.run_id)]
        for a, b in itertools.combinations(runs, 2):
            ca, cb = ctx.category_ms[a.run_id], ctx.category_ms[b.run_id]
            ta, tb = ca.sum(), cb.sum()
            diff = cb.sub(ca, fill_value=0.0)
            ranked = diff.abs().sort_values(ascending=False)
            by_op = a.run_id in ctx.op_runs and b.run_id in ctx.op_runs
            for cat in ranked.index[:cfg.categories_per_pair]:
                delta = diff[cat]
                if abs(delta) < max(cfg.category_min_ms, cfg.category_min_share * max(ta, tb)):
                    continue
                more, less = (b, a) if delta > 0 else (a, b)
                t_more = (cb if more is b else ca).get(cat, 0.0)
                t_less = (ca if more is b else cb).get(cat, 0.0)
                tot_more, tot_less = (tb, ta) if more is b else (ta, tb)
                ev = (f"{more.backend}: {ctx.top_of(more.run_id, cat)}; "
                      f"{less.backend}: {ctx.top_of(less.run_id, cat)}")
                out.append(Finding(
                    "category", w, v, (more.backend, less.backend), abs(delta), "ms/iter",
                    abs(delta) / max(tot_more, tot_less), ev,
                    f"On {_name(w, v)}, {more.backend} spends {_ms(abs(delta))} per iteration "
                    f"more than {less.backend} in {cat}{' (by source op)' if by_op else ''} "
                    f"({_ms(t_more)}, {100 * t_more / tot_more:.0f}% of its kernel time, vs "
                    f"{_ms(t_less)}, {100 * t_less / tot_less if tot_less else 0:.0f}%); "
                    f"kernels: {ev}."))
    return out


def rule_layout(ctx: "Context") -> list[Finding]:
    """Copies are a kernel-level notion (a transpose inside attention is still traffic): this
    rule reads the kernel category, not the source op's."""
    cfg, out = ctx.cfg, []
    k = ctx.kernels
    if not len(k):
        return out
    time = k["time_us_per_iter"].to_numpy(dtype=float)
    is_copy = (k["category"] == "copy").to_numpy()
    for r in ctx.profiled_runs():
        idx = ctx.kernel_rows[r.run_id]
        total, t = _sum(time[idx]) / 1e3, _sum(time[idx[is_copy[idx]]]) / 1e3
        if total <= 0 or t < cfg.copy_min_ms or t / total < cfg.copy_min_share:
            continue
        ev = f"copy kernels: {_top_kernels(k.iloc[idx[is_copy[idx]]], cfg.evidence_kernels)}"
        bufs = ctx.buffers_of(r.run_id)
        if len(bufs):
            ev += "; largest buffers: " + ctx.describe_buffers(bufs)
        out.append(Finding("layout", r.workload, r.variant, (r.backend,), t, "ms/iter", t / total,
                           ev, f"On {_name(r.workload, r.variant)}, {r.backend} spends {_ms(t)} "
                           f"per iteration ({100 * t / total:.0f}% of kernel time) in copies "
                           f"(transposes, layout changes, memcpy); {ev}."))
    return out


def _idle(r: Any) -> tuple[float, float, float, str] | None:
    """(host gap ms, its share of the wall median, GPU busy ms, what busy is) of a summary
    row, or None where the run was not profiled."""
    if not r.median_ms > 0:
        return None
    busy, what = r.gpu_busy_ms_per_iter, "busy time"
    if not busy == busy:
        busy, what = r.kernel_ms_per_iter, "kernel sum"
    if not busy == busy:
        return None
    gap = r.host_gap_ms if r.host_gap_ms == r.host_gap_ms else r.median_ms - busy
    return gap, gap / r.median_ms, busy, what


def rule_idle(ctx: "Context") -> list[Finding]:
    """Runs that are not graph modes; a graph mode's idle time is rule_graphs' to explain."""
    cfg, out = ctx.cfg, []
    for r in ctx.profiled_runs():
        idle = _idle(r)
        if idle is None or r.run_id in ctx.graph_mode_runs:
            continue
        gap, share, busy, what = idle
        if gap < cfg.idle_min_ms or share < cfg.idle_min_share:
            continue
        if r.family == "inductor":
            fix = "CUDA graphs (backend mode reduce-overhead or max-autotune) or a larger batch"
        elif r.family == "xla":
            fix = ("XLA's command buffers (its default) or a larger batch" if r.graphs == "none"
                   else "a larger batch or fewer host round trips per step (XLA already "
                        "launches one executable)")
        else:
            fix = "torch.compile with CUDA graphs or a larger batch"
        ev = f"median {r.median_ms:.4g} ms, GPU busy {busy:.4g} ms per iteration ({what})"
        out.append(Finding("idle", r.workload, r.variant, (r.backend,), gap, "ms/iter", share, ev,
                           f"On {_name(r.workload, r.variant)}, the GPU is idle {_ms(gap)} of "
                           f"each {r.median_ms:.4g} ms iteration under {r.backend} "
                           f"({100 * share:.0f}%): hypothesis: host and launch overhead, which "
                           f"{fix} would likely remove (not measured)."))
    return out


def _graph_cause(g: Any) -> tuple[str, str]:
    """(cause, evidence) of a graph mode's idle GPU, from its record's graph evidence."""
    if g.mechanism == "cudagraphs":
        ev = describe_cudagraphs(g)
        if not g.evidence:
            return "cause unknown: the record carries no CUDA-graph evidence", ev
        if g.graph_replays == 0:
            return (f"no CUDA graph replayed{f' (skipped: {g.skips})' if g.skips else ''}, so "
                    "every kernel is launched from the host", ev)
        if g.skips:
            return f"cudagraphs were skipped for part of the program: {g.skips}", ev
        if g.cudagraphable_partitions < g.partitions:      # False where either is unknown
            return (f"{g.partitions - g.cudagraphable_partitions:.0f} of {g.partitions:.0f} graph "
                    "partitions are not cudagraphable and run op by op between the graphs", ev)
        return ("graphs replayed over every partition: by elimination, host work between graph "
                "launches (Python, guards, input copies)", ev)
    ev = f"command buffers: {describe_command_buffers(g)}"
    if not g.evidence:
        return ("cause unknown: the record carries no command-buffer settings; hypothesis: host "
                "work between executables"), ev
    if known(g.command_buffers_enabled) is False:
        return "command buffers are off, so XLA launches kernel by kernel", ev
    if known(g.during_profiling) is False:
        return ("the profile ran without command buffers, so its GPU time is of another "
                "program than the one timed"), ev
    return ("command buffers on and kept while profiling: by elimination, host work between "
            "executables"), ev


MECHANISMS = {"cudagraphs": "CUDA graphs", "command_buffers": "command buffers"}


def rule_graphs(ctx: "Context") -> list[Finding]:
    """A graph mode (Inductor reduce-overhead / max-autotune, XLA with command buffers) exists
    to keep the GPU busy; where it leaves it idle, the record's graph evidence names why: no
    replays, skips with their reasons, partitions that are not cudagraphable, else host work
    between graphs."""
    cfg, out = ctx.cfg, []
    for g in ctx.graphs.itertuples():
        if not g.graph_mode or g.status != "ok":
            continue
        r = ctx.row(g.run_id)
        idle = _idle(r) if r is not None else None
        if idle is None:
            continue
        gap, share, busy, _ = idle
        if gap < cfg.idle_min_ms or share < cfg.graph_idle_min_share:
            continue
        cause, ev = _graph_cause(g)
        out.append(Finding("graphs", g.workload, g.variant, (g.backend,), gap, "ms/iter", share, ev,
                           f"On {_name(g.workload, g.variant)}, {g.backend} runs in a graph "
                           f"mode ({MECHANISMS[g.mechanism]}) yet the GPU idles {_ms(gap)} of each iteration "
                           f"({100 * share:.0f}%, GPU busy {_ms(busy)}): {cause}; {ev}."))
    return out


def _sum(values: np.ndarray) -> float:
    """What pandas' Series.sum gives (NaN skipped), on a run's slice of a column."""
    return float(np.nansum(values))


def rule_roofline(ctx: "Context") -> list[Finding]:
    cfg, out = ctx.cfg, []
    k = ctx.kernels
    if not len(k) or "time_us_per_iter" not in k:
        return out
    # columns as arrays once, sliced per run (per-run frames cost more than the arithmetic)
    time = pd.to_numeric(k["time_us_per_iter"], errors="coerce").to_numpy(dtype=float)
    suspect = (k["suspect"].fillna(False).astype(bool).to_numpy() if "suspect" in k
               else np.zeros(len(k), dtype=bool))
    checks = []
    for cats, col, limit, what in (
            (COMPUTE_CATEGORIES, "pct_peak_flops", cfg.compute_pct_peak_below, "FLOP/s"),
            (MEMORY_BOUND_CATEGORIES, "pct_peak_bw", cfg.bandwidth_pct_peak_below,
             "memory bandwidth")):
        if col in k:
            pct_col = pd.to_numeric(k[col], errors="coerce").to_numpy(dtype=float)
            sel = k["category"].isin(cats).to_numpy() & ~np.isnan(pct_col) & ~suspect
            checks.append((cats, col, limit, what, pct_col, sel))
    for r in ctx.profiled_runs():
        idx = ctx.kernel_rows[r.run_id]
        total = _sum(time[idx])
        for cats, col, limit, what, pct_col, sel in checks:
            mine = idx[sel[idx]]
            t = _sum(time[mine])
            if total <= 0 or t / total < cfg.roofline_min_share:
                continue
            pct = _sum(pct_col[mine] * time[mine]) / t
            if pct >= limit:
                continue
            chosen = k.iloc[mine]
            worst = chosen.sort_values("time_us_per_iter", ascending=False).head(cfg.evidence_kernels)
            ev = ", ".join(f"{_short(x.kernel)} ({x.category}, {x.time_us_per_iter:,.1f} us, "
                           f"{float(getattr(x, col)):.0f}%)" for x in worst.itertuples())
            out.append(Finding("roofline", r.workload, r.variant, (r.backend,), pct,
                               f"% of peak {what}", (t / total) * (1.0 - pct / 100.0), ev,
                               f"On {_name(r.workload, r.variant)}, {r.backend}'s "
                               f"{'/'.join(c for c in cats if c in set(chosen['category']))} "
                               f"kernels reach {pct:.0f}% of peak {what} (time-weighted over "
                               f"{len(chosen)} kernels, {t / 1e3:.3g} ms, {100 * t / total:.0f}% "
                               f"of kernel time; below {limit:g}%): {ev}."))
    return out


def rule_memory(ctx: "Context") -> list[Finding]:
    cfg, out = ctx.cfg, []
    m = ctx.memory
    if m.empty:
        return out
    for (w, v), g in ctx.ok_groups():
        runs = [r for r in ctx.runs(g) if r.run_id in ctx.memory_runs]
        for a, b in itertools.combinations(runs, 2):
            ma, mb = ctx.kind_bytes[a.run_id], ctx.kind_bytes[b.run_id]
            best = None
            for kind in ma.index.intersection(mb.index):
                if kind in ("total", "runtime_peak"):
                    continue
                lo, hi = sorted((ma[kind], mb[kind]))
                smaller = a if ma[kind] <= mb[kind] else b
                if (smaller.run_id, kind) in ctx.lower_bounds:
                    continue     # "at least lo" against hi says nothing about who needs more
                if hi - lo < cfg.memory_min_bytes or (lo > 0 and hi / lo < cfg.memory_min_ratio):
                    continue
                if best is None or hi - lo > best[1]:
                    best = (kind, hi - lo)
            if best is None:
                continue
            kind, delta = best
            big, small = (a, b) if ma[kind] > mb[kind] else (b, a)
            hi, lo = max(ma[kind], mb[kind]), min(ma[kind], mb[kind])
            bufs = ctx.buffers_of(big.run_id)
            if len(bufs) and "kind" in bufs:
                bufs = bufs[bufs["kind"] == kind] if (bufs["kind"] == kind).any() else bufs
            ev = (f"{kind}: {big.backend} {hi / MIB:,.1f} MiB vs {small.backend} "
                  f"{lo / MIB:,.1f} MiB")
            if len(bufs):
                ev += f"; largest {big.backend} buffers: " + ctx.describe_buffers(bufs)
            footprint = max(ma.get("total", ma.sum()), mb.get("total", mb.sum()), hi)
            out.append(Finding("memory", w, v, (big.backend, small.backend), delta / MIB, "MiB",
                               delta / footprint if footprint else 0.0, ev,
                               f"On {_name(w, v)}, {big.backend} needs {delta / MIB:,.1f} MiB more "
                               f"{kind} memory than {small.backend} "
                               f"({hi / MIB:,.1f} vs {lo / MIB:,.1f} MiB"
                               f"{f', {hi / lo:.1f}x' if lo > 0 else ''}); {ev}."))
    return out


def rule_numerics(ctx: "Context") -> list[Finding]:
    cfg, out = ctx.cfg, []
    for (w, v), g in ctx.groups():
        # Past ~100 dB both outputs equal the reference to float32 rounding: cap, so an exact
        # (inf dB) eager output does not make a 135 dB compiled one look "inf dB" worse.
        g = g[g["min_sqnr_db"].notna()].assign(min_sqnr_db=lambda d: d["min_sqnr_db"].clip(upper=cfg.numerics_cap_db))
        if len(g) < 2:
            continue
        best = g.loc[g["min_sqnr_db"].idxmax()]
        for r in _columns(g, "backend", "min_sqnr_db", "max_abs_err"):
            gap = best["min_sqnr_db"] - r.min_sqnr_db
            if r.backend == best["backend"] or gap < cfg.numerics_min_db:
                continue
            err = (f"; max abs error {r.max_abs_err:.3g} vs {best['max_abs_err']:.3g}"
                   if r.max_abs_err == r.max_abs_err and best["max_abs_err"] == best["max_abs_err"]
                   else "")
            ev = f"min SQNR {r.min_sqnr_db:.1f} dB vs {best['min_sqnr_db']:.1f} dB{err}"
            out.append(Finding("numerics", w, v, (r.backend, best["backend"]), gap, "dB",
                               min(1.0, gap / 40.0), ev,
                               f"On {_name(w, v)}, {r.backend}'s output is {gap:.1f} dB less "
                               f"accurate (SQNR vs the float32 reference) than {best['backend']}'s "
                               f"({ev})."))
    return out


RULES: tuple[Callable[["Context"], list[Finding]], ...] = (
    rule_status, rule_flags, rule_pairs, rule_speed, rule_categories, rule_layout, rule_idle,
    rule_graphs, rule_roofline, rule_memory, rule_numerics)


@dataclass
class Context:
    summary: pd.DataFrame
    kernels: pd.DataFrame
    memory: pd.DataFrame
    buffers: pd.DataFrame
    flags: pd.DataFrame           # tables.flags_long: one row per (run, flag)
    graphs: pd.DataFrame          # graphs.graphs_table: graph evidence per run
    cfg: FindingsConfig
    pairs: pd.DataFrame | None = None   # pairs.pair_table of the summary, where already built

    def __post_init__(self) -> None:
        # the workload variants' runs, split once: splitting the summary per rule cost more
        # than the rules' arithmetic
        self._ok = ok = self.summary[self.summary["status"] == "ok"]
        self._ok_groups = list(ok.groupby(["workload", "variant"], sort=False))
        # per workload variant, its runs' (backend, flags): what `qualified` reads
        self._variant_flags = {key: list(zip(g["backend"], g["flags"])) for key, g in
                               self.summary.groupby(["workload", "variant"], sort=False)}
        self._first = {}      # run_id -> the position of its first row
        for i, rid in enumerate(self.summary["run_id"].tolist()):
            self._first.setdefault(rid, i)
        # each run's rows of the kernel table, as positions: the rules slice column arrays by
        # them (per-run frames cost more than the arithmetic)
        self.kernel_rows: dict[str, np.ndarray] = (
            self.kernels.groupby("run_id", sort=False).indices if len(self.kernels) else {})
        self._b = {rid: g for rid, g in self.buffers.groupby("run_id")} if len(self.buffers) else {}
        self.memory_runs = set(self.memory["run_id"]) if len(self.memory) else set()
        self.graph_mode_runs = (set(self.graphs.loc[self.graphs["graph_mode"].fillna(False)
                                                    .astype(bool), "run_id"])
                                if len(self.graphs) else set())
        # Per-run sums and per-(run, category) top kernels, computed once: the pairwise rules
        # look them up hundreds of times on a 100-run sweep. Categories are the comparable
        # ones (by source op where the kernel table has it).
        self.category_ms: dict[str, pd.Series] = {}
        self._top: dict[tuple[str, str], str] = {}
        self.op_runs: set[str] = set()
        if len(self.kernels):
            k = self.kernels.sort_values("time_us_per_iter", ascending=False, kind="stable")
            k = k.assign(compared=comparable_category(k))
            self.op_runs = set(k.loc[category_basis(k) == "op", "run_id"])
            sums = k.groupby(["run_id", "compared"])["time_us_per_iter"].sum() / 1e3
            self.category_ms = {rid: g.droplevel(0) for rid, g in sums.groupby(level=0)}
            n = self.cfg.evidence_kernels
            top = k.groupby(["run_id", "compared"], sort=False).head(n)   # longest first
            listed: dict[tuple[str, str], list[str]] = {}
            for rid, cat, kernel, own, t in zip(top["run_id"].tolist(), top["compared"].tolist(),
                                                top["kernel"].tolist(), top["category"].tolist(),
                                                top["time_us_per_iter"].tolist()):
                listed.setdefault((rid, cat), []).append(_kernel_text(kernel, t, own, cat))
            self._top = {key: ", ".join(texts) for key, texts in listed.items()}
        self.kind_bytes: dict[str, pd.Series] = {}
        # (run, kind) whose bytes are only a lower bound (buffers of unknown size: extern
        # kernels' outputs in Inductor's output code): no difference against them is known
        self.lower_bounds: set[tuple[str, str]] = set()
        if len(self.memory):
            sums = self.memory.groupby(["run_id", "kind"])["bytes"].sum().astype(float)
            self.kind_bytes = {rid: g.droplevel(0) for rid, g in sums.groupby(level=0)}
            if "note" in self.memory:
                bounded = self.memory[self.memory["note"].fillna("").str.contains("lower bound")]
                self.lower_bounds = set(zip(bounded["run_id"], bounded["kind"]))
        # three rules go through the profiled runs: their rows are taken once
        self._profiled = [r for r in self._ok.itertuples() if self.has_kernels(r.run_id)]

    def row(self, run_id: str) -> pd.Series | None:
        """A run's summary row (a run listed twice: its first), None where it has none."""
        i = self._first.get(run_id)
        return None if i is None else self.summary.iloc[i]

    def qualified(self, f: Finding) -> Finding:
        """A finding on a run's wall time (its idle gap) says when that run is flagged noisy:
        the gap moves with the median."""
        if f.kind not in WALL_KINDS:
            return f
        runs = [(backend, {"flags": flags}) for backend, flags in
                self._variant_flags.get((f.workload, f.variant), []) if backend in f.backends]
        said = noisy_text(tuple(b for b, _ in runs), tuple(r for _, r in runs)) \
            if len(runs) == 2 else noisy_text((f.backends[0],), (runs[0][1],)) if runs else ""
        if not said:
            return f
        return replace(f, sentence=f"{f.sentence[:-1]}; {said}: its wall median, and so this gap, "
                                   "is noisy.")

    def top_of(self, run_id: str, category: str) -> str:
        return self._top.get((run_id, category), "none")

    def groups(self):
        return self.summary.groupby(["workload", "variant"], sort=False)

    def ok_groups(self) -> list[tuple[tuple[str, str], pd.DataFrame]]:
        return self._ok_groups

    @staticmethod
    def runs(group: pd.DataFrame) -> list[tuple]:
        """A group's runs as (run_id, backend), each its own object (the pairwise rules tell
        them apart by identity)."""
        return _columns(group, "run_id", "backend")

    def has_kernels(self, run_id: str) -> bool:
        c = self.category_ms.get(run_id)
        return c is not None and c.sum() > 0

    def profiled_runs(self):
        """The summary row of every ok run that has a non-empty kernel table (its kernels:
        `kernel_rows`)."""
        yield from self._profiled

    def buffers_of(self, run_id: str) -> pd.DataFrame:
        b = self._b.get(run_id)
        if b is None:
            return self.buffers.iloc[0:0]
        return b.assign(_b=pd.to_numeric(b["bytes"], errors="coerce")).sort_values(
            "_b", ascending=False).drop(columns="_b")

    def describe_buffers(self, b: pd.DataFrame) -> str:
        parts = []
        for x in b.head(self.cfg.evidence_buffers).itertuples():
            shape = getattr(x, "shape", "")
            parts.append(f"{getattr(x, 'name', '?')} {shape if shape is not None else ''} "
                         f"{float(x.bytes) / MIB:,.1f} MiB".replace("  ", " "))
        return ", ".join(parts)


def findings_from(summary: pd.DataFrame, kernels: pd.DataFrame | None = None,
                  memory: pd.DataFrame | None = None, buffers: pd.DataFrame | None = None,
                  flags: pd.DataFrame | None = None, graphs: pd.DataFrame | None = None,
                  cfg: FindingsConfig = FindingsConfig(), extra: tuple[Finding, ...] = (),
                  pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """All rules over the tables, plus `extra` findings (a generation's: harness/report/generation.py);
    rows ranked per workload: failures, flags and pairs first, then by score."""
    empty = pd.DataFrame(columns=["run_id"])
    summary = summary.assign(**{c: v for c, v in OPTIONAL_SUMMARY.items()
                                if c not in summary.columns})
    ctx = Context(summary=summary, kernels=kernels if kernels is not None else empty,
                  memory=memory if memory is not None else empty,
                  buffers=buffers if buffers is not None else empty,
                  flags=flags if flags is not None else empty,
                  graphs=graphs if graphs is not None else empty, cfg=cfg, pairs=pairs)
    found = [ctx.qualified(f) for rule in RULES for f in rule(ctx)] + list(extra)
    out = pd.DataFrame([f.row() for f in found], columns=COLUMNS)
    if out.empty:
        return out
    first = {w: i for i, w in enumerate(dict.fromkeys(summary["workload"]))}
    out["_w"] = out["workload"].map(first)
    out["_k"] = out["kind"].map(KIND_ORDER).fillna(len(KIND_ORDER))
    # pairs in their table's order (headline, then control), whatever their scores
    pair_order = {f"{p.inductor},{p.xla}": i for i, p in enumerate(PAIRS)}
    out["_p"] = out["backends"].map(pair_order).where(out["kind"] == "pair", 0)
    out = out.sort_values(["_w", "_k", "_p", "score"], ascending=[True, True, True, False],
                          kind="stable")
    out = out.drop(columns=["_w", "_k", "_p"]).reset_index(drop=True)
    out.insert(0, "rank", out.groupby("workload").cumcount() + 1)
    return out


def findings(sweep, tables: dict[str, pd.DataFrame] | None = None,
             cfg: FindingsConfig = FindingsConfig()) -> pd.DataFrame:
    """Findings of a loaded sweep, per sweep directory (harness.report.load.by_sweep): runs are
    compared within their sweep only, and where several sweeps were loaded each finding names
    its sweep. `tables` (harness.report.build_tables) saves rebuilding the flags and
    graph-evidence tables."""
    from harness.report.graphs import graphs_table
    from harness.report.tables import flags_long
    tables = tables or {}
    flags = tables["flags"] if "flags" in tables else flags_long(sweep)
    graphs = tables["graphs"] if "graphs" in tables else graphs_table(sweep)
    pairs = tables.get("pairs")       # built per sweep by build_tables: not built again here
    parts = []
    for name, sub in by_sweep(sweep):
        ids = set(sub.summary["run_id"])
        mine = {"flags": flags[flags["run_id"].isin(ids)],
                "graphs": graphs[graphs["run_id"].isin(ids)] if len(graphs) else graphs}
        if pairs is not None:
            mine["pairs"] = pairs[pairs["inductor_run_id"].isin(ids)]
        parts.append((name, sub, mine))
    return findings_by_sweep(parts, cfg)


def findings_by_sweep(parts: list[tuple[str, Any, dict[str, pd.DataFrame]]],
                      cfg: FindingsConfig = FindingsConfig()) -> pd.DataFrame:
    """Findings of each sweep directory's runs, given as (name, its part of the sweep, its
    `flags`, `graphs` and, where built, `pairs` tables): the report has them per sweep already."""
    out = []
    for name, sub, tables in parts:
        found = findings_from(sub.summary, sub.kernels, sub.memory, sub.buffers,
                              flags=tables["flags"], graphs=tables["graphs"], cfg=cfg,
                              extra=tuple(generation.findings(sub)), pairs=tables.get("pairs"))
        found.insert(0, "sweep", name)
        if len(parts) > 1:
            found["sentence"] = [f"[{name}] {text}" for text in found["sentence"]]
        out.append(found)
    return (pd.concat(out, ignore_index=True) if out
            else pd.DataFrame(columns=["sweep", "rank", *COLUMNS]))


def _sections(found: pd.DataFrame):
    """(heading, rows) per workload, and per sweep where several are in the table."""
    several = "sweep" in found.columns and found["sweep"].nunique() > 1
    keys = ["sweep", "workload"] if several else ["workload"]
    for key, g in found.groupby(keys, sort=False):
        yield (f"{key[0]}: {key[1]}" if several else key[0] if isinstance(key, tuple) else key), g


def render_markdown(found: pd.DataFrame, per_workload: int = 8) -> str:
    """report.md's findings: flags are left to the summary's Flags section beside the figures
    they qualify (explain lists them with the rest)."""
    shown = found[found["kind"] != "flag"] if found is not None and len(found) else found
    if shown is None or shown.empty:
        return "_No findings: no backends differ beyond the thresholds (FindingsConfig)._\n"
    lines = []
    for workload, g in _sections(shown):
        lines.append(f"**{workload}**\n")
        for i, r in enumerate(g.head(per_workload).itertuples(), 1):
            lines.append(f"{i}. [{r.kind}] {r.sentence}")
        if len(g) > per_workload:
            lines.append(f"\n_{len(g) - per_workload} more in findings.csv._")
        lines.append("")
    return "\n".join(lines) + "\n"


def render_text(found: pd.DataFrame) -> str:
    if found is None or found.empty:
        return "No findings: no backends differ beyond the thresholds."
    lines = []
    for workload, g in _sections(found):
        lines.append(f"== {workload}")
        for r in g.itertuples():
            lines.append(f"{r.rank:>3}. [{r.kind}, score {r.score:.2f}] {r.sentence}")
        lines.append("")
    return "\n".join(lines)
