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
from harness.describe import FLAG_CODES, flagged_text, record_flags
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


def comparable_category(k: pd.DataFrame) -> pd.Series:
    """The category backends are compared by: the kernel's source PyTorch op's category
    (`op_category`) where the kernel table has it, so that attention means the same on
    Inductor and on XLA (whose attention runs as dot and transpose kernels); the kernel-level
    `category` where it does not (tables written before op attribution, kernels with no op)."""
    if "op_category" not in k.columns:
        return k["category"]
    op = k["op_category"]
    return op.where(op.notna() & (op.astype(str) != ""), k["category"])


def category_basis(k: pd.DataFrame) -> pd.Series:
    """Per kernel row: `op` when its run's table attributes kernels to source ops, else
    `kernel` (categories by kernel name only)."""
    if "op_category" not in k.columns or k.empty:
        return pd.Series("kernel", index=k.index, dtype=object)
    has = k["op_category"].notna().groupby(k["run_id"]).transform("any")
    return has.map({True: "op", False: "kernel"})


def _category_order(names: pd.Series) -> pd.Series:
    order = {c: i for i, c in enumerate(CATEGORIES)}
    return names.map(order).fillna(len(order))


def category_long(sweep: Sweep) -> pd.DataFrame:
    """ms per iteration and share per (run, op category, kernel category), with an `All` row
    per run. `op_category` is what backends are compared by (see comparable_category);
    `category` is the kernel-level category beside it; `basis` says which the run had."""
    k = sweep.kernels
    cols = KEY_COLUMNS + ["op_category", "category", "basis", "time_ms_per_iter", "share",
                          "calls_per_iter", "kernels"]
    if len(k):
        k = k.assign(op_category=comparable_category(k), basis=category_basis(k))
        g = k.groupby(KEY_COLUMNS + ["op_category", "category", "basis"], sort=False,
                      dropna=False)
        rows = g.agg(time_ms_per_iter=("time_us_per_iter", "sum"),
                     calls_per_iter=("calls_per_iter", "sum"),
                     kernels=("kernel", "size")).reset_index()
        rows["time_ms_per_iter"] /= 1000.0
        total = rows.groupby("run_id")["time_ms_per_iter"].transform("sum")
        rows["share"] = rows["time_ms_per_iter"] / total.where(total > 0)
        rows = rows.assign(_o=_category_order(rows["op_category"]),
                           _c=_category_order(rows["category"]))
        rows = rows.sort_values(["run_id", "_o", "_c"], kind="stable").drop(columns=["_o", "_c"])
        all_rows = rows.groupby(KEY_COLUMNS + ["basis"], sort=False).agg(
            time_ms_per_iter=("time_ms_per_iter", "sum"), calls_per_iter=("calls_per_iter", "sum"),
            kernels=("kernels", "sum")).reset_index().assign(op_category="All", category="All",
                                                               share=1.0)
        rows = pd.concat([rows, all_rows], ignore_index=True)[cols]
    else:
        rows = pd.DataFrame(columns=cols)
    return _with_missing(rows, sweep, "kernels")


def pivot_sum(sub: pd.DataFrame, index: str | list[str], columns: str, values: str,
              fill_value: float | None = None) -> pd.DataFrame:
    """`sub.pivot_table(index, columns, values, aggfunc="sum", fill_value)` for the report's
    small per-variant frames, at a third of its cost (it was a third of rendering report.md)."""
    keys = [*([index] if isinstance(index, str) else index), columns]
    wide = sub.groupby(keys, observed=True)[values].sum().unstack(columns, fill_value=fill_value)
    wide.columns.name = columns
    return wide


def _ordered_categories(index: Iterable[str]) -> list[str]:
    present = [c for c in CATEGORIES if c in index]
    return present + [c for c in index if c not in CATEGORIES and c != "All"]


