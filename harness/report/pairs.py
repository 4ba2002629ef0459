"""The two pairs a reader compares Inductor and XLA by (docs/DESIGN.md, "What is fair").

XLA's default already runs CUDA graphs (command buffers) with GEMM autotuning; Inductor gets
both from `max-autotune`. So the headline pair is each compiler at its best, and the control
pair is each without CUDA graphs. A pair is shown for a workload variant only where both of
its sides ran ok; the report says which pair is which, and which variants lack a side.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from harness.report.load import noise_floor
from harness.report.tables import fmt_num, md_escape, md_table


@dataclass(frozen=True)
class Pair:
    name: str
    inductor: str       # backend label (harness.describe.backend_label)
    xla: str
    meaning: str


PAIRS = (
    Pair("headline", "inductor:max-autotune", "xla",
         "each compiler at its best: CUDA graphs and GEMM autotuning on both sides"),
    Pair("control", "inductor", "xla:no-cmdbuf",
         "each compiler without CUDA graphs: Inductor's default mode, XLA with command "
         "buffers off"),
)

SIDE_COLUMNS = {"median_ms": "ms", "cv": "cv", "between_cv": "between_cv",
                "gpu_busy_ms_per_iter": "gpu_ms", "host_gap_ms": "host_gap_ms",
                "idle_share": "idle_share", "flags": "flags", "run_id": "run_id"}
COLUMNS = (["pair", "meaning", "workload", "variant", "inductor", "xla", "inductor_over_xla"]
           + [f"{side}_{name}" for side in ("inductor", "xla")
              for name in [*SIDE_COLUMNS.values(), "noise"]])


def pair_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (pair, workload variant) where both sides ran ok: wall time of each side,
    `inductor_over_xla` (> 1: XLA is faster), GPU time and host gap of each, and each side's
    noise (CV: between processes where several ran, else within one). Where a label
    ran more than once in a variant (several sweeps), its first run is taken."""
    ok = summary[summary["status"] == "ok"]
    # plain dicts: a 100-run sweep made this a second of pandas row lookups
    first: dict[tuple[str, str, str], dict] = {}
    wanted = dict.fromkeys(["workload", "variant", "backend", *SIDE_COLUMNS, "processes"])
    for run in ok[[c for c in wanted if c in ok.columns]].to_dict("records"):
        first.setdefault((run["workload"], run["variant"], run["backend"]), run)
    variants = list(dict.fromkeys(zip(ok["workload"], ok["variant"])))
    rows = []
    for pair in PAIRS:
        for w, v in variants:
            sides = {side: first.get((w, v, label)) for side, label in
                     (("inductor", pair.inductor), ("xla", pair.xla))}
            if any(s is None for s in sides.values()):
                continue
            row = {"pair": pair.name, "meaning": pair.meaning, "workload": w, "variant": v,
                   "inductor": pair.inductor, "xla": pair.xla}
            for side, run in sides.items():
                row.update({f"{side}_{name}": run[col] for col, name in SIDE_COLUMNS.items()})
                row[f"{side}_noise"] = noise_floor(run)[0]   # between processes, else within
            row["inductor_over_xla"] = row["inductor_ms"] / row["xla_ms"]
            rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def incomplete(summary: pd.DataFrame, listed: int = 3) -> list[str]:
    """Per pair and missing side, the workload variants where the other side ran ok."""
    ok = summary[summary["status"] == "ok"]
    notes = []
    for pair in PAIRS:
        lacking: dict[str, list[str]] = {}
        for (w, v), g in ok.groupby(["workload", "variant"], sort=False):
            have = {pair.inductor, pair.xla} & set(g["backend"])
            if len(have) == 1:
                (missing,) = {pair.inductor, pair.xla} - have
                lacking.setdefault(missing, []).append(f"{w} [{v}]")
        for missing, names in lacking.items():
            more = f" and {len(names) - listed} more" if len(names) > listed else ""
            notes.append(f"{pair.name} pair incomplete: no ok {missing} run beside "
                         f"{({pair.inductor, pair.xla} - {missing}).pop()} on {len(names)} "
                         f"variant(s): {', '.join(names[:listed])}{more}")
    return notes


def _side(ms: float, cv: float, between_cv: float) -> str:
    spread = f"CV {fmt_num(100 * cv, 2)}%" if cv == cv else ""
    if between_cv == between_cv:
        spread += f", between procs {fmt_num(100 * between_cv, 2)}%"
    return f"{fmt_num(ms, 4)} ({spread})" if spread else fmt_num(ms, 4)


def pairs_markdown(pairs: pd.DataFrame, summary: pd.DataFrame) -> str:
    lines = ["".join(f"- **{p.name}**: {p.inductor} vs {p.xla}, {p.meaning}.\n" for p in PAIRS)]
    if len(pairs):
        view = pd.DataFrame({
            "pair": pairs["pair"], "workload": pairs["workload"], "variant": pairs["variant"],
            "Inductor": pairs["inductor"], "XLA": pairs["xla"],
            "Inductor / XLA wall": pairs["inductor_over_xla"].map(lambda r: f"{r:.3f}"),
            "Inductor wall ms": [_side(*x) for x in zip(pairs["inductor_ms"], pairs["inductor_cv"],
                                                        pairs["inductor_between_cv"])],
            "XLA wall ms": [_side(*x) for x in zip(pairs["xla_ms"], pairs["xla_cv"],
                                                   pairs["xla_between_cv"])],
            "Inductor GPU ms": pairs["inductor_gpu_ms"], "XLA GPU ms": pairs["xla_gpu_ms"],
            "Inductor host gap ms": pairs["inductor_host_gap_ms"],
            "XLA host gap ms": pairs["xla_host_gap_ms"],
            "flags": ["; ".join(f"{label}: {f}" for label, f in ((i, a), (x, b)) if f)
                      for i, x, a, b in zip(pairs["inductor"], pairs["xla"],
                                            pairs["inductor_flags"], pairs["xla_flags"])],
        })
        lines += [md_table(view), "Inductor / XLA wall > 1: XLA is faster end to end. GPU ms is "
                  "what each compiler's kernels cost per iteration; host gap ms the GPU's idle "
                  "time between them.\n"]
    else:
        lines.append("_No workload variant ran both sides of a pair._\n")
    lines += [f"_{md_escape(note)}._\n" for note in incomplete(summary)]
    return "\n".join(lines)
