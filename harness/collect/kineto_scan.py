"""The Kineto fast path's text scan: the events the kernel table needs, cut out of a trace laid
out the way libkineto writes it, as plain Python values (no numpy, no pandas).

Plain values, so that `python -m harness.kernels` can scan a trace in forked processes while
it imports pandas (`scan_in_background`): on a 100 MB trace the scan and the imports are the
two largest costs, and they do not depend on each other. kineto.py builds the table's
columns from a `Scan`; both ways give the same table (the tests read traces through both).

Kineto's own writer (libkineto ChromeTraceLogger) lays every event out the same way:
    \\n  {\\n    "ph": "X", "cat": "kernel", "name": "...", "pid": 0, "tid": 7,\\n    "ts": ...,
    "dur": ...,\\n    "args": {\\n      "External id": 8, ... "correlation": 15, ...\\n    }\\n  }
so the events the table needs can be found with a regex and cut out of the text (raw newlines
never occur inside JSON strings, so "\\n  }" only ends an event). Building Python objects for
the other ~80% (cpu ops that launch nothing, flow arrows) and freeing them again costs more
than all the rest of the work. A trace laid out any other way (re-saved by json.dump,
compact) takes the full parse.
"""
from __future__ import annotations

import gc
import marshal
import os
import re
from typing import Any, Callable, Iterable

import orjson

_NUM = rb"(-?[\d.]+(?:[eE][-+]?\d+)?)"
_HEAD = re.compile(rb'"traceEvents":\s*\[\s*\{\n    "ph": ')
_GPU = re.compile(
    rb'\n  \{\n    "ph": "X", "cat": "(kernel|gpu_memcpy|gpu_memset)", '
    rb'"name": "([^"\\\n]*(?:\\.[^"\\\n]*)*)", "pid": [^,\n]*, "tid": [^,\n]*,\n    "ts": ' + _NUM +
    rb', "dur": ' + _NUM + rb',\n    "args": \{\n      "External id": (\d+),[^\n]*"correlation": '
    rb'(\d+)(?:[^\n]*"bytes": (\d+))?')
_LAUNCH = re.compile(
    rb'\n  \{\n    "ph": "X", "cat": "cuda_(?:runtime|driver)", '
    rb'(?:"name": "[^"\n]*", "pid": [^,\n]*, "tid": ([^,\n]*),\n    "ts": ' + _NUM +
    rb',[^\n]*\n    "args": \{\n[^\n]*"correlation": (\d+))?')
# cpu ops with their args on one line (all seen so far): name, thread, start, duration,
# External id and the rest of the args, in one C-level pass
_OP_EVENT = re.compile(rb'\n  \{\n    "ph": "X", "cat": "(?:cpu_op|user_annotation)", '
                       rb'"name": "([^"\n]*)", "pid": [^,\n]*, "tid": ([^,\n]*),\n    "ts": '
                       + _NUM + rb', "dur": ' + _NUM + rb',\n    "args": \{\n      '
                       rb'"External id": (\d+)([^\n]*)\n    \}\n  \}')
# any cpu op with an External id, however its args are laid out (the slow pass)
_OP = re.compile(rb'\n  \{\n    "ph": "X", "cat": "(?:cpu_op|user_annotation)", [^\n]*\n'
                 rb'[^\n]*\n    "args": \{\n      "External id": (\d+)')
# what differs between two launches of the same op with the same inputs
_VOLATILE = re.compile(rb'"(?:Ev Idx|Sequence number|Fwd thread id|Record function id)": '
                       rb'-?[\d.]+')
_DEVICE = re.compile(rb'"deviceProperties":\s*\[\s*\{[^}]*?"name":\s*"([^"]*)"')
_END = b"\n  }"
_MARKER_CATS = ("user_annotation", "cpu_op")

# A scan, as a dict of plain values (marshal carries it between processes):
#   kernel, ts, dur, correlation, external_id, bytes, kernels: the GPU events (kernel,
#     gpu_memcpy, gpu_memset; bytes NaN for kernels), in file order, and how many are kernels
#   launches: correlation -> (host launch ts, thread as its raw text)
#   markers: the harness_iter* / ProfilerStep# host events, parsed, in file order
#   aten_tid, aten_ts, aten_dur, aten_name: the aten:: cpu ops (thread and name raw text)
#   op_keys: External id of a GPU event -> index in op_events of its launching op, ops with
#     the same name and recorded inputs sharing one (each distinct op is costed once)
#   op_events: those ops, parsed
#   device: deviceProperties' first name, or None
Scan = dict


def _cut(buf: bytes, starts: Iterable[int]) -> list[bytes]:
    """The events beginning at `starts` (their leading newline), as JSON text."""
    find = buf.find
    return [buf[s + 1:find(_END, s + 1) + len(_END)] for s in starts]


