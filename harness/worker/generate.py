"""A greedy generation as LLM users measure it: the prompt's prefill gives the first token, then
one decode step per further token, the position advancing and the cache filling; every step
synchronised and timed (gpt-fast's generate.py: prefill, decode_one_token, decode_n_tokens).

The figures are those of vLLM's serving benchmark (benchmarks/benchmark_serving.py), for one
request of `batch` sequences at a time:
- TTFT: the prefill step, prompt in, first token out;
- ITL: each decode step's latency, one per further token;
- TPOT: per generation, (total - TTFT) / (new_tokens - 1), i.e. the mean ITL of that generation.
Timing repeats whole generations (`bench.repeats` after `bench.warmup`); the record's `timing`
holds the TPOT of each generation as a sample, so its median is the median TPOT and the summary
tables read a generation as they read a step; `generation` (harness/orchestrator/combine.py) holds the rest.

The worker's measurement (harness/worker/measure.py) runs a generation through the same skeleton
as a step, with the parts from here: the first generation, the greedy-token check, the timed
generations, the decode steps to profile.

The workload gives the steps (`Workload.generation`): its forward is the prefill, its
`steps["decode"]` the decode step, each returning (next_token, next_position, logits, *carry)
with the argmax inside, so the loop only feeds each step's outputs into the next.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from harness.orchestrator.combine import tpot_ms

DECODE = "decode"
TOKEN, POSITION, LOGITS = 0, 1, 2      # what every generation step returns first


@dataclass
class Steps:
    """A prefill and a decode step as one backend runs them, and how to feed one into the next."""
    prefill: Callable[..., tuple]
    decode: Callable[..., tuple]
    prompt: tuple                           # prefill's inputs, in the backend's form
    sync: Callable[[Any], None]
    keep: Callable[[tuple], tuple] = tuple  # outputs carried into the next call (Prepared.keep)

    @classmethod
    def prepared(cls, prepared) -> "Steps":
        return cls(prepared.step, prepared.steps[DECODE], prepared.inputs, prepared.synchronize, prepared.keep)

    @classmethod
    def eager(cls, workload) -> "Steps":
        from harness.worker.workload import run_torch
        return cls(lambda *x: run_torch(workload, workload.forward, x),
                   lambda *x: run_torch(workload, workload.steps[DECODE], x), workload.inputs, lambda out: None)


def carried(out: tuple) -> tuple:
    """What the next decode step takes: (token, position, *carry); everything but the logits."""
    return (out[TOKEN], out[POSITION], *out[LOGITS + 1:])


def generate(steps: Steps, new_tokens: int, on_token: Callable[[int, tuple], None] | None = None) -> list[float]:
    """One generation; the latency of each token in ms: [TTFT, ITL_1, ..., ITL_{new_tokens-1}].
    Each step is timed from its call to its synchronised outputs (the carried copies included:
    a user's loop makes them too). `on_token(i, outputs)` runs after step i's timing and before
    step i+1: the outputs are only valid until then (a CUDA-graph replay reuses their memory)."""
    latencies_ms = []
    call, inputs = steps.prefill, steps.prompt
    for i in range(new_tokens):
        start = time.perf_counter()
        out = call(*inputs)
        inputs = steps.keep(carried(out))
        steps.sync(out)
        latencies_ms.append((time.perf_counter() - start) * 1e3)
        if on_token is not None:
            on_token(i, out)
        call = steps.decode
    return latencies_ms


def decode_steps(steps: Steps) -> Callable[[], tuple]:
    """A callable that runs the next decode step each call, the first call after a prefill (the
    profiler's iteration: what TPOT times; the profiler makes one call before its window)."""
    carry: tuple | None = None

    def step() -> tuple:
        nonlocal carry
        if carry is None:
            carry = steps.keep(carried(steps.prefill(*steps.prompt)))
        out = steps.decode(*carry)
        carry = steps.keep(carried(out))
        return out
    return step


class CompileWatch:
    """Which steps of a generation compiled (the backend's count of compiled graphs grew across
    them) and at which position: a compiler that compiles per sequence length shows one entry per
    position. Position of token i: the prompt's last (prefill) or the decode step's input."""

    def __init__(self, graphs_compiled: Callable[[], int | None], prompt_len: int):
        self.graphs_compiled, self.prompt_len = graphs_compiled, prompt_len
        self.before = graphs_compiled()
        self.events: list[dict[str, Any]] = []

    def __call__(self, i: int, out: tuple) -> None:
        now = self.graphs_compiled()
        if now is not None and now != self.before:
            self.events.append({"token": i, "step": "prefill" if i == 0 else DECODE,
                                "position": self.prompt_len - 1 + i, "graphs": now - self.before})
        self.before = now

    def summary(self, latencies_ms: list[float]) -> dict[str, Any]:
        """`compile` entries: every compiling step with its seconds (compile and run), and the
        recompiles: compiles after the first of each step."""
        if self.before is None:             # the backend does not count its graphs (eager)
            return {"recompiles": None, "generation_compiles": None}
        events = [dict(e, step_s=latencies_ms[e["token"]] / 1e3) for e in self.events]
        return {"recompiles": len(events) - len({e["step"] for e in events}), "generation_compiles": events}


def recompile_flag(compile_summary: dict[str, Any], growing: bool) -> dict[str, str] | None:
    """A cache whose shapes never change (the position a tensor) must compile each step once."""
    if growing or not compile_summary.get("recompiles"):
        return None
    positions = [e["position"] for e in compile_summary["generation_compiles"] if e["step"] == DECODE][1:]
    return {"code": "position_recompiles", "detail": (
        f"the decode step compiled again at position(s) {positions[:8]}: with a preallocated cache and the "
        "position as a tensor every step has the same shapes and should compile once")}


# -- numerics: greedy tokens against eager ------------------------------------------------------

def greedy_trace(steps: Steps, tokens: int, to_torch: Callable[[Any], tuple]):
    """The first `tokens` greedy tokens [tokens, batch] and the logits each came from (float32, CPU)."""
    import torch
    chosen, logits = [], []

    def take(i: int, out: tuple) -> None:
        t = to_torch(out)
        chosen.append(t[TOKEN].reshape(-1).long().cpu())
        logits.append(t[LOGITS].float().cpu())
    generate(steps, tokens, on_token=take)
    return torch.stack(chosen), logits


def compare_tokens(tokens, logits, ref_tokens, ref_logits, threshold_db: float) -> dict[str, Any]:
    """A backend's greedy tokens [steps, batch] and logits against eager's, step by step and
    sequence by sequence. Up to the step where a sequence's token first differs, both saw the
    same history, so that sequence's logits compare there and before; after it they do not.
    Passes when no compared logit is NaN or infinite and the compared logits' SQNR against eager
    holds `threshold_db` at every step: a flip between two near-tied tokens passes and is reported
    with its step and eager's top-2 margin (bf16 logits of random weights tie often: measured in
    workloads/qwen_decoder/model.py, flips at step 0 on a zero margin, logits at 36-37 dB); a real
    defect (a lost cache write: 14 dB; a wrong position) drops the SQNR at its step."""
    import torch

    from harness.worker.numerics import sqnr_db
    steps, batch = tokens.shape
    differs = (tokens != ref_tokens)                                    # [steps, batch]
    first_diff = [next((s for s in range(steps) if differs[s, b]), steps) for b in range(batch)]
    sqnr, diff, finite = [], [], True
    for s in range(steps):
        rows = [b for b in range(batch) if first_diff[b] >= s]          # same history up to step s
        if not rows:
            break
        ours, ref = logits[s][rows], ref_logits[s][rows]
        finite = finite and bool(torch.isfinite(ours).all())
        sqnr.append(sqnr_db(ours, ref))
        diff.append(float((ours - ref).abs().max()))
    worst = min(range(len(sqnr)), key=lambda s: sqnr[s])
    diverged = sorted(set(first_diff) - {steps})
    out: dict[str, Any] = {
        "check_tokens": steps, "matched_tokens": min(first_diff), "diverged_at": diverged[0] if diverged else None,
        "matched_tokens_per_sequence": first_diff, "diverged_sequences": sum(d < steps for d in first_diff),
        "logits_sqnr_db": [round(x, 2) for x in sqnr],
        "min_sqnr_db": sqnr[worst], "threshold_sqnr_db": threshold_db, "max_abs_err": max(diff),
        "worst_output": f"logits@step{worst}", "steps": len(sqnr), "reference": "eager, same dtype",
    }
    if diverged:
        s = diverged[0]
        seqs = differs[s].nonzero().flatten()
        top2 = ref_logits[s][seqs].topk(2, dim=-1).values
        out.update(sqnr_at_divergence_db=sqnr[s], max_abs_logit_diff_at_divergence=diff[s],
                   eager_top2_margin_at_divergence=float((top2[:, 0] - top2[:, 1]).min()))
    passed = finite and sqnr[worst] >= threshold_db
    detail = "" if passed else ("NaN or infinite logits" if not finite else
                                f"logits SQNR {sqnr[worst]:.1f} dB against eager at step {worst} < {threshold_db} dB")
    return dict(out, passed=passed, detail=detail)


def check_tokens(workload, prepared) -> dict[str, Any]:
    """The backend's first `check_tokens` greedy tokens against eager's on the same module (same
    weights, dtype and prompt). Each generation writes the cache positions it reads before it
    reads them, so eager and the backend can share a module's cache one after the other."""
    k = workload.generation.check_tokens
    ref_tokens, ref_logits = greedy_trace(Steps.eager(workload), k, tuple)
    tokens, logits = greedy_trace(Steps.prepared(prepared), k, prepared.to_torch)
    return compare_tokens(tokens, logits, ref_tokens, ref_logits, workload.min_sqnr_db)


# -- the timed part -----------------------------------------------------------------------------

def time_generations(steps: Steps, new_tokens: int, bench: dict[str, Any], batch: int, prompt_len: int,
                     after_sample: Callable[[], None] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Warm-up generations, then `bench.repeats` timed ones -> (the timing, whose samples are the
    generations' TPOTs, and the generation section: every latency per token). `after_sample`
    runs after each generation, outside its window (a generation is a sample)."""
    from harness.worker import timing
    timing.warm_up(lambda: generate(steps, new_tokens), lambda out: None, bench["warmup"], bench["warmup_ms"])
    # 10 ns resolution: the record stays small, and the TPOTs below are those of what it holds
    latencies = timing.samples(lambda: [round(x, 5) for x in generate(steps, new_tokens)], bench["repeats"],
                               after_sample)
    section = {"latency_ms": latencies, "batch": batch, "prompt_len": prompt_len}
    return asdict(timing.summarize([tpot_ms(g) for g in latencies], new_tokens - 1)), section
