"""The HloLiveRange section of an XLA buffer-assignment dump: when each buffer is live, and
which are live at the peak.

Older single-file dumps end with it; jax 0.10+ writes it as `-live-range.txt`:

    HloLiveRange (max 166):
      InstructionSequence:
        0:p0.1
      BufferLiveRange:
        wrapped_concatenate{}:91-92
      Live ranges at 158 (peak):
        p5.32.0: 311164928 bytes                        (newer: "... (cumulative: N bytes)")
      Stack trace breakdown for peak usage: 132 096 bytes   (newer only)

Every line must have one of these shapes; the sequence must count to the max, and every
buffer whose range holds the peak time must be in the peak list, or the file was cut.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.collect.sizes import byte_count
from harness.errors import InputError

_LIVE_HEADER = re.compile(r"HloLiveRange \(max (\d+)\):$")
# "    wrapped_concatenate{}:91-92"
_LIVE_RANGE = re.compile(r"    (\S.*):(\d+)-(\d+)$")
# "    92:gemm_fusion_dot.35.0"
_SEQUENCE = re.compile(r"    (\d+):(\S.*)$")
_PEAK_HEADER = re.compile(r"  Live ranges at (\d+) \(peak\):$")
# "    p5.32.0: 311164928 bytes" (older) or "    w.1{}: 65536 bytes (cumulative: 65536 bytes)"
_PEAK_ROW = re.compile(r"    (\S.*?): (\d+) bytes(?: \(cumulative: (\d+) bytes\))?$")
# "  Stack trace breakdown for peak usage: 132 096 bytes" (digits grouped with spaces)
_STACK_HEADER = re.compile(r"  Stack trace breakdown for peak usage: ([\d\s,.'\u00a0\u202f]+) bytes$")


@dataclass(frozen=True)
class PeakBuffer:
    name: str
    bytes: int


@dataclass
class LiveRange:
    max_time: int
    peak_time: int
    peak: list[PeakBuffer]
    stack_trace_peak_bytes: int | None = None   # newer format only
    ranges: dict[str, tuple[int, int]] = field(default_factory=dict)   # name -> [start, end]

    @property
    def peak_bytes(self) -> int:
        return sum(b.bytes for b in self.peak)


def _strip_index(name: str) -> str:
    # The older peak list prints "tuple", the range list "tuple{}": the same buffer.
    return name[:-2] if name.endswith("{}") else name


@dataclass
class _Reading:
    """What the section's lines said so far."""
    path: str
    offset: int                 # file lines before the section's first line
    section: str | None = None
    sequence: int = 0
    ranges: dict[str, tuple[int, int]] = field(default_factory=dict)
    peak_time: int | None = None
    peak: list[PeakBuffer] = field(default_factory=list)
    stack_bytes: int | None = None
    cumulative: int = 0

    def error(self, line: int, message: str) -> InputError:
        return InputError(f"{self.path}:{line + self.offset}: {message}")

    def header(self, line: str, number: int) -> bool:
        """A section header line; False for anything else."""
        if line in ("  InstructionSequence:", "  BufferLiveRange:"):
            self.section = "sequence" if line == "  InstructionSequence:" else "ranges"
        elif line.startswith("  Live ranges at "):
            m = _PEAK_HEADER.match(line)
            if m is None:
                raise self.error(number, "expected '  Live ranges at N (peak):'")
            self.peak_time, self.section = int(m[1]), "peak"
        elif line.startswith("  Stack trace breakdown"):
            m = _STACK_HEADER.match(line)
            if m is None:
                raise self.error(number, "expected '  Stack trace breakdown for peak usage: N bytes'")
            self.stack_bytes = byte_count(int(re.sub(r"\D", "", m[1])), self.path,
                                          number + self.offset, "the stack trace breakdown")
            self.section = "stack"
        else:
            return False
        return True

    def row(self, line: str, number: int) -> None:
        if self.section == "sequence" and (m := _SEQUENCE.match(line)):
            if int(m[1]) != self.sequence:
                raise self.error(number, f"expected instruction {self.sequence} of the sequence")
            self.sequence += 1
        elif self.section == "ranges" and (m := _LIVE_RANGE.match(line)):
            self.ranges[_strip_index(m[1])] = (int(m[2]), int(m[3]))
        elif self.section == "peak" and (m := _PEAK_ROW.match(line)):
            self.cumulative += byte_count(int(m[2]), self.path, number + self.offset,
                                          f"peak buffer {m[1]}")
            if m[3] is not None and int(m[3]) != self.cumulative:
                raise self.error(number, f"cumulative {m[3]} bytes, but the rows above add up to "
                                         f"{self.cumulative}")
            self.peak.append(PeakBuffer(_strip_index(m[1]), int(m[2])))
        elif not (self.section == "stack" and line.startswith("    ")):
            # (the per-stack-frame tree is informative, not needed for the table)
            raise self.error(number, f"unexpected line in HloLiveRange: {line[:80]!r}")

    def finish(self, max_time: int, last: int) -> LiveRange:
        if self.sequence != max_time:
            raise self.error(last, f"truncated: HloLiveRange (max {max_time}) lists {self.sequence} "
                                   "instructions")
        if self.peak_time is None:
            raise self.error(last, "truncated: expected '  Live ranges at N (peak):' in HloLiveRange")
        # XLA lists every buffer whose range [start, end] (both inclusive) holds the peak time;
        # one that is missing means the list was cut.
        listed = {b.name for b in self.peak}
        missing = [n for n, (s, e) in self.ranges.items()
                   if s <= self.peak_time <= e and n not in listed]
        if missing:
            raise self.error(last, f"truncated: {len(missing)} buffers live at {self.peak_time} are "
                                   f"missing from the peak list (e.g. {missing[0]})")
        if self.stack_bytes is not None and self.stack_bytes != self.cumulative:
            raise self.error(last, f"peak list adds up to {self.cumulative} bytes, stack trace "
                                   f"breakdown says {self.stack_bytes}")
        return LiveRange(max_time, self.peak_time, self.peak, self.stack_bytes, self.ranges)


def parse_live_range(lines: list[str], path: str, offset: int = 0) -> LiveRange:
    """The section from its `HloLiveRange (max N):` line to the first blank line; `offset`
    is the number of file lines before `lines[0]`, for error messages."""
    reading = _Reading(path, offset)
    m = _LIVE_HEADER.match(lines[0]) if lines else None
    if m is None:
        raise reading.error(1, "expected 'HloLiveRange (max N):'")
    i = 1
    while i < len(lines) and lines[i].strip():
        if not reading.header(lines[i], i + 1):
            reading.row(lines[i], i + 1)
        i += 1
    return reading.finish(int(m[1]), i)
