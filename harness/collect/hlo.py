"""XLA HLO text: instructions, their costs, the PyTorch op each comes from, and module facts.

Read from XLA's dumps (`--xla_dump_to=DIR --xla_dump_hlo_as_text`):
- `*after_optimizations.txt`, the optimised module: one instruction a line,
    %cublas-gemm.0 = (f32[8192,4096]{1,0}, s8[33554432]{0}) custom-call(%a, %b, ...),
      custom_call_target="__cublas$lt$matmul$f8", metadata={op_name="jit(step)/..."}, ...
  (older XLA prints operand shapes inline: `custom-call(f8e4m3fn[2048,4096]{1,0} %a, ...)`);
- `*-buffer-assignment-values.txt`, which prints the entry instruction of every value with
  its users (`from instruction: %wrapped_transpose.1 = ... metadata={op_name="..."}`): enough
  for the source op of each kernel when the module itself was not kept.

Each instruction's `metadata={op_name=...}` is the path torchax/JAX recorded while tracing:
"jit(harness_xla_step)/scaled_dot_product_attention/aten::bmm/dot_general". Without the
jit scope and the final JAX primitive it names the PyTorch op the kernel comes from
("scaled_dot_product_attention/aten::bmm"), what Kineto's enclosing cpu_op says for eager
and Inductor. Layout copies the model asked for as views (`v.transpose(1, 2)` handed to
SDPA, free on Inductor, a transpose kernel on XLA) take the op of their consumer.

Also the module facts backends/xla.py reports: op counts, input/output aliases, fp8 dots
of the lowered StableHLO.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.collect.devices import peak_dtype
from harness.collect.trace_io import OpCost
from harness.errors import InputError

FP8_GEMM_TARGET = "__cublas$lt$matmul$f8"
_ITEMSIZE = {"pred": 1, "s4": 0.5, "u4": 0.5, "s8": 1, "u8": 1, "s16": 2, "u16": 2,
             "s32": 4, "u32": 4, "s64": 8, "u64": 8, "f16": 2, "bf16": 2, "f32": 4,
             "f64": 8, "c64": 8, "c128": 16, "f8e4m3fn": 1, "f8e5m2": 1, "f8e4m3fnuz": 1,
             "f8e5m2fnuz": 1, "f8e4m3": 1, "f8e3m4": 1, "f8e8m0fnu": 1, "f4e2m1fn": 0.5}
_SHAPE = re.compile(r"\b(pred|[suf]\d+|bf16|c64|c128|f8e\w+?|f4e2m1fn)\[([\d,]*)\]")
_COMP = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s*\(.*\)\s*->\s*.*\{\s*$")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*")
_OPERAND = re.compile(r"^%?([\w.\-]+)(?:#(\d+))?$")
_OP_NAME = re.compile(r'metadata=\{[^}]*?op_name="((?:[^"\\]|\\.)*)"')
# "<7416 wrapped_transpose.1 @0>\n positions:\n  wrapped_transpose.1\n  bitcast.912.0\n uses:\n
#   gemm_fusion_dot_general.171, operand 1\n from instruction: %wrapped_transpose.1 = ..."
_VALUE = re.compile(r"^<\d+ \S+ @\d+>\n positions:\n((?:  [^\n]*\n)*) uses:\n((?:  [^\n]*\n)*)"
                    r" from instruction: ([^\n]*)$", re.M)
_ALIASING = frozenset({"bitcast", "get-tuple-element"})
# aten ops that only change how a tensor is viewed: what PyTorch gives for free
_VIEW_OP = re.compile(r"^aten::(transpose|permute|t|view|reshape|_unsafe_view|expand|contiguous|"
                      r"clone|unsqueeze|squeeze|slice|select|as_strided|alias|flatten|unflatten|"
                      r"movedim|swapaxes|numpy_T|mT|mH|adjoint)(\.\w+)?$")
_WRAPPER = re.compile(r"^(?:jvp|transpose|vmap|remat|checkpoint|custom_jvp_call|"
                      r"custom_vjp_call)\((.*)\)$")


@dataclass(frozen=True)
class Instr:
    name: str
    shape: str
    opcode: str
    operands: str
    attrs: str
    line: str

    @property
    def op_name(self) -> str:
        m = _OP_NAME.search(self.attrs)
        return m.group(1) if m else ""

    def operand_names(self) -> list[str]:
        return re.findall(r"%([\w.\-]+)", self.operands)


@dataclass
class HloModule:
    """One optimised HLO module: each instruction's cost and source op, found by name or
    by the kernel name XLA gives it."""
    name: str
    costs: dict[str, OpCost]        # instruction name -> cost (empty from a values file)
    by_kernel: dict[str, str]       # kernel name ("loop_convert_fusion_1") -> instruction
    gemm_schedule: list[str]        # cuBLAS custom-calls in execution order
    fp8: bool                       # any f8 value in the module
    source_ops: dict[str, str] = field(default_factory=dict)   # instruction -> PyTorch op


def balanced_end(text: str, start: int) -> int:
    """Index just past the parenthesis group opening at text[start] == '('."""
    depth = 0
    for i in range(start, len(text)):
        c = text[i]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
    return len(text)


def parse_instr(line: str) -> Instr | None:
    m = _INSTR.match(line)
    if not m:
        return None
    rest = line[m.end():]
    if rest.startswith("("):
        end = balanced_end(rest, 0)
        shape, rest = rest[:end], rest[end:].lstrip()
    else:
        shape, _, rest = rest.partition(" ")
    paren = rest.find("(")
    if paren <= 0:
        return None
    opcode = rest[:paren]
    end = balanced_end(rest, paren)
    return Instr(m.group(1), shape, opcode, rest[paren + 1:end - 1], rest[end:], line)


def shapes(text: str) -> list[tuple[str, list[int]]]:
    return [(t, [int(d) for d in dims.split(",") if d]) for t, dims in _SHAPE.findall(text)]


def _shape_bytes(found: list[tuple[str, list[int]]]) -> float:
    return float(sum(math.prod(d) * _ITEMSIZE.get(t, math.nan) for t, d in found))


def _operand_shapes(ins: Instr, shape_of: dict[str, str]) -> list[tuple[str, list[int]]]:
    """Operand shapes: printed inline by older XLA ("bf16[2048,4096]{1,0} %p0"), by name only
    by newer ("%p0", "%cublas-gemm.1#0" for a tuple element): then looked up."""
    inline = shapes(ins.operands)
    if inline:
        return inline
    out: list[tuple[str, list[int]]] = []
    for token in ins.operands.split(","):
        m = _OPERAND.match(token.strip())
        if not m or m.group(1) not in shape_of:
            continue
        found = shapes(shape_of[m.group(1)])
        if m.group(2) is not None:
            k = int(m.group(2))
            found = found[k:k + 1]
        out.extend(found)
    return out


def _dims_attr(attrs: str, key: str) -> list[int]:
    m = re.search(key + r"=\{([\d,]*)\}", attrs)
    return [int(v) for v in m.group(1).split(",") if v] if m else []


def _json_dims(attrs: str, key: str) -> list[int]:
    m = re.search(r'"' + key + r'":\[([^\]]*)\]', attrs)
    return [int(v) for v in re.findall(r"\d+", m.group(1))] if m else []


def _dot_flops(operands: list[tuple[str, list[int]]], attrs: str, backend_config: bool) -> float:
    """2 x lhs elements x rhs free elements (neither contracting nor batch)."""
    if len(operands) < 2:
        return math.nan
    (_, lhs), (_, rhs) = operands[0], operands[1]
    if backend_config:  # cuBLAS custom-call: dimension numbers live in backend_config
        rc = _json_dims(attrs, "rhs_contracting_dimensions")
        rb = _json_dims(attrs, "rhs_batch_dimensions")
    else:
        rc, rb = _dims_attr(attrs, "rhs_contracting_dims"), _dims_attr(attrs, "rhs_batch_dims")
    free_rhs = [d for i, d in enumerate(rhs) if i not in rc and i not in rb]
    return 2.0 * math.prod(lhs) * math.prod(free_rhs)


def _conv_flops(ins: Instr, operands: list[tuple[str, list[int]]]) -> float:
    """2 x output elements x window size x input features per group (from dim_labels)."""
    out = shapes(ins.shape)
    labels = re.search(r"dim_labels=\w+_(\w+)->", ins.attrs)
    window = re.search(r"window=\{size=([\dx]+)", ins.attrs)
    if not out or len(operands) < 2 or not labels:
        return math.nan
    rhs = operands[1][1]
    i_pos = labels.group(1).find("i")
    if i_pos < 0 or i_pos >= len(rhs):
        return math.nan
    size = math.prod(int(v) for v in window.group(1).split("x")) if window else 1
    return 2.0 * math.prod(out[0][1]) * size * rhs[i_pos]


def kernel_name(instr: str) -> str:
    """The name XLA gives an instruction's kernel: "loop_convert_fusion.1" ->
    "loop_convert_fusion_1" (LLVM-safe: '.' and '-' become '_')."""
    return re.sub(r"[.\-]", "_", instr)


# ------------------------------------------------------------------------ reading a dump

def hlo_index(hlo_dir: str | Path) -> dict[str, HloModule]:
    """Module name -> its instructions, from XLA's *after_optimizations.txt dumps, else from
    the buffer assignment's values file (source ops only, no costs)."""
    root = Path(hlo_dir)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory; expected XLA's --xla_dump_to folder")
    modules: dict[str, HloModule] = {}
    for f in sorted(root.rglob("*after_optimizations.txt")):
        module = parse_module(f.read_text(errors="replace"))
        if module is not None:
            modules[module.name] = module
    for f in sorted(root.rglob("*buffer-assignment*.txt")):
        name = re.match(r"module_\d+\.([^.]+)\.", f.name)
        key = name.group(1) if name else f.name.split(".")[0]
        if key not in modules:
            module = parse_values(f.read_text(errors="replace"), key)
            if module is not None:
                modules[key] = module
    if not modules:
        raise InputError(f"{root}: no *after_optimizations.txt (or buffer assignment with its "
                         "values); expected an XLA dump made with --xla_dump_to=DIR "
                         "--xla_dump_hlo_as_text")
    return modules


