"""`python -m harness.report regressions STORE`: which series changed across the nights, since
which night, between which commits; and whether the change still holds.

A series is one workload variant x backend label x device (`SERIES`); each night gives it one
figure (`night_series`). How a change is found (docs/DESIGN.md, "Regressions across nights"):

1. Only nights a verdict may rest on count: status ok, a finite positive median, none of
   `UNRELIABLE_FLAGS` (a busy or throttled host, spread samples or processes, a recompile in
   the timed window). The others stay in the night series, marked, and each change says how many
   of them fell inside it; they never move a level or a change point.
2. Change points of log(median) by ruptures' PELT with an L2 cost: a split stands when the
   segments' means differ by more than a t-test allows at `alpha` shared among the series'
   possible change points, given the series' noise (the spread of its nights around their
   segments, never taken below what the nights' own fresh processes spread) and the degrees
   of freedom that noise was estimated from.
3. Segments of at least `min_nights` nights are levels, shorter ones excursions. Neighbouring
   levels closer than `min_effect`, or than `noise_k` x the series' noise between nights, are
   merged, weakest first (Otava's merge step).
4. A level slower than the level before it is a regression, a faster one an improvement; an
   excursion beyond that (one slow night) is suspicious. A change is open while its level
   is the series' latest.

Otava (`apache-otava`) and MongoDB's E-divisive (`signal-processing-algorithms`) can replace
step 2 (`RegressionConfig.method`) where installed; scripts/bench_regressions.py measures all
three, and DESIGN says why ruptures is the default.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.describe import NOISE_FLAGS
from harness.errors import InputError

# One series = workload variant x backend label x device.
SERIES = ("workload", "variant", "backend", "device")
REGRESSION, IMPROVEMENT, SUSPICIOUS = "regression", "improvement", "suspicious"
KINDS = (REGRESSION, IMPROVEMENT, SUSPICIOUS)
# A night carrying one of these measured something else than the series' figure: a noisy or
# busy host, or a timing window that mixed in a compile; a CPU run of a GPU series.
UNRELIABLE_FLAGS = NOISE_FLAGS + ("recompiled", "cpu_fallback")
METHODS = ("ruptures", "otava", "e_divisive")

NIGHT_COLUMNS = [*SERIES, "date", "median_ms", "between_min_ms", "between_max_ms", "cv",
                 "between_cv", "processes", "gpu_busy_ms_per_iter", "host_gap_ms", "flags",
                 "git_sha", "status", "reason", "runs", "usable", "excluded", "noise_cv",
                 "run_id", "recorded_at"]


@dataclass(frozen=True)
class RegressionConfig:
    min_effect: float = 0.03    # smallest relative change of a level ever called a change
    # ... and it must exceed this many times the series' own noise between nights (the sd of a
    # night's log median around its level): a change within one night's scatter is not one,
    # however many nights it holds (2 x measured no fewer false alarms, and found fewer steps)
    noise_k: float = 1.0
    min_nights: int = 2         # nights a new level must hold to be a regression / improvement
    # Chance that a series of pure noise shows a change point (two-sided t-tests of the
    # segments' means given the series' noise, Bonferroni over its n - 1 places): 14 nights of
    # 2% noise gave a false alarm in 0.5% of 1000 series at this value, 1.2% at 0.05
    # (scripts/bench_regressions.py, docs/DESIGN.md).
    alpha: float = 0.03
    method: str = "ruptures"    # one of METHODS
    noise_floor: float = 0.002  # the noise (sd of log median) is never taken below 0.2%
    permutations: int = 100     # e_divisive's permutation test

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r}: expected one of {', '.join(METHODS)}")
        if not (self.min_effect >= 0 and self.min_nights >= 1 and 0 < self.alpha < 1
                and self.noise_k >= 0):
            raise ValueError("min_effect >= 0, min_nights >= 1, 0 < alpha < 1 and noise_k >= 0 "
                             "expected")


@dataclass(frozen=True)
class Change:
    workload: str
    variant: str
    backend: str
    device: str
    kind: str                       # "regression" | "improvement" | "suspicious"
    first_date: str                 # YYYY-MM-DD, the first night after the change point
    git_before: str | None          # the commit range where it began: the last night before,
    git_after: str | None           # the first night after
    median_before_ms: float
    median_after_ms: float
    change_pct: float
    nights_held: int                # usable nights at the new level (or of the excursion)
    gpu_change_pct: float | None    # GPU busy time and host gap change, each in % of the
    host_gap_change_pct: float | None   # wall median before (they add up to the wall change)
    open: bool                      # still holds on the latest night
    last_date_before: str | None = None   # the last night at the level before
    latest_date: str = ""           # the series' latest night (usable or not)
    nights_before: int = 0          # usable nights at the level before
    nights_excluded: int = 0        # nights not judged (failed, flagged) after the level before,
                                    # up to the new level's last night
    noise_pct: float = math.nan     # the series' noise between nights (sd of log median, %)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Segment:
    kind: str                       # "level" | "excursion"
    nights: list[int]               # positions in the usable nights
    median: float = math.nan        # of log(median_ms)


@dataclass
class Fit:
    """A series' usable nights cut into levels and excursions, in night order."""
    segments: list[Segment] = field(default_factory=list)
    noise: float = math.nan         # sd of log(median) between nights
    threshold: float = 0.0          # smallest change that counts: min_effect, noise_k x noise


