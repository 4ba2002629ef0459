"""HLO text, as XLA dumps and prints it: what an optimised module contains.

(More of the HLO reader lives with the kernel collector; these are the facts the XLA backend
records about its own program.)
"""
from __future__ import annotations

import re
from typing import Any

FP8_GEMM_TARGET = "__cublas$lt$matmul$f8"


def fp8_dot_generals(stablehlo: str) -> int:
    """Dots whose two operands are fp8, in the lowered StableHLO (before XLA's passes), e.g.
    `stablehlo.dot_general %a, %b, ... : (tensor<64x128xf8E4M3FN>, tensor<128x256xf8E5M2>) -> ...`"""
    count = 0
    for line in stablehlo.splitlines():
        if "dot_general" not in line:
            continue
        m = re.search(r":\s*\((tensor<[^>]*>),\s*(tensor<[^>]*>)\)", line)
        if m and all("xf8" in t for t in m.groups()):
            count += 1
    return count


def hlo_op_counts(hlo: str) -> dict[str, int]:
    return {
        "dot": len(re.findall(r"\sdot\(", hlo)),
        "convolution": len(re.findall(r"\sconvolution\(", hlo)),
        "fp8_gemm_custom_call": hlo.count(f'custom_call_target="{FP8_GEMM_TARGET}"'),
        "gemm_custom_call": len(re.findall(r'custom_call_target="__cublas\$(?:lt\$)?(?:gemm|matmul)', hlo)),
    }


def input_output_aliases(hlo: str) -> list[dict[str, Any]]:
    """From the HloModule header, e.g. `input_output_alias={ {1}: (2, {}, may-alias) }`:
    output index {1} reuses parameter 2's buffer."""
    header = hlo.split("\n", 1)[0]
    m = re.search(r"input_output_alias=\{(.*?)\}\s*(?:,\s*\w+=|$)", header)
    if not m:
        return []
    return [{"output_index": out.strip(), "parameter": int(param), "kind": kind}
            for out, param, kind in re.findall(r"\{([\d,\s]*)\}:\s*\((\d+),\s*\{[^}]*\},\s*([\w-]+)\)", m.group(1))]
