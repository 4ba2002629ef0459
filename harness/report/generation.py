"""The report's view of generations (`workload.phase=generate`, harness/worker/generate.py): a TTFT /
TPOT table, per-token latency against position, and the findings a generation calls for.

Tables (each written as CSV and Parquet beside report.md):
- `generation`: one row per run with a `generation` section: TTFT, TPOT and ITL percentiles,
  tokens per second, compiles and recompiles over the first generation, the greedy-token check;
- `generation_positions`: one row per (run, token): its position and its median latency.
Findings: a compiler that compiles once per sequence length; a per-token latency that grows with
the position more than the attention work does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.report.finding import Finding
from harness.report.load import KEY_COLUMNS, Sweep
from harness.report.tables import md_table, order_backends

TABLE_COLUMNS = KEY_COLUMNS + [
    "status", "batch", "prompt_len", "new_tokens", "ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p90_ms",
    "tpot_p99_ms", "itl_p50_ms", "itl_p99_ms", "output_tokens_per_s", "decode_tokens_per_s", "compiles",
    "recompiles", "compile_steps_s", "first_generation_s", "check_tokens", "matched_tokens", "matched_tokens_median",
    "diverged_sequences", "diverged_at", "logits_sqnr_db", "processes", "flags"]
POSITION_COLUMNS = KEY_COLUMNS + ["token", "position", "latency_ms"]


@dataclass(frozen=True)
class GenerationFindingsConfig:
    # latency growth: the fitted per-token latency grows over the generation by this share of its
    # start beyond what the attention work explains, and by more than k x the fit's residual std
    growth_min_share: float = 0.10
    growth_k_noise: float = 3.0


def _runs(sweep: Sweep):
    """(summary row, record) of every run that has a generation section."""
    by_dir = {r.get("_run_dir", ""): r for r in sweep.records}
    for _, row in sweep.summary.iterrows():
        record = by_dir.get(row["run_dir"], {})
        if record.get("generation"):
            yield row, record


def generation_table(sweep: Sweep) -> pd.DataFrame:
    rows = []
    for row, record in _runs(sweep):
        g, comp, num = record["generation"], record.get("compile") or {}, record.get("numerics") or {}
        events = comp.get("generation_compiles")
        rows.append({
            **{k: row[k] for k in KEY_COLUMNS}, "status": row["status"],
            "batch": g["batch"], "prompt_len": g["prompt_len"], "new_tokens": g["new_tokens"],
            "ttft_p50_ms": g["ttft_ms"]["p50"], "ttft_p99_ms": g["ttft_ms"]["p99"],
            "tpot_p50_ms": g["tpot_ms"]["p50"], "tpot_p90_ms": g["tpot_ms"]["p90"],
            "tpot_p99_ms": g["tpot_ms"]["p99"], "itl_p50_ms": g["itl_ms"]["p50"], "itl_p99_ms": g["itl_ms"]["p99"],
            "output_tokens_per_s": g["output_tokens_per_s"], "decode_tokens_per_s": g["decode_tokens_per_s"],
            "compiles": len(events) if events is not None else None, "recompiles": comp.get("recompiles"),
            "compile_steps_s": sum(e["step_s"] for e in events) if events else None,
            "first_generation_s": record.get("compile_s"),
            "check_tokens": num.get("check_tokens"), "matched_tokens": num.get("matched_tokens"),
            "matched_tokens_median": (float(np.median(num["matched_tokens_per_sequence"]))
                                      if num.get("matched_tokens_per_sequence") else None),
            "diverged_sequences": num.get("diverged_sequences"), "diverged_at": num.get("diverged_at"),
            "logits_sqnr_db": num.get("min_sqnr_db"),
            "processes": row["processes"], "flags": row["flags"],
        })
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    for col in TABLE_COLUMNS[len(KEY_COLUMNS) + 1:-1]:
        table[col] = pd.to_numeric(table[col], errors="coerce")
    return table.sort_values(["workload", "variant", "backend"], kind="stable").reset_index(drop=True)


def positions_long(sweep: Sweep) -> pd.DataFrame:
    """Median latency of each token over the run's generations, at its position (token 0 is the
    prefill: TTFT, at the prompt's last position)."""
    rows = []
    for row, record in _runs(sweep):
        g = record["generation"]
        for token, latency in enumerate(g["per_token_median_ms"]):
            rows.append({**{k: row[k] for k in KEY_COLUMNS}, "token": token,
                         "position": g["first_position"] + token, "latency_ms": latency})
    return pd.DataFrame(rows, columns=POSITION_COLUMNS)


