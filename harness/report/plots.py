"""The report's figures (matplotlib's Agg, PNG). Each function writes one file and returns its
path, or None when there is nothing to draw (the report then says so instead of an empty
chart). One figure per workload with a panel per variant keeps a 100-run sweep at a handful
of files; `*_figure` builds a figure without writing it (what the tests look at).

Cost: drawing is most of a large report's time (a 100-run report spent 8 of its 11 s here).
What is drawn once per axes is what costs (ticks, labels, a legend): so one legend per figure,
the y label once per row, no pyplot (its figure manager) and no tight_layout (a second full
draw): margins are fixed, or made from the longest label.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from harness.collect.devices import Peaks, lookup_device
from harness.collect.kernel_categories import CATEGORIES
from harness.report.load import MEMORY_KINDS
from harness.report.tables import MIB, order_backends, pivot_sum

DPI = 90
MAX_PANELS = 12
# One colour per category / kind across every figure, so a reader learns them once.
_PALETTE = matplotlib.colormaps["tab10"].colors
CATEGORY_COLOURS = {c: _PALETTE[i % 10] for i, c in enumerate(CATEGORIES)}
# Parts of a footprint, stacked; `total` (the plan's own sum, which may be less than the parts
# where outputs reuse temp space) and `runtime_peak` (the allocator's) are marks on the stack.
MEMORY_PARTS = tuple(k for k in MEMORY_KINDS if k not in ("total", "runtime_peak"))
KIND_COLOURS = {k: _PALETTE[i % 10] for i, k in enumerate(MEMORY_PARTS)}
MEMORY_MARKS = {"total": ("black", "-"), "runtime_peak": ("crimson", "--")}
FLAGGED_HATCH = "///"
# Agg's DejaVu Sans: a character is at most ~0.62 em wide; margins made from label lengths
# use this, so a label is never cut (measured on kernel names and variant labels).
_EM = 0.62


def backend_colours(backends) -> dict[str, tuple]:
    """One colour per backend label across the panels of a figure (in the report's order)."""
    return {b: _PALETTE[i % 10] for i, b in enumerate(order_backends(set(backends)))}


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def text_inches(text: str, fontsize: float) -> float:
    """The widest a line of `text` can be at `fontsize` points."""
    return max((len(line) for line in str(text).splitlines()), default=0) * fontsize * _EM / 72


def _panels(n: int, width: float = 4.6, height: float = 3.4, legend_in: float = 0.0):
    """A figure with n panels (at most MAX_PANELS), three a row; `legend_in` inches kept free
    on the right for one legend for the whole figure."""
    n = max(1, min(n, MAX_PANELS))
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width * cols + legend_in, height * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    right = 1 - (legend_in + 0.1) / fig.get_figwidth()
    fig.subplots_adjust(left=0.07 * 3 / cols, right=right, bottom=0.5 / fig.get_figheight() + 0.08,
                        top=1 - 0.75 / fig.get_figheight(), wspace=0.3, hspace=0.55)
    return fig, list(axes.flat[:n])


def _row_labels(fig: Figure, axes: list, label: str) -> None:
    """The y label once per row of panels (left column), not once per panel."""
    for ax in axes:
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel(label)


def _figure_legend(fig: Figure, handles: list, title: str) -> None:
    fig.legend(handles=handles, loc="upper right", fontsize=8, title=title, title_fontsize=8,
               frameon=False)


def _save(fig: Figure, path: Path) -> Path:
    # zlib level 2: a third of level 6's time for flat-colour charts, a few % larger
    fig.savefig(path, dpi=DPI, pil_kwargs={"compress_level": 2})
    return path


def _bar_labels(ax, names: list[str]) -> None:
    """Backend labels under the bars, slanted so that long ones (inductor:max-autotune) do
    not run into their neighbours."""
    ax.set_xticks(range(len(names)), names, rotation=25, ha="right", fontsize=8,
                  rotation_mode="anchor")


def category_figure(category_long: pd.DataFrame, workload: str) -> Figure | None:
    """Per variant, one stacked bar per backend: ms per iteration by category (the source
    op's where the kernel table names it, see tables.comparable_category). Panels keep their
    own y scale: variants of one workload differ by orders of magnitude."""
    sub = category_long[(category_long["workload"] == workload)
                        & category_long["category"].notna() & (category_long["category"] != "All")]
    if sub.empty:
        return None
    names = list(dict.fromkeys(sub["variant"]))[:MAX_PANELS]
    seen = set(sub["op_category"])
    cats = [c for c in CATEGORIES if c in seen] + sorted(c for c in seen if c not in CATEGORIES)
    colours = {c: CATEGORY_COLOURS.get(c, "grey") for c in cats}
    fig, axes = _panels(len(names), legend_in=1.3)
    for ax, name in zip(axes, names):
        wide = pivot_sum(sub[sub["variant"] == name], "backend", "op_category",
                         "time_ms_per_iter", fill_value=0.0)
        wide = wide.reindex(order_backends(wide.index))
        bottom = np.zeros(len(wide))
        x = np.arange(len(wide))
        for cat in (c for c in cats if c in wide.columns):
            values = wide[cat].to_numpy()
            ax.bar(x, values, bottom=bottom, color=colours[cat])
            bottom += values
        _bar_labels(ax, list(wide.index))
        ax.set_title(name or workload, fontsize=9)
    _row_labels(fig, axes, "GPU kernel time (ms / iteration)")
    _figure_legend(fig, [Patch(color=colours[c], label=c) for c in cats], "category")
    fig.suptitle(f"{workload}: kernel time per iteration by category", fontsize=11)
    return fig


def category_stacked(category_long: pd.DataFrame, workload: str, out: Path) -> Path | None:
    fig = category_figure(category_long, workload)
    return _save(fig, out / f"categories_{slug(workload)}.png") if fig else None


def memory_figure(memory_long: pd.DataFrame, workload: str) -> Figure | None:
    """One horizontal stacked bar per run, the backends of a variant together: MiB by kind
    (parameter, output, temp, workspace, constant), with the plan's total and the
    allocator's runtime peak marked on it where the table has them. One axes for the
    workload (the variants' footprints are of one order, unlike their times): a panel per
    variant cost most of a large report's drawing."""
    sub = memory_long[(memory_long["workload"] == workload) & memory_long["kind"].notna()]
    if sub.empty:
        return None
    kinds = set(sub.loc[pd.to_numeric(sub["bytes"], errors="coerce") > 0, "kind"])
    parts = [k for k in MEMORY_PARTS if k in kinds] + \
            sorted(k for k in kinds if k not in MEMORY_KINDS)
    marks = [k for k in MEMORY_MARKS if k in kinds]
    wide = pivot_sum(sub, ["variant", "backend"], "kind", "bytes").astype(float) / MIB
    order = {v: i for i, v in enumerate(dict.fromkeys(sub["variant"]))}
    rank = {b: i for i, b in enumerate(order_backends(set(sub["backend"])))}
    wide = wide.loc[sorted(wide.index, key=lambda vb: (order[vb[0]], rank[vb[1]]))]
    groups = [v or workload for v, _ in wide.index]
    fig, ax, y = _grouped_rows(groups, [b for _, b in wide.index],
                               f"{workload}: memory by kind per backend")
    left = np.zeros(len(wide))
    for kind in (k for k in parts if k in wide.columns):
        values = wide[kind].fillna(0.0).to_numpy()
        ax.barh(y, values, left=left, color=KIND_COLOURS.get(kind, "grey"), height=0.8)
        left += values
    for kind in (k for k in marks if k in wide.columns):
        colour, style = MEMORY_MARKS[kind]
        ax.vlines(wide[kind].to_numpy(), y - 0.45, y + 0.45, colors=colour, linestyles=style,
                  lw=1.6)
    ax.set_xlabel("memory (MiB)")
    handles = [Patch(color=KIND_COLOURS.get(k, "grey"), label=k) for k in parts]
    handles += [Line2D([], [], color=MEMORY_MARKS[k][0], ls=MEMORY_MARKS[k][1], label=k)
                for k in marks]
    _figure_legend(fig, handles, "kind")
    return fig


def memory_by_kind(memory_long: pd.DataFrame, workload: str, out: Path) -> Path | None:
    fig = memory_figure(memory_long, workload)
    return _save(fig, out / f"memory_{slug(workload)}.png") if fig else None


def roofline(top: pd.DataFrame, summary: pd.DataFrame, out: Path) -> Path | None:
    """Left: achieved TFLOP/s vs arithmetic intensity (FLOP/byte) of the top kernels whose
    FLOPs and bytes are known, under the device's roofs when the device is known. Right: each
    top kernel's roofline figure, the larger of % of peak FLOP/s and % of peak bandwidth
    (covers memory-bound kernels without FLOPs). Suspect figures (seed 003: <1% or >100% of
    peak) are drawn hollow / hatched, not as fact."""
    if top.empty or "time_us_per_iter" not in top.columns:
        return None
    k = top[top["kernel"].notna()].copy()
    for col in ("flops", "bytes", "achieved_tflops", "pct_peak_flops", "pct_peak_bw"):
        k[col] = pd.to_numeric(k[col], errors="coerce") if col in k else np.nan
    k["suspect"] = k["suspect"].fillna(False).astype(bool) if "suspect" in k else False
    k["pct_roof"] = k[["pct_peak_flops", "pct_peak_bw"]].max(axis=1, skipna=True)
    pts = k[(k["flops"] > 0) & (k["bytes"] > 0) & (k["achieved_tflops"] > 0)].copy()
    bars = k[k["pct_roof"].notna()].sort_values("time_us_per_iter", ascending=False).head(20)
    if pts.empty and bars.empty:
        return None
    labels = [f"{b}: {kn if len(kn) <= 38 else kn[:35] + '...'}"
              for b, kn in zip(bars["backend"], bars["kernel"])]
    width = 13.0
    label_in = text_inches(max(labels, key=len), 6) + 0.15 if labels else 0.3
    fig = Figure(figsize=(width, 5.2))
    ax = fig.add_axes((0.06, 0.1, 0.38, 0.78))
    left = 0.44 + 0.06 + label_in / width
    bx = fig.add_axes((left, 0.1, 0.985 - left, 0.78))
    colours = backend_colours(k["backend"])
    if len(pts):
        pts["intensity"] = pts["flops"] / pts["bytes"]
        for backend, g in pts.groupby("backend"):
            c = colours[backend]
            ok, sus = g[~g["suspect"]], g[g["suspect"]]
            ax.scatter(ok["intensity"], ok["achieved_tflops"], s=30, color=c, label=backend)
            if len(sus):
                ax.scatter(sus["intensity"], sus["achieved_tflops"], s=30, facecolors="none",
                           edgecolors=c, label=f"{backend} (suspect)")
        gpus = [d for d in summary["device"] if lookup_device(d) is not None]
        ymax = pts["achieved_tflops"].max()
        if gpus:
            peaks = Peaks(lookup_device(gpus[0]))
            lo = min(pts["intensity"].min() / 4, 1.0)
            xs = np.logspace(np.log10(lo), np.log10(max(pts["intensity"].max() * 4, 1e3)), 200)
            for dtype, style in (("fp8", "-"), ("bf16", "--"), ("fp32", ":")):
                peak = peaks.tflops(dtype)
                if peak == peak:
                    ax.plot(xs, np.minimum(peak, xs * peaks.hbm_gbps / 1e3), style, color="black",
                            lw=0.8, label=f"{peaks.spec.name} roof, {dtype} ({peak:,.0f} TFLOP/s)")
                    ymax = max(ymax, peak)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(top=ymax * 1.6)
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no top kernel with both FLOPs and bytes known", ha="center",
                va="center", transform=ax.transAxes)
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("achieved TFLOP/s")
    ax.set_title("Roofline: top kernels", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if len(bars):
        y = np.arange(len(bars))[::-1]
        bx.barh(y, bars["pct_roof"].clip(upper=150), color=[colours[b] for b in bars["backend"]])
        for yi, (sus, v) in zip(y, zip(bars["suspect"], bars["pct_roof"])):
            if sus:
                bx.barh(yi, min(v, 150), fill=False, hatch="//", edgecolor="black", lw=0)
        bx.axvline(100, color="black", lw=0.8)
        bx.set_yticks(y, labels, fontsize=6)
        bx.set_xlabel("% of peak (max of FLOP/s and HBM bandwidth; hatched: suspect)")
    else:
        bx.text(0.5, 0.5, "no % of peak known (device not in the peak table)", ha="center",
                va="center", transform=bx.transAxes)
    bx.set_title("Achieved vs peak: top kernels by time", fontsize=10)
    fig.suptitle("Top kernels against the device's peaks", fontsize=11)
    return _save(fig, out / "roofline.png")


def _flag_text(run_flags: object, baseline_flags: object) -> str:
    """A speedup bar's flags: its run's codes, then its eager baseline's ("eager: high_cv")."""
    def codes(flags: object) -> list[str]:
        return [c for c in flags.split(",") if c] if isinstance(flags, str) else []
    return ", ".join(codes(run_flags) + [f"eager: {c}" for c in codes(baseline_flags)])


def _speedup_limits(sub: pd.DataFrame, axes_in: float) -> tuple[float, float]:
    """x limits (log scale) with room beyond the longest bars for their flag names: a name
    takes a fixed width in inches, which is a share of the axes' decades."""
    v, marked = sub["speedup"].to_numpy(dtype=float), sub["marked"].to_numpy()
    lo, hi = np.log10(min(v.min(), 1.0) / 1.5), np.log10(max(v.max(), 1.0) * 1.5)

    def share(side: np.ndarray) -> float:
        texts = [t for t in marked[side] if t]
        return min(0.45, (text_inches(max(texts, key=len), 6) + 0.15) / axes_in) if texts else 0.0
    right, left = share(v >= 1), share(v < 1)
    # the texts end at the limits: solve for the span that leaves them their share of it
    span = (hi - lo) / max(1.0 - right - left, 0.1)
    return 10 ** (lo - left * span), 10 ** (hi + right * span)


def speedup_figure(speedups: pd.DataFrame) -> Figure | None:
    """Horizontal bars from 1x: each backend's speedup over eager per workload variant, on a
    log scale (0.4x and 2.5x are as far from 1x; on a linear one a 0.4x bar all but
    vanishes). A bar whose run or eager baseline is flagged (high_cv, host_bound, ...) is
    hatched and names its flags: its speedup holds only with them in mind."""
    sub = speedups[speedups["speedup"].notna() & (speedups["speedup"] > 0)
                   & (speedups["backend"] != "eager")]
    if sub.empty:
        return None
    none = pd.Series("", index=sub.index)
    sub = sub.assign(name=sub["workload"] + " [" + sub["variant"] + "]",
                     marked=[_flag_text(run, base) for run, base in
                             zip(sub.get("flags", none), sub.get("baseline_flags", none))])
    names = list(dict.fromkeys(sub["name"]))
    backends = order_backends(set(sub["backend"]))
    colours = backend_colours(backends)
    height = 0.8 / len(backends)
    label_in = text_inches(max(names, key=len), 8) + 0.2
    fig_h = 1.3 + 0.3 * len(names) * max(1, len(backends)) ** 0.5
    width = 7.0 + label_in
    fig = Figure(figsize=(width, fig_h))
    ax = fig.add_axes((label_in / width, 0.75 / fig_h, 1 - (label_in + 1.9) / width,
                       1 - 1.25 / fig_h))
    row = {n: i for i, n in enumerate(reversed(names))}
    for i, backend in enumerate(backends):
        g = sub[sub["backend"] == backend]
        y = np.array([row[n] for n in g["name"]]) + 0.4 - (i + 0.5) * height
        v = g["speedup"].to_numpy(dtype=float)
        flagged = (g["marked"] != "").to_numpy()
        ax.barh(y, v - 1.0, height, left=1.0, color=colours[backend], label=backend,
                hatch=[FLAGGED_HATCH if f else None for f in flagged],
                edgecolor=["black" if f else colours[backend] for f in flagged], lw=0.5)
        for yi, vi, codes in zip(y[flagged], v[flagged], g["marked"][flagged]):
            ax.text(vi * (1.04 if vi >= 1 else 1 / 1.04), yi, codes, fontsize=6, va="center",
                    ha="left" if vi >= 1 else "right")
    ax.set_xscale("log")
    lo, hi = _speedup_limits(sub, width - label_in - 1.9)
    ax.set_xlim(lo, hi)
    ax.axvline(1.0, color="black", lw=1.0)
    # 1-2-5 ticks over a few decades; past that they would run into each other
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if hi / lo < 300 else (1.0,)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_yticks(range(len(names)), list(reversed(names)), fontsize=8)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.grid(True, axis="x", which="major", alpha=0.3)
    ax.set_xlabel("speedup over eager (eager median / backend median, log scale; "
                  "right of 1x is faster)")
    handles = [Patch(color=colours[b], label=b) for b in backends]
    if (sub["marked"] != "").any():
        handles.append(Patch(facecolor="white", edgecolor="black", hatch=FLAGGED_HATCH,
                             label="flagged run\n(see Flags)"))
    fig.legend(handles=handles, loc="upper right", fontsize=8, title="backend",
               title_fontsize=8, frameon=False)
    fig.suptitle("Speedup of each backend over eager", fontsize=11)
    return fig


def speedup(speedups: pd.DataFrame, out: Path) -> Path | None:
    fig = speedup_figure(speedups)
    return _save(fig, out / "speedup.png") if fig else None


def trend(history: pd.DataFrame, out_path: Path) -> Path | None:
    """Median ms over time, one panel per workload, one line per backend x variant, with the
    p10-p90 band."""
    ok = history[history["status"] == "ok"].copy()
    if ok.empty:
        return None
    ok["when"] = pd.to_datetime(ok["recorded_at"], utc=True, errors="coerce")
    workloads = list(dict.fromkeys(ok["workload"]))[:MAX_PANELS]
    fig, axes = _panels(len(workloads), width=6, height=3.6)
    for ax, workload in zip(axes, workloads):
        sub = ok[ok["workload"] == workload]
        for (backend, name), g in sub.groupby(["backend", "variant"], sort=True):
            g = g.sort_values("when")
            line, = ax.plot(g["when"], g["median_ms"], marker="o", ms=3,
                            label=f"{backend} [{name}]")
            ax.fill_between(g["when"], g["p10_ms"], g["p90_ms"], alpha=0.15,
                            color=line.get_color())
        ax.set_title(f"{workload}: median time per iteration", fontsize=9)
        ax.set_ylabel("median (ms / iteration)")
        ax.set_xlabel("run time (UTC)")
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        ax.legend(fontsize=6)
    fig.suptitle("History: median per workload x backend (band: p10-p90)", fontsize=11)
    return _save(fig, out_path)


def _grouped_rows(groups: list[str], labels: list[str], title: str, subtitle: str = "",
                  legend_in: float = 1.6) -> tuple[Figure, Any, np.ndarray]:
    """A figure with one axes of horizontal bars, a row per label top down, consecutive rows
    of a group together under the group's name (named once: text is most of the drawing
    time) with a gap between groups. Labels, title and legend have margins of their own, so
    nothing is cut or covered however many rows there are. Returns the rows' y positions."""
    y, row, last = [], 0.0, None
    for g in groups:
        if last is not None:
            row += 1.0 + (0.5 if g != last else 0.0)
        y.append(-row)
        last = g
    y = np.array(y)
    label_in = text_inches(max(labels, key=len), 7) + 0.1
    left_in = label_in + text_inches(max(groups, key=len), 7) + 0.2
    width = max(7.0, left_in + legend_in + 4.5)
    height = 1.6 + 0.2 * (row + 1)
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((left_in / width, 0.6 / height, 1 - (left_in + legend_in) / width,
                       1 - 1.5 / height))
    ax.set_yticks(y, labels, fontsize=7)
    for g in dict.fromkeys(groups):
        rows = y[[x == g for x in groups]]
        ax.annotate(g, xy=(0, rows.mean()), xycoords=ax.get_yaxis_transform(),
                    xytext=(-72 * label_in, 0), textcoords="offset points", ha="right",
                    va="center", fontsize=7)
        if rows.min() > y.min():
            ax.axhline(rows.min() - 0.75, color="grey", lw=0.5)
    ax.set_ylim(y.min() - 0.6, 0.6)
    ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=11, y=1 - 0.15 / height, va="top")
    if subtitle:
        fig.text(0.5, 1 - 0.55 / height, subtitle, ha="center", va="top", fontsize=8)
    return fig, ax, y


