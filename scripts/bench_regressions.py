"""How often `regressions` cries wolf, and how soon it sees a real step: the figures behind
RegressionConfig's defaults and the choice of change-point library (docs/DESIGN.md).

    python scripts/bench_regressions.py              # ruptures; Otava, E-divisive where installed
    python scripts/bench_regressions.py --methods ruptures --alphas 0.002,0.005,0.01

Synthetic nights go through the real `detect` (night series, unusable nights, merge, kinds):
- noise only: `--series` series of `--nights` nights at `--cv` noise of the night's median;
  false alarm = a regression or improvement anywhere in the series (`FA`), or on any night's
  run from night 5 on, as the nightly job would have seen it (`FA any night`); suspicious
  nights are counted apart;
- a `--step` slowdown from night `--at` on: delay = nights at the new level when a run first
  reports a regression dated night `--at` +-1; `never` = not within the series.
Two noise models: `processes` (each night's median is the median of 3 fresh processes that
spread as much as the nights do: the nights' own spread knows the noise) and `nights` (tight
processes, the night itself moves: only the series knows its noise).

Otava and E-divisive pin numpy/scipy versions this project cannot take (DESIGN); to measure
them: pip install --no-deps apache-otava signal-processing-algorithms more-itertools structlog
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.report.regressions import (REGRESSION, SUSPICIOUS, RegressionConfig,  # noqa: E402
                                        _median_sd, detect)

MODULES = {"ruptures": "ruptures", "otava": "otava", "e_divisive": "signal_processing_algorithms"}
DEFAULT_ALPHAS = {"ruptures": "0.02,0.03,0.05,0.1", "otava": "0.001,0.002,0.005",
                  "e_divisive": "0.01,0.02,0.05"}
PROCESSES = 3
SD_MEDIAN = _median_sd(PROCESSES)     # sd of the median of PROCESSES standard normals


def nights(rng: np.random.Generator, n_series: int, n_nights: int, cv: float, model: str,
           step: float = 0.0, at: int = 8) -> pd.DataFrame:
    """History rows: `n_series` series x `n_nights` nights, each night its own git sha."""
    level = np.zeros(n_nights)
    level[at - 1:] = math.log1p(step)
    if model == "processes":
        procs = level[None, :, None] + (cv / SD_MEDIAN) * rng.standard_normal(
            (n_series, n_nights, PROCESSES))
    else:
        procs = (level[None, :, None] + cv * rng.standard_normal((n_series, n_nights, 1))
                 + 0.002 * rng.standard_normal((n_series, n_nights, PROCESSES)))
    ms = np.exp(procs)
    medians = np.median(ms, axis=2)
    between_cv = ms.std(axis=2, ddof=1) / ms.mean(axis=2)
    s, d = np.meshgrid(np.arange(n_series), np.arange(n_nights), indexing="ij")
    return pd.DataFrame({
        "workload": "synthetic", "variant": [f"s{i}" for i in s.ravel()], "backend": "b",
        "device": "cpu", "date": [f"2026-01-{j + 1:02d}" for j in d.ravel()],
        "status": "ok", "median_ms": medians.ravel(), "between_cv": between_cv.ravel(),
        "processes": float(PROCESSES), "flags": "",
        "git_sha": [f"{j + 1:040x}" for j in d.ravel()],
        "gpu_busy_ms_per_iter": math.nan, "host_gap_ms": math.nan})


def _upto(history: pd.DataFrame, n: int) -> pd.DataFrame:
    return history[history["date"] <= f"2026-01-{n:02d}"]


def false_alarms(cfg: RegressionConfig, args, model: str) -> dict[str, float]:
    h = nights(np.random.default_rng(1), args.series, args.nights, args.cv, model)
    changes = detect(h, cfg)
    alarmed = {c.variant for c in changes if c.kind != SUSPICIOUS}
    suspicious = {c.variant for c in changes if c.kind == SUSPICIOUS}
    ever = set(alarmed)
    for n in range(5, args.nights):
        ever |= {c.variant for c in detect(_upto(h, n), cfg) if c.kind != SUSPICIOUS}
    return {"FA": len(alarmed) / args.series, "FA any night": len(ever) / args.series,
            "suspicious": len(suspicious) / args.series}


def delays(cfg: RegressionConfig, args, model: str, step: float) -> np.ndarray:
    """Nights at the new level when the step is first reported (inf: never)."""
    h = nights(np.random.default_rng(2), args.series, args.nights, args.cv, model, step, args.at)
    found: dict[str, int] = {}
    for n in range(args.at, args.nights + 1):
        for c in detect(_upto(h, n), cfg):
            day = int(c.first_date[-2:])
            if c.kind == REGRESSION and abs(day - args.at) <= 1 and c.variant not in found:
                found[c.variant] = n - args.at + 1
    return np.array([found.get(f"s{i}", math.inf) for i in range(args.series)], dtype=float)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--series", type=int, default=200)
    p.add_argument("--nights", type=int, default=14)
    p.add_argument("--cv", type=float, default=0.02, help="noise of a night's median (0.02)")
    p.add_argument("--step", type=float, default=0.05, help="the slowdown to find (0.05)")
    p.add_argument("--at", type=int, default=8, help="first slow night (8)")
    p.add_argument("--methods", default="ruptures,otava,e_divisive")
    p.add_argument("--alphas", help="comma-separated, for every method (default: per method)")
    p.add_argument("--models", default="processes,nights")
    p.add_argument("--noise-k", type=float, default=RegressionConfig().noise_k,
                   help="a change must exceed this many times the series' noise")
    args = p.parse_args()
    default = RegressionConfig()
    print(f"{args.series} series x {args.nights} nights, noise {100 * args.cv:g}% of the night's "
          f"median; step +{100 * args.step:g}% from night {args.at}; min_effect "
          f"{100 * default.min_effect:g}%, min_nights {default.min_nights}, noise_k "
          f"{args.noise_k:g}; default: "
          f"{default.method} alpha {default.alpha:g}\n")
    head = (f"{'method':<11}{'alpha':>7} {'noise':<10}{'FA':>6}{'FA any night':>13}"
            f"{'suspicious':>11}{'delay median':>13}{'<=3 nights':>11}{'never':>7}"
            f"{'10% step found':>15}{'s':>5}")
    print(head)
    print("-" * len(head))
    for method in args.methods.split(","):
        if importlib.util.find_spec(MODULES[method]) is None:
            print(f"{method:<11} not installed (pip install --no-deps ...: see this script's doc)")
            continue
        for alpha in map(float, (args.alphas or DEFAULT_ALPHAS[method]).split(",")):
            cfg = RegressionConfig(method=method, alpha=alpha, noise_k=args.noise_k)
            for model in args.models.split(","):
                t0 = time.perf_counter()
                fa = false_alarms(cfg, args, model)
                d = delays(cfg, args, model, args.step)
                big = delays(cfg, args, model, 2 * args.step)
                found10 = np.mean(np.isfinite(big) & (big <= args.nights - args.at + 1))
                median = np.median(d)
                print(f"{method:<11}{alpha:>7g} {model:<10}{100 * fa['FA']:>5.1f}%"
                      f"{100 * fa['FA any night']:>12.1f}%{100 * fa['suspicious']:>10.1f}%"
                      f"{median if np.isfinite(median) else 'never':>13}"
                      f"{100 * np.mean(d <= 3):>10.0f}%{100 * np.mean(~np.isfinite(d)):>6.0f}%"
                      f"{100 * found10:>14.0f}%{time.perf_counter() - t0:>5.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