# --------------------------------------------------------------------------- night series

def parse_date(value: str, what: str = "--since") -> str:
    """YYYY-MM-DD, or an InputError naming `what` with an example."""
    try:
        return dt.date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise InputError(f"{what} {value!r}: expected a date YYYY-MM-DD, e.g. 2026-01-31") from None


def _dates(values: pd.Series) -> pd.Series:
    out = pd.to_datetime(values.astype(str), errors="coerce", format="%Y-%m-%d")
    bad = values[out.isna()]
    if len(bad):
        raise InputError(f"history: date {bad.iloc[0]!r} is not YYYY-MM-DD (a store partition "
                         "is named date=2026-01-31)")
    return out.dt.strftime("%Y-%m-%d")


def _excluded(row: Any) -> str:
    """Why a night's figure may not decide a verdict ("" when it may)."""
    if row.status != "ok":
        return f"{row.status}: {row.reason}" if row.reason else str(row.status)
    if not (row.median_ms > 0 and math.isfinite(row.median_ms)):
        return "no finite median"
    flagged = [c for c in UNRELIABLE_FLAGS if c in str(row.flags).split(",")]
    return f"flagged {','.join(flagged)}" if flagged else ""


@functools.lru_cache(maxsize=None)
def _median_sd(n: int) -> float:
    """sd of the median of n standard normals (n odd: its order statistic's variance,
    integrated; n even: the mean of the two middle ones, taken at its large-sample value
    sqrt(pi / 2n), which over-states it a little; n = 2: 1/sqrt(2) exactly)."""
    if n == 2:
        return math.sqrt(0.5)
    if n % 2 == 0:
        return math.sqrt(math.pi / (2.0 * n))
    from scipy import integrate, special, stats
    k = (n + 1) // 2
    log_c = special.gammaln(n + 1) - 2 * special.gammaln(k)

    def density(x: float) -> float:
        p = stats.norm.cdf(x)
        return x * x * math.exp(log_c + (k - 1) * math.log(p * (1 - p))) * stats.norm.pdf(x) \
            if 0 < p < 1 else 0.0
    return math.sqrt(integrate.quad(density, -10, 10)[0])


def median_noise(between_cv: float, processes: float) -> float:
    """How much a night's median (the median of its processes' medians) moves by chance, from
    the spread of those processes (CV of their medians) and how many ran; NaN where fewer than
    2 ran (samples within one process drift together and say nothing about the next
    process)."""
    if not (processes >= 2 and between_cv >= 0):
        return math.nan
    return float(between_cv) * _median_sd(int(processes))


