"""Inductor's static memory plan: what a compiled graph allocates, reuses, frees and returns.

The plan is read from the graph's output code by inductor_output_code.py. Storages are what
the allocator hands out; buffers the names the code binds to them (a `# reuse` binds a new
name to an old storage). Bytes are what the strides need, not numel: `(512, 256)` with
strides `(1, 512)` needs 1 + 511 + 255*512 elements.

Definitions (all bytes):
- peak: the most bytes of storages allocated inside `call` live at once (outputs included);
- temp: the same peak counting only storages that are not returned;
- output: storages allocated inside `call` and returned (returned inputs are not counted);
- allocated: sum of all fresh allocations; naive: what every buffer name would take with
  its own storage; reused = naive - allocated, what `# reuse` saved;
  plan_saved = naive - peak, what frees and reuse together saved over keeping everything.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from harness.collect.sizes import byte_count
from harness.errors import InputError

ITEMSIZE = {
    "float32": 4, "float": 4, "float64": 8, "double": 8, "float16": 2, "half": 2, "bfloat16": 2,
    "int8": 1, "uint8": 1, "bool": 1, "int16": 2, "short": 2, "int32": 4, "int": 4, "int64": 8,
    "long": 8, "uint16": 2, "uint32": 4, "uint64": 8, "complex32": 4, "complex64": 8,
    "complex128": 16, "float8_e4m3fn": 1, "float8_e5m2": 1, "float8_e4m3fnuz": 1,
    "float8_e5m2fnuz": 1, "float8_e8m0fnu": 1, "float4_e2m1fn_x2": 1, "bits8": 1, "bits16": 2,
    "qint8": 1, "quint8": 1, "qint32": 4,
}

@dataclass
class Storage:
    id: int
    bytes: int | None           # None: a fallback kernel's output, size not in the code
    origin: str                 # "alloc" (inside call) | "input" | "unsized"
    first_name: str
    line: int
    names: set[str] = field(default_factory=set)
    freed_line: int | None = None


@dataclass(frozen=True)
class Buffer:
    """One name bound by the plan (a fresh allocation or a reuse of another storage)."""
    name: str
    dtype: str
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    bytes: int | None           # what this view needs
    storage: int
    reuses: str | None          # the name whose storage it took (`# reuse`)
    line: int


@dataclass
class GraphPlan:
    name: str                   # "0_forward" from `# AOT ID:`, else "call_<n>"
    path: str
    line: int                   # of `def call`
    inputs: dict[str, int | None]          # name -> bytes (None: size unknown, e.g. a SymInt)
    input_shapes: dict[str, str]
    buffers: list[Buffer]
    storages: list[Storage]
    outputs: list[int]          # storage ids allocated inside call and returned
    returned_inputs: list[str]  # inputs handed back (e.g. saved for backward)
    peak_bytes: int
    peak_line: int
    peak_storages: list[int]    # storage ids live at the peak
    temp_peak_bytes: int
    unsized: list[str]          # names of buffers whose size the code does not say

    @property
    def input_bytes(self) -> int:
        return sum(b for b in self.inputs.values() if b)

    @property
    def output_bytes(self) -> int:
        return sum(self.storages[s].bytes or 0 for s in self.outputs)

    @property
    def allocated_bytes(self) -> int:
        return sum(s.bytes or 0 for s in self.storages if s.origin == "alloc")

    @property
    def naive_bytes(self) -> int:
        return sum(b.bytes or 0 for b in self.buffers)

    @property
    def reused_bytes(self) -> int:
        return self.naive_bytes - self.allocated_bytes

    @property
    def plan_saved_bytes(self) -> int:
        return self.naive_bytes - self.peak_bytes

    @property
    def temp_storages(self) -> list[Storage]:
        outs = set(self.outputs)
        return [s for s in self.storages if s.origin in ("alloc", "unsized") and s.id not in outs]


def error_at(path: str, line: int, message: str) -> InputError:
    return InputError(f"{path}:{line}: {message}")


def int_tuple(text: str, path: str, line: int) -> tuple[int, ...]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        return tuple(int(t) for t in items)
    except ValueError:
        raise error_at(path, line, f"symbolic shape ({text}): dynamic shapes are not supported, "
                               "compile with dynamic=False") from None


def storage_bytes(shape: tuple[int, ...], stride: tuple[int, ...], dtype: str, path: str, line: int) -> int:
    """Bytes the strides need: 1 + sum((size - 1) * stride) elements, 0 if any size is 0."""
    if dtype not in ITEMSIZE:
        raise error_at(path, line, f"unknown dtype torch.{dtype}")
    if len(shape) != len(stride):
        raise error_at(path, line, f"shape {shape} and stride {stride} differ in rank")
    for what, dims in (("shape", shape), ("stride", stride)):
        if any(d < 0 for d in dims):
            raise error_at(path, line, f"negative size in {what} {dims}: expected sizes and "
                                       "strides >= 0")
    if any(s == 0 for s in shape):
        return 0
    nbytes = (1 + sum((s - 1) * st for s, st in zip(shape, stride))) * ITEMSIZE[dtype]
    return byte_count(nbytes, path, line, f"a {dtype} tensor of shape {shape}")
