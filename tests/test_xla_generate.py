"""phase=generate on XLA (torchax -> jax.jit): the prefill and the decode step are two programs
over the same params and donated cache; greedy tokens match eager; a cache that grows compiles
a program per length, a preallocated one compiles once. (A file of its own: importing torchax
breaks torch.compile in the same process, and the files after this one do not need it.)"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

pytest.importorskip("torchax")

from backends.xla import backend as xla  # noqa: E402
from harness.orchestrator import plugins  # noqa: E402
from harness.worker.backend import RunContext  # noqa: E402
from harness.worker.generate import CompileWatch, Steps, check_tokens, generate  # noqa: E402

CPU = torch.device("cpu")
XLA_CFG = dataclasses.asdict(plugins.backend_spec("xla").schema(name="xla", platform="cpu", dump_hlo=False))


def build(**overrides):
    spec = plugins.workload_spec("qwen_decoder")
    cfg = dataclasses.asdict(spec.schema(name="qwen_decoder", preset="cpu_tiny", phase="generate", num_layers=1))
    cfg.update(overrides)
    torch.manual_seed(0)
    return plugins.load(spec.build)(cfg, CPU)


def run(workload, tmp_path: Path, tokens: int):
    prepared = xla.prepare(workload, XLA_CFG, RunContext(tmp_path, CPU, tmp_path / "compile_cache"))
    watch = CompileWatch(prepared.graphs_compiled, workload.params["prompt_len"])
    latencies = generate(Steps.prepared(prepared), tokens, on_token=watch)
    return prepared, watch.summary(latencies)


@pytest.mark.parametrize("cache", ["static", "paged"])
def test_preallocated_cache_compiles_once_and_matches_eager(cache, tmp_path):
    w = build(cache=cache, new_tokens=5)
    prepared, compiles = run(w, tmp_path, 5)
    assert compiles["recompiles"] == 0
    assert [c["step"] for c in prepared.compile_info["compiles"]] == ["step", "decode"]
    # both programs carry the cache: donated, and aliased to their outputs
    assert prepared.compile_info["state_donated_and_aliased"]
    assert prepared.compile_info["steps"]["decode"]["state_donated_and_aliased"]
    r = check_tokens(w, prepared)
    assert r["passed"] and r["matched_tokens"] == 5, r
    assert len(prepared.compile_info["compiles"]) == 2            # the check reused both programs


def test_growing_cache_compiles_a_program_per_length(tmp_path):
    w = build(cache="dynamic", new_tokens=4)
    prepared, compiles = run(w, tmp_path, 4)
    assert compiles["recompiles"] == 2
    assert [e["position"] for e in compiles["generation_compiles"]] == [7, 8, 9, 10]
    lengths = [c["input_shapes"][2][1] for c in prepared.compile_info["compiles"] if c["step"] == "decode"]
    assert lengths == [8, 9, 10]                                  # the carried keys: [batch, length, heads, D]
    assert all(c["lower_s"] > 0 and c["xla_compile_s"] > 0 for c in prepared.compile_info["compiles"])
    r = check_tokens(w, prepared)                                 # the same lengths again: no new program
    assert r["passed"] and len(prepared.compile_info["compiles"]) == 4