def night_series(history: pd.DataFrame) -> pd.DataFrame:
    """One row per series x night (NIGHT_COLUMNS), in night order.

    Several runs of a series on one night (a retry after a failure, a sweep run twice): the
    latest ok run is the night's figure, else the latest run; `runs` says how many there were.
    The latest, because a re-run on the same night is a retry or a fix of the one before it;
    never a mean, which would mix two commits or a failure into one figure."""
    missing = [c for c in ("workload", "variant", "backend", "date", "status", "median_ms")
               if c not in history.columns]
    if missing:
        raise InputError(f"history: missing column(s) {', '.join(missing)} (expected rows of a "
                         "store written by `python -m harness.report history`)")
    h = history.copy()
    if "device" not in h.columns:       # rows written before the summary named the device
        h["device"] = ""
    h["date"] = _dates(h["date"])
    for col in ("between_min_ms", "between_max_ms", "cv", "between_cv", "processes",
                "gpu_busy_ms_per_iter", "host_gap_ms"):
        h[col] = pd.to_numeric(h[col], errors="coerce") if col in h.columns else math.nan
    for col in ("flags", "reason", "run_id"):
        h[col] = h[col].fillna("").astype(str) if col in h.columns else ""
    for col in SERIES:
        h[col] = h[col].fillna("").astype(str)
    h["git_sha"] = h["git_sha"].astype(object).where(h["git_sha"].notna(), None) \
        if "git_sha" in h.columns else None
    h["median_ms"] = pd.to_numeric(h["median_ms"], errors="coerce")
    h["recorded_at"] = (pd.to_datetime(h["recorded_at"], utc=True, errors="coerce")
                        if "recorded_at" in h.columns else pd.NaT)
    h["_ok"] = (h["status"] == "ok") & (h["median_ms"] > 0)
    keys = [*SERIES, "date"]
    h = h.sort_values([*keys, "_ok", "recorded_at"], kind="stable", na_position="first")
    runs = h.groupby(keys, sort=False).size().rename("runs")
    nights = h.groupby(keys, sort=False).tail(1).merge(runs, left_on=keys, right_index=True)
    nights["excluded"] = [_excluded(r) for r in nights.itertuples()]
    nights["usable"] = nights["excluded"] == ""
    nights["noise_cv"] = [median_noise(c, n) for c, n in zip(nights["between_cv"],
                                                            nights["processes"])]
    nights = nights.sort_values(keys, kind="stable").reset_index(drop=True)
    return nights[NIGHT_COLUMNS]


# --------------------------------------------------------------------------- change points

@dataclass(frozen=True, order=True)
class Noise:
    """sd of log(median) between nights, and the degrees of freedom it was estimated with
    (a t-test at that many is as sure as its noise); ordered by sd."""
    sd: float
    df: int = field(default=10 ** 6, compare=False)


def _robust_sd(y: np.ndarray) -> float:
    """sd of the noise from successive differences (MAD): a step moves one difference only."""
    d = np.diff(y)
    if len(d) < 2:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2.0))


def _residual_sd(y: np.ndarray, starts: list[int]) -> tuple[float, int]:
    """Pooled sd of the nights around their segments' means and its degrees of freedom
    (segments of one night carry no residual)."""
    bounds = [0, *starts, len(y)]
    parts = [y[a:b] for a, b in zip(bounds, bounds[1:]) if b - a >= 2]
    df = sum(len(p) - 1 for p in parts)
    if df < 1:
        return math.nan, 0
    return float(math.sqrt(sum(float(((p - p.mean()) ** 2).sum()) for p in parts) / df)), df


