"""The report's tables, built from a loaded Sweep, and their Markdown rendering.

Long tables (one row per run x category / kernel / kind) are what is written to CSV and
Parquet: they concatenate across sweeps and nights. The wide, torchao-style views (categories
down, backends across, an `All` row) are what report.md shows. A run without a kernel or memory
table still has a row in the long table (category / kind empty, `status` and `reason` say why):
nothing disappears silently.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from harness.collect.kernel_categories import CATEGORIES
from harness.report.load import KEY_COLUMNS, MEMORY_KINDS, Sweep

MIB = 1024.0 ** 2
TOP_KERNELS = 10


def _status(sweep: Sweep) -> pd.DataFrame:
    return sweep.summary[KEY_COLUMNS + ["status", "reason"]]


def _with_missing(rows: pd.DataFrame, sweep: Sweep, table: str) -> pd.DataFrame:
    """Long rows plus one row per run that has none, saying why."""
    status = _status(sweep)
    have = set(rows["run_id"]) if len(rows) else set()
    absent = status[~status["run_id"].isin(have)].copy()
    absent["reason"] = [sweep.missing.get(table, {}).get(rid) or reason
                        for rid, reason in zip(absent["run_id"], absent["reason"])]
    rows = rows.merge(status[["run_id", "status"]], on="run_id", how="left")
    rows["reason"] = ""
    out = pd.concat([rows, absent], ignore_index=True) if len(absent) else rows
    return out.sort_values(["workload", "variant", "backend"], kind="stable").reset_index(drop=True)


def category_long(sweep: Sweep) -> pd.DataFrame:
    """ms per iteration and share per (run, category), with an `All` row per run."""
    k = sweep.kernels
    cols = KEY_COLUMNS + ["category", "time_ms_per_iter", "share", "calls_per_iter", "kernels"]
    if len(k):
        g = k.groupby(KEY_COLUMNS + ["category"], sort=False, dropna=False)
        rows = g.agg(time_ms_per_iter=("time_us_per_iter", "sum"),
                     calls_per_iter=("calls_per_iter", "sum"),
                     kernels=("kernel", "size")).reset_index()
        rows["time_ms_per_iter"] /= 1000.0
        total = rows.groupby("run_id")["time_ms_per_iter"].transform("sum")
        rows["share"] = rows["time_ms_per_iter"] / total.where(total > 0)
        order = {c: i for i, c in enumerate(CATEGORIES)}
        rows["_o"] = rows["category"].map(order).fillna(len(order))
        rows = rows.sort_values(["run_id", "_o"], kind="stable").drop(columns="_o")
        all_rows = rows.groupby(KEY_COLUMNS, sort=False).agg(
            time_ms_per_iter=("time_ms_per_iter", "sum"), calls_per_iter=("calls_per_iter", "sum"),
            kernels=("kernels", "sum")).reset_index().assign(category="All", share=1.0)
        rows = pd.concat([rows, all_rows], ignore_index=True)[cols]
    else:
        rows = pd.DataFrame(columns=cols)
    return _with_missing(rows, sweep, "kernels")


def category_wide(long: pd.DataFrame, workload: str, variant: str) -> pd.DataFrame:
    """torchao's "time (ms) by kernel category": categories x backends, and `All`."""
    sub = long[(long["workload"] == workload) & (long["variant"] == variant)
               & long["category"].notna()]
    if sub.empty:
        return pd.DataFrame()
    wide = sub.pivot_table(index="category", columns="backend", values="time_ms_per_iter",
                           aggfunc="sum", fill_value=0.0)
    present = [c for c in CATEGORIES if c in wide.index]
    others = [c for c in wide.index if c not in CATEGORIES and c != "All"]
    wide = wide.reindex(present + others + ["All"])
    wide.columns.name = None
    return wide[order_backends(wide.columns)]


def top_kernels(sweep: Sweep, n: int = TOP_KERNELS) -> pd.DataFrame:
    k = sweep.kernels
    if len(k):
        k = k.sort_values(["run_id", "time_us_per_iter"], ascending=[True, False], kind="stable")
        k = k.groupby("run_id", sort=False).head(n).copy()
        k.insert(len(KEY_COLUMNS), "rank", k.groupby("run_id").cumcount() + 1)
    else:
        k = pd.DataFrame(columns=KEY_COLUMNS + ["rank", "kernel", "category", "time_us_per_iter"])
    return _with_missing(k.reset_index(drop=True), sweep, "kernels")


def memory_long(sweep: Sweep) -> pd.DataFrame:
    m = sweep.memory.copy()
    if len(m):
        m["MiB"] = m["bytes"].astype(float) / MIB
    return _with_missing(m, sweep, "memory")


def memory_wide(long: pd.DataFrame, workload: str, variant: str) -> pd.DataFrame:
    """MiB per kind x backend."""
    sub = long[(long["workload"] == workload) & (long["variant"] == variant) & long["kind"].notna()]
    if sub.empty:
        return pd.DataFrame()
    wide = sub.pivot_table(index="kind", columns="backend", values="bytes", aggfunc="sum")
    wide = wide.astype(float) / MIB
    present = [c for c in MEMORY_KINDS if c in wide.index]
    wide = wide.reindex(present + [c for c in wide.index if c not in MEMORY_KINDS])
    wide.columns.name = None
    return wide[order_backends(wide.columns)]


