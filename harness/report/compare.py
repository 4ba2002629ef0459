"""`python -m harness.report compare BASE NEW`: did anything get slower, beyond the noise?

Runs are matched by `run_id` (the hash of workload, backend, bench, device and seed config),
and where that fails (a bench setting changed between the nights) by the human key: workload,
backend label and the workload's resolved parameters.

The verdict is a rank test plus a minimum effect (`verdict`): NEW is slower when a one-sided
Mann-Whitney U test says so at `alpha` and its median is `threshold` or more above BASE's (an
improvement the same way down). What the test ranks:
- where enough fresh processes ran that their medians alone can reach `alpha` (4 v 4: the
  smallest one-sided p is 1/70), the process medians: independent draws of the run's figure;
- else the samples, pooled over the processes; where processes ran they are not independent
  draws (samples of one process drift together, and a process is fast or slow as a whole: 70%
  between processes on the H200 with 2% within), so the processes' medians must also all fall
  on the changed side (every NEW process slower than every BASE process): with 3 processes a
  side no rank test of the medians can reach p < 0.05 (the smallest one-sided p is 1/20), and
  this is the strongest evidence 3 v 3 gives;
- where one process ran on a side, its samples are one process's, all under that process's
  host state: the change must also exceed `k` x the sides' robust spread (the samples' median
  absolute deviation over their median), or two processes of one commit differ "significantly"
  (the H200 node sweeps: conv fwd 0.064 ms on one GPU alone, 0.084 ms with its neighbour busy,
  samples 0.065-0.127 ms, p = 2e-6).
Ranks and the MAD do not let one outlier sample hide a 5x change the way a CV band did (4 tight
samples and one outlier give a CV of 100%, a MAD of 1.5%). A run flagged with one of
describe.NOISE_FLAGS on either side is marked unreliable beside its verdict.

The wall change is split into what the kernels and the host did: GPU busy time and host gap
(wall - GPU) of each side, each change in % of BASE's wall median, so that the two add up to
the wall change; `cause` names the part that carries it (kernels | host | both | unknown).

A run that was ok and now fails is a regression. A comparison is incomplete when nothing
matched or an ok run of BASE is missing from NEW: results that disappear must not pass.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness import clocks
from harness.collect.kernel_diff import category_diff, kernel_diff
from harness.describe import NOISE_FLAGS, noise_codes
from harness.report import tables as T
from harness.record import RECORD_NAME
from harness.report.load import Sweep, finite, match_key

REGRESSION, IMPROVEMENT, NOISE = "regression", "improvement", "within noise"
NEWLY_FAILING, FIXED, NOT_OK = "now failing", "fixed", "not ok on both sides"
KERNELS, HOST, BOTH, UNKNOWN = "kernels", "host", "both", "unknown"

# Environment fields that explain a difference between two nights (DESIGN: driver, clocks,
# library versions, which GPU).
ENV_KEYS = ("gpu_name", "gpu_index", "cuda_visible_devices", "driver", "cuda", "sm_clock_mhz",
            "max_sm_clock_mhz", "mem_clock_mhz", "power_limit_w", "temperature_c", "host",
            "git_sha", "device", "python", "platform")


@dataclass(frozen=True)
class CompareConfig:
    threshold: float = 0.05     # smallest relative change ever called a change
    alpha: float = 0.05         # one-sided Mann-Whitney U: NEW slower (or faster) than BASE
    k: float = 3.0              # a one-process side's change must exceed k x the robust spread
    top_kernels: int = 8        # kernel rows shown per regressed run
    cause_share: float = 0.25   # a part (kernels, host) carrying less of the change is not a cause


@dataclass
class Comparison:
    table: pd.DataFrame                 # one row per matched pair
    base_only: pd.DataFrame             # summary rows present only in BASE
    new_only: pd.DataFrame
    environment: pd.DataFrame           # key, base, new for keys that differ
    kernel_diffs: dict[str, tuple[pd.DataFrame, pd.DataFrame]]  # name -> (categories, kernels)
    config: CompareConfig
    # records neither side can use (load.UnusableRecord): "BASE path" / "NEW path" -> why
    unusable: dict[str, str] = field(default_factory=dict)
    # runs of one side measured more than once (same run_id): the latest ok one is compared
    duplicates: list[str] = field(default_factory=list)

    @property
    def regressed(self) -> bool:
        return bool(self.table["verdict"].isin([REGRESSION, NEWLY_FAILING]).any())

    @property
    def missing(self) -> pd.DataFrame:
        """ok runs of BASE with no counterpart in NEW."""
        return self.base_only[self.base_only["status"] == "ok"]

    @property
    def incomplete(self) -> bool:
        """Nothing matched, an ok run of BASE is missing from NEW, or a record is unusable."""
        return self.table.empty or not self.missing.empty or bool(self.unusable)


def _name(r: Any) -> str:
    return f"{r.workload} [{r.variant}] {r.backend}"


def noise_flags(row: Any) -> str:
    """The flags of describe.NOISE_FLAGS a summary row carries: its median is unreliable for
    comparison, whatever the verdict says."""
    return ",".join(noise_codes(str(row.get("flags") or "")))


def _value(row: Any, key: str) -> float:
    value = row.get(key, math.nan)
    return float(value) if finite(value) else math.nan


def split_change(base: Any, new: Any, cfg: CompareConfig) -> dict[str, Any]:
    """What the kernels and the host each did to the wall time: the change of GPU busy time and
    of the host gap, each in % of BASE's wall median (they add up to the wall change), and
    the cause: the part(s) carrying at least `cause_share` of the two together."""
    bm = _value(base, "median_ms")
    parts = {}
    for name, key in (("gpu", "gpu_busy_ms_per_iter"), ("host", "host_gap_ms")):
        parts[name] = 100.0 * (_value(new, key) - _value(base, key)) / bm
    out = {"gpu_change_pct": parts["gpu"], "host_change_pct": parts["host"]}
    total = abs(parts["gpu"]) + abs(parts["host"])
    if not total > 0:       # NaN (not profiled on a side) or no change in either
        return {**out, "cause": UNKNOWN}
    gpu, host = (abs(parts[k]) >= cfg.cause_share * total for k in ("gpu", "host"))
    return {**out, "cause": BOTH if gpu and host else KERNELS if gpu else HOST}


def samples_of(record: dict[str, Any] | None) -> list[list[float]]:
    """A record's timed samples (ms per iteration), one list per fresh process; one list where
    the record keeps no per-process samples (schema 1, one process)."""
    timing = (record or {}).get("timing") or {}
    processes = timing.get("processes")
    if isinstance(processes, list) and processes:
        per = [[float(x) for x in (p or {}).get("samples_ms") or [] if finite(x)]
               for p in processes]
        if all(per):
            return per
    pooled = [float(x) for x in timing.get("samples_ms") or [] if finite(x)]
    return [pooled] if pooled else []


def robust_spread(processes: list[list[float]]) -> float:
    """A one-process side's spread that one outlier does not move: 1.4826 x the median absolute
    deviation of its samples over their median (the sd for normal samples); 0 where several
    processes ran (their medians must separate instead, `rank_test`)."""
    if len(processes) != 1 or len(processes[0]) < 2:
        return 0.0
    s = np.asarray(processes[0], dtype=float)
    med = float(np.median(s))
    return float(1.4826 * np.median(np.abs(s - med)) / med) if med > 0 else 0.0


def rank_test(base: list[list[float]], new: list[list[float]], alpha: float) -> dict[str, Any]:
    """One-sided Mann-Whitney U p-values of NEW slower and NEW faster than BASE, what they
    ranked (`test`), and whether the processes' medians all fall on each side (`apart_slower`,
    `apart_faster`; True where no processes ran on either side)."""
    from scipy.stats import mannwhitneyu
    med_b = [float(np.median(p)) for p in base]
    med_n = [float(np.median(p)) for p in new]
    if 1.0 / math.comb(len(med_b) + len(med_n), len(med_b)) < alpha:
        x, y, test = med_n, med_b, f"process medians {len(med_b)} v {len(med_n)}"
        apart_slower = apart_faster = True
    else:
        x = [v for p in new for v in p]
        y = [v for p in base for v in p]
        several = len(base) > 1 or len(new) > 1
        test = f"samples {len(y)} v {len(x)}" + (
            f", {len(base)} v {len(new)} processes apart" if several else "")
        apart_slower = not several or min(med_n) > max(med_b)
        apart_faster = not several or max(med_n) < min(med_b)
    slower = float(mannwhitneyu(x, y, alternative="greater").pvalue)
    faster = float(mannwhitneyu(x, y, alternative="less").pvalue)
    return {"p_slower": slower, "p_faster": faster, "test": test,
            "apart_slower": apart_slower, "apart_faster": apart_faster}


def verdict(base: Any, new: Any, cfg: CompareConfig,
            base_samples: list[list[float]] | None = None,
            new_samples: list[list[float]] | None = None) -> dict[str, Any]:
    """Ratio NEW/BASE of the medians and what it means: a rank test on the samples (or the
    process medians; module doc) at cfg.alpha, and a change beyond the band: the minimum
    effect cfg.threshold, and cfg.k x the one-process sides' robust spread; the p-value of the
    direction the median moved; where both sides were profiled, whether the kernels or the host
    changed."""
    b_ok, n_ok = base["status"] == "ok", new["status"] == "ok"
    out = {"ratio": math.nan, "change_pct": math.nan, "p_value": math.nan, "test": "",
           "band_pct": math.nan, "gpu_change_pct": math.nan, "host_change_pct": math.nan,
           "cause": ""}
    if b_ok and not n_ok:
        return {**out, "verdict": NEWLY_FAILING}
    if n_ok and not b_ok:
        return {**out, "verdict": FIXED}
    if not (b_ok and n_ok):
        return {**out, "verdict": NOT_OK}
    bm, nm = float(base["median_ms"]), float(new["median_ms"])
    if not (bm > 0 and nm > 0):
        return {**out, "verdict": NOT_OK}
    ratio = nm / bm
    out.update(ratio=ratio, change_pct=100.0 * (ratio - 1.0))
    if not (base_samples and new_samples):
        return {**out, "test": "no samples", "verdict": NOISE}
    t = rank_test(base_samples, new_samples, cfg.alpha)
    band = max(cfg.threshold, cfg.k * math.hypot(robust_spread(base_samples),
                                                 robust_spread(new_samples)))
    slower = ratio >= 1.0 + band and t["p_slower"] < cfg.alpha and t["apart_slower"]
    faster = ratio <= 1.0 - band and t["p_faster"] < cfg.alpha and t["apart_faster"]
    v = REGRESSION if slower else IMPROVEMENT if faster else NOISE
    split = split_change(base, new, cfg)
    if v == NOISE:
        split["cause"] = ""
    return {**out, "p_value": t["p_slower"] if ratio >= 1.0 else t["p_faster"],
            "test": t["test"], "band_pct": 100.0 * band, **split, "verdict": v}


def _pairs(base: pd.DataFrame, new: pd.DataFrame) -> tuple[list[tuple[int, int, str]], set, set]:
    """(base index, new index, how matched) and the unmatched indices of each side."""
    pairs: list[tuple[int, int, str]] = []
    b_left, n_left = set(base.index), set(new.index)
    by_id: dict[str, list[int]] = {}
    for i in new.index:
        if new.at[i, "run_id"]:
            by_id.setdefault(new.at[i, "run_id"], []).append(i)
    for i in base.index:
        cand = [j for j in by_id.get(base.at[i, "run_id"], []) if j in n_left]
        if cand:
            pairs.append((i, cand[0], "run_id"))
            b_left.discard(i)
            n_left.discard(cand[0])
    by_key: dict[tuple, list[int]] = {}
    for j in sorted(n_left):
        by_key.setdefault(match_key(new.loc[j]), []).append(j)
    for i in sorted(b_left):
        cand = [j for j in by_key.get(match_key(base.loc[i]), []) if j in n_left]
        if cand:
            pairs.append((i, cand[0], "key"))
            b_left.discard(i)
            n_left.discard(cand[0])
    return pairs, b_left, n_left


def _kernels_of(sweep: Sweep, run_id: str) -> pd.DataFrame:
    k = sweep.kernels
    return k[k["run_id"] == run_id] if len(k) else k


def environment_diff(base: Sweep, new: Sweep) -> pd.DataFrame:
    """Environment values that differ between the sweeps (each side: its distinct values;
    numbers as a range)."""
    def values(sweep: Sweep) -> dict[str, set]:
        out: dict[str, set] = {}
        for r in sweep.records:
            env = r.get("environment") or {}
            flat = {k: env.get(k) for k in ENV_KEYS}
            flat.update({f"version:{p}": v for p, v in (env.get("versions") or {}).items()})
            for k, v in flat.items():
                if v is not None:
                    out.setdefault(k, set()).add(v if not isinstance(v, (list, dict)) else str(v))
        return out

    def show(vals: set | None) -> str:
        if not vals:
            return "(none)"
        if all(isinstance(v, (int, float)) for v in vals):
            lo, hi = min(vals), max(vals)
            return f"{lo:g}" if lo == hi else f"{lo:g}–{hi:g}"
        return ", ".join(sorted(map(str, vals)))

    vb, vn = values(base), values(new)
    rows = []
    for key in sorted(set(vb) | set(vn), key=lambda k: (k.startswith("version:"), k)):
        if key in ("sm_clock_mhz", "temperature_c"):
            # these wander run to run; only a shift in range is a difference worth showing
            if show(vb.get(key)) == show(vn.get(key)):
                continue
        elif vb.get(key) == vn.get(key):
            continue
        rows.append({"key": key, "base": show(vb.get(key)), "new": show(vn.get(key))})
    return pd.DataFrame(rows, columns=["key", "base", "new"])


def _finished_at(record: dict[str, Any]) -> float:
    """When a run ended: its record's own stamp, else when its record was written."""
    for key in ("finished_at", "started_at"):
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    try:
        return (Path(record["_run_dir"]) / RECORD_NAME).stat().st_mtime
    except (KeyError, OSError):
        return 0.0


