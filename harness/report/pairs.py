"""The two pairs a reader compares Inductor and XLA by (docs/DESIGN.md, "What is fair").

XLA's default already runs CUDA graphs (command buffers) with GEMM autotuning; Inductor gets
both from `max-autotune`. So the headline pair is each compiler at its best, and the control
pair is each without CUDA graphs. A pair is shown for a workload variant only where both of
its sides ran ok; the report says which pair is which, and which variants lack a side.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from harness import clocks
from harness.describe import flagged_text, noise_codes
from harness.report.load import noise_floor
from harness.report.pair_ratio import interval_text, ratio_interval
from harness.report.tables import fmt_num, md_escape, md_table
from harness.report.verdict import DEFAULT_K, decide


@dataclass(frozen=True)
class Pair:
    name: str           # a backend's declared pair (harness.orchestrator.plugins.Traits.pair)
    inductor: str       # the label its sides run under in the built-in backends, for the prose
    xla: str
    meaning: str


PAIRS = (
    Pair("headline", "inductor:max-autotune", "xla",
         "each compiler at its best: CUDA graphs and GEMM autotuning on both sides"),
    Pair("control", "inductor", "xla:no-cmdbuf",
         "each compiler without CUDA graphs: Inductor's default mode, XLA with command "
         "buffers off"),
)
SIDES = ("inductor", "xla")     # a side of a pair is the run's declared family


def _sides(group: pd.DataFrame, pair: str) -> dict[str, pd.DataFrame]:
    """The runs of a workload variant that are the sides of `pair`, by their declared traits."""
    mine = group[group["pair"] == pair]
    return {side: mine[mine["family"] == side] for side in SIDES}

SIDE_COLUMNS = {"median_ms": "ms", "cv": "cv", "between_cv": "between_cv",
                "gpu_busy_ms_per_iter": "gpu_ms", "host_gap_ms": "host_gap_ms",
                "idle_share": "idle_share", "flags": "flags", "run_id": "run_id"}
COLUMNS = (["pair", "meaning", "sweep", "workload", "variant", "inductor", "xla",
            "inductor_over_xla", "verdict", "verdict_short", "faster"]
           + [f"{side}_{name}" for side in ("inductor", "xla")
              for name in [*SIDE_COLUMNS.values(), "noise"]]
           # Inductor / XLA from the process medians with its 95% interval (pair_ratio.py): of
           # adjacent couples where the sides were interleaved, else of the sides as samples
           + ["ratio", "ratio_low", "ratio_high", "ratio_method", "ratio_n", "clocks"])


def pair_table(summary: pd.DataFrame, k: float = DEFAULT_K) -> pd.DataFrame:
    """One row per (pair, workload variant) where both sides ran ok: wall time of each side,
    `inductor_over_xla` (> 1: XLA is faster), GPU time and host gap of each, and each side's
    noise (CV: between processes where several ran, else within one), and the verdict
    (harness/report/verdict.py, a ratio beyond `k` x CV) with the faster side's label. Runs
    pair within their sweep only; where a side has several runs in a variant of one sweep, its
    first run is taken."""
    ok = summary[summary["status"] == "ok"]
    if "sweep" not in ok.columns:
        ok = ok.assign(sweep="")
    rows = []
    # split once for both pairs
    groups = list(ok.groupby(["sweep", "workload", "variant"], sort=False))
    for pair in PAIRS:
        for (sweep, w, v), g in groups:
            sides = _sides(g, pair.name)
            if any(s.empty for s in sides.values()):
                continue
            first = {side: runs.iloc[0] for side, runs in sides.items()}
            row = {"pair": pair.name, "meaning": pair.meaning, "sweep": sweep, "workload": w,
                   "variant": v, "inductor": first["inductor"]["backend"],
                   "xla": first["xla"]["backend"]}
            for side, run in first.items():
                row.update({f"{side}_{name}": run[col] for col, name in SIDE_COLUMNS.items()})
                row[f"{side}_noise"] = noise_floor(run)[0]   # between processes, else within
            row["inductor_over_xla"] = row["inductor_ms"] / row["xla_ms"]
            row.update(ratio_interval(first["inductor"], first["xla"]))
            row["clocks"] = clocks.different_clocks(first["inductor"], first["xla"], ("Inductor", "XLA"))
            said = decide(row["inductor"], first["inductor"], row["xla"], first["xla"], k=k)
            row["verdict"], row["verdict_short"], row["faster"] = said.text, said.short, said.faster
            rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def incomplete(summary: pd.DataFrame, listed: int = 3) -> list[str]:
    """Per pair and missing side, the workload variants where the other side ran ok."""
    ok = summary[summary["status"] == "ok"]
    keys = [c for c in ("sweep", "workload", "variant") if c in ok.columns]
    several = "sweep" in ok.columns and ok["sweep"].nunique() > 1
    # the columns _sides reads, split once: splitting all of the summary's per pair cost more
    groups = list(ok[[*keys, "pair", "family"]].groupby(keys, sort=False))
    notes = []
    for pair in PAIRS:
        labels = dict(zip(SIDES, (pair.inductor, pair.xla)))
        lacking: dict[str, list[str]] = {}
        for key, g in groups:
            *sweep, w, v = key
            have = {side for side, runs in _sides(g, pair.name).items() if len(runs)}
            if len(have) == 1:
                (missing,) = set(SIDES) - have
                lacking.setdefault(missing, []).append(f"{w} [{v}]" + (f" in {sweep[0]}" if several else ""))
        for missing, names in lacking.items():
            (present,) = set(SIDES) - {missing}
            more = f" and {len(names) - listed} more" if len(names) > listed else ""
            notes.append(f"{pair.name} pair incomplete: no ok {labels[missing]} run beside "
                         f"{labels[present]} on {len(names)} "
                         f"variant(s): {', '.join(names[:listed])}{more}")
    return notes


def _side(ms: float, cv: float, between_cv: float) -> str:
    spread = f"CV {fmt_num(100 * cv, 2)}%" if cv == cv else ""
    if between_cv == between_cv:
        spread += f", between procs {fmt_num(100 * between_cv, 2)}%"
    return f"{fmt_num(ms, 4)} ({spread})" if spread else fmt_num(ms, 4)


def pairs_markdown(pairs: pd.DataFrame, summary: pd.DataFrame) -> str:
    """The pairs table; every figure of a flagged side carries its flags (describe.flagged_text),
    the ratio of the medians the noise flags of both, and the verdict column says what it means."""
    lines = ["".join(f"- **{p.name}**: {p.inductor} vs {p.xla}, {p.meaning}.\n" for p in PAIRS)]
    if len(pairs):
        def cells(side: str, values) -> list[str]:
            return [flagged_text(v if isinstance(v, str) else fmt_num(v), f)
                    for v, f in zip(values, pairs[f"{side}_flags"])]
        view = pd.DataFrame({
            "pair": pairs["pair"], "workload": pairs["workload"], "variant": pairs["variant"],
            "Inductor": pairs["inductor"], "XLA": pairs["xla"],
            "Inductor / XLA wall": [flagged_text(f"{r:.3f}", noise_codes(f"{a},{b}")) for r, a, b in
                                    zip(pairs["inductor_over_xla"], pairs["inductor_flags"],
                                        pairs["xla_flags"])],
            "verdict": pairs["verdict_short"],
            "ratio [95% interval]": [interval_text(r) for r in pairs.to_dict("records")],
            "Inductor wall ms": cells("inductor", [_side(*x) for x in zip(
                pairs["inductor_ms"], pairs["inductor_cv"], pairs["inductor_between_cv"])]),
            "XLA wall ms": cells("xla", [_side(*x) for x in zip(pairs["xla_ms"], pairs["xla_cv"],
                                                                pairs["xla_between_cv"])]),
            "Inductor GPU ms": cells("inductor", pairs["inductor_gpu_ms"]),
            "XLA GPU ms": cells("xla", pairs["xla_gpu_ms"]),
            "Inductor host gap ms": cells("inductor", pairs["inductor_host_gap_ms"]),
            "XLA host gap ms": cells("xla", pairs["xla_host_gap_ms"]),
            "clocks": pairs["clocks"],
        })
        view = view[[c for c in view.columns if c != "clocks" or view[c].astype(bool).any()]]
        if pairs["sweep"].nunique() > 1:
            view.insert(0, "sweep", pairs["sweep"])
        lines += [md_table(view), "Inductor / XLA wall > 1: XLA's median is lower. GPU ms is "
                  "what each compiler's kernels cost per iteration; host gap ms the GPU's idle "
                  "time between them. The ratio with its 95% interval is of the process medians: the geometric "
                  "mean of adjacent couples (Inductor_k / XLA_k) where the sides' processes were "
                  "interleaved, else of each side's processes (Welch). `!code`: the run's flags (a ratio with a noise flag beside "
                  "it is no result: the verdict says what the runs' ranges allow).\n"]
    else:
        lines.append("_No workload variant ran both sides of a pair._\n")
    lines += [f"_{md_escape(note)}._\n" for note in incomplete(summary)]
    return "\n".join(lines)
