"""The tables a findings doc prints (docs/templates/README.md): every cell of a flagged run
carries its flags (describe.flagged_text), and a pair table bolds only the side the pair's verdict
calls faster."""
from __future__ import annotations

from typing import Any, Iterable

from harness.describe import flagged_text
from harness.report.docs.data import Pair, Run, SweepView, fixed, n
from harness.report.load import MEMORY_KINDS, finite
from harness.report.pairs import PAIRS, SIDES
from harness.report.tables import md_escape


def _md(rows: list[list[str]], head: list[str], align: str = "") -> str:
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join((align[i] if i < len(align) else "-") == "r" and "---:" or "---"
                            for i in range(len(head))) + "|"]
    lines += ["| " + " | ".join(md_escape(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def pair_cell(run: Run | None, pairs: list[Pair]) -> str:
    """wall (GPU) [process medians min-max], the run's flags after it, bold where a pair's
    verdict calls it the faster side."""
    if run is None:
        return "not run"
    text = f"{n(run.wall, 4)} ({n(run.gpu, 3)})"
    if run.procs > 1:
        text += f" [{n(run.procs_min, 4)}-{n(run.procs_max, 4)}]"
    if any(p.bold(run) for p in pairs):
        text = f"**{text}**"
    return flagged_text(text, run.flags)


def pair_table(sweep: SweepView, rows: list[tuple[str, dict[str, Any]]], columns: list[str]) -> str:
    """Workloads down (`rows`: (title, where)), backend labels across; each cell a run's wall
    (GPU) [process medians], its flags, and bold where the variant's pair verdict calls it
    faster."""
    out = []
    for title, where in rows:
        runs = {r.label: r for r in sweep.runs(**where)}
        pairs = []
        for pair in PAIRS:
            sides = {family: _side(runs, pair.name, family) for family in SIDES}
            if all(sides.values()):
                pairs.append(Pair(pair.name, **sides))      # its fields are the SIDES: inductor, xla
        out.append([title] + [pair_cell(runs.get(label), pairs) for label in columns])
    return _md(out, ["workload", *columns])


def _side(runs: dict[str, Run], pair: str, family: str) -> Run | None:
    found = [r for r in runs.values() if r.pair == pair and r.family == family]
    return found[0] if found else None


def generation_table(sweep: SweepView, **where: Any) -> str:
    """One row per generation run: TTFT, TPOT, ITL, tokens/s, GPU and host gap per step,
    compiles, processes and the run's flags."""
    rows = []
    for g in sweep.generation(**where):
        r = g["run"]
        rows.append([f"{r.params.get('cache')}, {int(g['batch'])}", r.label, n(g["ttft_p50_ms"], 3),
                     f"{n(g['tpot_p50_ms'], 3)} / {n(g['tpot_p99_ms'], 3)}", n(g["itl_p99_ms"], 3),
                     n(g["output_tokens_per_s"], 4), f"{n(r.gpu, 3)} / {n(r.gap, 3)}",
                     n(g["compiles"], 2), n(g["recompiles"], 2), n(r.compile_s, 2), str(r.procs),
                     ", ".join(r.flags) or "none"])
    return _md(rows, ["cache, batch", "backend", "TTFT p50 ms", "TPOT p50 / p99 ms", "ITL p99 ms",
                      "out tok/s", "GPU ms / host gap ms per step", "compiles", "recompiles",
                      "first generation s", "procs", "flags"], "llrrrrrrrrrl")


def fidelity_table(rows: list[dict[str, Any]]) -> str:
    """Every fidelity row (none left out): harness and reference medians, ratio, CV, process
    spread, GPU busy share and the verdict, with why a GPU-bound run disagrees."""
    out = []
    for r in rows:
        spread = (f"{r['processes']}: {n(r['process_min_ms'], 4)}-{n(r['process_max_ms'], 4)}"
                  if r["processes"] > 1 else "1")
        verdict_text = r["verdict"] + (f" ({r['why']})" if r["why"] else "")
        out.append([f"{r['run']}", r["backend"], n(r["harness_ms"], 4),
                    f"{n(r['reference_ms'], 4)} {r['reference']}", fixed(r["ratio"], 3),
                    n(r["cv_pct"], 3), spread, n(r["gpu_busy_pct"], 2), verdict_text])
    return _md(out, ["run", "backend", "harness ms", "reference ms", "ratio", "CV %",
                     "processes: min-max ms", "GPU busy %", "verdict"], "llrlrrlrl")


def category_table(runs: list[Run], categories: list[str], by: str = "op",
                   names: list[str] | None = None) -> str:
    """ms per iteration by category (rows) and run (columns, headed by label and flags), with
    the kernel total."""
    head = ["category (ms)", *[flagged_text(name, r.flags) for name, r in
                               zip(names or [r.label for r in runs], runs)]]
    rows = [[c, *[n(r.category(c, by), 3) for r in runs]] for c in categories]
    rows.append(["All", *[n(r.kernel, 3) for r in runs]])
    return _md(rows, head, "l" + "r" * len(runs))


def memory_table(runs: list[Run], kinds: Iterable[str] = MEMORY_KINDS,
                 names: list[str] | None = None) -> str:
    head = ["kind (MiB)", *[flagged_text(name, r.flags) for name, r in
                            zip(names or [r.label for r in runs], runs)]]
    rows = [[k, *[n(r.memory(k), 4) for r in runs]] for k in kinds
            if any(finite(r.memory(k)) for r in runs)]
    return _md(rows, head, "l" + "r" * len(runs))