def latest_of_duplicates(sweep: Sweep, side: str) -> tuple[pd.DataFrame, list[str]]:
    """One row per run_id: where a side measured the same config more than once (the same
    command run twice into results/runs), its latest ok run, else its latest run; and a note
    per duplicated run saying which was taken and which were left out."""
    s = sweep.summary
    when = {r.get("_run_dir", ""): _finished_at(r) for r in sweep.records}
    keep, notes = [], []
    for run_id, group in s.groupby(s["run_id"].where(s["run_id"] != "", s.index.astype(str)),
                                   sort=False):
        if len(group) == 1:
            keep.append(group.index[0])
            continue
        order = sorted(group.index, key=lambda i: (s.at[i, "status"] == "ok",
                                                   when.get(s.at[i, "run_dir"], 0.0)))
        chosen = order[-1]
        keep.append(chosen)
        left = ", ".join(f"`{s.at[i, 'run_dir']}` ({s.at[i, 'status']})" for i in order[:-1])
        notes.append(f"{side}: {_name(s.loc[chosen])} ran {len(group)} times (run_id {run_id}); "
                     f"compared the latest {'ok ' if s.at[chosen, 'status'] == 'ok' else ''}"
                     f"one, `{s.at[chosen, 'run_dir']}`; left out {left}")
    return s.loc[sorted(keep)], notes


