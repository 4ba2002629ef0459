"""Which of two runs is faster, said at the strength the data allow: the one verdict that the
pairs, the findings and the findings docs print (so that no prose states more than the report).

- Neither run is flagged noisy (describe.NOISE_FLAGS): the medians' ratio is a result where it
  clears `k` x their combined noise (CV between processes where several ran, else within one)
  and `min_change`: "xla is 1.65x faster (beyond 3 x CV)"; else "level within noise".
- Either run is flagged noisy: its median is no measurement to divide by (on a loaded machine a
  CV of 193% once gave "291x faster"), so no ratio is stated. A run is called faster only where
  the two runs' observed ranges (p10-p90 of the samples and the process medians, whichever is
  wider) do not overlap; else they are level within noise. The flags are named either way.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness.describe import noise_codes
from harness.report.load import finite, noise_floor

FASTER, LEVEL = "faster", "level within noise"
# A ratio is a result beyond this many times the runs' combined CV: the pairs table's k and
# the findings' default (FindingsConfig.speed_k_cv)
DEFAULT_K = 3.0


@dataclass(frozen=True)
class Verdict:
    outcome: str         # FASTER | LEVEL
    faster: str          # the faster run's label ("" when level)
    slower: str
    ratio: float         # slower / faster median where that is a result; NaN where a run is noisy
    noisy: str           # "inductor is flagged high_cv,process_spread" for each noisy run, or ""
    text: str            # the verdict as a clause: "xla is 6.53x faster than inductor (beyond 3 x CV)"

    @property
    def short(self) -> str:
        """For a table cell: `xla 1.65x faster`, `xla faster (no ratio: noisy)`, `level within noise`."""
        if self.outcome != FASTER:
            return "level within noise"
        return f"{self.faster} {self.ratio:.2f}x faster" if self.ratio == self.ratio else \
            f"{self.faster} faster (no ratio: noisy)"


def observed_range(row: Any) -> tuple[float, float]:
    """Where a run's median could have landed: the widest of its samples' p10-p90 and its
    process medians' min-max (the median alone where neither is known)."""
    lows = [row.get(k, math.nan) for k in ("p10_ms", "between_min_ms", "median_ms")]
    highs = [row.get(k, math.nan) for k in ("p90_ms", "between_max_ms", "median_ms")]
    return min(float(v) for v in lows if finite(v)), max(float(v) for v in highs if finite(v))


def _ms(v: float) -> str:
    return f"{v:.4g} ms"


def noisy_text(labels: tuple[str, str], rows: tuple[Any, Any]) -> str:
    """`inductor is flagged high_cv,process_spread` for each run carrying a noise flag."""
    said = []
    for label, row in zip(labels, rows):
        flags = row.get("flags", math.nan)
        codes = noise_codes(flags if isinstance(flags, str) else "")
        if codes:
            said.append(f"{label} is flagged {','.join(codes)}")
    return "; ".join(said)


def decide(label_a: str, a: Any, label_b: str, b: Any, k: float = DEFAULT_K,
           min_change: float = 0.0) -> Verdict:
    """The verdict between runs a and b (summary rows, as dicts or pandas Series: median_ms, cv,
    between_cv, processes, p10_ms, p90_ms, between_min_ms, between_max_ms, flags)."""
    ma, mb = float(a.get("median_ms", math.nan)), float(b.get("median_ms", math.nan))
    (fast_label, fast), (slow_label, slow) = sorted(
        ((label_a, a), (label_b, b)), key=lambda x: float(x[1].get("median_ms", math.nan)))
    fast_ms, slow_ms = min(ma, mb), max(ma, mb)
    noisy = noisy_text((label_a, label_b), (a, b))
    ratio = slow_ms / fast_ms if fast_ms > 0 else math.nan
    if not noisy:
        noise = math.hypot(noise_floor(a)[0], noise_floor(b)[0])
        if ratio == ratio and ratio - 1.0 > max(min_change, k * noise):
            return Verdict(FASTER, fast_label, slow_label, ratio, "",
                           f"{fast_label} is {ratio:.2f}x faster than {slow_label} "
                           f"(beyond {k:g} x CV)")
        return Verdict(LEVEL, "", "", math.nan, "",
                       f"{label_a} and {label_b} are level within noise ({k:g} x CV)")
    (fast_lo, fast_hi), (slow_lo, slow_hi) = observed_range(fast), observed_range(slow)
    if fast_hi < slow_lo and ratio - 1.0 > min_change:
        return Verdict(FASTER, fast_label, slow_label, math.nan, noisy,
                       f"{fast_label} is faster than {slow_label}: its samples and processes "
                       f"reach at most {_ms(fast_hi)}, below {slow_label}'s least {_ms(slow_lo)} "
                       f"(no ratio stated: {noisy})")
    how = (f"their medians differ by less than {100 * min_change:.0f}%" if fast_hi < slow_lo else
           "their samples and processes overlap")
    return Verdict(LEVEL, "", "", math.nan, noisy,
                   f"{label_a} and {label_b} are level within noise: {how} ({fast_label} "
                   f"{fast_lo:.4g}-{fast_hi:.4g} ms, {slow_label} {slow_lo:.4g}-{slow_hi:.4g} ms; "
                   f"{noisy})")