def _pelt(y: np.ndarray, noise: float, df: int, alpha: float) -> list[int]:
    """PELT on an L2 cost: a split of one segment into n1 and n2 nights lowers the cost by
    n1 n2 / (n1 + n2) x (mean difference)^2, so a penalty of (t quantile x noise)^2 keeps
    exactly the splits a two-sided t-test would keep. The test's level is `alpha` shared among
    the series' n - 1 places a change could start (Bonferroni): a series of pure noise shows a
    change with chance <= alpha however many nights it has. ruptures' KernelCPD with a linear
    kernel is its L2 cost in C: the same change points as `Pelt(model="l2")`, 100x faster
    (measured on 200 series of 14 nights)."""
    import ruptures
    from scipy import stats
    q = float(stats.t.isf(alpha / 2.0 / max(len(y) - 1, 1), max(df, 1)))
    algo = ruptures.KernelCPD(kernel="linear", min_size=1, jump=1).fit(y.reshape(-1, 1))
    return [int(b) for b in algo.predict(pen=(q * noise) ** 2) if b < len(y)]


def _ruptures(y: np.ndarray, floor: Noise, cfg: RegressionConfig) -> tuple[list[int], float]:
    """Change points and the noise they were judged against. The series' noise is re-estimated
    from the nights' spread around the segments the last pass found (more degrees of freedom
    than successive differences give); where the floor (the nights' own processes, or
    noise_floor) is larger, it is taken with its own degrees of freedom."""
    series = Noise(_robust_sd(y), len(y) - 2)
    for _ in range(3):
        noise = max(series, floor)
        starts = _pelt(y, noise.sd, noise.df, cfg.alpha)
        sd, df = _residual_sd(y, starts)
        if not df:
            break
        series = Noise(sd, df)
    noise = max(series, floor)
    return _pelt(y, noise.sd, noise.df, cfg.alpha), noise.sd


def _otava(y: np.ndarray, floor: Noise, cfg: RegressionConfig) -> tuple[list[int], float]:
    from otava.analysis import compute_change_points
    points, _ = compute_change_points(list(map(float, y)), window_len=max(30, len(y)),
                                      max_pvalue=cfg.alpha, min_magnitude=0.0)
    starts = sorted(int(p.index) for p in points)
    return starts, _noise_of(y, starts, floor)


def _e_divisive(y: np.ndarray, floor: Noise, cfg: RegressionConfig) -> tuple[list[int], float]:
    from signal_processing_algorithms.energy_statistics.energy_statistics import e_divisive
    state = np.random.get_state()   # it permutes with numpy's global generator: seeded, the
    np.random.seed(0)               # same store gives the same verdict every time
    try:
        starts = sorted(int(i) for i in e_divisive(y, pvalue=cfg.alpha,
                                                   permutations=cfg.permutations))
    finally:
        np.random.set_state(state)
    return starts, _noise_of(y, starts, floor)


def _noise_of(y: np.ndarray, starts: list[int], floor: Noise) -> float:
    sd, df = _residual_sd(y, starts)
    return max(Noise(sd, df), floor).sd if df else floor.sd


SEGMENTERS = {"ruptures": _ruptures, "otava": _otava, "e_divisive": _e_divisive}


def _merge_levels(levels: list[Segment], y: np.ndarray, threshold: float) -> list[Segment]:
    """Neighbouring levels closer than `threshold` become one, the closest pair first, the
    merged level's median recomputed before the next pair is judged."""
    levels = list(levels)
    while len(levels) > 1:
        gaps = [abs(math.expm1(b.median - a.median)) for a, b in zip(levels, levels[1:])]
        i = int(np.argmin(gaps))
        if gaps[i] >= threshold:
            break
        nights = levels[i].nights + levels[i + 1].nights
        levels[i:i + 2] = [Segment("level", nights, float(np.median(y[nights])))]
    return levels


