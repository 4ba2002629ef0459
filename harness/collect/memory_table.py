"""One memory table for both compilers, from whatever dump files a run left.

    summary, buffers = memory_table_from_files([path, ...])
    summary = pd.concat([summary, runtime_peak_row(peak_bytes, "torch.cuda.max_memory_allocated")])

`summary` has one row per (graph, kind): columns `graph, kind, bytes, buffers, source,
note`; kinds `parameter, output, temp, workspace, constant, total` (and `runtime_peak`
from `runtime_peak_row`). `buffers` has one row per buffer, largest first: `graph, kind,
name, bytes, shape, storage, offset, peak, note, source`.

What the kinds mean on each side:

XLA (source `xla_buffer_assignment`): every allocation gets one kind (parameter, constant,
output = maybe-live-out, else temp), so these rows add up to `Total bytes used` (checked).
`temp` is XLA's preallocated temp allocation: one block that holds every intermediate at
an offset planned so that values whose live ranges do not overlap share bytes; its size is
the planned peak of the temporaries (thread-local scalars of reducers are added to it).
`workspace` is cuBLAS/cuDNN scratch: the s8/u8 tuple elements of custom-calls
(`custom-call.19.0{1}` s8[4194304]); successive calls reuse the same offsets, so its bytes
are the union of their ranges. Workspace found in a temp allocation is carved out of
`temp` (so `temp` compares with Inductor's, whose plan never holds cuBLAS scratch and the
rows still add up to the total). Workspace that XLA placed inside an output allocation
(seed 004: allocation 3, before its output value is written) costs nothing extra; it is
still reported, with a note, and then the rows exceed the total by that much.
`buffers` counts allocations, except `temp` and `workspace`, which count the values
(logical buffers) placed in them.

Inductor (source `inductor_output_code`), per compiled graph (`0_forward`, `0_backward`):
`parameter` = the graph's tensor inputs; `output` = storages allocated by the graph and
returned; `temp` = peak of live storages that are not returned; `total` = parameter +
the plan's peak (outputs included). Workspace and constants are not in the output code
(bytes NA): cuBLAS scratch comes from the caching allocator and shows in `runtime_peak`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from harness.collect import inductor_output_code as output_code
from harness.collect.inductor_plan import GraphPlan
from harness.collect import xla_buffer_assignment as xba
from harness.collect.xla_live_range import LiveRange
from harness.collect.xla_memory_report import parse_memory_report
from harness.collect.sizes import byte_count
from harness.collect.trace_io import gc_paused
from harness.errors import InputError

SUMMARY_COLUMNS = ["graph", "kind", "bytes", "buffers", "source", "note"]
BUFFER_COLUMNS = ["graph", "kind", "name", "bytes", "shape", "storage", "offset", "peak", "note", "source"]
KINDS = ["parameter", "output", "temp", "workspace", "constant", "total", "runtime_peak"]

# Split dumps name their parts `<module><sep><suffix>`; the suffix only pairs files of one
# module, what a file *is* comes from its content (`detect`).
_XLA_SUFFIXES = ("buffer-assignment-values.txt", "buffer-assignment.txt", "live-range.txt",
                 "memory-usage-report.txt")


def detect(text: str) -> str | None:
    """What a dump is, from its first lines: one of `xla_buffer_assignment`, `xla_values`,
    `xla_live_range`, `xla_memory_report`, `inductor_output_code`, or None."""
    lines = iter(line.strip() for line in text[:4096].split("\n"))
    head = next((line for line in lines if line), "")
    if head == "BufferAssignment:":
        return "xla_buffer_assignment"
    if head.startswith("HloLiveRange"):
        return "xla_live_range"
    if head.startswith("Memory Space:"):
        return "xla_memory_report"
    if head.startswith("Total bytes used:"):
        second = next((line for line in lines if line), "")
        return "xla_values" if second == "Used values:" else "xla_memory_report"
    if output_code.CALL.search(text):
        return "inductor_output_code"
    return None


def module_prefix(path: Path) -> str:
    name = path.name
    for suffix in _XLA_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)].rstrip("-.")
    return path.stem


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a dump file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}") from None


def memory_table_from_files(paths: Iterable[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse each file (kind detected from content), pair the split XLA files of one module
    (siblings on disk are picked up when only `-buffer-assignment.txt` is given), and return
    (summary, buffers). Raises InputError naming file and line on anything malformed."""
    with gc_paused():
        return _memory_table_from_files([Path(p) for p in paths])


