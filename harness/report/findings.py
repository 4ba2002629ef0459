"""Findings: where and why backends differ, in one sentence each, with numbers and evidence.

Rules read the report's tables (summary, kernel table, memory table, top buffers) and return
rows, never text alone: `kind, workload, variant, backends, magnitude, unit, score, evidence,
sentence`. Tests assert on the rows; report.md and `python -m harness.report explain` render
them. `score` (0..1, the share of an iteration or of a footprint at stake) ranks findings
within a workload. Thresholds are `FindingsConfig`: data, not constants buried in rules.

A finding says what the tables show. Where it names a cause it cannot measure (host overhead
behind an idle GPU), the sentence says "hypothesis".
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from harness.report.tables import MIB, order_backends

COLUMNS = ["kind", "workload", "variant", "backends", "magnitude", "unit", "score", "evidence",
           "sentence"]
COMPUTE_CATEGORIES = ("gemm", "attention", "conv")
MEMORY_BOUND_CATEGORIES = ("fp8_cast", "norm", "elementwise", "reduction", "copy")


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
    speed_k_cv: float = 3.0
    evidence_kernels: int = 3
    evidence_buffers: int = 3


def _row(kind, workload, variant, backends, magnitude, unit, score, evidence, sentence) -> dict:
    return dict(kind=kind, workload=workload, variant=variant, backends=",".join(backends),
                magnitude=float(magnitude), unit=unit, score=float(min(max(score, 0.0), 1.0)),
                evidence=evidence, sentence=sentence)


def _name(workload: str, variant: str) -> str:
    return f"{workload} [{variant}]" if variant else workload


def _short(kernel: str, n: int = 60) -> str:
    return kernel if len(kernel) <= n else kernel[:n - 3] + "..."


def _top_kernels(k: pd.DataFrame, n: int) -> str:
    k = k.sort_values("time_us_per_iter", ascending=False).head(n)
    return ", ".join(f"{_short(r.kernel)} ({r.time_us_per_iter:,.1f} us)"
                     for r in k.itertuples()) or "none"


def _ms(v: float) -> str:
    return f"{v:.3g} ms" if abs(v) >= 0.01 else f"{1000 * v:.3g} us"


# -------------------------------------------------------------------------------- rules

def rule_status(ctx: "Context") -> list[dict]:
    """A backend that did not run is the first thing to know about a comparison."""
    out = []
    for r in ctx.summary[ctx.summary["status"] != "ok"].itertuples():
        out.append(_row("status", r.workload, r.variant, [r.backend], 1.0, "run", 1.0,
                        r.reason or "no reason recorded",
                        f"{r.backend} {r.status} on {_name(r.workload, r.variant)}: "
                        f"{(r.reason or 'no reason recorded')[:200]}."))
    return out


def rule_speed(ctx: "Context") -> list[dict]:
    cfg, out = ctx.cfg, []
    for (w, v), g in ctx.ok_groups():
        g = g[g["median_ms"] > 0]
        if len(g) < 2:
            continue
        fast, slow = g.loc[g["median_ms"].idxmin()], g.loc[g["median_ms"].idxmax()]
        ratio = slow["median_ms"] / fast["median_ms"]
        cv = math.hypot(np.nan_to_num(fast["cv"]), np.nan_to_num(slow["cv"]))
        if ratio - 1.0 < max(cfg.speed_min_change, cfg.speed_k_cv * cv):
            continue
        ranking = " < ".join(f"{r.backend} {r.median_ms:.4g} ms" for r in
                             g.sort_values("median_ms").itertuples())
        out.append(_row("speed", w, v, [fast["backend"], slow["backend"]], ratio, "x",
                        1.0 - 1.0 / ratio, f"median per iteration: {ranking}; CV "
                        f"{100 * np.nan_to_num(fast['cv']):.1f}% / "
                        f"{100 * np.nan_to_num(slow['cv']):.1f}%",
                        f"On {_name(w, v)}, {fast['backend']} is {ratio:.2f}x faster than "
                        f"{slow['backend']} ({fast['median_ms']:.4g} vs {slow['median_ms']:.4g} "
                        f"ms per iteration, beyond {cfg.speed_k_cv:g} x CV)."))
    return out


def rule_categories(ctx: "Context") -> list[dict]:
    cfg, out = ctx.cfg, []
    for (w, v), g in ctx.ok_groups():
        runs = [r for r in g.itertuples() if ctx.has_kernels(r.run_id)]
        for a, b in itertools.combinations(runs, 2):
            ca, cb = ctx.category_ms[a.run_id], ctx.category_ms[b.run_id]
            ta, tb = ca.sum(), cb.sum()
            diff = cb.sub(ca, fill_value=0.0)
            ranked = diff.abs().sort_values(ascending=False)
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
                out.append(_row(
                    "category", w, v, [more.backend, less.backend], abs(delta), "ms/iter",
                    abs(delta) / max(tot_more, tot_less), ev,
                    f"On {_name(w, v)}, {more.backend} spends {_ms(abs(delta))} per iteration "
                    f"more than {less.backend} in {cat} ({_ms(t_more)}, "
                    f"{100 * t_more / tot_more:.0f}% of its kernel time, vs {_ms(t_less)}, "
                    f"{100 * t_less / tot_less if tot_less else 0:.0f}%); kernels: {ev}."))
    return out


def rule_layout(ctx: "Context") -> list[dict]:
    cfg, out = ctx.cfg, []
    for r, k in ctx.profiled_runs():
        total = k["time_us_per_iter"].sum() / 1e3
        copy = k[k["category"] == "copy"]
        t = copy["time_us_per_iter"].sum() / 1e3
        if total <= 0 or t < cfg.copy_min_ms or t / total < cfg.copy_min_share:
            continue
        ev = f"copy kernels: {_top_kernels(copy, cfg.evidence_kernels)}"
        bufs = ctx.buffers_of(r.run_id)
        if len(bufs):
            ev += "; largest buffers: " + ctx.describe_buffers(bufs)
        out.append(_row("layout", r.workload, r.variant, [r.backend], t, "ms/iter", t / total, ev,
                        f"On {_name(r.workload, r.variant)}, {r.backend} spends {_ms(t)} per "
                        f"iteration ({100 * t / total:.0f}% of kernel time) in copies "
                        f"(transposes, layout changes, memcpy); {ev}."))
    return out


def rule_idle(ctx: "Context") -> list[dict]:
    cfg, out = ctx.cfg, []
    for r, _ in ctx.profiled_runs():
        if not r.median_ms > 0:
            continue
        busy = r.gpu_busy_ms_per_iter if r.gpu_busy_ms_per_iter == r.gpu_busy_ms_per_iter \
            else r.kernel_ms_per_iter
        if not busy == busy:
            continue
        gap = r.median_ms - busy
        share = gap / r.median_ms
        if gap < cfg.idle_min_ms or share < cfg.idle_min_share:
            continue
        if r.backend.startswith("inductor") and "reduce-overhead" not in r.backend:
            fix = "CUDA graphs (backend.mode=reduce-overhead) or a larger batch"
        elif r.backend.startswith("xla"):
            fix = "a larger batch or fewer host round trips per step (XLA already launches one executable)"
        else:
            fix = "torch.compile with CUDA graphs or a larger batch"
        ev = (f"median {r.median_ms:.4g} ms, GPU busy {busy:.4g} ms per iteration "
              f"({'busy time' if r.gpu_busy_ms_per_iter == r.gpu_busy_ms_per_iter else 'kernel sum'})")
        out.append(_row("idle", r.workload, r.variant, [r.backend], gap, "ms/iter", share, ev,
                        f"On {_name(r.workload, r.variant)}, the GPU is idle {_ms(gap)} of each "
                        f"{r.median_ms:.4g} ms iteration under {r.backend} ({100 * share:.0f}%): "
                        f"hypothesis: host and launch overhead, which {fix} would likely remove "
                        f"(not measured)."))
    return out


def rule_roofline(ctx: "Context") -> list[dict]:
    cfg, out = ctx.cfg, []
    for r, k in ctx.profiled_runs():
        total = k["time_us_per_iter"].sum()
        suspect = k["suspect"].fillna(False).astype(bool) if "suspect" in k else False
        for cats, col, limit, what in (
                (COMPUTE_CATEGORIES, "pct_peak_flops", cfg.compute_pct_peak_below, "FLOP/s"),
                (MEMORY_BOUND_CATEGORIES, "pct_peak_bw", cfg.bandwidth_pct_peak_below,
                 "memory bandwidth")):
            if col not in k:
                continue
            sel = k[k["category"].isin(cats) & pd.to_numeric(k[col], errors="coerce").notna()
                    & ~suspect]
            t = sel["time_us_per_iter"].sum()
            if total <= 0 or t / total < cfg.roofline_min_share:
                continue
            pct = float((sel[col].astype(float) * sel["time_us_per_iter"]).sum() / t)
            if pct >= limit:
                continue
            worst = sel.sort_values("time_us_per_iter", ascending=False).head(cfg.evidence_kernels)
            ev = ", ".join(f"{_short(x.kernel)} ({x.category}, {x.time_us_per_iter:,.1f} us, "
                           f"{getattr(x, col):.0f}%)" for x in worst.itertuples())
            out.append(_row("roofline", r.workload, r.variant, [r.backend], pct, f"% of peak {what}",
                            (t / total) * (1.0 - pct / 100.0), ev,
                            f"On {_name(r.workload, r.variant)}, {r.backend}'s "
                            f"{'/'.join(c for c in cats if c in set(sel['category']))} kernels "
                            f"reach {pct:.0f}% of peak {what} (time-weighted over {len(sel)} "
                            f"kernels, {t / 1e3:.3g} ms, {100 * t / total:.0f}% of kernel time; "
                            f"below {limit:g}%): {ev}."))
    return out


def rule_memory(ctx: "Context") -> list[dict]:
    cfg, out = ctx.cfg, []
    m = ctx.memory
    if m.empty:
        return out
    for (w, v), g in ctx.ok_groups():
        runs = [r for r in g.itertuples() if r.run_id in ctx.memory_runs]
        for a, b in itertools.combinations(runs, 2):
            ma, mb = ctx.kind_bytes[a.run_id], ctx.kind_bytes[b.run_id]
            best = None
            for kind in ma.index.intersection(mb.index):
                if kind in ("total", "runtime_peak"):
                    continue
                lo, hi = sorted((ma[kind], mb[kind]))
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
            out.append(_row("memory", w, v, [big.backend, small.backend], delta / MIB, "MiB",
                            delta / footprint if footprint else 0.0, ev,
                            f"On {_name(w, v)}, {big.backend} needs {delta / MIB:,.1f} MiB more "
                            f"{kind} memory than {small.backend} "
                            f"({hi / MIB:,.1f} vs {lo / MIB:,.1f} MiB"
                            f"{f', {hi / lo:.1f}x' if lo > 0 else ''}); {ev}."))
    return out


def rule_numerics(ctx: "Context") -> list[dict]:
    cfg, out = ctx.cfg, []
    for (w, v), g in ctx.groups():
        # Past ~100 dB both outputs equal the reference to float32 rounding: cap, so an exact
        # (inf dB) eager output does not make a 135 dB compiled one look "inf dB" worse.
        g = g[g["min_sqnr_db"].notna()].assign(min_sqnr_db=lambda d: d["min_sqnr_db"].clip(upper=cfg.numerics_cap_db))
        if len(g) < 2:
            continue
        best = g.loc[g["min_sqnr_db"].idxmax()]
        for r in g.itertuples():
            gap = best["min_sqnr_db"] - r.min_sqnr_db
            if r.backend == best["backend"] or gap < cfg.numerics_min_db:
                continue
            err = (f"; max abs error {r.max_abs_err:.3g} vs {best['max_abs_err']:.3g}"
                   if r.max_abs_err == r.max_abs_err and best["max_abs_err"] == best["max_abs_err"]
                   else "")
            ev = f"min SQNR {r.min_sqnr_db:.1f} dB vs {best['min_sqnr_db']:.1f} dB{err}"
            out.append(_row("numerics", w, v, [r.backend, best["backend"]], gap, "dB",
                            min(1.0, gap / 40.0), ev,
                            f"On {_name(w, v)}, {r.backend}'s output is {gap:.1f} dB less "
                            f"accurate (SQNR vs the float32 reference) than {best['backend']}'s "
                            f"({ev})."))
    return out


RULES: tuple[Callable[["Context"], list[dict]], ...] = (
    rule_status, rule_speed, rule_categories, rule_layout, rule_idle, rule_roofline, rule_memory,
    rule_numerics)


@dataclass
class Context:
    summary: pd.DataFrame
    kernels: pd.DataFrame
    memory: pd.DataFrame
    buffers: pd.DataFrame
    cfg: FindingsConfig

    def __post_init__(self) -> None:
        self._k = {rid: g for rid, g in self.kernels.groupby("run_id")} if len(self.kernels) else {}
        self._b = {rid: g for rid, g in self.buffers.groupby("run_id")} if len(self.buffers) else {}
        self.memory_runs = set(self.memory["run_id"]) if len(self.memory) else set()
        # Per-run sums and per-(run, category) top kernels, computed once: the pairwise rules
        # look them up hundreds of times on a 100-run sweep.
        self.category_ms: dict[str, pd.Series] = {}
        self._top: dict[tuple[str, str], str] = {}
        if len(self.kernels):
            k = self.kernels.sort_values("time_us_per_iter", ascending=False, kind="stable")
            sums = k.groupby(["run_id", "category"])["time_us_per_iter"].sum() / 1e3
            self.category_ms = {rid: g.droplevel(0) for rid, g in sums.groupby(level=0)}
            n = self.cfg.evidence_kernels
            for (rid, cat), g in k.groupby(["run_id", "category"], sort=False):
                self._top[(rid, cat)] = _top_kernels(g.head(n), n)
        self.kind_bytes: dict[str, pd.Series] = {}
        if len(self.memory):
            sums = self.memory.groupby(["run_id", "kind"])["bytes"].sum().astype(float)
            self.kind_bytes = {rid: g.droplevel(0) for rid, g in sums.groupby(level=0)}

    def top_of(self, run_id: str, category: str) -> str:
        return self._top.get((run_id, category), "none")

    def groups(self):
        return self.summary.groupby(["workload", "variant"], sort=False)

    def ok_groups(self):
        return self.summary[self.summary["status"] == "ok"].groupby(["workload", "variant"],
                                                                     sort=False)

    def has_kernels(self, run_id: str) -> bool:
        c = self.category_ms.get(run_id)
        return c is not None and c.sum() > 0

    def kernels_of(self, run_id: str) -> pd.DataFrame:
        return self._k.get(run_id, self.kernels.iloc[0:0])

    def profiled_runs(self):
        """(summary row, kernel table) of every ok run that has a non-empty kernel table."""
        for r in self.summary[self.summary["status"] == "ok"].itertuples():
            if self.has_kernels(r.run_id):
                yield r, self.kernels_of(r.run_id)

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
                  cfg: FindingsConfig = FindingsConfig()) -> pd.DataFrame:
    """All rules over the tables; rows ranked per workload by score (status first)."""
    empty = pd.DataFrame(columns=["run_id"])
    ctx = Context(summary=summary, kernels=kernels if kernels is not None else empty,
                  memory=memory if memory is not None else empty,
                  buffers=buffers if buffers is not None else empty, cfg=cfg)
    rows = [row for rule in RULES for row in rule(ctx)]
    out = pd.DataFrame(rows, columns=COLUMNS)
    if out.empty:
        return out
    first = {w: i for i, w in enumerate(dict.fromkeys(summary["workload"]))}
    out["_w"] = out["workload"].map(first)
    out["_s"] = out["kind"].eq("status")
    out = out.sort_values(["_w", "_s", "score"], ascending=[True, False, False], kind="stable")
    out = out.drop(columns=["_w", "_s"]).reset_index(drop=True)
    out.insert(0, "rank", out.groupby("workload").cumcount() + 1)
    return out


def findings(sweep, tables: dict[str, pd.DataFrame] | None = None,
             cfg: FindingsConfig = FindingsConfig()) -> pd.DataFrame:
    return findings_from(sweep.summary, sweep.kernels, sweep.memory, sweep.buffers, cfg)


def render_markdown(found: pd.DataFrame, per_workload: int = 8) -> str:
    if found is None or found.empty:
        return "_No findings: no backends differ beyond the thresholds (FindingsConfig)._\n"
    lines = []
    for workload, g in found.groupby("workload", sort=False):
        lines.append(f"**{workload}**\n")
        for r in g.head(per_workload).itertuples():
            lines.append(f"{r.rank}. [{r.kind}] {r.sentence}")
        if len(g) > per_workload:
            lines.append(f"\n_{len(g) - per_workload} more in findings.csv._")
        lines.append("")
    return "\n".join(lines) + "\n"


def render_text(found: pd.DataFrame) -> str:
    if found is None or found.empty:
        return "No findings: no backends differ beyond the thresholds."
    lines = []
    for workload, g in found.groupby("workload", sort=False):
        lines.append(f"== {workload}")
        for r in g.itertuples():
            lines.append(f"{r.rank:>3}. [{r.kind}, score {r.score:.2f}] {r.sentence}")
        lines.append("")
    return "\n".join(lines)