def _computations(text: str) -> tuple[dict[str, list[Instr]], list[Instr]]:
    comps: dict[str, list[Instr]] = {}
    entry: list[Instr] = []
    current: list[Instr] | None = None
    for line in text.splitlines():
        m = _COMP.match(line)
        if m:
            current = comps.setdefault(m.group(1), [])
            if line.startswith("ENTRY"):
                entry = current
        elif line.startswith("}"):
            current = None
        elif current is not None:
            ins = parse_instr(line)
            if ins is not None:
                current.append(ins)
    return comps, entry


def parse_module(text: str) -> HloModule | None:
    head = re.match(r"\s*HloModule\s+([\w.\-]+)", text)
    if not head:
        return None
    comps, entry = _computations(text)
    everything = [ins for comp in comps.values() for ins in comp]
    shape_of = {ins.name: ins.shape for ins in everything}
    costs = {ins.name: _instr_cost(ins, comps, shape_of) for ins in everything}
    top_names = _top_level_names(comps)
    top = [ins for ins in everything if ins.name in top_names]
    schedule = [ins.name for ins in _scheduled(entry, comps)
                if re.search(r'custom_call_target="__cublas', ins.attrs)]
    return HloModule(head.group(1), costs, _by_kernel(everything), schedule,
                     any("fp8_operand" in c.features for c in costs.values()),
                     attributed_ops(top, _operand_users(top)))