def compare(base: Sweep, new: Sweep, cfg: CompareConfig = CompareConfig()) -> Comparison:
    (bs, base_dups), (ns, new_dups) = (latest_of_duplicates(base, "BASE"),
                                       latest_of_duplicates(new, "NEW"))
    pairs, b_left, n_left = _pairs(bs, ns)
    rows = []
    kernel_diffs: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
    record_of = {r["_run_dir"]: r for r in [*base.records, *new.records]}
    for i, j, how in pairs:
        b, n = bs.loc[i], ns.loc[j]
        v = verdict(b, n, cfg, samples_of(record_of.get(b["run_dir"])),
                    samples_of(record_of.get(n["run_dir"])))
        name = _name(n)
        rows.append({"workload": n["workload"], "variant": n["variant"], "backend": n["backend"],
                     "base_status": b["status"], "new_status": n["status"],
                     "base_median_ms": b["median_ms"], "new_median_ms": n["median_ms"],
                     "base_cv": b["cv"], "new_cv": n["cv"],
                     "base_between_cv": b["between_cv"], "new_between_cv": n["between_cv"],
                     "base_gpu_ms": b["gpu_busy_ms_per_iter"],
                     "new_gpu_ms": n["gpu_busy_ms_per_iter"],
                     "base_host_gap_ms": b["host_gap_ms"], "new_host_gap_ms": n["host_gap_ms"],
                     # what a side did not measure as asked stands beside its median
                     "base_flags": b["flags"], "new_flags": n["flags"],
                     # the flags of those that make its median unreliable for comparison
                     "base_noise_flags": noise_flags(b), "new_noise_flags": noise_flags(n),
                     **v, "clocks": clocks.different_clocks(b, n), "matched_by": how,
                     "base_run_id": b["run_id"], "new_run_id": n["run_id"],
                     "reason": n["reason"] if n["status"] != "ok" else ""})
        if v["verdict"] == REGRESSION:
            kb, kn = _kernels_of(base, b["run_id"]), _kernels_of(new, n["run_id"])
            if len(kb) and len(kn):
                cats = category_diff(kb, kn, ("base", "new"))
                kern = kernel_diff(kb, kn, ("base", "new"))
                kern = kern[kern["delta_us"] > 0].head(cfg.top_kernels)
                kernel_diffs[name] = (cats, kern)
    cols = ["workload", "variant", "backend", "base_status", "new_status", "base_median_ms",
            "new_median_ms", "base_cv", "new_cv", "base_between_cv", "new_between_cv",
            "base_gpu_ms", "new_gpu_ms", "base_host_gap_ms", "new_host_gap_ms", "base_flags",
            "new_flags", "base_noise_flags", "new_noise_flags", "ratio",
            "change_pct", "p_value", "test", "band_pct", "verdict", "gpu_change_pct",
            "host_change_pct",
            "cause", "clocks", "matched_by", "base_run_id", "new_run_id", "reason"]
    table = pd.DataFrame(rows, columns=cols)
    order = {NEWLY_FAILING: 0, REGRESSION: 1, IMPROVEMENT: 2, FIXED: 3, NOISE: 4, NOT_OK: 5}
    table = table.assign(_o=table["verdict"].map(order)).sort_values(
        ["_o", "workload", "variant", "backend"], kind="stable").drop(columns="_o")
    keep = ["workload", "variant", "backend", "status", "reason", "median_ms", "run_id", "run_dir"]
    return Comparison(table=table.reset_index(drop=True),
                      base_only=bs.loc[sorted(b_left), keep].reset_index(drop=True),
                      new_only=ns.loc[sorted(n_left), keep].reset_index(drop=True),
                      environment=environment_diff(base, new), kernel_diffs=kernel_diffs,
                      config=cfg, duplicates=base_dups + new_dups,
                      unusable={**{f"BASE {p}": why for p, why in base.unusable.items()},
                                **{f"NEW {p}": why for p, why in new.unusable.items()}})