def fit(y: np.ndarray, measured: Noise | None = None,
        cfg: RegressionConfig = RegressionConfig()) -> Fit:
    """Levels and excursions of a series of log medians (all usable); `measured`: the nights'
    own noise (`measured_noise`), below which the series' noise is never taken."""
    n = len(y)
    if n == 0:
        return Fit()
    floor = max(Noise(cfg.noise_floor), measured or Noise(0.0))
    starts, noise = SEGMENTERS[cfg.method](y, floor, cfg) if n >= 3 else ([], floor.sd)
    bounds = [0, *starts, n]
    segments = [Segment("level" if b - a >= cfg.min_nights else "excursion", list(range(a, b)),
                        float(np.median(y[a:b]))) for a, b in zip(bounds, bounds[1:])]
    threshold = max(cfg.min_effect, math.expm1(cfg.noise_k * noise))
    levels = _merge_levels([s for s in segments if s.kind == "level"], y, threshold)
    merged = {i: lvl for lvl in levels for i in lvl.nights}
    out: list[Segment] = []
    for s in segments:          # back into night order: a merged level where its first night is
        if s.kind == "excursion":
            out.append(s)
        elif merged[s.nights[0]] not in out:
            out.append(merged[s.nights[0]])
    out.sort(key=lambda s: s.nights[0])
    return Fit(out, noise, threshold)


def measured_noise(noise_cv: np.ndarray, processes: np.ndarray) -> Noise | None:
    """The nights' own noise of their medians, pooled (root mean square), with the degrees of
    freedom of the process spreads it comes from; None where none was measured."""
    have = np.isfinite(noise_cv) & np.isfinite(processes)
    if not have.any():
        return None
    return Noise(float(np.sqrt(np.mean(noise_cv[have] ** 2))), int((processes[have] - 1).sum()))


def _reference(f: Fit, excursion: Segment) -> Segment:
    """The level an excursion is measured against: the one before it, else the one after, else
    itself (a series with no level yet)."""
    levels = [s for s in f.segments if s.kind == "level"]
    before = [s for s in levels if s.nights[0] < excursion.nights[0]]
    after = [s for s in levels if s.nights[0] > excursion.nights[0]]
    return before[-1] if before else after[0] if after else excursion


# --------------------------------------------------------------------------- changes

def _part_change_pct(before: pd.DataFrame, after: pd.DataFrame, col: str,
                     wall_before_ms: float) -> float | None:
    b, a = before[col].median(), after[col].median()
    if not (b == b and a == a and wall_before_ms > 0):
        return None
    return float(100.0 * (a - b) / wall_before_ms)


def _change(nights: pd.DataFrame, use: pd.DataFrame, before: Segment, after: Segment, kind: str,
            open_: bool, noise: float) -> Change:
    """A Change from the level before and the new level (or excursion), both as positions in
    `use` (the series' usable nights); `nights` is every night of the series."""
    b, a = use.iloc[before.nights], use.iloc[after.nights]
    mb, ma = float(b["median_ms"].median()), float(a["median_ms"].median())
    first, last_before = a.iloc[0], b.iloc[-1]
    between = nights[(nights["date"] > last_before["date"])
                     & (nights["date"] <= a.iloc[-1]["date"])]
    key = use.iloc[0]
    return Change(
        workload=key["workload"], variant=key["variant"], backend=key["backend"],
        device=key["device"], kind=kind, first_date=first["date"],
        git_before=last_before["git_sha"], git_after=first["git_sha"],
        median_before_ms=mb, median_after_ms=ma, change_pct=100.0 * (ma / mb - 1.0),
        nights_held=len(a), gpu_change_pct=_part_change_pct(b, a, "gpu_busy_ms_per_iter", mb),
        host_gap_change_pct=_part_change_pct(b, a, "host_gap_ms", mb), open=open_,
        last_date_before=last_before["date"], latest_date=nights["date"].iloc[-1],
        nights_before=len(b), nights_excluded=int((~between["usable"]).sum()),
        noise_pct=100.0 * noise)