def _top_level_names(comps: dict[str, list[Instr]]) -> set[str]:
    """Instructions outside fusion bodies: those of computations no fusion `calls`."""
    called = {c for body in comps.values() for ins in body
              for c in re.findall(r"calls=%?([\w.\-]+)", ins.attrs)}
    return {ins.name for name, body in comps.items() if name not in called for ins in body}


def parse_values(text: str, module: str) -> HloModule | None:
    """Entry instructions and their users from a buffer assignment's used values."""
    instrs: dict[str, Instr] = {}
    users: dict[str, set[str]] = {}
    for positions, uses, line in _VALUE.findall(text):
        ins = parse_instr(line)
        if ins is None:
            continue
        instrs.setdefault(ins.name, ins)
        own = {p.strip() for p in positions.splitlines()}
        users.setdefault(ins.name, set()).update(
            u.split(",")[0].strip() for u in uses.splitlines() if u.split(",")[0].strip() not in own)
    if not instrs:
        return None
    top = list(instrs.values())
    return HloModule(module, {}, _by_kernel(top), [], False, attributed_ops(top, users))


def _by_kernel(instrs: list[Instr]) -> dict[str, str]:
    by_kernel: dict[str, str] = {}
    for ins in instrs:
        by_kernel.setdefault(kernel_name(ins.name), ins.name)
    for ins in instrs:   # kernels shared by identical fusions carry the first's name
        dedup = re.search(r'deduplicated_name="([^"]+)"', ins.attrs)
        if dedup:
            by_kernel.setdefault(kernel_name(dedup.group(1)), ins.name)
    return by_kernel