def incomplete_reason(c: Comparison) -> str:
    """Why a comparison is incomplete ("" when it is not), naming the missing runs and the
    unusable records."""
    why = []
    if c.table.empty:
        why.append("no runs matched: nothing was compared")
    elif len(c.missing):
        names = "; ".join(_name(r) for r in c.missing.itertuples())
        why.append(f"{len(c.missing)} ok run(s) of BASE missing from NEW: {names}")
    if c.unusable:
        why.append(f"{len(c.unusable)} unusable record(s): "
                   + "; ".join(f"{where} ({reason})" for where, reason in c.unusable.items()))
    return "; ".join(why)


def _sides(base_flags: str, new_flags: str) -> str:
    return "; ".join(f"{side} {flags}" for side, flags in (("BASE", base_flags), ("NEW", new_flags)) if flags)


def headline(c: Comparison, allow_missing: bool = False) -> str:
    """The one-line verdict: regressed, incomplete (nothing matched, ok runs missing) or not."""
    why = incomplete_reason(c)
    if c.regressed:
        t = c.table
        shaky = t[t["verdict"].isin([REGRESSION]) & ((t["base_noise_flags"] != "") | (t["new_noise_flags"] != ""))]
        return ("**REGRESSED**" + (f" ({len(shaky)} of the regressions with a side flagged "
                                   f"{'/'.join(NOISE_FLAGS)}: unreliable)" if len(shaky) else "")
                + (f"; also **INCOMPLETE**: {why}." if why else ""))
    if not why:
        return "No regression."
    if allow_missing:
        return f"No regression among the matched runs; {why} (accepted with --allow-missing)."
    return f"**INCOMPLETE**: {why}."