def latency_by_position(positions: pd.DataFrame, out: Path) -> Path | None:
    """One panel per workload variant, a line per backend: each decode step's median latency at
    its position (TTFT, a different scale, is in the table)."""
    from harness.report.plots import _panels, _save, backend_colours
    decode = positions[positions["token"] > 0]
    if decode.empty:
        return None
    groups = list(decode.groupby(["workload", "variant"], sort=False))
    fig, axes = _panels(len(groups))
    colours = backend_colours(decode["backend"])    # a backend keeps its colour in every panel
    for ax, ((workload, variant), g) in zip(axes, groups):
        for backend in order_backends(g["backend"].unique()):
            line = g[g["backend"] == backend].sort_values("position")
            ax.plot(line["position"], line["latency_ms"], label=backend, linewidth=1.2,
                    color=colours[backend])
        ax.set_title(f"{workload} [{variant}]", fontsize=8)
        ax.set_xlabel("position")
        ax.set_ylabel("per-token latency (ms)")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    fig.suptitle("Decode step latency by position (median over generations)")
    return _save(fig, out / "generation_latency_by_position.png")


def render_markdown(table: pd.DataFrame, plot: Path | None, out: Path) -> str:
    """The report's generation section; empty when the sweep has no generation."""
    if table.empty:
        return ""
    shown = {"variant": "variant", "backend": "backend", "batch": "batch", "prompt_len": "prompt",
             "ttft_p50_ms": "TTFT p50 ms", "ttft_p99_ms": "TTFT p99 ms", "tpot_p50_ms": "TPOT p50 ms",
             "tpot_p90_ms": "TPOT p90 ms", "tpot_p99_ms": "TPOT p99 ms", "itl_p99_ms": "ITL p99 ms",
             "output_tokens_per_s": "out tok/s", "decode_tokens_per_s": "decode tok/s", "compiles": "compiles",
             "recompiles": "recompiles", "compile_steps_s": "compiling steps s",
             "matched_tokens_median": "tokens = eager", "diverged_sequences": "seqs flipped",
             "logits_sqnr_db": "logits dB", "processes": "procs", "flags": "flags"}
    view = table[list(shown)].rename(columns=shown)
    lines = ["## Generation: TTFT, TPOT and compiles along the sequence\n", md_table(view)]
    lines.append("TTFT: the prefill step (prompt in, first token out); TPOT: per generation, "
                 "(total - TTFT) / (new_tokens - 1); ITL: each decode step; percentiles over the "
                 "generations of all processes (vLLM's definitions); out tok/s: batch x new_tokens / median "
                 "end-to-end time. compiles: steps of the first "
                 "generation during which the backend compiled (recompiles: beyond the first prefill "
                 "and decode compile; a growing cache compiles per length where a compiler does); "
                 "tokens = eager: of the first check_tokens greedy tokens, those equal to eager's before "
                 "the sequence's first flip (median over sequences); seqs flipped: sequences with a flip; "
                 "logits dB: the logits' SQNR against eager wherever the histories agree (a flip between "
                 "tied bf16 logits is expected; the run fails below the workload's threshold); procs: the "
                 "fresh processes the percentiles pool; flags: the run's (the Flags section says why).\n")
    if plot is not None:
        lines.append(f"![per-token latency by position]({plot.relative_to(out).as_posix()})\n")
    return "\n".join(lines)


# -------------------------------------------------------------------------------- findings