def _scheduled(body: list[Instr], comps: dict[str, list[Instr]]) -> list[Instr]:
    """Instructions in execution order (a scheduled module prints them in order), entering
    `call`s (command buffers in some XLA versions) but not fusion bodies."""
    out: list[Instr] = []
    for ins in body:
        if ins.opcode == "call":
            for name in re.findall(r"to_apply=%?([\w.\-]+)", ins.attrs):
                out.extend(_scheduled(comps.get(name, []), comps))
        else:
            out.append(ins)
    return out


def _called(ins: Instr, comps: dict[str, list[Instr]], seen: set[str]) -> list[Instr]:
    body: list[Instr] = []
    for name in re.findall(r"(?:calls|to_apply)=%?([\w.\-]+)", ins.attrs):
        if name in comps and name not in seen:
            seen.add(name)
            for inner in comps[name]:
                body.append(inner)
                body.extend(_called(inner, comps, seen))
    return body


def _flops(ins: Instr, body: list[Instr], operands: list, shape_of: dict[str, str]) -> float:
    target = re.search(r'custom_call_target="([^"]+)"', ins.attrs)
    if ins.opcode == "dot":
        return _dot_flops(operands, ins.attrs, False)
    if ins.opcode == "convolution":
        return _conv_flops(ins, operands)
    if target and target.group(1).startswith("__cublas"):
        return _dot_flops(operands, ins.attrs, True)
    if target and target.group(1).startswith("__cudnn$conv"):
        return _conv_flops(ins, operands)
    dots = [b for b in body if b.opcode == "dot"]
    convs = [b for b in body if b.opcode == "convolution"]
    if not (dots or convs):
        return math.nan
    return sum(_dot_flops(_operand_shapes(b, shape_of), b.attrs, False) for b in dots) + \
        sum(_conv_flops(b, _operand_shapes(b, shape_of)) for b in convs)


def _instr_cost(ins: Instr, comps: dict[str, list[Instr]], shape_of: dict[str, str]) -> OpCost:
    body = _called(ins, comps, set())
    operand_shapes = _operand_shapes(ins, shape_of)
    out_shapes = shapes(ins.shape)
    if ins.opcode == "custom-call":  # drop cuBLAS/cuDNN scratch buffers from the traffic
        out_shapes = [s for s in out_shapes if s[0] not in ("s8", "u8")] or out_shapes
    everything = operand_shapes + out_shapes
    features = ["fp8_operand"] if any(t.startswith("f8") for t, _ in everything) else []
    if len(out_shapes) == 1 and out_shapes[0][1] == []:
        features.append("scalar_output")
    lead = operand_shapes[0][0] if operand_shapes else (out_shapes[0][0] if out_shapes else None)
    return OpCost(flops=_flops(ins, body, operand_shapes, shape_of),
                  bytes=_shape_bytes(everything), dtypes=" ".join(t for t, _ in everything),
                  features=" ".join(features), peak_dtype=peak_dtype(lead),
                  hlo="\n".join([ins.line] + [b.line for b in body]))


# ------------------------------------------------------------------- the source op of each

