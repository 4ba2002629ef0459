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

DPI = 110
MAX_PANELS = 12
# One colour per category / kind across every figure, so a reader learns them once.
_PALETTE = plt.get_cmap("tab10").colors
CATEGORY_COLOURS = {c: _PALETTE[i % 10] for i, c in enumerate(CATEGORIES)}
KIND_COLOURS = {k: _PALETTE[i % 10] for i, k in enumerate(MEMORY_KINDS)}


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


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def category_stacked(category_long: pd.DataFrame, workload: str, out: Path) -> Path | None:
    """Per variant, one stacked bar per backend: ms per iteration by kernel category."""
    sub = category_long[(category_long["workload"] == workload)
                        & category_long["category"].notna() & (category_long["category"] != "All")]
    if sub.empty:
        return None
    names = list(dict.fromkeys(sub["variant"]))[:MAX_PANELS]
    fig, axes = _panels(len(names))
    for ax, name in zip(axes, names):
        wide = sub[sub["variant"] == name].pivot_table(index="backend", columns="category",
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
    """Achieved TFLOP/s vs arithmetic intensity (FLOP/byte) of the top kernels whose FLOPs and
    bytes are known, under the device's roofline when the device is known. Suspect figures
    (seed 003: <1% or >100% of peak) are drawn hollow."""
    if top.empty or "flops" not in top.columns:
        return None
    k = top[top["kernel"].notna()].copy()
    for col in ("flops", "bytes", "achieved_tflops"):
        k[col] = pd.to_numeric(k[col], errors="coerce")
    k = k[(k["flops"] > 0) & (k["bytes"] > 0) & (k["achieved_tflops"] > 0)]
    if k.empty:
        return None
    k["intensity"] = k["flops"] / k["bytes"]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for backend, g in k.groupby("backend"):
        suspect = g["suspect"].fillna(False).astype(bool) if "suspect" in g else \
            pd.Series(False, index=g.index)
        pts = ax.scatter(g.loc[~suspect, "intensity"], g.loc[~suspect, "achieved_tflops"],
                         label=backend, s=28)
        if suspect.any():
            ax.scatter(g.loc[suspect, "intensity"], g.loc[suspect, "achieved_tflops"], s=28,
                       facecolors="none", edgecolors=pts.get_facecolor()[0],
                       label=f"{backend} (suspect)")
    devices = summary.loc[summary["device"].map(lambda d: lookup_device(d) is not None), "device"]
    if len(devices):
        peaks = Peaks(lookup_device(devices.iloc[0]))
        xs = np.logspace(np.log10(k["intensity"].min() / 4), np.log10(k["intensity"].max() * 4))
        for dtype, style in (("fp8", "-"), ("bf16", "--"), ("fp32", ":")):
            peak = peaks.tflops(dtype)
            if peak == peak:
                ax.plot(xs, np.minimum(peak, xs * peaks.hbm_gbps / 1e3), style, color="black",
                        lw=0.8, label=f"{peaks.spec.name} roof, {dtype} ({peak:,.0f} TFLOP/s)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("achieved TFLOP/s")
    ax.set_title("Top kernels: achieved vs peak (roofline)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, out / "roofline.png")


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
    return _save(fig, out / "speedup.png")


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
