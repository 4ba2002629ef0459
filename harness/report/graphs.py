"""CUDA-graph evidence per run: did a graph mode replay its graphs, and if not, why not.

Inductor's graph modes (reduce-overhead, max-autotune) record `compile.cudagraphs`: graphs
recorded and replayed, cudagraph skips with their reasons, graph partitions and how many of
them are cudagraphable. XLA records `compile.command_buffers`: whether command buffers were
on, for which op types, and whether the profiling pass kept them (else the kernel table is of
the op-by-op program). Schema-1 records carry neither: their rows say so.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from harness.describe import graph_mode
from harness.report.load import KEY_COLUMNS, Sweep
from harness.report.tables import md_escape, md_table

COLUMNS = KEY_COLUMNS + [
    "status", "mechanism", "graph_mode", "evidence", "graphs_recorded", "graph_replays", "skips",
    "partitions", "cudagraphable_partitions", "command_buffers_enabled", "command_buffer_types",
    "command_buffers_why", "during_profiling", "trace"]


def graphs_row(record: dict[str, Any], keys: dict[str, Any]) -> dict[str, Any] | None:
    """The graph evidence of a graph-mode run, or of any run that states some (every XLA run
    on schema 2: its command-buffer settings); None for the others."""
    comp = record.get("compile") or {}
    graphs, buffers = comp.get("cudagraphs") or {}, comp.get("command_buffers") or {}
    meant = graph_mode(record)
    if meant is None and not graphs and not buffers and record.get("backend") != "xla":
        return None
    how = meant or ("cudagraphs" if graphs else "command_buffers")
    types = buffers.get("types")
    return {**keys, "status": record.get("status"), "mechanism": how,
            "graph_mode": meant is not None,
            "evidence": bool(graphs if how == "cudagraphs" else buffers),
            "graphs_recorded": graphs.get("graphs_recorded"),
            "graph_replays": graphs.get("graph_replays"),
            "skips": "; ".join(map(str, graphs.get("skips") or [])),
            "partitions": graphs.get("partitions"),
            "cudagraphable_partitions": graphs.get("cudagraphable_partitions"),
            "command_buffers_enabled": buffers.get("enabled"),
            "command_buffer_types": ",".join(map(str, types)) if isinstance(types, list)
            else (types or ""),
            "command_buffers_why": buffers.get("why") or "",
            "during_profiling": buffers.get("during_profiling"),
            "trace": (record.get("gpu") or {}).get("trace") or ""}


def graphs_table(sweep: Sweep) -> pd.DataFrame:
    """One row per run that is a graph mode or has graph evidence (every XLA run: its
    command-buffer settings)."""
    by_dir = {r.get("_run_dir", ""): r for r in sweep.records}
    rows = []
    for _, row in sweep.summary.iterrows():
        got = graphs_row(by_dir.get(row["run_dir"], {}), {k: row[k] for k in KEY_COLUMNS})
        if got is not None:
            rows.append(got)
    table = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("graphs_recorded", "graph_replays", "partitions", "cudagraphable_partitions"):
        table[col] = pd.to_numeric(table[col], errors="coerce")
    for col in ("graph_mode", "evidence", "command_buffers_enabled", "during_profiling"):
        table[col] = table[col].astype("boolean")
    return table


def _count(value: Any) -> str:
    return "" if value is None or value is pd.NA or value != value else f"{value:.0f}"


def known(value: Any) -> bool | None:
    """A yes/no of the evidence, None where the record does not say (pd.NA in the table)."""
    return None if value is None or value is pd.NA else bool(value)


def describe_cudagraphs(r: Any) -> str:
    if not r.evidence:
        return "not recorded (record written before CUDA-graph evidence, schema 1)"
    text = f"{_count(r.graphs_recorded) or '?'} recorded, {_count(r.graph_replays) or '?'} replayed"
    if _count(r.partitions):
        text += f"; {_count(r.cudagraphable_partitions)} of {_count(r.partitions)} partitions " \
                "cudagraphable"
    return text + (f"; skipped: {r.skips}" if r.skips else "")


def describe_command_buffers(r: Any) -> str:
    if not r.evidence:
        return "settings not recorded (schema 1; XLA's default has command buffers on)"
    enabled, profiling = known(r.command_buffers_enabled), known(r.during_profiling)
    if enabled is None:
        return "whether on not recorded"
    if not enabled:
        return f"off ({r.command_buffers_why})" if r.command_buffers_why else "off"
    text = f"on ({r.command_buffer_types or 'types not recorded'})"
    if profiling is False:
        text += "; off while profiling: the kernel table is of the op-by-op program"
    elif profiling:
        text += "; kept while profiling"
    return text


def graphs_markdown(graphs: pd.DataFrame) -> str:
    if graphs.empty:
        return "_No graph-mode run (Inductor reduce-overhead / max-autotune, XLA)._\n"
    view = pd.DataFrame({
        "workload": graphs["workload"], "variant": graphs["variant"],
        "backend": graphs["backend"], "status": graphs["status"],
        "graphs": [describe_cudagraphs(r) if r.mechanism == "cudagraphs"
                   else describe_command_buffers(r) for r in graphs.itertuples()],
        "profiling trace": graphs["trace"].map(md_escape),
    })
    if not view["profiling trace"].astype(bool).any():
        view = view.drop(columns="profiling trace")
    return md_table(view)
