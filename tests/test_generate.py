"""phase=generate: the loop (one latency per token), vLLM's figures on known samples, the
greedy-token check, compiles along the sequence; eager in this process, Inductor through the CLI,
XLA in tests/test_xla_generate.py."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from conftest import records, run_harness
from harness.orchestrator import combine, plugins
from harness.worker.backend import RunContext
from harness.worker.generate import CompileWatch, Steps, check_tokens, compare_tokens, generate, recompile_flag, tpot_ms

CPU = torch.device("cpu")


def build(**overrides):
    spec = plugins.workload_spec("qwen_decoder")
    cfg = dataclasses.asdict(spec.schema(name="qwen_decoder", preset="cpu_tiny", phase="generate"))
    cfg.update(overrides)
    torch.manual_seed(0)
    return plugins.load(spec.build)(cfg, CPU)


def prepare(backend: str, workload, tmp_path: Path, **options):
    spec = plugins.backend_spec(backend)
    cfg = dataclasses.asdict(spec.schema(name=backend, **options))
    return plugins.load(spec.module).prepare(workload, cfg, RunContext(tmp_path, CPU, tmp_path / "compile_cache"))


# --- the loop ------------------------------------------------------------------------------------

class CountingSteps:
    """Steps of a pretend model: the next token is the position; each call is logged."""

    def __init__(self):
        self.calls: list[tuple[str, int]] = []

    def prefill(self, tokens, positions):
        self.calls.append(("prefill", positions[-1]))
        return (positions[-1] + 1, positions[-1] + 1, "logits")

    def decode(self, token, position):
        self.calls.append(("decode", position))
        return (position + 1, position + 1, "logits")


def test_the_loop_gives_one_latency_per_token_and_feeds_each_step_the_last():
    model = CountingSteps()
    seen = []
    steps = Steps(model.prefill, model.decode, ([7, 7, 7], [0, 1, 2]), sync=lambda out: None)
    latencies = generate(steps, 5, on_token=lambda i, out: seen.append((i, out[0])))
    assert len(latencies) == 5 and all(x >= 0 for x in latencies)
    assert model.calls == [("prefill", 2), ("decode", 3), ("decode", 4), ("decode", 5), ("decode", 6)]
    assert seen == [(0, 3), (1, 4), (2, 5), (3, 6), (4, 7)]


def test_kept_outputs_are_what_the_next_step_takes():
    model = CountingSteps()
    kept = []
    steps = Steps(model.prefill, model.decode, ([1], [0]), sync=lambda out: None,
                  keep=lambda carry: kept.append(carry) or carry)
    generate(steps, 3)
    assert kept == [(1, 1), (2, 2), (3, 3)]       # token and position; never the logits


# --- vLLM's figures ------------------------------------------------------------------------------

def test_percentiles_are_numpys_linear_ones_on_a_known_sequence():
    # 1..100: the linear percentile at q sits at index (n - 1) q / 100
    got = combine.percentiles([float(x) for x in range(1, 101)])
    assert got == {"p50": 50.5, "p90": pytest.approx(90.1), "p99": pytest.approx(99.01), "mean": 50.5}
    assert combine.percentiles([3.0]) == {"p50": 3.0, "p90": 3.0, "p99": 3.0, "mean": 3.0}


def test_ttft_tpot_itl_and_tokens_per_second_from_known_generations():
    # two processes, three generations of 4 tokens: TTFT, then three decode steps
    first = {"latency_ms": [[10.0, 1.0, 2.0, 3.0], [12.0, 2.0, 2.0, 2.0]], "batch": 4, "prompt_len": 100}
    second = {"latency_ms": [[11.0, 4.0, 4.0, 4.0]], "batch": 4, "prompt_len": 100}
    g = combine.generation([first, second])
    assert g["generations"] == 3 and g["new_tokens"] == 4
    assert g["ttft_ms"]["p50"] == 11.0 and g["ttft_ms"]["mean"] == 11.0
    assert [tpot_ms(x) for x in first["latency_ms"]] == [2.0, 2.0]
    assert g["tpot_ms"]["p50"] == 2.0 and g["tpot_ms"]["p99"] == pytest.approx(2.0 + 2.0 * 0.98)
    itl = sorted([1.0, 2.0, 3.0, 2.0, 2.0, 2.0, 4.0, 4.0, 4.0])
    assert g["itl_ms"]["p50"] == itl[4] and g["itl_ms"]["mean"] == pytest.approx(sum(itl) / 9)
    # e2e 16, 18, 23 ms: median 18 ms for 4 sequences x 4 tokens; decode: 4 tokens per 2 ms
    assert g["output_tokens_per_s"] == pytest.approx(16 / 0.018)
    assert g["decode_tokens_per_s"] == pytest.approx(4 / 0.002)
    assert g["first_position"] == 99 and g["per_token_median_ms"] == [11.0, 2.0, 2.0, 3.0]
    assert [p["tpot_ms"] for p in g["processes"]] == [[2.0, 2.0], [4.0]]
    assert combine.generation([]) is None


# --- the greedy-token check ----------------------------------------------------------------------

def _trace(steps: int = 6, batch: int = 2, vocab: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = [torch.randn(batch, vocab, generator=g) for _ in range(steps)]
    return torch.stack([l.argmax(-1) for l in logits]), logits


def test_same_tokens_and_logits_pass_with_every_step_compared():
    tokens, logits = _trace()
    r = compare_tokens(tokens, logits, tokens.clone(), [l.clone() for l in logits], 30.0)
    assert r["passed"] and r["matched_tokens"] == 6 and r["diverged_at"] is None
    assert r["steps"] == 6 and math.isinf(r["min_sqnr_db"])


def test_a_near_tie_flip_is_reported_not_failed():
    ref_tokens, ref_logits = _trace(vocab=1024)
    logits = [l.clone() for l in ref_logits]
    # step 3, sequence 1: the runner-up overtakes the top token by a hair (a bf16-sized error)
    top2 = logits[3][1].topk(2)
    logits[3][1, top2.indices[1]] = top2.values[0] + 1e-3
    tokens = torch.stack([l.argmax(-1) for l in logits])
    r = compare_tokens(tokens, logits, ref_tokens, ref_logits, 30.0)
    assert r["passed"], r["detail"]
    assert (r["matched_tokens"], r["diverged_at"], r["diverged_sequences"]) == (3, 3, 1)
    # the other sequence kept eager's history: its logits compare to the end
    assert r["matched_tokens_per_sequence"] == [6, 3] and r["steps"] == 6
    assert r["eager_top2_margin_at_divergence"] == pytest.approx(float(top2.values[0] - top2.values[1]))
    assert r["sqnr_at_divergence_db"] > 30.0


def test_a_wrong_step_or_nan_logits_fail():
    ref_tokens, ref_logits = _trace()
    wrong = [l.clone() for l in ref_logits]
    wrong[0] = torch.randn(wrong[0].shape, generator=torch.Generator().manual_seed(1))   # from a wrong state
    r = compare_tokens(torch.stack([l.argmax(-1) for l in wrong]), wrong, ref_tokens, ref_logits, 30.0)
    assert not r["passed"] and "step 0" in r["detail"]
    nan = [l.clone() for l in ref_logits]
    nan[2][0, 0] = float("nan")
    r = compare_tokens(ref_tokens, nan, ref_tokens, ref_logits, 30.0)
    assert not r["passed"] and "NaN" in r["detail"]


# --- compiles along the sequence -----------------------------------------------------------------

def test_compile_watch_names_the_compiling_steps_and_their_positions():
    counts = iter([0, 1, 2, 2, 3])          # before; after tokens 0..3
    watch = CompileWatch(lambda: next(counts), prompt_len=10)
    for i in range(4):
        watch(i, ())
    summary = watch.summary([5000.0, 3000.0, 1.0, 2500.0])
    assert summary["recompiles"] == 1
    assert [(e["step"], e["position"], e["step_s"]) for e in summary["generation_compiles"]] == [
        ("prefill", 9, 5.0), ("decode", 10, 3.0), ("decode", 12, 2.5)]
    assert recompile_flag(summary, growing=True) is None
    flag = recompile_flag(summary, growing=False)
    assert flag["code"] == "position_recompiles" and "position(s) [12]" in flag["detail"]
    assert CompileWatch(lambda: None, 10).summary([1.0]) == {"recompiles": None, "generation_compiles": None}


# --- the workload --------------------------------------------------------------------------------

@pytest.mark.parametrize("cache", ["static", "paged", "dynamic"])
def test_eager_matches_itself_and_caches_give_the_same_tokens(cache, tmp_path):
    w = build(cache=cache)
    assert w.params["max_len"] == 8 + 8 and w.generation.new_tokens == 8
    assert (w.state_buffers == ()) == (cache == "dynamic")
    r = check_tokens(w, prepare("eager", w, tmp_path))
    assert r["passed"] and r["matched_tokens"] == 8 and math.isinf(r["min_sqnr_db"])


def test_static_paged_and_dynamic_caches_generate_the_same_tokens():
    from harness.worker.generate import greedy_trace
    traces = {cache: greedy_trace(Steps.eager(build(cache=cache)), 8, tuple) for cache in ("static", "paged", "dynamic")}
    for cache in ("paged", "dynamic"):
        assert torch.equal(traces[cache][0], traces["static"][0]), cache
        for a, b in zip(traces[cache][1], traces["static"][1]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_positions_advance_and_the_cache_fills_step_by_step():
    w = build(cache="static")
    cache = w.module.layers[0].attention.kv_cache.k_cache            # [batch, max_len, kv_heads, D]
    filled = []
    generate(Steps.eager(w), 6, on_token=lambda i, out: filled.append(
        (int(out[1]), int((cache[0].abs().sum((-1, -2)) > 0).sum()))))
    # after token i the next position is 8 + i and positions 0 .. 7 + i are written
    assert filled == [(8 + i, 8 + i) for i in range(6)]


# --- Inductor ----------------------------------------------------------------------------------
# Through the CLI: collecting tests/test_xla_*.py imports torchax, which breaks torch.compile in
# the pytest process (DESIGN.md); a worker process is a fresh interpreter.

@pytest.mark.slow
def test_inductor_compiles_once_with_a_preallocated_cache_and_per_length_with_a_growing_one(tmp_path):
    # one layer: Inductor's CPU compile time grows with the unrolled layers, the path is the same
    out = run_harness("-m", "workload=qwen_decoder", "workload.phase=generate", "workload.cache=static,dynamic",
                      "workload.num_layers=1", "workload.new_tokens=4", "backend=inductor", "bench=quick",
                      f"hydra.sweep.dir={tmp_path}")
    assert out.returncode == 0, out.stderr[-3000:]
    runs = {r["params"]["cache"]: r for r in records(tmp_path)}
    for cache, r in runs.items():
        assert r["status"] == "ok", r["reason"]
        assert r["numerics"]["passed"] and r["numerics"]["matched_tokens"] == 4, r["numerics"]   # = eager's
        assert r["compile"]["recompiles_during_timing"] == 0          # later generations reuse the graphs
    static, dynamic = runs["static"]["compile"], runs["dynamic"]["compile"]
    # the position is a tensor and the cache preallocated: the prefill and the decode step compile once
    assert static["recompiles"] == 0 and "position_recompiles" not in [f["code"] for f in runs["static"]["flags"]]
    assert [(e["step"], e["token"]) for e in static["generation_compiles"]] == [("prefill", 0), ("decode", 1)]
    assert [e["trigger"] for e in static["compiles"]] == ["DYNAMO", "DYNAMO"]
    # a cache grown by concatenation: every length is a new graph (dynamic=False, the harness's default)
    assert dynamic["recompiles"] == 2
    assert [e["position"] for e in dynamic["generation_compiles"]] == [7, 8, 9, 10]
    assert len(dynamic["compiles"]) == 4 and all(e["seconds"] > 0 for e in dynamic["compiles"])


def test_graph_modes_clone_the_carried_outputs(tmp_path):
    from backends.torch_common import clone_outputs
    w = build(num_layers=1)
    assert prepare("inductor", w, tmp_path, mode="reduce-overhead").keep is clone_outputs
    assert prepare("inductor", w, tmp_path).keep is tuple
    assert set(prepare("inductor", w, tmp_path).steps) == {"decode"}