def category_wide(long: pd.DataFrame, workload: str, variant: str) -> pd.DataFrame:
    """torchao's "time (ms) by kernel category": categories (by source op where known) x
    backends, and `All`."""
    sub = long[(long["workload"] == workload) & (long["variant"] == variant)
               & long["category"].notna()]
    if sub.empty:
        return pd.DataFrame()
    wide = pivot_sum(sub, "op_category", "backend", "time_ms_per_iter", fill_value=0.0)
    wide = wide.reindex(_ordered_categories(wide.index) + ["All"])
    wide.index.name = "category"
    wide.columns.name = None
    return wide[order_backends(wide.columns)]


def category_split(long: pd.DataFrame, workload: str, variant: str) -> pd.DataFrame:
    """Where a variant has op-attributed runs: (op category, kernel category) x backends, so
    the kernel-level category stays beside the op one (XLA's attention: gemm + reduction +
    copy kernels). Empty when no run of the variant is op-attributed."""
    sub = long[(long["workload"] == workload) & (long["variant"] == variant)
               & long["category"].notna() & (long["category"] != "All")]
    if sub.empty or not (sub["basis"] == "op").any():
        return pd.DataFrame()
    wide = pivot_sum(sub, ["op_category", "category"], "backend", "time_ms_per_iter",
                     fill_value=0.0)
    wide = wide.reset_index().assign(_o=lambda d: _category_order(d["op_category"]),
                                     _c=lambda d: _category_order(d["category"]))
    wide = wide.sort_values(["_o", "_c"], kind="stable").drop(columns=["_o", "_c"])
    wide = wide.rename(columns={"op_category": "op category", "category": "kernel category"})
    wide.columns.name = None
    backends = order_backends([c for c in wide.columns if c not in ("op category",
                                                                     "kernel category")])
    return wide[["op category", "kernel category", *backends]].reset_index(drop=True)


def top_kernels(sweep: Sweep, n: int = TOP_KERNELS) -> pd.DataFrame:
    k = sweep.kernels
    if len(k):
        k = k.sort_values(["run_id", "time_us_per_iter"], ascending=[True, False], kind="stable")
        k = k.groupby("run_id", sort=False).head(n).copy()
        k.insert(len(KEY_COLUMNS), "rank", k.groupby("run_id").cumcount() + 1)
    else:
        k = pd.DataFrame(columns=KEY_COLUMNS + ["rank", "kernel", "category", "time_us_per_iter"])
    return _with_missing(k.reset_index(drop=True), sweep, "kernels")


def flags_long(sweep: Sweep) -> pd.DataFrame:
    """One row per (run, flag): its code, the figures behind it (`detail`) and what the code
    means. Runs without flags have no rows: a flag is never implied by its absence."""
    by_dir = {r.get("_run_dir", ""): r for r in sweep.records}
    rows = [{**{k: row[k] for k in KEY_COLUMNS}, "status": row["status"], "code": flag["code"],
             "detail": flag["detail"], "meaning": FLAG_CODES.get(flag["code"], "")}
            for _, row in sweep.summary.iterrows()
            for flag in record_flags(by_dir.get(row["run_dir"], {}))]
    return pd.DataFrame(rows, columns=KEY_COLUMNS + ["status", "code", "detail", "meaning"])


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
    wide = pivot_sum(sub, "kind", "backend", "bytes").astype(float) / MIB
    present = [c for c in MEMORY_KINDS if c in wide.index]
    wide = wide.reindex(present + [c for c in wide.index if c not in MEMORY_KINDS])
    wide.columns.name = None
    return wide[order_backends(wide.columns)]


def speedup_table(summary: pd.DataFrame, baseline: str = "eager") -> pd.DataFrame:
    """Per workload variant and backend: baseline median / backend median (>1 is faster), with
    the flags of the run and of its baseline run (a speedup holds only as far as both do)."""
    ok = summary[summary["status"] == "ok"]
    if "flags" not in ok.columns:
        ok = ok.assign(flags="")
    base = ok[ok["backend"] == baseline].set_index(["workload", "variant"])
    base = base[~base.index.duplicated()]
    out = ok[["workload", "variant", "backend", "median_ms", "flags"]].copy()
    idx = pd.MultiIndex.from_frame(out[["workload", "variant"]])
    out["baseline_ms"] = base["median_ms"].reindex(idx).to_numpy()
    out["baseline_flags"] = base["flags"].reindex(idx).fillna("").to_numpy()
    out["speedup"] = out["baseline_ms"] / out["median_ms"]
    return out[["workload", "variant", "backend", "median_ms", "baseline_ms", "speedup", "flags",
                "baseline_flags"]].reset_index(drop=True)