def series_changes(nights: pd.DataFrame,
                   cfg: RegressionConfig = RegressionConfig()) -> list[Change]:
    """The changes of one series (its night_series rows, in night order)."""
    nights = nights.reset_index(drop=True)
    use = nights[nights["usable"]].reset_index(drop=True)
    if len(use) < 2:
        return []
    y = np.log(use["median_ms"].to_numpy(dtype=float))
    f = fit(y, measured_noise(use["noise_cv"].to_numpy(dtype=float),
                              use["processes"].to_numpy(dtype=float)), cfg)
    levels = [s for s in f.segments if s.kind == "level"]
    changes = []
    for before, after in zip(levels, levels[1:]):
        effect = math.expm1(after.median - before.median)
        changes.append(_change(nights, use, before, after,
                               REGRESSION if effect > 0 else IMPROVEMENT,
                               after is levels[-1], f.noise))
    for s in f.segments:
        ref = _reference(f, s)
        if s.kind != "excursion" or ref.nights[0] >= s.nights[0]:
            continue            # a level, or an excursion with no level before it
        before = [i for i in ref.nights if i < s.nights[0]]
        if abs(math.expm1(s.median - float(np.median(y[before])))) >= f.threshold:
            changes.append(_change(nights, use, Segment("level", before), s, SUSPICIOUS,
                                   s.nights[-1] == len(use) - 1, f.noise))
    return changes


ORDER = {REGRESSION: 0, SUSPICIOUS: 1, IMPROVEMENT: 2}


def detect(history: pd.DataFrame, cfg: RegressionConfig = RegressionConfig(),
           since: str | None = None, nights: pd.DataFrame | None = None) -> list[Change]:
    """Every change of every series (open ones first, then regressions, suspicious nights,
    improvements), those that began on or after `since` (YYYY-MM-DD) where given; the nights
    before `since` still make the baselines. `nights`: night_series(history), where the caller
    has it already."""
    since = parse_date(since) if since is not None else None
    if history.empty:
        return []
    if nights is None:
        nights = night_series(history)
    changes: list[Change] = []
    for _, g in nights.groupby(list(SERIES), sort=True):
        changes += series_changes(g, cfg)
    if since:
        changes = [c for c in changes if c.first_date >= since]
    return sorted(changes, key=lambda c: (not c.open, ORDER[c.kind], c.workload, c.variant,
                                          c.backend, c.device, c.first_date))


def open_regressions(changes: list[Change]) -> list[Change]:
    return [c for c in changes if c.kind == REGRESSION and c.open]


def not_judged(nights: pd.DataFrame) -> pd.DataFrame:
    """Series whose latest night (of their night_series rows) may not decide a verdict (failed,
    flagged): their latest night and why, so that a flagged slow night is seen, not silently
    dropped."""
    latest = nights.groupby(list(SERIES), sort=True).tail(1)
    return latest[~latest["usable"]][[*SERIES, "date", "median_ms", "excluded", "git_sha"]]


# --------------------------------------------------------------------------- output

def method_missing(method: str) -> str | None:
    """Why a change-point method cannot run here (its package is absent), else None."""
    import importlib.util
    module, package = {"ruptures": ("ruptures", "ruptures"), "otava": ("otava", "apache-otava"),
                       "e_divisive": ("signal_processing_algorithms",
                                      "signal-processing-algorithms")}[method]
    if importlib.util.find_spec(module) is None:
        return (f"--method {method}: {package} is not installed (`pip install --no-deps "
                f"{package}`: its pins conflict with this project's numpy, see docs/DESIGN.md)")
    return None


def to_json(changes: list[Change]) -> str:
    """A JSON list of the changes (NaN as null)."""
    import json

    def clean(value: Any) -> Any:
        return None if isinstance(value, float) and not math.isfinite(value) else value
    return json.dumps([{k: clean(v) for k, v in c.as_dict().items()} for c in changes], indent=1)


