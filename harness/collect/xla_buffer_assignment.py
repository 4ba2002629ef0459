"""XLA buffer-assignment dumps (`--xla_dump_to`) -> allocations, totals and the peak.

Two layouts exist and both are read here:

- older, one file (seed 004, `...after_optimizations-buffer-assignment.txt`): the
  allocations, `Total bytes used:`, `Used values:`, then `HloLiveRange` with
  `Live ranges at N (peak):`;
- newer (jax 0.10), the same sections split over sibling files:
  `-buffer-assignment.txt` (allocations only), `-buffer-assignment-values.txt` (total and
  used values), `-live-range.txt` (live ranges, peak list with cumulative bytes and a stack
  trace breakdown) and `-memory-usage-report.txt` (per memory space, per allocation the
  offset groups with rounded sizes).

`parse_dump` reads any of the first three (whatever sections the text holds, in XLA's
order; the live ranges with xla_live_range.py), xla_memory_report.py the fourth, `combine`
checks the parts against each other.
Every line inside a section must have a known shape; anything else is an InputError naming
file and line, so a garbled or cut file never parses into wrong numbers. Unknown
*attributes* on an allocation header (a future `, page 3`) are kept verbatim, not fatal.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from harness.collect.sizes import byte_count
from harness.collect.trace_io import gc_paused
from harness.collect.xla_live_range import LiveRange, parse_live_range
from harness.collect.xla_memory_report import MemoryReport
from harness.errors import InputError

# One line of the allocation list, a header or one of its values:
#   allocation 48: size 32, output shape is |(bf16[32,8,128], ...)|, maybe-live-out:
#    value: <581 custom-call.19.0{1} @0> (size=4194304,offset=0): s8[4194304]{0}
_ALLOC_HEADER = re.compile(r"^allocation (\d+): size (\d+)([^\n]*):\n", re.M)
# Anchored at line starts and ending at the newline: as many matches as lines means
# every line of the block is a value line.
_VALUE_FIELDS = re.compile(r"^ value: <(\d+) (\S+) @\d+> \(size=(\d+),offset=(\d+)\): ([^\n]*)\n", re.M)
_VALUE_BLOCK = re.compile(r"(?: value: <\d+ \S+ @\d+> \(size=\d+,offset=\d+\): [^\n]*\n)+")
# A used value: "<id name @pos>", " positions:" + items, " uses:" + items, " from instruction: ..."
_USED_BLOCK = re.compile(r"<\d+ \S+ @\d+>\n positions:\n(?:  [^\n]*\n)* uses:\n(?:  [^\n]*\n)*"
                         r" from instruction: [^\n]*\n")
# One attribute after the size. Shapes sit between pipes and hold commas, so attributes
# are matched in order from the left rather than split on commas.
_ATTR = re.compile(
    r", (?:parameter (?P<param>\d+)(?:, shape \|(?P<pshape>[^|]*)\|)?(?: at ShapeIndex \{(?P<pindex>[^}]*)\})?"
    r"|output shape is \|(?P<oshape>[^|]*)\|"
    r"|color (?P<color>\d+)"
    r"|(?P<flag>constant|thread-local|maybe-live-out|preallocated-temp)"
    r"|(?P<other>[a-z][^,|]*))(?=,|$)")
# "Total bytes used: 1093622736 (1.02GiB)"
_TOTAL = re.compile(r"Total bytes used: (\d+) \(.*\)$")

# Workspace scratch of cuBLAS/cuDNN custom-calls: a 1-D s8/u8 array as a tuple element
# after the result, e.g. `custom-call.19.0{1}` s8[4194304] next to `{0}` bf16[32,6144].
_WORKSPACE_NAME = re.compile(r"\{([1-9]\d*)\}$")
_WORKSPACE_SHAPE = re.compile(r"[su]8\[\d+\]")


@dataclass(slots=True)
class Value:
    """One logical buffer placed in an allocation."""
    id: int
    name: str        # e.g. "custom-call.19.0{1}"
    size: int
    offset: int
    shape: str       # with layout, e.g. "s8[4194304]{0}"

    @property
    def is_workspace(self) -> bool:
        return (self.name[-1] == "}" and self.shape[0] in "su" and _WORKSPACE_SHAPE.match(self.shape) is not None
                and _WORKSPACE_NAME.search(self.name) is not None)


@dataclass(slots=True)
class Allocation:
    index: int
    size: int
    line: int                   # of its header in the file
    parameter: int | None = None
    parameter_shape: str | None = None
    output_shape: str | None = None
    maybe_live_out: bool = False
    constant: bool = False
    thread_local: bool = False
    preallocated_temp: bool = False
    color: int = 0
    other: tuple[str, ...] = ()   # attributes we do not know, verbatim (jax 0.11 GPU: 'page 0')
    values: list[Value] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """One kind per allocation, so that the kinds partition `Total bytes used`.

        A donated parameter that is also live-out stays `parameter` (XLA's alias); the
        32-byte output tuple table is `output`; thread-local scalars of nested computations
        (reducers, sort comparators) count as `temp`.
        """
        if self.parameter is not None:
            return "parameter"
        if self.constant:
            return "constant"
        if self.maybe_live_out:
            return "output"
        return "temp"


@dataclass
class DumpParts:
    """What one file held; `combine` merges the parts of a split dump."""
    path: str
    allocations: list[Allocation] | None = None
    total_bytes: int | None = None
    total_line: int | None = None
    used_values: int | None = None
    used_values_line: int | None = None
    live_range: LiveRange | None = None

    @property
    def is_single_file(self) -> bool:
        return self.allocations is not None and self.used_values is not None


@dataclass
class BufferAssignment:
    """A whole dump: allocations checked against the total, plus the peak when present."""
    path: str
    allocations: list[Allocation]
    total_bytes: int
    live_range: LiveRange | None = None
    report: MemoryReport | None = None

    @property
    def allocated_bytes(self) -> int:
        return sum(a.size for a in self.allocations)

    def bytes_by_kind(self) -> dict[str, int]:
        out = {"parameter": 0, "output": 0, "temp": 0, "constant": 0}
        for a in self.allocations:
            out[a.kind] += a.size
        return out


def _err(path: str, line: int, message: str) -> InputError:
    return InputError(f"{path}:{line}: {message}")


@functools.lru_cache(maxsize=4096)
def _attrs_cached(rest: str) -> tuple:
    """Allocation header attributes -> the Allocation fields after index, size and line.
    Cached: most headers repeat (', maybe-live-out', ', page 0, thread-local')."""
    parameter = pshape = oshape = None
    flags = {"constant": False, "thread-local": False, "maybe-live-out": False, "preallocated-temp": False}
    color, other = 0, []
    pos = 0
    while pos < len(rest):
        m = _ATTR.match(rest, pos)
        if m is None:
            raise ValueError(f"expected an allocation attribute, got {rest[pos:][:80]!r}")
        if m["param"] is not None:
            parameter, pshape = int(m["param"]), m["pshape"]
        elif m["oshape"] is not None:
            oshape = m["oshape"]
        elif m["color"] is not None:
            color = int(m["color"])
        elif m["flag"] is not None:
            flags[m["flag"]] = True
        else:
            other.append(m["other"])
        pos = m.end()
    return (parameter, pshape, oshape, flags["maybe-live-out"], flags["constant"], flags["thread-local"],
            flags["preallocated-temp"], color, tuple(other))


def parse_dump(text: str, path: str = "<text>") -> DumpParts:
    with gc_paused():
        return _parse_dump(text, path)


def _parse_dump(text: str, path: str) -> DumpParts:
    """Parse any of: the single-file dump, `-buffer-assignment.txt`,
    `-buffer-assignment-values.txt`, `-live-range.txt`.

    The two big sections (allocations, used values) are matched by compiled regexes run
    over whole blocks of text, so the work stays in C (100 MB in about 1.5 s of CPU), and
    a line of unknown shape is still caught, with its line number: used values must match
    back to back, and an allocation's body must hold as many value matches as lines."""
    parts = DumpParts(path)
    n = len(text)
    pos = _skip_blank(text, 0)
    if pos == n:
        raise _err(path, 1, "empty file: expected an XLA buffer assignment")
    # Sections come in this order; each file holds a contiguous run of them.
    if text.startswith("BufferAssignment:\n", pos):
        pos = _parse_allocations(text, pos + len("BufferAssignment:\n"), parts)
        pos = _skip_blank(text, pos)
    if text.startswith("Total bytes used:", pos):
        eol = _eol(text, pos)
        m = _TOTAL.match(text, pos, eol)
        if m is None:
            raise _err(path, _line(text, pos), "expected 'Total bytes used: N (human size)'")
        parts.total_line = _line(text, pos)
        parts.total_bytes = byte_count(int(m[1]), path, parts.total_line, "Total bytes used")
        pos = _skip_blank(text, eol)
        if not text.startswith("Used values:\n", pos):
            raise _err(path, _line(text, min(pos, n - 1)), "expected 'Used values:' after the total")
        parts.used_values_line = _line(text, pos)
        pos = _parse_used_values(text, pos + len("Used values:\n"), parts)
        pos = _skip_blank(text, pos)
    if text.startswith("HloLiveRange", pos):
        end = text.find("\n\n", pos)
        end = n if end < 0 else end
        parts.live_range = parse_live_range(text[pos:end].split("\n"), parts.path,
                                            _line(text, pos) - 1)
        pos = _skip_blank(text, end)
    if pos < n:
        raise _err(path, _line(text, pos), "expected BufferAssignment:, Total bytes used:, Used values: or "
                                           f"HloLiveRange sections, got {text[pos:_eol(text, pos)][:80]!r}")
    if parts.allocations is None and parts.total_bytes is None and parts.live_range is None:
        raise _err(path, 1, "no buffer-assignment section found")
    if parts.allocations is not None and parts.used_values is not None and parts.live_range is None:
        # The single-file format always ends with the live ranges (seed 004); without them
        # the file was cut.
        raise _err(path, _line(text, n), "truncated: expected the HloLiveRange section after Used values")
    if parts.allocations is not None and parts.total_bytes is not None:
        check_total(parts.allocations, parts.total_bytes, path, parts.total_line)
    if parts.allocations is not None and parts.used_values is not None:
        check_used_values(parts.allocations, parts.used_values, path, parts.used_values_line)
    return parts


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _eol(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end < 0 else end


def _skip_blank(text: str, pos: int) -> int:
    n = len(text)
    while pos < n:
        eol = _eol(text, pos)
        if text[pos:eol].strip():
            return pos
        pos = eol + 1
    return n


def _section(text: str, pos: int) -> tuple[str, int]:
    """The lines from pos up to the first blank line, newline-terminated, and the end."""
    end = text.find("\n\n", pos)
    end = len(text) if end < 0 else end + 1
    section = text[pos:end]
    return (section if section.endswith("\n") else section + "\n"), end


def _parse_allocations(text: str, pos: int, parts: DumpParts) -> int:
    """Headers are found with one regex; the value lines between two headers are checked
    with one fullmatch and split with one findall, so Python touches each value once."""
    path = parts.path
    section, end = _section(text, pos)
    allocs: list[Allocation] = []
    prev_end = 0
    at = _line(text, pos)       # line number at section[prev_end], counted incrementally
    headers = list(_ALLOC_HEADER.finditer(section)) + [None]
    for m, following in zip(headers, headers[1:]):
        if m.start() != prev_end:
            _bad_line(section[prev_end:m.start()], path, at)
        line = at
        index, size = int(m[1]), byte_count(int(m[2]), path, line, f"allocation {m[1]}")
        if index != len(allocs):
            raise _err(path, line, f"expected allocation {len(allocs)}, got allocation {index}")
        try:
            fields = _attrs_cached(m[3])
        except ValueError as e:
            raise _err(path, line, str(e)) from None
        body_end = following.start() if following is not None else len(section)
        body = section[m.end():body_end]
        if not body:
            raise _err(path, line, f"{'truncated: ' if following is None else ''}allocation {index} has no values")
        values = [Value(int(i), name, int(sz), int(off), shape) for i, name, sz, off, shape in _VALUE_FIELDS.findall(body)]
        if len(values) != body.count("\n"):
            _bad_line(body, path, line + 1)
        for k, v in enumerate(values):
            byte_count(max(v.size, v.offset), path, line + 1 + k, f"value {v.name}'s size or offset")
            if v.offset + v.size > size:
                raise _err(path, line, f"value {v.name} at offset {v.offset} size {v.size} overruns "
                                       f"allocation {index} of size {size}")
        allocs.append(Allocation(index, size, line, *fields, values=values))
        at = line + 1 + len(values)
        prev_end = body_end
    if not allocs:
        _bad_line(section, path, _line(text, pos))
    parts.allocations = allocs
    return end


def _bad_line(chunk: str, path: str, first_line: int) -> None:
    """Name the first line of `chunk` that is neither an allocation header nor a value."""
    for k, line in enumerate(chunk.split("\n")):
        if line and not (_ALLOC_HEADER.fullmatch(line + "\n") or _VALUE_BLOCK.fullmatch(line + "\n")):
            raise _err(path, first_line + k, "expected 'allocation N: size S[, attributes]:' or "
                                             f"' value: <id name @pos> (size=N,offset=N): shape', got {line[:80]!r}")
    raise _err(path, first_line, "expected 'allocation N: size S[, attributes]:'")


def _parse_used_values(text: str, pos: int, parts: DumpParts) -> int:
    """Only the number of used values and their completeness matter to us."""
    section, end = _section(text, pos)
    count = expect = 0
    for m in _USED_BLOCK.finditer(section):
        if m.start() != expect:
            break
        expect = m.end()
        count += 1
    if expect != len(section):
        bad = section[expect:section.find("\n", expect)]
        raise _err(parts.path, _line(text, pos + expect),
                   f"expected a complete used value ('<id name @pos>', positions, uses, from instruction), "
                   f"got {bad[:80]!r}" + (" (truncated?)" if end >= len(text) - 1 else ""))
    if count == 0:
        raise _err(parts.path, _line(text, pos), "expected at least one used value after 'Used values:'")
    parts.used_values = count
    return end


def check_total(allocations: list[Allocation], total: int, path: str, line: int | None) -> None:
    """A dump whose allocations do not add up to its own total is cut or garbled: error."""
    got = sum(a.size for a in allocations)
    if got != total:
        raise _err(path, line or 1, f"allocation sizes add up to {got} bytes, but the dump says "
                                    f"Total bytes used: {total}")


def check_used_values(allocations: list[Allocation], used: int, path: str, line: int | None) -> None:
    assigned = sum(len(a.values) for a in allocations)
    if used != assigned:
        raise _err(path, line or 1, f"{used} used values listed, but the allocations hold {assigned} values")


# --- putting the parts of one dump together -------------------------------------------

def combine(parts: list[DumpParts], report: MemoryReport | None = None) -> BufferAssignment:
    """Merge the parts of one dump (one single file, or the split files) and check them
    against each other: total, number of used values, the report's totals."""
    allocs = next((p for p in parts if p.allocations is not None), None)
    if allocs is None:
        raise _err(parts[0].path, 1, "no allocations: expected the '-buffer-assignment.txt' file")
    totals = [p for p in parts if p.total_bytes is not None]
    if not totals:
        # A split allocation file without its values file: the report's total is the check.
        if report is None:
            raise _err(allocs.path, 1, "cannot check the allocations against 'Total bytes used': "
                                       "pass the '-buffer-assignment-values.txt' file too")
        total = report.total_bytes
        check_total(allocs.allocations, total, report.path, 2)
    else:
        t = totals[0]
        total = t.total_bytes
        check_total(allocs.allocations, total, t.path, t.total_line)
        if t.used_values is not None:
            check_used_values(allocs.allocations, t.used_values, t.path, t.used_values_line)
    if report is not None:
        if report.total_bytes != total:
            raise _err(report.path, 2, f"memory-usage report says {report.total_bytes} bytes, "
                                       f"the buffer assignment {total}")
        # XLA lists the largest allocations first and stops after a while without saying so
        # (the H100 dump of qwen3_0_6b decode: 122 tables for 1052 allocations); only more
        # tables than allocations means the report belongs to another module.
        if len(report.blocks) > len(allocs.allocations):
            raise _err(report.path, len(report.blocks), f"memory-usage report has {len(report.blocks)} "
                       f"allocation tables, the buffer assignment {len(allocs.allocations)} allocations")
    live = next((p.live_range for p in parts if p.live_range is not None), None)
    return BufferAssignment(allocs.path, allocs.allocations, total, live, report)


def parse_buffer_assignment(text: str, path: str = "<text>") -> BufferAssignment:
    """The single-file dump (seed 004) in one call."""
    return combine([parse_dump(text, path)])


# --- numbers for tables ---------------------------------------------------------------

def workspace_footprint(allocation: Allocation) -> tuple[int, int]:
    """(bytes, values) of cuBLAS/cuDNN workspace in one allocation.

    Workspaces of successive custom-calls reuse the same offsets (in seed 004 nineteen
    s8[4194304] at offset 0 of allocation 3), so bytes is the union of their
    [offset, offset+size) ranges, not their sum.
    """
    spans = sorted((v.offset, v.offset + v.size) for v in allocation.values if v.is_workspace)
    covered, end = 0, -1
    for lo, hi in spans:
        if hi > end:
            covered += hi - max(lo, end)
            end = hi
    return covered, len(spans)


def memory_analysis(ba: BufferAssignment) -> dict[str, int]:
    """The figures `compiled.memory_analysis()` gives, derived the way XLA derives them
    (checked on jax 0.10 CPU dumps): arguments = parameter allocations, outputs =
    maybe-live-out allocations (aliased parameters included), alias = both, temp = the
    rest less constants and thread-local scalars."""
    arg = sum(a.size for a in ba.allocations if a.parameter is not None)
    out = sum(a.size for a in ba.allocations if a.maybe_live_out)
    alias = sum(a.size for a in ba.allocations if a.parameter is not None and a.maybe_live_out)
    temp = sum(a.size for a in ba.allocations if a.parameter is None and not a.maybe_live_out
               and not a.constant and not a.thread_local)
    return {"argument_size_in_bytes": arg, "output_size_in_bytes": out,
            "alias_size_in_bytes": alias, "temp_size_in_bytes": temp}


def aliased_parameters(buffer_assignment_text: str) -> list[int]:
    """Parameters whose buffer is also an output's (donated), from an allocation list, e.g.
    `allocation 8: size 16384, parameter 21, shape |f32[2,16,4,2,16]| at ShapeIndex {},
    maybe-live-out:` (the cache write, a scatter, then runs in that same allocation); jax
    0.11 GPU dumps put `page 0` before `parameter`."""
    found = []
    for m in _ALLOC_HEADER.finditer(buffer_assignment_text):
        parameter, _, _, live_out, *_ = _attrs_cached(m[3])
        if parameter is not None and live_out:
            found.append(parameter)
    return sorted(found)