def _parse_events(pieces: list[bytes]) -> list[dict]:
    """Parse many cut events in one JSON call: per-event calls cost more than the parse."""
    return orjson.loads(b"[" + b",".join(pieces) + b"]") if pieces else []


def _marker_starts(buf: bytes) -> list[int]:
    """Event starts of the few events named harness_iter*/ProfilerStep#, in file order:
    bytes.find is a memchr-speed scan, a regex pass is several times slower."""
    starts = []
    for needle in (b'"name": "harness_iter', b'"name": "ProfilerStep#'):
        i = buf.find(needle)
        while i >= 0:
            starts.append(buf.rfind(b"\n  {\n", 0, i))
            i = buf.find(needle, i + 1)
    return sorted(set(s for s in starts if s >= 0))


def _markers(buf: bytes) -> list[dict]:
    """Both kinds of iteration marker, as the full parse collects them: which kind cuts the
    iterations is iteration_windows' choice, made in one place."""
    return [e for e in _parse_events(_cut(buf, _marker_starts(buf)))
            if e.get("cat") in _MARKER_CATS]


def _whole_file(buf: bytes, head: re.Match) -> bool:
    """The text around the events is a complete JSON object: the file was not cut after some
    events (a cut that ends just after an event's args would otherwise read as a trace)."""
    last = buf.rfind(_END)
    rest = buf[last + len(_END):].lstrip(b", \n\r\t")
    if last < 0 or not rest.startswith(b"]"):
        return False
    try:
        orjson.loads(buf[:head.start()] + b'"traceEvents": []' + rest[1:])
    except orjson.JSONDecodeError:
        return False
    return True


def _gpu(buf: bytes) -> dict[str, Any] | None:
    """GPU events straight from the text; None unless every one of them was found (an event
    without `dur`, or laid out otherwise, goes to the full parse, which names it)."""
    found = _GPU.findall(buf)
    cats = [f[0] for f in found]
    kernels = cats.count(b"kernel")
    # two counting passes, not three: "gpu_mem" counts memcpys and memsets together (any other
    # category of that prefix only makes the counts differ: the full parse then)
    if kernels != buf.count(b'"cat": "kernel"') or \
            len(found) - kernels != buf.count(b'"cat": "gpu_mem'):
        return None
    names: dict[bytes, str] = {}
    for f in found:
        if f[1] not in names:   # a JSON string's text: unescape only where it has escapes
            names[f[1]] = orjson.loads(b'"%s"' % f[1]) if b"\\" in f[1] else f[1].decode()
    nan = float("nan")
    return {"kernel": [names[f[1]] for f in found],
            "ts": [float(f[2]) for f in found], "dur": [float(f[3]) for f in found],
            "correlation": [int(f[5]) for f in found], "external_id": [int(f[4]) for f in found],
            "bytes": [float(f[6]) if f[0] != b"kernel" and f[6] else nan for f in found],
            "kernels": kernels}


def _launches(buf: bytes) -> dict[Any, tuple[float, Any]]:
    fields = _LAUNCH.findall(buf)
    if all(corr for _, _, corr in fields):
        # reversed: the first launch of a correlation id wins, as in the full parse
        return {int(c): (float(t), tid) for tid, t, c in reversed(fields)}
    launches: dict[Any, tuple[float, Any]] = {}
    for e in _parse_events(_cut(buf, (m.start() for m in _LAUNCH.finditer(buf)))):
        corr = (e.get("args") or {}).get("correlation")   # a launch laid out differently
        if corr is not None:
            launches.setdefault(corr, (e["ts"], str(e.get("tid")).encode()))
    return launches


def _ops(buf: bytes, ops: list[tuple[bytes, ...]], needed: Iterable[int]
         ) -> tuple[dict[int, int], list[dict]]:
    """(External id -> index of its op, the distinct ops parsed) for the ids in `needed`."""
    # External id -> its op; reversed, so that the first of duplicate ids wins
    index = dict(zip((op[4] for op in reversed(ops)), range(len(ops) - 1, -1, -1)))
    found: dict[int, bytes] = {}
    for x in needed:
        i = index.get(b"%d" % x)
        if i is not None and x not in found:
            name, _, _, _, ext, rest = ops[i]
            found[x] = b'{"name": "%s", "args": {"External id": %s%s}}' % (name, ext, rest)
    missing = set(needed) - found.keys()
    if missing:   # ops Kineto wrote with multi-line args (none seen so far)
        for m in _OP.finditer(buf):
            x = int(m.group(1))
            if x in missing and x not in found:
                found[x] = _cut(buf, [m.start()])[0]
    # the volatile fields of every op removed in one regex pass over their joined text (one
    # pass, not 34k calls, on a 100 MB trace); raw NUL never occurs in JSON text
    ids = list(found)
    stripped = _VOLATILE.sub(b"", b"\0".join(
        found[x].replace(b'"External id": %d' % x, b"", 1) for x in ids)).split(b"\0")
    distinct: dict[bytes, int] = {}
    texts: list[bytes] = []
    keys: dict[int, int] = {}
    for x, key in zip(ids, stripped):
        if key not in distinct:
            distinct[key] = len(texts)
            texts.append(found[x])
        keys[x] = distinct[key]
    return keys, _parse_events(texts)