def speedup_table(summary: pd.DataFrame, baseline: str = "eager") -> pd.DataFrame:
    """Per workload variant and backend: baseline median / backend median (>1 is faster)."""
    ok = summary[summary["status"] == "ok"]
    base = ok[ok["backend"] == baseline].set_index(["workload", "variant"])["median_ms"]
    base = base[~base.index.duplicated()]
    out = ok[["workload", "variant", "backend", "median_ms"]].copy()
    idx = pd.MultiIndex.from_frame(out[["workload", "variant"]])
    out["baseline_ms"] = base.reindex(idx).to_numpy()
    out["speedup"] = out["baseline_ms"] / out["median_ms"]
    return out.reset_index(drop=True)


def order_backends(names: Iterable[str]) -> list[str]:
    """eager first (the baseline), then inductor*, xla*, the rest alphabetically."""
    rank = {"eager": 0, "inductor": 1, "xla": 2, "torch_xla": 3}
    return sorted(names, key=lambda b: (rank.get(str(b).split(":")[0], 9), str(b)))


def variants(summary: pd.DataFrame) -> list[tuple[str, str]]:
    pairs = summary[["workload", "variant"]].drop_duplicates()
    return [tuple(p) for p in pairs.itertuples(index=False)]


def write_tables(tables: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    written = []
    for name, table in tables.items():
        for ext in ("csv", "parquet"):
            path = Path(out_dir) / f"{name}.{ext}"
            frame = table.copy()
            # Parquet needs one type per column: mixed object columns (shapes as lists, dicts)
            # become their text.
            for col in frame.columns:
                if frame[col].dtype == object:
                    frame[col] = frame[col].map(lambda v: v if v is None or isinstance(v, str)
                                                or (isinstance(v, float) and math.isnan(v))
                                                else str(v))
            if ext == "csv":
                frame.to_csv(path, index=False)
            else:
                frame.to_parquet(path, index=False)
            written.append(path)
    return written


# ------------------------------------------------------------------------------ Markdown

def fmt_num(value: Any, digits: int = 3) -> str:
    """Significant digits, blank for unknown (NaN is 'not known', not zero)."""
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return ""
    if v == 0:
        return "0"
    if abs(v) >= 10 ** digits:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(df: pd.DataFrame, formats: dict[str, Callable[[Any], str]] | None = None,
             index: bool = False) -> str:
    if df is None or df.empty:
        return "_(no rows)_\n"
    formats = formats or {}
    frame = df.reset_index() if index else df
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(md_escape(c) for c in cols) + " |",
             "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(frame[c]) else "---"
                            for c in frame.columns) + "|"]
    for row in frame.itertuples(index=False):
        cells = []
        for col, value in zip(frame.columns, row):
            f = formats.get(str(col))
            cells.append(md_escape(f(value) if f else (fmt_num(value)
                                                       if not isinstance(value, str) else value)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pct(value: Any) -> str:
    return fmt_num(100.0 * float(value), 3) if value is not None and value == value else ""


def summary_markdown(summary: pd.DataFrame) -> str:
    show = pd.DataFrame({
        "workload": summary["workload"], "variant": summary["variant"],
        "backend": summary["backend"], "status": summary["status"],
        "median ms": summary["median_ms"],
        "p10–p90 ms": [f"{fmt_num(a)}–{fmt_num(b)}" if a == a else ""
                       for a, b in zip(summary["p10_ms"], summary["p90_ms"])],
        "CV %": summary["cv"] * 100.0,
        "TFLOP/s": summary["tflops"], "tokens/s": summary["tokens_per_s"],
        "% peak FLOP/s": summary["pct_peak_flops"],
        "compile s": summary["compile_s"],
        "mem total MiB": summary["memory_total_bytes"] / MIB,
        "runtime peak MiB": summary["runtime_peak_bytes"] / MIB,
        "numerics": summary["numerics_passed"].map(
            lambda v: "" if v is None or v is pd.NA else ("ok" if v else "FAIL")),
        "SQNR dB": summary["min_sqnr_db"],
        "reason": [r[:160] + ("…" if len(r) > 160 else "") for r in summary["reason"]],
    })
    # Columns nobody has a value for (no GPU: no % of peak; no LLM: no tokens/s) are noise.
    keep = [c for c in show.columns
            if c in ("workload", "variant", "backend", "status", "reason")
            or show[c].map(lambda v: fmt_num(v) != "").any()]
    return md_table(show[keep])


COMPILE_PHASES = ("capture_s", "graph_codegen_s", "kernel_compile_wait_s", "other_s")


def compile_table(sweep: Sweep) -> pd.DataFrame:
    """One row per run: first-call seconds split into the compilers' own phases (see
    backends/inductor.py and backends/xla.py for what each phase holds); blank where a
    compiler does not separate a phase."""
    rows = []
    by_dir = {r.get("_run_dir", ""): r for r in sweep.records}
    for _, row in sweep.summary.iterrows():
        record = by_dir.get(row["run_dir"], {})
        comp = record.get("compile") or {}
        phases = comp.get("phases") or {}
        rows.append({"workload": row["workload"], "variant": row["variant"], "backend": row["backend"],
                     "run_id": row["run_id"], "cache": comp.get("cache", ""),
                     "first_call_s": row["compile_s"],
                     **{k: phases.get(k) for k in COMPILE_PHASES},
                     "priming_first_call_s": (comp.get("priming_run") or {}).get("compile_s"),
                     "status": row["status"], "reason": row["reason"]})
    table = pd.DataFrame(rows, columns=["workload", "variant", "backend", "run_id", "cache", "first_call_s",
                                        *COMPILE_PHASES, "priming_first_call_s", "status", "reason"])
    for col in ("first_call_s", *COMPILE_PHASES, "priming_first_call_s"):
        table[col] = pd.to_numeric(table[col], errors="coerce")
    return table
