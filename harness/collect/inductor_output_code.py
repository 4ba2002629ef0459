"""Inductor output code (the wrapper module) -> the static memory plan of each graph.

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

Graph partitions (torch >= 2.9, `graph_partition=True`) move the kernels into
`def partition_0(args):` functions; `call` hands each its argument list and binds what it
returns, and the replay follows them. Definitions of the figures: inductor_plan.py.
"""
from __future__ import annotations

import re

from harness.collect.inductor_plan import (Buffer, GraphPlan, Storage, error_at, int_tuple,
                                           storage_bytes)

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
# Graph partitions (torch >= 2.9, graph_partition=True): `def partition_0(args):` holds the
# kernels; call hands them `partition0_args = [arg0_1, buf1]` and binds what they return:
# `(buf0, buf1, arg1_1) = self.partitions[0](partition0_args)`.
_PARTITION = re.compile(r"^([ \t]*)def partition_(\d+)\(args\):[ \t]*$", re.M)
_ARGS_LIST = re.compile(r"(partition\d+_args) = \[([\w, ]*)\]$")
_PARTITION_CALL = re.compile(r"\(([\w, ]*)\) = self\.partitions\[(\d+)\]\((partition\d+_args)\)$")



def _statements(line: str) -> list[str]:
    # "buf10 = reinterpret_tensor(buf7, ...); del buf7  # reuse" -> two statements
    code = line.split("  #", 1)[0].strip()
    if code.startswith("#"):
        return []
    return [s.strip() for s in code.split("; ") if s.strip()]


def _bodies(text: str, pattern: re.Pattern[str]) -> list[tuple[int, int, str]]:
    """(def line index, end index, name) of each function `pattern` finds (group 1: indent)."""
    lines = text.split("\n")
    found = []
    for m in pattern.finditer(text):
        start = text.count("\n", 0, m.start())
        indent = len(m[1].expandtabs())
        end = start + 1
        while end < len(lines):
            body = lines[end]
            if body.strip() and len(body) - len(body.lstrip()) <= indent:
                break
            end += 1
        found.append((start, end, m[m.lastindex] if m.lastindex and m.lastindex > 1 else ""))
    return found


def parse_output_code(text: str, path: str = "<text>") -> list[GraphPlan]:
    """One plan per `def call` in the text (a wrapper module, or a log holding several)."""
    lines = text.split("\n")
    calls = _bodies(text, CALL)
    if not calls:
        raise error_at(path, 1, "no 'def call(args):' found: expected Inductor output code")
    aot = [(text.count("\n", 0, m.start()), m[1]) for m in _AOT_ID.finditer(text)]
    partitions = _bodies(text, _PARTITION)
    plans = []
    for k, (def_line, end, _) in enumerate(calls):
        # A graph's `# AOT ID` comment opens its module, between the previous call and this one;
        # its inputs' dtypes follow the call (get_args / benchmark_compiled_module), and its
        # partitions (torch >= 2.9) are defined before it.
        previous = calls[k - 1][0] if k else -1
        name = next((n for ln, n in reversed(aot) if previous < ln < def_line), f"call_{k}")
        tail_end = calls[k + 1][0] if k + 1 < len(calls) else len(lines)
        rand = {m[1]: (m[2], m[3], m[4]) for m in _RAND.finditer("\n".join(lines[end:tail_end]))}
        own = {int(n): (a, b) for a, b, n in partitions if previous < a < def_line}
        plans.append(_Replay(lines, path, rand, own).graph(name, def_line, end))
    return plans