def compile_figure(compile_table: pd.DataFrame) -> Figure | None:
    """One horizontal stacked bar per compiled run: first-call seconds by phase, the runs of a
    workload variant together."""
    from harness.report.tables import COMPILE_PHASES
    t = compile_table[compile_table["first_call_s"].notna() & (compile_table["backend"] != "eager")]
    if t.empty:
        return None
    caches = [c or "cold" for c in t["cache"]]
    mixed = len(set(caches)) > 1   # the cache is named per run only where it differs
    fig, ax, y = _grouped_rows(
        [f"{w} [{v}]" if v else w for w, v in zip(t["workload"], t["variant"])],
        [b + (f" ({c})" if mixed else "") for b, c in zip(t["backend"], caches)],
        "Compile time by phase (first call)",
        "cold = empty compile cache, warm = primed cache" if mixed else
        f"every run {caches[0]}: " + ("an empty compile cache" if caches[0] == "cold"
                                      else "a primed compile cache"))
    left = np.zeros(len(t))
    handles = []
    parts = [(p.removesuffix("_s"), t[p].fillna(0.0).to_numpy(), c)
             for p, c in zip(COMPILE_PHASES, _PALETTE)]
    parts.append(("not split", None, "lightgrey"))
    for name, values, colour in parts:
        if values is None:
            values = (t["first_call_s"].to_numpy() - left).clip(min=0)
        drawn = values > 0   # a bar of width 0 still costs a patch
        if drawn.any():
            ax.barh(y[drawn], values[drawn], left=left[drawn], color=colour, height=0.8)
            handles.append(Patch(color=colour, label=name))
        left += values
    ax.set_xlabel("first call (s)")
    _figure_legend(fig, handles, "phase")
    return fig


def compile_phases(compile_table: pd.DataFrame, out: Path) -> Path | None:
    fig = compile_figure(compile_table)
    return _save(fig, out / "compile_phases.png") if fig else None
