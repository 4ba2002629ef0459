"""The report's figures (matplotlib, Agg, PNG). Each function writes one file and returns its
path, or None when there is nothing to draw (the report then says so instead of an empty
chart). One figure per workload with a panel per variant keeps a 100-run sweep at a handful
of files."""
from __future__ import annotations

import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness.collect.devices import Peaks, lookup_device  # noqa: E402
from harness.collect.kernel_categories import CATEGORIES  # noqa: E402
from harness.report.load import MEMORY_KINDS  # noqa: E402
from harness.report.tables import MIB, order_backends  # noqa: E402

DPI = 90
MAX_PANELS = 12
# One colour per category / kind across every figure, so a reader learns them once.
_PALETTE = plt.get_cmap("tab10").colors
CATEGORY_COLOURS = {c: _PALETTE[i % 10] for i, c in enumerate(CATEGORIES)}
KIND_COLOURS = {k: _PALETTE[i % 10] for i, k in enumerate(MEMORY_KINDS)}


def backend_colours(backends) -> dict[str, tuple]:
    """One colour per backend label across the panels of a figure (in the report's order)."""
    return {b: _PALETTE[i % 10] for i, b in enumerate(order_backends(set(backends)))}


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _panels(n: int, width: float = 4.6, height: float = 3.4):
    n = max(1, min(n, MAX_PANELS))
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows + 0.6),
                             squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _save(fig, path: Path, tight: bool = False) -> Path:
    # tight_layout costs seconds on multi-panel figures of a 100-run sweep; fixed margins do.
    if tight:
        fig.tight_layout()
    else:
        fig.subplots_adjust(left=0.09, right=0.98, bottom=0.14, top=0.86, wspace=0.32, hspace=0.5)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def category_stacked(category_long: pd.DataFrame, workload: str, out: Path) -> Path | None:
    """Per variant, one stacked bar per backend: ms per iteration by category (the source
    op's where the kernel table names it, see tables.comparable_category)."""
    sub = category_long[(category_long["workload"] == workload)
                        & category_long["category"].notna() & (category_long["category"] != "All")]
    if sub.empty:
        return None
    names = list(dict.fromkeys(sub["variant"]))[:MAX_PANELS]
    fig, axes = _panels(len(names))
    for ax, name in zip(axes, names):
        wide = sub[sub["variant"] == name].pivot_table(index="backend", columns="op_category",
                                                       values="time_ms_per_iter", aggfunc="sum",
                                                       fill_value=0.0)
        wide = wide.reindex(order_backends(wide.index))
        cats = [c for c in CATEGORIES if c in wide.columns] + \
               [c for c in wide.columns if c not in CATEGORIES]
        bottom = np.zeros(len(wide))
        for cat in cats:
            values = wide[cat].to_numpy()
            ax.bar(wide.index, values, bottom=bottom, label=cat,
                   color=CATEGORY_COLOURS.get(cat, "grey"))
            bottom += values
        ax.set_title(f"{workload} [{name}]", fontsize=9)
        ax.set_ylabel("GPU kernel time (ms / iteration)")
        ax.set_xlabel("backend")
        ax.legend(fontsize=7, title="category", title_fontsize=7)
    fig.suptitle(f"{workload}: kernel time per iteration by category", fontsize=11)
    return _save(fig, out / f"categories_{slug(workload)}.png")