def series_name(c: Any) -> str:
    return f"{c.workload} [{c.variant}] {c.backend}" + (f" @ {c.device}" if c.device else "")


def _commits(before: str | None, after: str | None) -> str:
    return f"{(before or '?')[:8]}..{(after or '?')[:8]}"


def render_text(changes: list[Change], nights: pd.DataFrame, store: Any,
                cfg: RegressionConfig = RegressionConfig(), since: str | None = None) -> str:
    """Markdown: the headline, the changes (open ones first), the series whose latest night
    was not judged; `nights`: the store's night_series."""
    from harness.report import tables as T
    dates = sorted(nights["date"].unique())
    n_series = len(nights.groupby(list(SERIES)))
    opened = open_regressions(changes)
    lines = ["# Regressions across nights\n",
             f"`{store}`: {n_series} series over {len(dates)} night(s)"
             + (f", {dates[0]} to {dates[-1]}" if dates else "")
             + (f"; changes that began on or after {since}" if since else "") + ".  ",
             f"A change: a new level of the nightly median ({cfg.method} change points on "
             f"log(median), each a t-test at alpha {cfg.alpha:g} against the series' own noise "
             f"between nights), held {cfg.min_nights}+ nights and {100 * cfg.min_effect:g}%+ "
             "from the level before; one night away from its level beyond that is suspicious. "
             f"Nights that failed or are flagged {', '.join(UNRELIABLE_FLAGS)} decide nothing "
             "(`not judged`).\n",
             (f"**{len(opened)} open regression(s)**: "
              + "; ".join(f"{series_name(c)} +{c.change_pct:.1f}% since {c.first_date} "
                          f"({_commits(c.git_before, c.git_after)})" for c in opened) + "\n")
             if opened else "No open regression.\n"]

    def pct(value: float | None) -> str:
        return f"{value:+.1f}" if value is not None and value == value else ""
    view = pd.DataFrame({
        "series": [series_name(c) for c in changes],
        "kind": [f"**{c.kind}**" if c.kind == REGRESSION and c.open else c.kind
                 for c in changes],
        "open": ["yes" if c.open else "" for c in changes],
        "first night": [c.first_date for c in changes],
        "commits": [_commits(c.git_before, c.git_after) for c in changes],
        "before ms": [T.fmt_num(c.median_before_ms, 4) for c in changes],
        "after ms": [T.fmt_num(c.median_after_ms, 4) for c in changes],
        "change %": [pct(c.change_pct) for c in changes],
        "nights held": [str(c.nights_held) for c in changes],
        "GPU Δ %": [pct(c.gpu_change_pct) for c in changes],
        "host gap Δ %": [pct(c.host_gap_change_pct) for c in changes],
        "noise %": [f"{c.noise_pct:.1f}" for c in changes],
        "not judged": [str(c.nights_excluded) if c.nights_excluded else "" for c in changes],
    })
    keep = [col for col in view.columns if col in ("series", "kind", "first night", "commits")
            or (view[col] != "").any()]
    lines += ["## Changes\n", T.md_table(view[keep]) if len(view) else "_None._\n",
              "commits: the last night at the level before .. the first night after; GPU Δ % "
              "and host gap Δ %: the change of the GPU busy time and of the host gap, each in % "
              "of the wall median before (they add up to the wall change); noise %: the "
              "series' spread between nights; not judged: nights left out (failed, flagged) "
              "from the level before on.\n"]
    latest = not_judged(nights)
    if len(latest):
        lines += ["## Latest night not judged\n",
                  T.md_table(pd.DataFrame({
                      "series": [series_name(r) for r in latest.itertuples()],
                      "night": latest["date"].to_numpy(),
                      "median ms": [T.fmt_num(v, 4) for v in latest["median_ms"]],
                      "why": latest["excluded"].to_numpy(),
                      "commit": [(g or "?")[:8] for g in latest["git_sha"]]}))]
    return "\n".join(lines)