class _Replay:
    """Replays the memory statements of one graph's `call` in program order, entering the
    graph partitions it calls (`(buf0, buf1) = self.partitions[0](partition0_args)`)."""

    def __init__(self, lines: list[str], path: str, rand: dict[str, tuple[str, str, str]],
                 partitions: dict[int, tuple[int, int]]):
        self.lines, self.path, self.rand, self.partitions = lines, path, rand, partitions
        self.dtypes = {n: r[2] for n, r in rand.items()}
        self.storages: list[Storage] = []
        self.bound: dict[str, int] = {}          # scoped name ("p0/arg1_1") -> storage id
        self.buffers: list[Buffer] = []
        self.inputs: dict[str, int | None] = {}
        self.input_shapes: dict[str, str] = {}
        self.events: list[tuple[int, int]] = []  # (storage id, +1 alloc / -1 free)
        self.unsized: list[str] = []
        self.latest: dict[int, Buffer] = {}      # storage id -> the last buffer bound to it
        self.lists: dict[str, list[int]] = {}    # partitionK_args -> storage ids it holds

    def graph(self, name: str, def_line: int, end: int) -> GraphPlan:
        returned = self.body(def_line, end, "", None)
        self._size_inputs(def_line, end)
        if not self.inputs and not self.buffers:
            raise error_at(self.path, def_line + 1, "'call' takes no inputs and allocates nothing: "
                       "expected Inductor output code ('arg0_1, ... = args', 'buf0 = "
                       "empty_strided_...(...)')")
        out_ids: list[int] = []
        returned_inputs: list[str] = []
        for sid in returned:
            s = self.storages[sid]
            if s.origin == "input":
                returned_inputs.append(s.first_name)
            elif sid not in out_ids:
                out_ids.append(sid)
        peak, peak_line, at_peak, temp_peak = _peaks(self.storages, self.events, set(out_ids))
        return GraphPlan(name, self.path, def_line + 1, self.inputs, self.input_shapes,
                         self.buffers, self.storages, out_ids, returned_inputs, peak, peak_line,
                         at_peak, temp_peak, self.unsized)

    def body(self, def_line: int, end: int, scope: str, args: str | None) -> list[int]:
        """Storage ids a function returns; `args`: the argument list a partition is handed."""
        returned: list[int] | None = None
        for idx in range(def_line + 1, end):
            for st in _statements(self.lines[idx]):
                if returned is not None:
                    raise error_at(self.path, idx + 1, "code after 'return' in call")
                returned = self.statement(st, idx + 1, scope, args)
        if returned is None:
            last = max((i for i in range(def_line + 1, end) if self.lines[i].strip()),
                       default=def_line) + 1
            function = re.search(r"def (\w+)", self.lines[def_line])[1]
            raise error_at(self.path, last, f"truncated: '{function}' at line {def_line + 1} has no "
                                        "return statement")
        return returned

    def new_storage(self, nbytes: int | None, origin: str, first: str, line: int,
                    scope: str = "") -> int:
        sid = len(self.storages)
        self.storages.append(Storage(sid, nbytes, origin, first, line, {scope + first}))
        self.bound[scope + first] = sid
        if origin != "input":
            self.events.append((sid, 1))
        return sid

    def add(self, buffer: Buffer, scope: str) -> None:
        self.buffers.append(buffer)
        self.latest[buffer.storage] = buffer
        if buffer.reuses is not None:
            self.bind(scope + buffer.name, buffer.storage)

    def bind(self, scoped: str, sid: int) -> None:
        self.bound[scoped] = sid
        self.storages[sid].names.add(scoped)

    def lookup(self, scoped: str, line: int) -> int:
        if scoped not in self.bound:
            name = scoped.rsplit("/", 1)[-1]
            raise error_at(self.path, line, f"{name} is used but was never assigned (or already deleted)")
        return self.bound[scoped]

    def unbind(self, scoped: str, line: int) -> None:
        sid = self.lookup(scoped, line)
        del self.bound[scoped]
        s = self.storages[sid]
        s.names.discard(scoped)
        if not s.names:
            s.freed_line = line
            if s.origin != "input":
                self.events.append((sid, -1))

    def statement(self, st: str, line: int, scope: str, args: str | None) -> list[int] | None:
        """Replays one statement; the storage ids it returns for a `return`."""
        for pattern, handler in self._HANDLERS:
            if m := pattern.match(st):
                return handler(self, m, line, scope, args)
        if _MEMORY_CALL.match(st):
            raise error_at(self.path, line, "expected 'bufN = empty_strided_*((shape), (stride), torch.dtype)' or "
                                        f"'bufN = reinterpret_tensor(buf, (shape), (stride), offset)', got {st[:80]!r}")
        if m := _ASSIGN_BUF.match(st):
            # A fallback kernel's result (`buf7 = torch.ops.aten._foo.default(...)`) or a
            # tuple item of one (`buf8 = buf7[0]`): a storage whose size the code omits.
            self.unsized.append(m[1])
            sid = self.new_storage(None, "unsized", m[1], line, scope)
            self.add(Buffer(m[1], "?", (), (), None, sid, None, line), scope)
        # Anything else (kernel launches, streams, guards, `args.clear()`) moves no memory.
        return None

    def _alloc(self, m: re.Match, line: int, scope: str, _args) -> None:
        shape, stride = int_tuple(m[2], self.path, line), int_tuple(m[3], self.path, line)
        nbytes = storage_bytes(shape, stride, m[4], self.path, line)
        sid = self.new_storage(nbytes, "alloc", m[1], line, scope)
        self.add(Buffer(m[1], m[4], shape, stride, nbytes, sid, None, line), scope)

    def _reinterpret(self, m: re.Match, line: int, scope: str, _args) -> None:
        sid = self.lookup(scope + m[2], line)
        shape, stride = int_tuple(m[3], self.path, line), int_tuple(m[4], self.path, line)
        src = self.latest.get(sid)
        dtype = m[5] or (src.dtype if src else self.dtypes.get(m[2], "uint8"))
        # A view of a fallback kernel's output (dtype "?": the code never says it) has no
        # size either (seen in Inductor's paged-KV decode, torch 2.11).
        nbytes = None if dtype == "?" else storage_bytes(shape, stride, dtype, self.path, line)
        self.add(Buffer(m[1], dtype, shape, stride, nbytes, sid, m[2], line), scope)

    def _from_pool(self, m: re.Match, line: int, scope: str, _args) -> None:
        sid = self.lookup(scope + m[2], line)
        shape, stride = int_tuple(m[4], self.path, line), int_tuple(m[5], self.path, line)
        self.add(Buffer(m[1], m[3], shape, stride, storage_bytes(shape, stride, m[3], self.path, line),
                        sid, m[2], line), scope)

    def _alias(self, m: re.Match, line: int, scope: str, _args) -> None:
        if scope + m[2] not in self.bound:   # not a buffer: e.g. `buf3 = 1.0`
            return self._assign_unsized(m, line, scope)
        sid = self.bound[scope + m[2]]
        src = self.latest.get(sid)
        if src is not None:
            self.add(Buffer(m[1], src.dtype, src.shape, src.stride, src.bytes, sid, m[2], line), scope)
        else:  # an input's storage taken over: `buf0 = addmm_1; del addmm_1  # reuse`
            nbytes = self.storages[sid].bytes
            self.add(Buffer(m[1], self.dtypes.get(m[2], "?"), (), (), nbytes, sid, m[2], line), scope)
        return None

    def _assign_unsized(self, m: re.Match, line: int, scope: str) -> None:
        if (b := _ASSIGN_BUF.match(m[0])) is not None:
            self.unsized.append(b[1])
            sid = self.new_storage(None, "unsized", b[1], line, scope)
            self.add(Buffer(b[1], "?", (), (), None, sid, None, line), scope)

    def _del(self, m: re.Match, line: int, scope: str, _args) -> None:
        for n in (t.strip() for t in m[1].split(",")):
            if n in self.lists:   # a partition's argument list: what it still holds
                for k, _ in enumerate(self.lists.pop(n)):
                    if f"{n}[{k}]" in self.bound:
                        self.unbind(f"{n}[{k}]", line)
            elif n:
                self.unbind(scope + n, line)

    def _unpack(self, m: re.Match, line: int, scope: str, args: str | None) -> None:
        names = [t.strip() for t in m[1].split(",") if t.strip()]
        if args is None:        # the graph's own inputs
            for n in names:
                self.inputs[n] = None
                self.new_storage(None, "input", n, line)
            return
        # a partition's: the caller's storages, bound here; `args.clear()` lets the list go
        for k, n in enumerate(names):
            self.bind(scope + n, self.lists[args][k])
        for k in range(len(self.lists[args])):
            self.unbind(f"{args}[{k}]", line)

    def _assert(self, m: re.Match, line: int, scope: str, _args) -> None:
        target = m[1]
        shape, stride = int_tuple(m[2], self.path, line), int_tuple(m[3], self.path, line)
        if not scope and target in self.inputs:
            self.input_shapes[target] = f"{self.dtypes.get(target, '?')}[{','.join(map(str, shape))}]"
            if target in self.dtypes:
                nbytes = storage_bytes(shape, stride, self.dtypes[target], self.path, line)
                self.inputs[target] = self.storages[self.bound[target]].bytes = nbytes

    def _args_list(self, m: re.Match, line: int, scope: str, _args) -> None:
        """`partition0_args = [arg0_1, buf1]`: the list holds its storages until the call."""
        sids = [self.lookup(scope + n.strip(), line) for n in m[2].split(",") if n.strip()]
        self.lists[m[1]] = sids
        for k, sid in enumerate(sids):
            self.bind(f"{m[1]}[{k}]", sid)

    def _partition_call(self, m: re.Match, line: int, scope: str, _args) -> None:
        """`(buf0, buf1,) = self.partitions[0](partition0_args)`: the partition's body with the
        argument list handed over, then what it returns bound here."""
        k, list_name = int(m[2]), m[3]
        if k not in self.partitions:
            raise error_at(self.path, line, f"calls partition {k}, but partition_{k} is not defined")
        if list_name not in self.lists:
            raise error_at(self.path, line, f"{list_name} is used but was never assigned")
        inner = f"partition_{k}@{line}/"
        start, end = self.partitions[k]
        returned = self.body(start, end, inner, list_name)
        for n, sid in zip((n.strip() for n in m[1].split(",") if n.strip()), returned):
            self.bind(scope + n, sid)
        for scoped in [n for n in self.bound if n.startswith(inner)]:
            self.unbind(scoped, line)

    def _return(self, m: re.Match, line: int, scope: str, _args) -> list[int]:
        known = {n[len(scope):] for n in self.bound if n.startswith(scope) and "/" not in n[len(scope):]}
        names = _returned_names(m[1] if m[1] is not None else m[2], known, self.path, line)
        return [self.bound[scope + n] for n in names]

    def _size_inputs(self, def_line: int, end: int) -> None:
        """An input never asserted: its rand_strided line gives shape and stride. One with no
        dtype at all means the benchmark block after `call` is missing: a cut file."""
        for n in self.inputs:
            if self.inputs[n] is None and n in self.rand:
                shape = int_tuple(self.rand[n][0], self.path, end)
                stride = int_tuple(self.rand[n][1], self.path, end)
                self.inputs[n] = self.storages[_input_storage(self.storages, n)].bytes = storage_bytes(
                    shape, stride, self.rand[n][2], self.path, end)
                self.input_shapes[n] = f"{self.rand[n][2]}[{','.join(map(str, shape))}]"
        missing = [n for n, b in self.inputs.items() if b is None]
        if missing:
            raise error_at(self.path, end, f"truncated: no dtype for input {missing[0]} of 'call' at line "
                       f"{def_line + 1}: expected its 'rand_strided(..., dtype=...)' line in get_args() "
                       "after call (was the file cut after call's return?)")

    _HANDLERS: tuple = ()


_Replay._HANDLERS = (
    (_ALLOC, _Replay._alloc), (_REINTERPRET, _Replay._reinterpret), (_FROM_POOL, _Replay._from_pool),
    (_ALIAS, _Replay._alias), (_DEL, _Replay._del), (_UNPACK, _Replay._unpack),
    (_ASSERT, _Replay._assert), (_ARGS_LIST, _Replay._args_list),
    (_PARTITION_CALL, _Replay._partition_call), (_RETURN, _Replay._return))


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
            raise error_at(path, line, f"returned {item[:60]!r} names no live buffer")
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
