"""Compare outputs with a float32 reference: SQNR (dB), max abs and max relative error."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Sequence

import torch


@dataclass
class Numerics:
    passed: bool
    min_sqnr_db: float          # worst output tensor over all check steps
    threshold_sqnr_db: float
    max_abs_err: float
    max_rel_err: float          # max |out - ref| / max |ref|, per tensor, worst
    worst_output: str
    steps: int
    detail: str = ""
    state_sqnr_db: float | None = None  # the state buffers the check steps wrote (a KV cache), worst
    state_worst: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def sqnr_db(out: torch.Tensor, ref: torch.Tensor) -> float:
    """10 log10(|ref|^2 / |out - ref|^2), as torchao's `compute_error`. inf when exact."""
    ref = ref.double()
    noise = (out.double() - ref).norm()
    if not torch.isfinite(noise):
        return float("-inf")
    if noise == 0:
        return float("inf")
    return float(20 * torch.log10(ref.norm() / noise))


def compare(outputs: Sequence[Sequence[torch.Tensor]], references: Sequence[Sequence[torch.Tensor]],
            threshold_db: float, names: Sequence[str] = ()) -> Numerics:
    if len(outputs) != len(references):
        raise ValueError(f"{len(outputs)} output steps vs {len(references)} reference steps")
    worst, worst_name, max_abs, max_rel = math.inf, "", 0.0, 0.0
    for step, (outs, refs) in enumerate(zip(outputs, references)):
        if len(outs) != len(refs):
            raise ValueError(f"step {step}: {len(outs)} outputs vs {len(refs)} references")
        for i, (out, ref) in enumerate(zip(outs, refs)):
            name = names[i] if i < len(names) else f"out{i}"
            out, ref = out.detach().cpu(), ref.detach().cpu()
            if out.shape != ref.shape:
                return Numerics(False, float("-inf"), threshold_db, math.inf, math.inf, name, len(outputs),
                                f"step {step} {name}: shape {tuple(out.shape)} != {tuple(ref.shape)}")
            s = sqnr_db(out, ref)
            diff = (out.double() - ref.double()).abs()
            abs_err = float(diff.max()) if diff.numel() else 0.0
            scale = float(ref.double().abs().max()) if ref.numel() else 0.0
            max_abs = max(max_abs, abs_err)
            max_rel = max(max_rel, abs_err / scale if scale else (0.0 if abs_err == 0 else math.inf))
            if s < worst:
                worst, worst_name = s, f"{name}@step{step}" if len(outputs) > 1 else name
    passed = worst >= threshold_db
    return Numerics(passed, worst, threshold_db, max_abs, max_rel, worst_name, len(outputs),
                    "" if passed else f"SQNR {worst:.1f} dB on {worst_name} < {threshold_db} dB")


def with_state(outputs: Numerics, state: Numerics) -> Numerics:
    """The outputs' check with the state check folded in: both must pass."""
    worst = state.worst_output.split("@")[0]
    detail = outputs.detail
    if not state.passed:
        detail = "; ".join(filter(None, [detail, f"state {worst}: SQNR {state.min_sqnr_db:.1f} dB "
                                                  f"< {state.threshold_sqnr_db} dB"]))
    return replace(outputs, passed=outputs.passed and state.passed, detail=detail,
                   state_sqnr_db=state.min_sqnr_db, state_worst=worst)