def _finding(kind: str, row: pd.Series, magnitude: float, unit: str, score: float, evidence: str,
             sentence: str) -> Finding:
    return Finding(kind, row["workload"], row["variant"], (row["backend"],), magnitude, unit, score, evidence, sentence)


def findings(sweep: Sweep, cfg: GenerationFindingsConfig = GenerationFindingsConfig()) -> list[Finding]:
    """One per run that recompiles along the sequence, one per run whose per-token latency grows
    with the position beyond the attention work."""
    out = []
    for row, record in _runs(sweep):
        if row["status"] != "ok":
            continue
        out += _recompiles(row, record)
        growth = _latency_growth(row, record, cfg)
        if growth:
            out.append(growth)
    return out


def _recompiles(row: pd.Series, record: dict[str, Any]) -> list[Finding]:
    comp = record.get("compile") or {}
    recompiles, events = comp.get("recompiles"), comp.get("generation_compiles") or []
    if not recompiles:
        return []
    g = record["generation"]
    seconds = sum(e["step_s"] for e in events)
    positions = [e["position"] for e in events if e["step"] == "decode"]
    growing = (record.get("params") or {}).get("cache") == "dynamic"
    why = ("each new sequence length is a new program" if growing else
           "unexpected: the cache is preallocated and the position is a tensor, every step has the same shapes")
    return [_finding(
        "recompiles", row, recompiles, "compiles", min(1.0, recompiles / max(g["new_tokens"] - 1, 1)),
        f"{len(events)} compiling steps at positions {positions[:6]}{' ...' if len(positions) > 6 else ''}; "
        f"{seconds:.3g} s in them; first generation {record.get('compile_s') or 0:.3g} s",
        f"{row['backend']} recompiled {recompiles} time(s) over a {g['new_tokens']}-token generation on "
        f"{row['workload']} [{row['variant']}] ({why}), {seconds:.3g} s in compiling steps.")]


def expected_growth_share(params: dict[str, Any], positions: int, min_bytes_per_step: float | None) -> float:
    """How much a decode step's work grows over `positions` positions, as a share of the step's:
    a preallocated cache reads every slot at every step (0); a growing one reads one more key and
    value per position and layer, against the step's fewest bytes (weights, cache, logits)."""
    if params.get("cache") != "dynamic" or not min_bytes_per_step:
        return 0.0
    elem = 4 if params.get("dtype") == "float32" else 2
    per_position = params["batch"] * 2 * params["num_layers"] * params["num_kv_heads"] * params["head_dim"] * elem
    return per_position * positions / min_bytes_per_step


def _latency_growth(row: pd.Series, record: dict[str, Any], cfg: GenerationFindingsConfig) -> Finding | None:
    g = record["generation"]
    latency = np.asarray(g["per_token_median_ms"][1:], dtype=float)
    if len(latency) < 4:
        return None
    positions = np.arange(len(latency), dtype=float)
    slope, start = np.polyfit(positions, latency, 1)
    noise = float(np.std(latency - (start + slope * positions)))
    span = positions[-1]
    growth = slope * span
    basis = (record.get("throughput") or {}).get("min_bytes_per_iter")
    expected = start * expected_growth_share(record.get("params") or {}, int(span), basis)
    excess = growth - expected
    if start <= 0 or excess < max(cfg.growth_min_share * start, cfg.growth_k_noise * noise):
        return None
    first = g["first_position"] + 1
    return _finding(
        "latency_growth", row, excess / start, "x of start", min(1.0, excess / start),
        f"fitted {start:.4g} ms at position {first} -> {start + growth:.4g} ms at {first + int(span)} "
        f"(residual std {noise:.3g} ms); the attention work explains {expected:.3g} ms of the growth",
        f"On {row['workload']} [{row['variant']}], {row['backend']}'s per-token latency grows "
        f"{100 * growth / start:.0f}% over {int(span)} positions, {100 * excess / start:.0f}% more than its "
        f"attention work does (hypothesis: work that scales with the position beyond reading the cache).")
