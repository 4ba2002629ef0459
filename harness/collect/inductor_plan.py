"""Inductor's static memory plan, read from its generated output code (the wrapper module).

Each compiled graph is one `call` function (seed 001 holds a forward and a backward one;
torch 2.5 writes `def call(args):`, torch 2.13 `def call(self, args):` in a Runner class).
Its body is straight-line code whose memory statements we replay in program order:

    buf6 = empty_strided_cuda((2048, 4096), (4096, 1), torch.float8_e4m3fn)   # allocate
    buf10 = reinterpret_tensor(buf7, (4096, 8192), (8192, 1), 0); del buf7  # reuse
    buf12 = buf4; del buf4  # reuse                                          # same storage
    buf0 = addmm_1; del addmm_1  # reuse                                     # an input's storage
    del buf2                                                                 # free
    return (buf9, buf5, reinterpret_tensor(buf10, ...), ...)                 # outputs

A storage lives from its allocation until the last name bound to it is deleted, or the end
of `call` (returned storages outlive it). Bytes are what the strides need, not numel:
`(512, 256)` with strides `(1, 512)` needs 1 + 511 + 255*512 elements. Graph inputs are
sized from `assert_size_stride(name, shape, stride)` and typed by the `rand_strided(...,
dtype=...)` lines of the module's benchmark harness.

Definitions (all bytes):
- peak: the most bytes of storages allocated inside `call` live at once (outputs included);
- temp: the same peak counting only storages that are not returned;
- output: storages allocated inside `call` and returned (returned inputs are not counted);
- allocated: sum of all fresh allocations; naive: what every buffer name would take with
  its own storage; reused = naive - allocated, what `# reuse` saved;
  plan_saved = naive - peak, what frees and reuse together saved over keeping everything.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.errors import InputError

ITEMSIZE = {
    "float32": 4, "float": 4, "float64": 8, "double": 8, "float16": 2, "half": 2, "bfloat16": 2,
    "int8": 1, "uint8": 1, "bool": 1, "int16": 2, "short": 2, "int32": 4, "int": 4, "int64": 8,
    "long": 8, "uint16": 2, "uint32": 4, "uint64": 8, "complex32": 4, "complex64": 8,
    "complex128": 16, "float8_e4m3fn": 1, "float8_e5m2": 1, "float8_e4m3fnuz": 1,
    "float8_e5m2fnuz": 1, "float8_e8m0fnu": 1, "float4_e2m1fn_x2": 1, "bits8": 1, "bits16": 2,
    "qint8": 1, "quint8": 1, "qint32": 4,
}

CALL = re.compile(r"^([ \t]*)def call\((?:self, )?args\):[ \t]*$", re.M)
_AOT_ID = re.compile(r"^# AOT ID: \['([^']*)'\]", re.M)
# primals_1 = rand_strided((8192, 4096), (4096, 1), device='cuda:0', dtype=torch.bfloat16)
_RAND = re.compile(r"^\s*(\w+) = rand_strided\(\(([^()]*)\), \(([^()]*)\), device=[^,]+, dtype=torch\.(\w+)\)", re.M)
_UNPACK = re.compile(r"([\w, ]+?),? = args$")
_ASSERT = re.compile(r"assert_size_stride\((\w+), \(([^()]*)\), \(([^()]*)\)(?:, [^()]*)?\)$")
# buf0 = empty_strided_cuda((1024, ), (1, ), torch.float32)  or  empty_strided(..., device=..., dtype=...)
_ALLOC = re.compile(r"(\w+) = (?:torch\.)?empty_strided\w*\(\(([^()]*)\), \(([^()]*)\), "
                    r"(?:device=[^,]+, )?(?:dtype=)?torch\.(\w+)(?:, [^()]*)?\)$")
_REINTERPRET = re.compile(r"(\w+) = reinterpret_tensor\((\w+), \(([^()]*)\), \(([^()]*)\), [^()]*\)"
                          r"(?:\.view\(torch\.(\w+)\))?$")
# memory_planning=True: buf0 = alloc_from_pool(pool1, 0, torch.float32, (64, ), (1, ))
_FROM_POOL = re.compile(r"(\w+) = alloc_from_pool\((\w+), [^,]+, torch\.(\w+), \(([^()]*)\), \(([^()]*)\)\)$")
_ALIAS = re.compile(r"(\w+) = (\w+)$")
_ASSIGN_BUF = re.compile(r"((?:buf|pool)\d+) = (.+)$")
# What an allocation, a reuse or a pool view starts with; one that does not then match its
# full pattern above is garbled or cut, never skipped.
_MEMORY_CALL = re.compile(r"\w+ = (?:torch\.)?(?:empty_strided\w*|reinterpret_tensor|alloc_from_pool)\(")
_DEL = re.compile(r"del ([\w, ]+)$")
_RETURN = re.compile(r"return \((.*)\)$|return (\w+)$")


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


def _err(path: str, line: int, message: str) -> InputError:
    return InputError(f"{path}:{line}: {message}")


def _ints(text: str, path: str, line: int) -> tuple[int, ...]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        return tuple(int(t) for t in items)
    except ValueError:
        raise _err(path, line, f"symbolic shape ({text}): dynamic shapes are not supported, "
                               "compile with dynamic=False") from None


def storage_bytes(shape: tuple[int, ...], stride: tuple[int, ...], dtype: str, path: str, line: int) -> int:
    """Bytes the strides need: 1 + sum((size - 1) * stride) elements, 0 if any size is 0."""
    if dtype not in ITEMSIZE:
        raise _err(path, line, f"unknown dtype torch.{dtype}")
    if len(shape) != len(stride):
        raise _err(path, line, f"shape {shape} and stride {stride} differ in rank")
    if any(s == 0 for s in shape):
        return 0
    return (1 + sum((s - 1) * st for s, st in zip(shape, stride))) * ITEMSIZE[dtype]


def _statements(line: str) -> list[str]:
    # "buf10 = reinterpret_tensor(buf7, ...); del buf7  # reuse" -> two statements
    code = line.split("  #", 1)[0].strip()
    if code.startswith("#"):
        return []
    return [s.strip() for s in code.split("; ") if s.strip()]


def _call_bodies(text: str) -> list[tuple[int, int, int, str]]:
    """(def line, first body index, end index, indent) of each `def call` in the text."""
    lines = text.split("\n")
    found = []
    for m in CALL.finditer(text):
        start = text.count("\n", 0, m.start())
        indent = len(m[1].expandtabs())
        end = start + 1
        while end < len(lines):
            body = lines[end]
            if body.strip() and len(body) - len(body.lstrip()) <= indent:
                break
            end += 1
        found.append((start, start + 1, end, m[1]))
    return found


def parse_output_code(text: str, path: str = "<text>") -> list[GraphPlan]:
    """One plan per `def call` in the text (a wrapper module, or a log holding several)."""
    lines = text.split("\n")
    bodies = _call_bodies(text)
    if not bodies:
        raise _err(path, 1, "no 'def call(args):' found: expected Inductor output code")
    aot = [(text.count("\n", 0, m.start()), m[1]) for m in _AOT_ID.finditer(text)]
    plans = []
    for k, (def_line, begin, end, _) in enumerate(bodies):
        # A graph's `# AOT ID` comment opens its module, between the previous call and this one;
        # its inputs' dtypes follow the call (get_args / benchmark_compiled_module).
        previous = bodies[k - 1][0] if k else -1
        name = next((n for ln, n in reversed(aot) if previous < ln < def_line), f"call_{k}")
        tail_end = bodies[k + 1][0] if k + 1 < len(bodies) else len(lines)
        rand = {m[1]: (m[2], m[3], m[4]) for m in _RAND.finditer("\n".join(lines[end:tail_end]))}
        plans.append(_replay(lines, def_line, begin, end, name, rand, path))
    return plans


def _replay(lines: list[str], def_line: int, begin: int, end: int, name: str,
            rand: dict[str, tuple[str, str, str]], path: str) -> GraphPlan:
    dtypes = {n: r[2] for n, r in rand.items()}
    storages: list[Storage] = []
    bound: dict[str, int] = {}          # name -> storage id
    buffers: list[Buffer] = []
    inputs: dict[str, int | None] = {}
    input_shapes: dict[str, str] = {}
    events: list[tuple[int, int]] = []  # (storage id, +1 alloc / -1 free) in program order
    unsized: list[str] = []
    returned: list[str] | None = None
    latest: dict[int, Buffer] = {}      # storage id -> the last buffer bound to it

    def new_storage(nbytes: int | None, origin: str, first: str, line: int) -> int:
        storages.append(Storage(len(storages), nbytes, origin, first, line, {first}))
        bound[first] = storages[-1].id
        if origin != "input":
            events.append((storages[-1].id, 1))
        return storages[-1].id

    def add(buffer: Buffer) -> None:
        buffers.append(buffer)
        latest[buffer.storage] = buffer
        if buffer.reuses is not None:
            bound[buffer.name] = buffer.storage
            storages[buffer.storage].names.add(buffer.name)

    def lookup(n: str, line: int) -> int:
        if n not in bound:
            raise _err(path, line, f"{n} is used but was never assigned (or already deleted)")
        return bound[n]

    for idx in range(begin, end):
        lineno = idx + 1
        for st in _statements(lines[idx]):
            if returned is not None:
                raise _err(path, lineno, "code after 'return' in call")
            if m := _ALLOC.match(st):
                shape, stride = _ints(m[2], path, lineno), _ints(m[3], path, lineno)
                nbytes = storage_bytes(shape, stride, m[4], path, lineno)
                sid = new_storage(nbytes, "alloc", m[1], lineno)
                add(Buffer(m[1], m[4], shape, stride, nbytes, sid, None, lineno))
            elif m := _REINTERPRET.match(st):
                sid = lookup(m[2], lineno)
                shape, stride = _ints(m[3], path, lineno), _ints(m[4], path, lineno)
                src = latest.get(sid)
                dtype = m[5] or (src.dtype if src else dtypes.get(m[2], "uint8"))
                # A view of a fallback kernel's output (dtype "?": the code never says it) has
                # no size either (seen in Inductor's paged-KV decode, torch 2.11).
                nbytes = None if dtype == "?" else storage_bytes(shape, stride, dtype, path, lineno)
                add(Buffer(m[1], dtype, shape, stride, nbytes, sid, m[2], lineno))
            elif m := _FROM_POOL.match(st):
                sid = lookup(m[2], lineno)
                shape, stride = _ints(m[4], path, lineno), _ints(m[5], path, lineno)
                add(Buffer(m[1], m[3], shape, stride, storage_bytes(shape, stride, m[3], path, lineno),
                           sid, m[2], lineno))
            elif (m := _ALIAS.match(st)) and m[2] in bound:
                sid = bound[m[2]]
                src = latest.get(sid)
                if src is not None:
                    add(Buffer(m[1], src.dtype, src.shape, src.stride, src.bytes, sid, m[2], lineno))
                else:  # an input's storage taken over: `buf0 = addmm_1; del addmm_1  # reuse`
                    add(Buffer(m[1], dtypes.get(m[2], "?"), (), (), inputs.get(m[2]), sid, m[2], lineno))
            elif m := _DEL.match(st):
                for n in (t.strip() for t in m[1].split(",")):
                    if not n:
                        continue
                    sid = lookup(n, lineno)
                    del bound[n]
                    s = storages[sid]
                    s.names.discard(n)
                    if not s.names:
                        s.freed_line = lineno
                        if s.origin != "input":
                            events.append((sid, -1))
            elif m := _UNPACK.match(st):
                for n in (t.strip() for t in m[1].split(",")):
                    if n:
                        inputs[n] = None
                        new_storage(None, "input", n, lineno)
            elif m := _ASSERT.match(st):
                target = m[1]
                shape, stride = _ints(m[2], path, lineno), _ints(m[3], path, lineno)
                if target in inputs:
                    input_shapes[target] = f"{dtypes.get(target, '?')}[{','.join(map(str, shape))}]"
                    if target in dtypes:
                        nbytes = storage_bytes(shape, stride, dtypes[target], path, lineno)
                        inputs[target] = storages[_input_storage(storages, target)].bytes = nbytes
            elif m := _RETURN.match(st):
                returned = _returned_names(m[1] if m[1] is not None else m[2], set(bound), path, lineno)
            elif _MEMORY_CALL.match(st):
                raise _err(path, lineno, "expected 'bufN = empty_strided_*((shape), (stride), torch.dtype)' "
                                         f"or 'bufN = reinterpret_tensor(buf, (shape), (stride), offset)', got {st[:80]!r}")
            elif m := _ASSIGN_BUF.match(st):
                # A fallback kernel's result (`buf7 = torch.ops.aten._foo.default(...)`) or a
                # tuple item of one (`buf8 = buf7[0]`): a storage whose size the code omits.
                unsized.append(m[1])
                add(Buffer(m[1], "?", (), (), None, new_storage(None, "unsized", m[1], lineno), None, lineno))
            # Anything else (kernel launches, streams, guards, `args.clear()`) moves no memory.
    if returned is None:
        last = max((i for i in range(begin, end) if lines[i].strip()), default=def_line) + 1
        raise _err(path, last, f"truncated: 'call' at line {def_line + 1} has no return statement")
    for n in inputs:   # an input never asserted: its rand_strided line gives shape and stride
        if inputs[n] is None and n in rand:
            shape, stride = _ints(rand[n][0], path, end), _ints(rand[n][1], path, end)
            inputs[n] = storages[_input_storage(storages, n)].bytes = storage_bytes(
                shape, stride, rand[n][2], path, end)
            input_shapes[n] = f"{rand[n][2]}[{','.join(map(str, shape))}]"
    out_ids: list[int] = []
    returned_inputs: list[str] = []
    for n in returned:
        s = storages[bound[n]]
        if s.origin == "input":
            returned_inputs.append(s.first_name)
        elif s.id not in out_ids:
            out_ids.append(s.id)
    peak, peak_line, at_peak, temp_peak = _peaks(storages, events, set(out_ids))
    return GraphPlan(name, path, def_line + 1, inputs, input_shapes, buffers, storages, out_ids,
                     returned_inputs, peak, peak_line, at_peak, temp_peak, unsized)


def _input_storage(storages: list[Storage], name: str) -> int:
    return next(s.id for s in storages if s.origin == "input" and s.first_name == name)


def _returned_names(text: str, known: set[str], path: str, line: int) -> list[str]:
    """Names of `return (buf9, reinterpret_tensor(buf10, (8192, 4096), (1, 8192), 0), None, )`."""
    items, depth, cur = [], 0, []
    for ch in text:
        if ch == "," and depth == 0:
            items.append("".join(cur).strip())
            cur = []
            continue
        depth += ch in "([{"
        depth -= ch in ")]}"
        cur.append(ch)
    items.append("".join(cur).strip())
    names = []
    for item in filter(None, items):
        if item == "None" or re.fullmatch(r"-?[\d.e+-]+", item):
            continue
        found = next((t for t in re.findall(r"[A-Za-z_]\w*", item) if t in known), None)
        if found is None:
            raise _err(path, line, f"returned {item[:60]!r} names no live buffer")
        names.append(found)
    return names


def _peaks(storages: list[Storage], events: list[tuple[int, int]],
           outputs: set[int]) -> tuple[int, int, list[int], int]:
    live = temp = peak = temp_peak = 0
    peak_line = 0
    alive: set[int] = set()
    at_peak: list[int] = []
    for sid, sign in events:
        nbytes = storages[sid].bytes or 0
        live += sign * nbytes
        if sign > 0:
            alive.add(sid)
        else:
            alive.discard(sid)
        if sid not in outputs:
            temp += sign * nbytes
        if live > peak:
            peak, peak_line, at_peak = live, storages[sid].line, sorted(alive)
        temp_peak = max(temp_peak, temp)
    return peak, peak_line, at_peak, temp_peak