def _memory_table_from_files(paths: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    texts = {p: _read(p) for p in paths}
    kinds = {}
    for p, text in texts.items():
        kinds[p] = detect(text)
        if kinds[p] is None:
            raise InputError(f"{p}:1: unknown format: expected an XLA buffer assignment "
                             "(BufferAssignment:, values, live range, memory-usage report) or "
                             "Inductor output code (def call(args):)")
    summaries, buffers = [], []
    xla = [p for p in paths if kinds[p].startswith("xla_")]
    for p in paths:
        if kinds[p] == "inductor_output_code":
            for plan in output_code.parse_output_code(texts[p], str(p)):
                summaries.append(inductor_summary(plan))
                buffers.append(inductor_buffers(plan))
    groups: dict[tuple[Path, str], list[Path]] = {}
    for p in xla:
        groups.setdefault((p.parent, module_prefix(p)), []).append(p)
    for (folder, prefix), members in groups.items():
        s, b = _xla_group(folder, prefix, members, texts, kinds)
        summaries.append(s)
        buffers.append(b)
    summary = pd.concat(summaries, ignore_index=True) if summaries else _empty(SUMMARY_COLUMNS)
    table = pd.concat(buffers, ignore_index=True) if buffers else _empty(BUFFER_COLUMNS)
    table = table.sort_values(["bytes"], ascending=False, kind="stable", na_position="last")
    return _typed(summary), table.reset_index(drop=True)


def runtime_peak_row(nbytes: int, source: str, graph: str = "") -> pd.DataFrame:
    """The allocator's own peak as a summary row (kind `runtime_peak`), e.g.
    `runtime_peak_row(torch.cuda.max_memory_allocated(), "torch.cuda.max_memory_allocated")`
    or `runtime_peak_row(dev.memory_stats()["peak_bytes_in_use"], "jax.memory_stats")`."""
    return _typed(pd.DataFrame([{"graph": graph, "kind": "runtime_peak", "bytes": int(nbytes),
                                 "buffers": pd.NA, "source": source, "note": ""}]))


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    df = df[SUMMARY_COLUMNS].copy()
    df["bytes"] = df["bytes"].astype("Int64")
    df["buffers"] = df["buffers"].astype("Int64")
    return df


def _row(graph: str, kind: str, nbytes, buffers, source: str, note: str = "") -> dict:
    return {"graph": graph, "kind": kind, "bytes": nbytes, "buffers": buffers, "source": source, "note": note}


# --- XLA -------------------------------------------------------------------------------

def _xla_group(folder: Path, prefix: str, members: list[Path], texts: dict[Path, str],
               kinds: dict[Path, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    by_kind: dict[str, Path] = {}
    for p in members:
        if kinds[p] in by_kind:
            raise InputError(f"{p}:1: two {kinds[p]} files for module {prefix} "
                             f"(also {by_kind[kinds[p]]})")
        by_kind[kinds[p]] = p
    alloc_path = by_kind.get("xla_buffer_assignment")
    if alloc_path is not None:
        first = xba.parse_dump(texts[alloc_path], str(alloc_path))
        name = alloc_path.name
        if not first.is_single_file and name.endswith("buffer-assignment.txt"):
            # The newer split dump: pick up the siblings the user did not name.
            stem = name[: -len("buffer-assignment.txt")]
            for kind, suffix in (("xla_values", "buffer-assignment-values.txt"),
                                 ("xla_live_range", "live-range.txt"),
                                 ("xla_memory_report", "memory-usage-report.txt")):
                sibling = folder / (stem + suffix)
                if kind in by_kind or not sibling.is_file():
                    continue
                texts[sibling] = _read(sibling)
                found = detect(texts[sibling])
                if found != kind:
                    raise InputError(f"{sibling}:1: expected the {kind} part of {name}, found {found or 'unknown format'}")
                by_kind[kind] = sibling
        parts = [first] + [xba.parse_dump(texts[p], str(p)) for k, p in by_kind.items()
                           if k in ("xla_values", "xla_live_range")]
        report = by_kind.get("xla_memory_report")
        rep = parse_memory_report(texts[report], str(report)) if report else None
        ba = xba.combine(parts, rep)
        return xla_summary(ba, prefix), xla_buffers(ba, prefix)
    # Parts without their allocations: what each says on its own.
    rows, bufs = [], []
    for kind, p in by_kind.items():
        if kind == "xla_values":
            d = xba.parse_dump(texts[p], str(p))
            rows.append(_row(prefix, "total", d.total_bytes, pd.NA, "xla_buffer_assignment_values",
                             f"{d.used_values} values; allocations not given"))
        elif kind == "xla_live_range":
            lr = xba.parse_dump(texts[p], str(p)).live_range
            bufs += [{"graph": prefix, "kind": pd.NA, "name": b.name, "bytes": b.bytes, "shape": "",
                      "storage": "", "offset": pd.NA, "peak": True, "note": f"live at {lr.peak_time} (peak)",
                      "source": "xla_live_range"} for b in lr.peak]
        else:
            rep = parse_memory_report(texts[p], str(p))
            rows.append(_row(prefix, "total", rep.total_bytes, len(rep.blocks), "xla_memory_usage_report",
                             "buffers = allocations; kinds need the buffer assignment"))
            for k, block in enumerate(rep.blocks):
                bufs += [{"graph": prefix, "kind": pd.NA, "name": f"allocation table {k}", "bytes": r.size_bytes,
                          "shape": r.shapes, "storage": f"table {k}", "offset": r.offset, "peak": pd.NA,
                          "note": f"{r.values} values; size rounded by the report",
                          "source": "xla_memory_usage_report"} for r in block]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS), pd.DataFrame(bufs, columns=BUFFER_COLUMNS)


def xla_summary(ba: xba.BufferAssignment, graph: str) -> pd.DataFrame:
    src = "xla_buffer_assignment"
    by_kind = {k: [a for a in ba.allocations if a.kind == k] for k in ("parameter", "output", "temp", "constant")}
    ws_bytes = ws_values = ws_in_temp = ws_elsewhere = 0
    for a in ba.allocations:
        covered, count = xba.workspace_footprint(a)
        ws_bytes += covered
        ws_values += count
        if a.kind == "temp":
            ws_in_temp += covered
        else:
            ws_elsewhere += covered
    temp_values = sum(1 for a in by_kind["temp"] for v in a.values if not v.is_workspace)
    ws_note = ""
    if ws_elsewhere:
        ws_note = f"{ws_elsewhere} bytes inside output/parameter allocations (overlap, no extra memory)"
    elif ws_bytes:
        ws_note = "carved out of the temp allocation"
    ma = xba.memory_analysis(ba)
    rows = [
        _row(graph, "parameter", sum(a.size for a in by_kind["parameter"]), len(by_kind["parameter"]), src,
             f"{ma['alias_size_in_bytes']} bytes donated (aliased to outputs)" if ma["alias_size_in_bytes"] else ""),
        _row(graph, "output", sum(a.size for a in by_kind["output"]), len(by_kind["output"]), src),
        _row(graph, "temp", sum(a.size for a in by_kind["temp"]) - ws_in_temp, temp_values, src,
             "preallocated temp block (planned peak of intermediates)"),
        _row(graph, "workspace", ws_bytes, ws_values, src, ws_note),
        _row(graph, "constant", sum(a.size for a in by_kind["constant"]), len(by_kind["constant"]), src),
        _row(graph, "total", ba.total_bytes, len(ba.allocations), src, "Total bytes used (= sum of allocations)"),
    ]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def xla_buffers(ba: xba.BufferAssignment, graph: str) -> pd.DataFrame:
    """One row per value; built column by column (a 100 MB dump holds ~10^5 values)."""
    lr = ba.live_range
    # Peak and range names drop a trailing "{}"; accept both spellings of a value's name.
    at_peak = {b.name for b in lr.peak} | {b.name + "{}" for b in lr.peak} if lr else set()
    cols: dict[str, list] = {c: [] for c in BUFFER_COLUMNS}
    for a in ba.allocations:
        values = a.values
        n = len(values)
        names = [v.name for v in values]
        workspace = [v.name[-1] == "}" and v.is_workspace for v in values]
        cols["kind"] += ["workspace" if w else a.kind for w in workspace]
        cols["name"] += names
        cols["bytes"] += [v.size for v in values]
        cols["shape"] += [v.shape for v in values]
        cols["offset"] += [v.offset for v in values]
        cols["storage"] += [f"allocation {a.index}"] * n
        cols["peak"] += [name in at_peak for name in names] if lr else [pd.NA] * n
        if a.parameter is not None:
            cols["note"] += [f"parameter {a.parameter}"] * n
        elif a.output_shape is not None:
            cols["note"] += ["output tuple table"] * n
        elif a.kind == "output" and lr:
            cols["note"] += [_borrowed(lr, name) if not w else "" for name, w in zip(names, workspace)]
        else:
            cols["note"] += [""] * n
    total = len(cols["name"])
    cols["graph"] = [graph] * total
    cols["source"] = ["xla_buffer_assignment"] * total
    return pd.DataFrame(cols, columns=BUFFER_COLUMNS)


def _borrowed(lr: LiveRange, name: str) -> str:
    # XLA lets an intermediate borrow a live-out buffer before the output is written
    # (seed 004: wrapped_concatenate, live 91-92, in allocation 3).
    span = lr.ranges.get(name[:-2] if name.endswith("{}") else name)
    if span is not None and span[1] < lr.max_time:
        return f"intermediate (live {span[0]}-{span[1]}) sharing an output allocation"
    return ""


# --- Inductor --------------------------------------------------------------------------

def inductor_summary(plan: GraphPlan) -> pd.DataFrame:
    src = "inductor_output_code"
    unsized_outputs = [plan.storages[s].first_name for s in plan.outputs if plan.storages[s].bytes is None]
    temp_note = "peak of live intermediates that are not outputs"
    if plan.unsized:
        temp_note += f"; lower bound: {len(plan.unsized)} buffers of unknown size ({', '.join(plan.unsized[:3])})"
    output_note = [f"+{len(plan.returned_inputs)} inputs returned as outputs"] if plan.returned_inputs else []
    if unsized_outputs:   # a fallback kernel's results (H200 conv backward: convolution_backward)
        output_note.append(f"lower bound: {len(unsized_outputs)} of unknown size ({', '.join(unsized_outputs[:3])})")
    byte_count(plan.input_bytes + plan.peak_bytes, plan.path, plan.line,
               f"graph {plan.name}'s inputs + planned peak")
    tensors = [n for n, b in plan.inputs.items() if b is not None]
    allocated = [s for s in plan.storages if s.origin != "input"]
    rows = [
        _row(plan.name, "parameter", plan.input_bytes, len(tensors), src, "graph inputs"),
        _row(plan.name, "output", plan.output_bytes, len(plan.outputs), src, "; ".join(output_note)),
        _row(plan.name, "temp", plan.temp_peak_bytes, len(plan.temp_storages), src, temp_note),
        _row(plan.name, "workspace", pd.NA, pd.NA, src, "not in output code (allocator-managed)"),
        _row(plan.name, "constant", pd.NA, pd.NA, src, "not in output code"),
        _row(plan.name, "total", plan.input_bytes + plan.peak_bytes, len(tensors) + len(allocated), src,
             ("lower bound: " if plan.unsized else "") +
             f"inputs + planned peak {plan.peak_bytes} (line {plan.peak_line}); reuse saved "
             f"{plan.reused_bytes}, frees+reuse saved {plan.plan_saved_bytes}"),
    ]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def inductor_buffers(plan: GraphPlan) -> pd.DataFrame:
    outputs, at_peak = set(plan.outputs), set(plan.peak_storages)
    rows = [{"graph": plan.name, "kind": "parameter", "name": n, "bytes": b,
             "shape": plan.input_shapes.get(n, ""), "storage": n, "offset": pd.NA, "peak": pd.NA,
             "note": "returned" if n in plan.returned_inputs else "", "source": "inductor_output_code"}
            for n, b in plan.inputs.items() if b is not None]
    for b in plan.buffers:
        s = plan.storages[b.storage]
        kind = "parameter" if s.origin == "input" else "output" if s.id in outputs else "temp"
        note = f"reuses {b.reuses}" if b.reuses else ("size not in code" if b.bytes is None else "")
        shape = f"{b.dtype}[{','.join(map(str, b.shape))}]" if b.dtype != "?" else ""
        if b.stride and list(b.stride) != _contiguous(b.shape):
            shape += f" stride ({','.join(map(str, b.stride))})"
        rows.append({"graph": plan.name, "kind": kind, "name": b.name, "bytes": b.bytes, "shape": shape,
                     "storage": s.first_name, "offset": pd.NA, "peak": s.id in at_peak,
                     "note": note, "source": "inductor_output_code"})
    return pd.DataFrame(rows, columns=BUFFER_COLUMNS)


def _contiguous(shape: tuple[int, ...]) -> list[int]:
    out, acc = [], 1
    for s in reversed(shape):
        out.append(acc)
        acc *= max(s, 1)
    return out[::-1]