def memory_by_kind(memory_long: pd.DataFrame, workload: str, out: Path) -> Path | None:
    """Per variant, grouped bars: MiB per memory kind, one bar per backend."""
    sub = memory_long[(memory_long["workload"] == workload) & memory_long["kind"].notna()]
    if sub.empty:
        return None
    names = list(dict.fromkeys(sub["variant"]))[:MAX_PANELS]
    fig, axes = _panels(len(names), width=5.4)
    for ax, name in zip(axes, names):
        wide = sub[sub["variant"] == name].pivot_table(index="kind", columns="backend",
                                                       values="bytes", aggfunc="sum")
        wide = wide.astype(float) / MIB
        kinds = [k for k in MEMORY_KINDS if k in wide.index] + \
                [k for k in wide.index if k not in MEMORY_KINDS]
        wide = wide.reindex(kinds)[order_backends(wide.columns)]
        x = np.arange(len(kinds))
        width = 0.8 / max(1, len(wide.columns))
        for i, backend in enumerate(wide.columns):
            ax.bar(x + i * width - 0.4 + width / 2, wide[backend].fillna(0.0).to_numpy(), width,
                   label=backend)
        ax.set_xticks(x, kinds, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{workload} [{name}]", fontsize=9)
        ax.set_ylabel("memory (MiB)")
        ax.legend(fontsize=7, title="backend", title_fontsize=7)
    fig.suptitle(f"{workload}: memory by kind per backend", fontsize=11)
    return _save(fig, out / f"memory_{slug(workload)}.png")


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
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [1.1, 1]})
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
        labels = [f"{b}: {kn if len(kn) <= 38 else kn[:35] + '...'}"
                  for b, kn in zip(bars["backend"], bars["kernel"])]
        y = np.arange(len(bars))[::-1]
        bx.barh(y, bars["pct_roof"].clip(upper=150), color=[colours[b] for b in bars["backend"]],
                hatch=None)
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
    return _save(fig, out / "roofline.png", tight=True)


def speedup(speedups: pd.DataFrame, out: Path) -> Path | None:
    """Horizontal bars: each backend's speedup over eager per workload variant (>1 is faster)."""
    sub = speedups[speedups["speedup"].notna() & (speedups["backend"] != "eager")]
    if sub.empty:
        return None
    sub = sub.assign(name=sub["workload"] + " [" + sub["variant"] + "]")
    wide = sub.pivot_table(index="name", columns="backend", values="speedup", aggfunc="first")
    wide = wide[order_backends(wide.columns)]
    y = np.arange(len(wide))
    height = 0.8 / max(1, len(wide.columns))
    fig, ax = plt.subplots(figsize=(8, 1.0 + 0.45 * len(wide) * max(1, len(wide.columns)) ** 0.5))
    for i, backend in enumerate(wide.columns):
        ax.barh(y + i * height - 0.4 + height / 2, wide[backend].to_numpy(), height, label=backend)
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_yticks(y, wide.index, fontsize=8)
    ax.set_xlabel("speedup over eager (eager median / backend median; >1 is faster)")
    ax.set_title("Speedup of each backend over eager")
    ax.legend(fontsize=8, title="backend", title_fontsize=8)
    return _save(fig, out / "speedup.png", tight=True)


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


def compile_phases(compile_table: pd.DataFrame, out: Path) -> Path | None:
    """One stacked bar per run (workload, variant, backend, cache): first-call seconds by phase."""
    from harness.report.tables import COMPILE_PHASES
    t = compile_table[compile_table["first_call_s"].notna() & (compile_table["backend"] != "eager")]
    if t.empty:
        return None
    labels = [f"{w} [{v}]\n{b} ({c or 'cold'})" for w, v, b, c in
              zip(t["workload"], t["variant"], t["backend"], t["cache"])]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(t)), 4.8))
    bottom = np.zeros(len(t))
    for phase in COMPILE_PHASES:
        values = t[phase].fillna(0.0).to_numpy()
        ax.bar(range(len(t)), values, bottom=bottom, label=phase.removesuffix("_s"))
        bottom += values
    unsplit = (t["first_call_s"].to_numpy() - bottom).clip(min=0)
    ax.bar(range(len(t)), unsplit, bottom=bottom, label="not split", color="lightgrey")
    ax.set_xticks(range(len(t)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("first call (s)")
    ax.set_title("Compile time by phase (first call; cold = empty cache, warm = primed cache)")
    ax.legend(fontsize=8, title="phase")
    return _save(fig, out / "compile_phases.png", tight=True)
