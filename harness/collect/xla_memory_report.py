"""XLA's `-memory-usage-report.txt`: per memory space its total, then per allocation (largest
first) its offset groups, with sizes rounded for humans:

    Memory Space: default (color=0)
    Total bytes: 3544088 (3.38MiB)
       cumulative_size;  size;  offset;  used_by_n_values;  shapes_list
       512.0KiB( 40%);   512.0KiB;       524288;                2; 2×f32[256,512]

A cross-check of the buffer assignment's totals (combine() in xla_buffer_assignment.py), and
on its own the allocation sizes when nothing else was kept.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from harness.collect.sizes import byte_count
from harness.errors import InputError

_SPACE = re.compile(r"Memory Space: (.*) \(color=(\d+)\)$")
_REPORT_TOTAL = re.compile(r"Total bytes(?: used)?: (\d+) \(.*\)$")
_BLOCK_HEADER = re.compile(r"\s*cumulative_size;\s+size;\s+offset;\s+used_by_n_values;\s+shapes_list$")
# "   512.0KiB( 40%);   512.0KiB;       524288;                2; 2×f32[256,512]"
_BLOCK_ROW = re.compile(r"\s*(\S+)\(\s*\d+%\);\s+(\S+);\s+(\d+);\s+(\d+); (.*)$")
# Older report: "  1.02GiB(100%);   0B; allocation 0: size 296.75MiB, parameter 5, ...:"
_SORTED_ROW = re.compile(r"\s*\S+\(\s*\d+%\);\s+\S+; allocation \d+: size \S+.*:$")
_HUMAN = re.compile(r"([\d.]+)(B|KiB|MiB|GiB|TiB|PiB)$")
_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40, "PiB": 1 << 50}


@dataclass(frozen=True)
class ReportRow:
    size_bytes: int          # rounded: the report prints 512.0KiB, 32.12MiB
    offset: int
    values: int
    shapes: str


@dataclass
class MemoryReport:
    path: str
    spaces: list[tuple[str, int, int]]     # (name, color, total bytes)
    blocks: list[list[ReportRow]]          # one block per allocation
    truncated_by_xla: bool = False         # "The rest N ... are not shown"

    @property
    def total_bytes(self) -> int:
        return sum(total for _, _, total in self.spaces)


def _err(path: str, line: int, message: str) -> InputError:
    return InputError(f"{path}:{line}: {message}")


def parse_human_bytes(text: str) -> int | None:
    m = _HUMAN.match(text)
    return round(float(m[1]) * _UNITS[m[2]]) if m else None


def parse_memory_report(text: str, path: str = "<text>") -> MemoryReport:
    """`-memory-usage-report.txt`: per memory space its total, then per allocation (largest
    first) its offset groups: cumulative size, size, offset, number of values, shapes."""
    spaces: list[tuple[str, int, int]] = []
    blocks: list[list[ReportRow]] = []
    rest = False
    space = ("default", 0)
    lines = text.split("\n")
    # XLA may list only the largest allocations (no marker says so), so a missing table is
    # not proof of a cut; a file that stops mid-line is.
    if text and not text.endswith("\n"):
        raise _err(path, len(lines), "truncated: the memory-usage report stops mid-line")
    for i, line in enumerate(lines, 1):
        s = line.strip()
        if not s or set(s) == {"-"}:
            continue
        if m := _SPACE.match(line):
            space = (m[1], int(m[2]))
        elif m := _REPORT_TOTAL.match(line):
            spaces.append((space[0], space[1], byte_count(int(m[1]), path, i, "Total bytes")))
        elif _BLOCK_HEADER.match(line):
            if blocks and not blocks[-1]:
                raise _err(path, i, "expected rows under the previous table header")
            blocks.append([])
        elif m := _BLOCK_ROW.match(line):
            if not blocks:
                raise _err(path, i, "table row before any 'cumulative_size; size; ...' header")
            size = parse_human_bytes(m[2])
            if size is None:
                raise _err(path, i, f"expected a size like 512.0KiB, got {m[2]!r}")
            blocks[-1].append(ReportRow(byte_count(size, path, i, "a table row's size"),
                                        byte_count(int(m[3]), path, i, "a table row's offset"),
                                        int(m[4]), m[5]))
        elif s.startswith("The rest ") and "not shown" in s:
            rest = True
        elif s in ("Allocations sorted by size:", "Allocations sorted by size with their values:",
                   "cumulative_size; total_size - cumulative_size; allocation") \
                or _SORTED_ROW.match(line) or (s.startswith("allocation ") and s.endswith(":")):
            pass  # the older report's allocation list: the buffer assignment says it exactly
        else:
            raise _err(path, i, f"unexpected line in memory-usage report: {line[:80]!r}")
    if not spaces:
        raise _err(path, 1, "expected 'Total bytes: N' in the memory-usage report")
    if blocks and not blocks[-1]:
        raise _err(path, len(lines), "truncated: table header without rows")
    return MemoryReport(path, spaces, blocks, rest)
