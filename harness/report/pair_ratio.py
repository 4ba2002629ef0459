"""A pair's wall-time ratio with a 95% interval, from its sides' process medians.

Interleaved sides (harness/orchestrator/interleave.py: process k of every side ran before any
side's process k+1) are compared couple by couple: r_k = A_k / B_k of round k, each couple
close in time, so a drift of the machine over the minutes of the run cancels within it. The
ratio is the geometric mean of the r_k and its interval Student's t on log r_k (n - 1 degrees
of freedom): a ratio is a product, so its noise is symmetric on the log scale, and with 3-5
rounds the t quantile (2.78 at n = 5) rather than the normal's 1.96 is what keeps the interval
honest. A bootstrap needs more couples than a run has processes.

Sides that ran one after the other have no couples: their interval is Welch's t on the log
process medians of each side (independent samples, unequal variances), so a drift that fell
on one side shows up as a wide interval, not as a confident ratio.
"""
from __future__ import annotations

import json
import math
import statistics
from typing import Any, Mapping

PAIRED = "paired t, interleaved couples"
UNPAIRED = "Welch t, sides run one after the other"
CONFIDENCE = 0.95


def process_medians(row: Mapping[str, Any]) -> list[float]:
    try:
        values = json.loads(row.get("process_medians_json") or "[]")
    except (TypeError, ValueError):
        return []
    return [float(v) for v in values if isinstance(v, (int, float)) and v > 0 and math.isfinite(v)]


def interleaved(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    group = a.get("interleave_group") or ""
    return bool(group) and group == (b.get("interleave_group") or "")


def ratio_interval(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """A over B: `ratio`, `ratio_low`, `ratio_high` (95%), `ratio_method`, `ratio_n` (couples,
    or the smaller side's processes); NaN bounds where fewer than two of them. scipy.stats
    (half a second to import) is imported only where there is an interval to compute."""
    xa, xb = process_medians(a), process_medians(b)
    nan = {"ratio": math.nan, "ratio_low": math.nan, "ratio_high": math.nan}
    if interleaved(a, b):
        logs = [math.log(p / q) for p, q in zip(xa, xb)]
        if len(logs) < 2:
            return {**nan, "ratio_method": PAIRED, "ratio_n": len(logs)}
        from scipy import stats
        mean, sem = statistics.fmean(logs), stats.sem(logs)
        half = stats.t.ppf(0.5 + CONFIDENCE / 2, len(logs) - 1) * sem
        return {"ratio": math.exp(mean), "ratio_low": math.exp(mean - half), "ratio_high": math.exp(mean + half),
                "ratio_method": PAIRED, "ratio_n": len(logs)}
    la, lb = [math.log(x) for x in xa], [math.log(x) for x in xb]
    if min(len(la), len(lb)) < 2:
        return {**nan, "ratio_method": UNPAIRED, "ratio_n": min(len(la), len(lb))}
    from scipy import stats
    test = stats.ttest_ind(la, lb, equal_var=False)
    low, high = test.confidence_interval(CONFIDENCE)
    diff = statistics.fmean(la) - statistics.fmean(lb)
    return {"ratio": math.exp(diff), "ratio_low": math.exp(low), "ratio_high": math.exp(high),
            "ratio_method": UNPAIRED, "ratio_n": min(len(la), len(lb))}


def interval_text(row: Mapping[str, Any]) -> str:
    """`1.052 [1.031, 1.074] (paired t, interleaved couples, n=5)`; "" without an interval."""
    lo, hi = row.get("ratio_low"), row.get("ratio_high")
    if lo is None or hi is None or lo != lo or hi != hi:
        return ""
    return (f"{row['ratio']:.3f} [{lo:.3f}, {hi:.3f}] ({row['ratio_method']}, n={row['ratio_n']})")