def render_markdown(c: Comparison, base_label: str, new_label: str,
                    allow_missing: bool = False) -> str:
    t = c.table
    counts = t["verdict"].value_counts().to_dict()
    lines = [f"# Compare\n", f"BASE `{base_label}` vs NEW `{new_label}`: {len(t)} matched run(s) "
             f"({', '.join(f'{v} {k}' for k, v in counts.items()) or 'none'}); "
             f"{len(c.base_only)} only in BASE, {len(c.new_only)} only in NEW.  ",
             f"A change counts when a one-sided Mann-Whitney U test gives p < "
             f"{c.config.alpha:g} (`test`: on the process medians where enough processes ran, "
             "else on the samples with every process of one side beyond every process of the "
             f"other) and it exceeds the band: {100 * c.config.threshold:g}%, and "
             f"{c.config.k:g} x the robust spread (MAD) of a side's samples where one process "
             "ran.\n",
             headline(c, allow_missing) + "\n"]
    if len(c.missing):
        lines += ["ok in BASE, missing from NEW:\n",
                  "".join(f"- {_name(r)} (`{r.run_dir}`)\n" for r in c.missing.itertuples())]
    if c.unusable:
        lines += ["Unusable records (not compared; an ok run needs a finite positive median):\n",
                  "".join(f"- `{where}`: {reason}\n" for where, reason in c.unusable.items())]
    if c.duplicates:
        lines += ["Measured more than once on one side (the latest ok record is compared):\n",
                  "".join(f"- {note}\n" for note in c.duplicates)]

    def signed(values: pd.Series) -> pd.Series:
        return values.map(lambda r: f"{r:+.1f}" if r == r else "")

    view = pd.DataFrame({
        "workload": t["workload"], "variant": t["variant"], "backend": t["backend"],
        "base ms": t["base_median_ms"], "new ms": t["new_median_ms"],
        "NEW/BASE": t["ratio"].map(lambda r: f"{r:.3f}" if r == r else ""),
        "change %": signed(t["change_pct"]),
        "p": t["p_value"].map(lambda p: f"{p:.2g}" if p == p else ""),
        "test": t["test"],
        "band ±%": t["band_pct"].map(lambda r: f"{r:.1f}" if r == r else ""),
        "CV base/new %": [f"{100 * a:.1f} / {100 * b:.1f}" if a == a and b == b else ""
                          for a, b in zip(t["base_cv"], t["new_cv"])],
        "between procs CV base/new %": [
            f"{T.fmt_num(100 * a, 2)} / {T.fmt_num(100 * b, 2)}" if a == a or b == b else ""
            for a, b in zip(t["base_between_cv"], t["new_between_cv"])],
        "GPU ms base/new": [f"{T.fmt_num(a)} / {T.fmt_num(b)}" if a == a or b == b else ""
                            for a, b in zip(t["base_gpu_ms"], t["new_gpu_ms"])],
        "host gap ms base/new": [f"{T.fmt_num(a)} / {T.fmt_num(b)}" if a == a or b == b else ""
                                 for a, b in zip(t["base_host_gap_ms"], t["new_host_gap_ms"])],
        "GPU Δ %": signed(t["gpu_change_pct"]), "host Δ %": signed(t["host_change_pct"]),
        "verdict": [(f"**{v}**" if v in (REGRESSION, NEWLY_FAILING) else v)
                    + (f" (unreliable: {_sides(b, n)})" if b or n else "")
                    for v, b, n in zip(t["verdict"], t["base_noise_flags"], t["new_noise_flags"])],
        "cause": t["cause"],
        "flags base/new": [f"{a or '-'} / {b or '-'}" if a or b else ""
                           for a, b in zip(t["base_flags"], t["new_flags"])],
        # the GPU's SM clock during timing differed between the nights (harness/clocks.py)
        "clocks": t["clocks"],
        "status": [s if s == ns else f"{s} → {ns}" for s, ns in zip(t["base_status"],
                                                                     t["new_status"])],
        "reason": t["reason"].map(lambda r: r[:120]),
    })
    keep = [c for c in view.columns if c in ("workload", "variant", "backend", "verdict")
            or view[c].map(lambda v: T.fmt_num(v) != "").any()]
    lines += ["## Runs\n", T.md_table(view[keep]),
              "GPU Δ % and host Δ %: the change of GPU busy time and of the host gap (wall - GPU), "
              "each in % of BASE's wall median, so that they add up to the wall change; cause: "
              "the part carrying it (kernels, host, both; unknown where a side was not "
              f"profiled). unreliable: a side is flagged {', '.join(NOISE_FLAGS)}: its median "
              "is unreliable for comparison, whatever the verdict (see its report's Flags).\n"]
    for name, (cats, kern) in c.kernel_diffs.items():
        lines += [f"## Why slower: {name}\n", "Time by category (ms per iteration):\n",
                  T.md_table(cats, index=True), "Kernels that grew (us per iteration):\n",
                  T.md_table(kern)]
    regressed_without = [_name(r) for r in t.itertuples()
                         if r.verdict == REGRESSION and _name(r) not in c.kernel_diffs]
    if regressed_without:
        lines.append("No kernel tables on both sides for: " + "; ".join(regressed_without) + "\n")
    lines.append("## Environment differences\n")
    lines.append(T.md_table(c.environment) if len(c.environment)
                 else "_Same driver, GPU, clocks range and library versions._\n")
    for label, side in (("Only in BASE", c.base_only), ("Only in NEW", c.new_only)):
        if len(side):
            lines += [f"## {label}\n", T.md_table(side[["workload", "variant", "backend",
                                                        "status", "median_ms", "reason",
                                                        "run_dir"]])]
    return "\n".join(lines)