def order_backends(names: Iterable[str]) -> list[str]:
    """The baseline (`eager`) first, then the labels alphabetically (a family's variants side by
    side: inductor, inductor:max-autotune, ..., xla, xla:no-cmdbuf)."""
    return sorted(names, key=lambda b: (str(b) != "eager", str(b)))


class _Rows(dict):
    """(workload, variant) -> its rows; a variant without rows gets the table's empty frame."""

    def __init__(self, rows: dict, empty: pd.DataFrame):
        super().__init__(rows)
        self.empty = empty

    def __missing__(self, key):
        return self.empty


def by_variant(long: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """A long table's rows per (workload, variant), split in one pass."""
    groups = long.groupby(["workload", "variant"], sort=False, dropna=False)
    return _Rows({key: long.iloc[idx] for key, idx in groups.indices.items()}, long.iloc[0:0])


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
    for row in zip(*(frame.iloc[:, i].tolist() for i in range(frame.shape[1]))):
        cells = []
        for col, value in zip(frame.columns, row):
            f = formats.get(str(col))
            cells.append(md_escape(f(value) if f else (fmt_num(value)
                                                       if not isinstance(value, str) else value)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pct(value: Any) -> str:
    return fmt_num(100.0 * float(value), 3) if value is not None and value == value else ""


def _spread(lo: float, hi: float, cv: float) -> str:
    return f"{fmt_num(lo)}–{fmt_num(hi)} ({fmt_num(100.0 * cv, 2)}%)" if lo == lo else ""


# What the summary table's columns mean, by column: the legend under a table names only the
# columns it has (a CPU sweep's table has no GPU ms, host gap or idle %).
SUMMARY_LEGEND = {
    "wall ms": "median time per iteration as a user waits for it (with several fresh processes, "
               "the median of their medians)",
    "CV %": "spread of the samples within a process",
    "procs": "fresh processes that each took samples, where more than one did",
    "between procs ms (CV)": "the per-process medians' min–max (and their CV)",
    "GPU ms": "GPU busy time per iteration in the profiling pass (what the compiler's kernels "
              "cost)",
    "host gap ms": "wall - GPU, the GPU idle while the host launches and runs Python",
    "idle %": "host gap / wall",
    "other load %": "the share of the run's cores that other work took while it was timed (its "
                    "busiest process; `host_busy` above 10%)",
    "SM MHz (throttled)": "the GPU's SM clock read after each timed sample, its range and (in "
                          "brackets) the samples taken below 90% of the maximum clock or with a "
                          "throttle reason",
    "flags": "what a run did not measure as asked: see below and `flags.csv`",
}


def summary_legend(columns: list[str]) -> str:
    """The legend of the columns a summary table has, in the table's order."""
    return "; ".join(f"{c}: {SUMMARY_LEGEND[c]}" for c in columns if c in SUMMARY_LEGEND) + "."


def _clock_range(lo: float, hi: float, throttled: float) -> str:
    """`1755–1980 (3)`: the SM clock range during timing and the throttled samples."""
    if lo != lo:
        return ""
    span = f"{lo:.0f}" if round(lo) == round(hi) else f"{lo:.0f}–{hi:.0f}"
    return span + (f" ({throttled:.0f})" if throttled == throttled and throttled else "")


def summary_markdown(summary: pd.DataFrame) -> str:
    show = pd.DataFrame({
        "workload": summary["workload"], "variant": summary["variant"],
        "backend": summary["backend"], "status": summary["status"],
        "wall ms": [flagged_text(fmt_num(m), f) for m, f in zip(summary["median_ms"], summary["flags"])],
        "p10–p90 ms": [f"{fmt_num(a)}–{fmt_num(b)}" if a == a else ""
                       for a, b in zip(summary["p10_ms"], summary["p90_ms"])],
        "CV %": summary["cv"] * 100.0,
        "procs": summary["processes"].where(summary["processes"] > 1),
        "between procs ms (CV)": [_spread(a, b, c) for a, b, c in zip(
            summary["between_min_ms"], summary["between_max_ms"], summary["between_cv"])],
        "GPU ms": summary["gpu_busy_ms_per_iter"],
        "host gap ms": summary["host_gap_ms"],
        "idle %": summary["idle_share"] * 100.0,
        "other load %": summary["host_other_share"] * 100.0,
        "SM MHz (throttled)": [_clock_range(*x) for x in zip(
            *(summary[c] if c in summary else [math.nan] * len(summary)
              for c in ("sm_clock_min_mhz", "sm_clock_max_mhz", "throttled_samples")))],
        "TFLOP/s": summary["tflops"], "tokens/s": summary["tokens_per_s"],
        "% peak FLOP/s": summary["pct_peak_flops"],
        "compile s": summary["compile_s"],
        "mem total MiB": summary["memory_total_bytes"] / MIB,
        "runtime peak MiB": summary["runtime_peak_bytes"] / MIB,
        "numerics": summary["numerics_passed"].map(
            lambda v: "" if v is None or v is pd.NA else ("ok" if v else "FAIL")),
        "SQNR dB": summary["min_sqnr_db"],
        "flags": [f"**{f}**" if f else "" for f in summary["flags"]],
        "reason": [r[:160] + ("…" if len(r) > 160 else "") for r in summary["reason"]],
    })
    # Columns nobody has a value for (no GPU: no % of peak; no LLM: no tokens/s) are noise.
    keep = [c for c in show.columns
            if c in ("workload", "variant", "backend", "status", "reason")
            or show[c].map(lambda v: fmt_num(v) != "").any()]
    return md_table(show[keep]) + "\n" + summary_legend(keep) + "\n"


def flags_markdown(flags: pd.DataFrame) -> str:
    """Each flagged run with the figures behind its flags; empty when none is flagged."""
    if flags.empty:
        return ""
    lines = []
    for (w, v, b), g in flags.groupby(["workload", "variant", "backend"], sort=False):
        details = "; ".join(f"`{r.code}` {md_escape(r.detail)}" for r in g.itertuples())
        lines.append(f"- **{w} [{v}] {b}**: {details}")
    return "\n".join(lines) + "\n"


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
        priming = comp.get("priming_run") or {}
        rows.append({"workload": row["workload"], "variant": row["variant"], "backend": row["backend"],
                     "run_id": row["run_id"], "cache": comp.get("cache", ""),
                     "first_call_s": row["compile_s"],
                     **{k: phases.get(k) for k in COMPILE_PHASES},
                     # schema 2 names it first_call_s, schema 1 compile_s
                     "priming_first_call_s": next((v for v in (priming.get("first_call_s"),
                                                               priming.get("compile_s"))
                                                   if v is not None), None),
                     "recompiles_during_timing": comp.get("recompiles_during_timing"),
                     "recompiles": comp.get("recompiles"),     # a generation's, along the sequence
                     "flags": row["flags"], "status": row["status"], "reason": row["reason"]})
    table = pd.DataFrame(rows, columns=["workload", "variant", "backend", "run_id", "cache", "first_call_s",
                                        *COMPILE_PHASES, "priming_first_call_s",
                                        "recompiles_during_timing", "recompiles", "flags", "status", "reason"])
    for col in ("first_call_s", *COMPILE_PHASES, "priming_first_call_s",
                "recompiles_during_timing", "recompiles"):
        table[col] = pd.to_numeric(table[col], errors="coerce")
    return table