def _kineto_head(buf: bytes) -> re.Match | None:
    """Where the events begin, when the text opens as libkineto writes it and is whole; None
    for any other trace (a JAX perfetto trace, a re-saved or compact one, a cut file): a cheap
    look before the passes over the whole text."""
    head = _HEAD.search(buf, 0, 1 << 16)
    return head if head is not None and _whole_file(buf, head) else None


def scan_gpu(buf: bytes) -> Scan | None:
    """The GPU events, their host launches, the iteration markers and the device; None when
    the text is laid out otherwise or is not whole (the full parse then says where it
    breaks)."""
    head = _kineto_head(buf)
    if head is None:
        return None
    try:
        out = _gpu(buf)
        if out is None or not out["kernels"]:
            return None
        out["launches"] = _launches(buf)
        out["markers"] = _markers(buf)
    except (ValueError, KeyError):
        return None
    device = _DEVICE.search(buf, 0, head.start())
    out["device"] = device.group(1).decode() if device else None
    return out


def scan_ops(buf: bytes, ids: Iterable[int]) -> Scan | None:
    """The aten:: ops (where each ran) and the launching op of each External id in `ids`;
    None when some cpu op is laid out otherwise."""
    try:
        ops = _OP_EVENT.findall(buf)
        aten = [op for op in ops if op[0].startswith(b"aten::")]
        if len(aten) != buf.count(b'"cat": "cpu_op", "name": "aten::'):
            return None   # some aten op laid out otherwise: do not trust the cut
        out: Scan = {"aten_tid": [op[1] for op in aten], "aten_name": [op[0] for op in aten],
                     "aten_ts": [float(op[2]) for op in aten],
                     "aten_dur": [float(op[3]) for op in aten], "asked": list(ids)}
        out["op_keys"], out["op_events"] = _ops(buf, ops, out["asked"])
    except (ValueError, KeyError):
        return None
    return out


# The External ids of the GPU events, found on their own (for a process scanning the ops
# while another scans the GPU events): laid out more loosely than _GPU, so that they are
# never fewer than _GPU finds (checked: a missing one makes the caller scan again itself).
_GPU_IDS = re.compile(rb'\n    "ph": "X", "cat": "(?:kernel|gpu_memcpy|gpu_memset)", [^\n]*\n'
                      rb'[^\n]*\n    "args": \{\n      "External id": (\d+)')


def scan(buf: bytes) -> Scan | None:
    """Kineto's layout, cut from the text; None when the text is laid out otherwise or is not
    whole (the full parse then says where it breaks)."""
    gpu = scan_gpu(buf)
    ops = scan_ops(buf, dict.fromkeys(gpu["external_id"])) if gpu is not None else None
    return {**gpu, **ops} if gpu is not None and ops is not None else None


def _in_child(work: Callable[[], Any]) -> Callable[[], Any]:
    """`work()` in a forked process; the returned call waits for its result, None where the
    child failed in any way (the caller then does the work itself and reports what is
    wrong)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: work, hand over, and leave without running the parent's exit code
        code = 1
        try:
            gc.disable()   # it frees nothing it makes: its results are kept until it exits
            os.close(r)
            try:
                found = work()
            except Exception:   # the parent's own attempt names the problem
                found = None
            with os.fdopen(w, "wb") as pipe:
                pipe.write(marshal.dumps(found))
            code = 0
        finally:
            os._exit(code)
    os.close(w)

    def result() -> Any:
        with os.fdopen(r, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        if status != 0 or not data:
            return None
        try:
            return marshal.loads(data)
        except (EOFError, ValueError, TypeError):
            return None
    return result


def scan_in_background(buf: bytes) -> Callable[[], Scan | None]:
    """`scan(buf)` in two forked processes, one for the GPU events and one for the cpu ops
    (on a 100 MB trace each takes about half of the scan, and both together less than the
    caller's own imports); they share `buf` with the caller (copy on write: no copy, where
    reading it in each cost a third of their time in page faults). The returned call waits
    for them: None where fork is not available or either process did not give a usable
    result, and the caller scans itself. A trace the scan would refuse forks nothing."""
    if not hasattr(os, "fork") or _kineto_head(buf) is None:
        return lambda: None
    gpu_part = _in_child(lambda: scan_gpu(buf))
    ops_part = _in_child(lambda: scan_ops(buf, dict.fromkeys(int(x) for x in _GPU_IDS.findall(buf))))

    def result() -> Scan | None:
        gpu, found = gpu_part(), ops_part()
        if gpu is None or found is None or not set(gpu["external_id"]) <= set(found["asked"]):
            return None
        return {**gpu, **found}
    return result