def _split_path(op_name: str) -> list[str]:
    """Split at '/' outside brackets: "jit(f)/jvp(aten::clamp)/jit(clip)/max"."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(op_name):
        depth += c in "([{"
        depth -= c in ")]}"
        if c == "/" and depth == 0:
            parts.append(op_name[start:i])
            start = i + 1
    return parts + [op_name[start:]]


def _unwrap(component: str) -> str:
    """"transpose(jvp(aten::_scaled_mm))" -> "aten::_scaled_mm"; "jit(clip)" -> ""."""
    while (m := _WRAPPER.match(component)) is not None:
        component = m.group(1)
    return "" if re.match(r"^p?jit\(", component) else component


def source_op(op_name: str) -> str:
    """The PyTorch op path of an XLA op_name: jit scopes, JAX transformations, einsum specs
    and the final JAX primitive dropped; merged names ("a;b") give the longest path.
    "jit(step)/scaled_dot_product_attention/aten::bmm/dot_general" ->
    "scaled_dot_product_attention/aten::bmm"; "jit(step)/convert_element_type" -> ""."""
    paths = []
    for name in op_name.split(";"):
        parts = _split_path(name)[:-1]          # the last part is the JAX primitive
        kept = [p for p in map(_unwrap, parts)
                if p and "->" not in p and "[" not in p and not p.startswith("...")]
        paths.append("/".join(kept))
    return max(paths, key=lambda p: (p.count("/") + bool(p), not is_view_path(p)), default="")


def is_view_path(path: str) -> bool:
    return bool(path) and all(_VIEW_OP.match(p) for p in path.split("/"))


def _operand_users(instrs: list[Instr]) -> dict[str, set[str]]:
    """Instruction -> the instructions that read it, seen through bitcasts and tuple items."""
    alias = {i.name: i.operand_names()[0] for i in instrs
             if i.opcode in _ALIASING and i.operand_names()}

    def origin(name: str) -> str:
        seen = 0
        while name in alias and seen < 64:
            name, seen = alias[name], seen + 1
        return name

    users: dict[str, set[str]] = {}
    for ins in instrs:
        if ins.opcode in _ALIASING:
            continue
        for operand in ins.operand_names():
            users.setdefault(origin(operand), set()).add(ins.name)
    return users


def attributed_ops(instrs: list[Instr], users: dict[str, set[str]]) -> dict[str, str]:
    """Instruction -> source op; a view op (or a chain of them) whose readers all come from
    one other op takes that op: the copy exists only because that op reads it."""
    own = {ins.name: source_op(ins.op_name) for ins in instrs}
    out = dict(own)
    for name, path in own.items():
        if not is_view_path(path):
            continue
        readers = {own.get(u, "") for u in users.get(name, ())}
        if len(readers) == 1 and (reader := readers.pop()) and not is_view_path(reader):
            out[name] = reader
    return out


# --------------------------------------------------------------------------- module facts

def hlo_op_counts(hlo: str, fp8_gemm_target: str = FP8_GEMM_TARGET) -> dict[str, int]:
    """Dots, convolutions and cuBLAS calls in an optimised module's text."""
    return {
        "dot": len(re.findall(r"\sdot\(", hlo)),
        "convolution": len(re.findall(r"\sconvolution\(", hlo)),
        "fp8_gemm_custom_call": hlo.count(f'custom_call_target="{fp8_gemm_target}"'),
        "gemm_custom_call": len(re.findall(r'custom_call_target="__cublas\$(?:lt\$)?(?:gemm|matmul)',
                                           hlo)),
    }


def input_output_aliases(hlo: str) -> list[dict[str, Any]]:
    """From the HloModule header, e.g. `input_output_alias={ {1}: (2, {}, may-alias) }`:
    output index {1} reuses parameter 2's buffer."""
    header = hlo.split("\n", 1)[0]
    m = re.search(r"input_output_alias=\{(.*?)\}\s*(?:,\s*\w+=|$)", header)
    if not m:
        return []
    return [{"output_index": out.strip(), "parameter": int(param), "kind": kind}
            for out, param, kind in re.findall(
                r"\{([\d,\s]*)\}:\s*\((\d+),\s*\{[^}]*\},\s*([\w-]+)\)", m.group(1))]


def fp8_dot_generals(stablehlo: str) -> int:
    """Dots whose two operands are fp8, in the lowered StableHLO (before XLA's passes), e.g.
    `stablehlo.dot_general %a, %b, ... : (tensor<64x128xf8E4M3FN>, tensor<128x256xf8E5M2>)`"""
    count = 0
    for line in stablehlo.splitlines():
        if "dot_general" not in line:
            continue
        m = re.search(r":\s*\((tensor<[^>]*>),\s*(tensor<[^>]*>)\)", line)
        if m and all("xf8" in t for t in m.groups()):
            count += 1
    return count
