"""qwen_decoder: our Qwen3 equals Hugging Face's; static and paged caches agree; decode carries its cache."""
from __future__ import annotations

import functools

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from conftest import build_workload, workload_cfg, resolve, SEEDS, records, run_harness
from harness.errors import ConfigError
from harness.worker.numerics import compare
from harness.worker.workload import run_torch
from workloads.qwen_decoder import model as qd

CPU = torch.device("cpu")
PHASES_AND_CACHES = [(phase, cache) for phase in ("prefill", "decode") for cache in ("static", "paged")]


cfg = functools.partial(workload_cfg, "qwen_decoder", preset="cpu_tiny")

build = functools.partial(build_workload, "qwen_decoder", preset="cpu_tiny")


# --- presets -------------------------------------------------------------------------------------

def test_seed004_preset_has_the_seed_pool():
    p = resolve(qd, cfg(preset="seed004"), "cuda")
    pool = (2, p["num_blocks"], p["block_size"], p["num_kv_heads"], p["head_dim"])   # PagedKVCache.pool
    assert f"bf16[{','.join(map(str, pool))}]" == "bf16[2,4233,16,8,128]"
    assert "bf16[2,4233,16,8,128]" in (SEEDS / "004_xla_gpu_buffer_assignment_qwen_decode.txt").read_text()
    assert (p["batch"], p["num_layers"], p["block_size"], p["dtype"]) == (32, 9, 16, "bfloat16")
    # fused qkv and gate/up weights of the seed's shapes
    assert (p["num_heads"] + 2 * p["num_kv_heads"]) * p["head_dim"] == 4096
    assert 2 * p["intermediate_size"] == 6144


def test_qwen3_0_6b_preset_resolves_without_building():
    p = resolve(qd, cfg(preset="auto"), "cuda")
    assert p["preset"] == "qwen3_0_6b"
    assert {k: p[k] for k in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                              "intermediate_size", "vocab_size", "rope_theta", "tie_embeddings")} == dict(
        hidden_size=1024, num_layers=28, num_heads=16, num_kv_heads=8, head_dim=128, intermediate_size=3072,
        vocab_size=151936, rope_theta=1e6, tie_embeddings=True)
    # 0.44 G non-embedding parameters: 2 FLOPs each per token, plus the tied lm_head
    per_token = 2 * 28 * (1024 * 4096 + 2048 * 1024 + 3 * 1024 * 3072) + 2 * 1024 * 151936
    attention = 4 * 28 * 16 * 128 * (1024 + 1)
    assert qd.count_flops(p) == 16 * (per_token + attention)


# --- numerics on CPU -----------------------------------------------------------------------------

@pytest.mark.parametrize("phase,cache", PHASES_AND_CACHES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_eager_passes_its_threshold(phase, cache, dtype):
    w = build(phase=phase, cache=cache, dtype=dtype)
    outputs = [run_torch(w, w.forward, inputs) for inputs in w.check_inputs]
    result = compare(outputs, w.reference(), w.min_sqnr_db, w.output_names)
    assert result.passed, result.detail
    assert result.steps == (3 if phase == "decode" else 1)
    assert outputs[0][0].shape == (2, 128)                 # last-position logits [batch, vocab]


@pytest.mark.parametrize("cache", ["static", "paged"])
def test_the_cache_is_module_state_updated_in_place(cache):
    # gpt-fast's idiom: each layer's cache buffers keep their storage across steps (what lets
    # CUDA graphs replay); the workload names them for the XLA backend to functionalise.
    w = build(cache=cache)
    buffers = dict(w.module.named_buffers())
    assert w.state_buffers and set(w.state_buffers) <= set(buffers)
    addresses = {name: buffers[name].data_ptr() for name in w.state_buffers}
    before = {name: buffers[name].clone() for name in w.state_buffers}
    for inputs in w.check_inputs:
        run_torch(w, w.forward, inputs)
    after = dict(w.module.named_buffers())
    assert {name: after[name].data_ptr() for name in w.state_buffers} == addresses
    assert all(not torch.equal(before[name], after[name]) for name in w.state_buffers)
    assert [int(inputs[1]) for inputs in w.check_inputs] == [8, 9, 10]


@pytest.mark.parametrize("cache", ["static", "paged"])
def test_the_written_cache_matches_the_reference(cache):
    w = build(cache=cache)
    for inputs in w.check_inputs:
        run_torch(w, w.forward, inputs)
    ours, theirs = w.state_probe(dict(w.module.named_buffers())), w.reference_state()
    assert set(ours) == set(theirs) == set(w.state_buffers)
    result = compare([list(ours.values())], [list(theirs.values())], w.min_sqnr_db)
    assert result.passed, result.detail


def test_the_float32_reference_is_not_kept_past_the_check():
    """Its weights and caches (~10 GB at qwen3_0_6b, batch 16) would otherwise count in torch's
    runtime peak during timing, which JAX's does not see."""
    import gc
    w = build(cache="static")

    def models() -> int:
        gc.collect()
        return sum(isinstance(o, qd.Transformer) for o in gc.get_objects())

    before = models()
    w.reference()
    assert models() == before + 1           # the float32 copy, held for the state check
    assert set(w.reference_state()) == set(w.state_buffers)
    assert models() == before


@pytest.mark.parametrize("cache", ["static", "paged"])
def test_a_cache_that_is_not_carried_over_fails(cache):
    # What a backend that drops the in-place cache writes would return: every step sees the cache
    # as the prefill left it; and the cache itself misses the steps' entries.
    w = build(cache=cache)
    buffers = dict(w.module.named_buffers())
    warm = {name: buffers[name].clone() for name in w.state_buffers}
    outputs = []
    for inputs in w.check_inputs:
        for name, t in warm.items():
            buffers[name].copy_(t)
        outputs.append(run_torch(w, w.forward, inputs))
    for name, t in warm.items():
        buffers[name].copy_(t)
    result = compare(outputs, w.reference(), w.min_sqnr_db)
    assert not result.passed and result.worst_output.endswith("step2")
    state = compare([list(w.state_probe(buffers).values())], [list(w.reference_state().values())], w.min_sqnr_db)
    assert not state.passed


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_paged_and_static_give_the_same_logits(phase):
    static, paged = build(phase=phase, cache="static"), build(phase=phase, cache="paged")
    for s_in, p_in in zip(static.check_inputs, paged.check_inputs):
        torch.testing.assert_close(run_torch(static, static.forward, s_in), run_torch(paged, paged.forward, p_in),
                                   rtol=1e-6, atol=1e-6)


def test_paged_pool_is_written_through_the_block_table():
    w = build(cache="paged")
    block_table, pool = w.module.block_table, w.module.layers[0].attention.kv_cache.pool
    assert block_table.dtype == torch.int32 and block_table.shape == (2, 32 // 4)
    assert pool.shape == (2, 16, 4, 2, 16)     # [k|v, num_blocks, block_size, kv_heads, head_dim]
    used = set(block_table[:, :2].flatten().tolist())     # the prompt's 8 tokens fill 2 blocks
    written = {b for b in range(16) if pool[:, b].abs().sum() > 0}
    assert written == used


def test_flops_count_matmuls_and_valid_attention():
    # FlopCounterMode counts the matmuls (CPU SDPA is not counted); ours adds QK^T and PV over the
    # valid keys: pos + 1 = 9 for decode, 8 * 9 / 2 causal pairs per sequence for prefill.
    layers, heads, head_dim, batch = 2, 4, 16, 2
    for phase, query_key_pairs in (("decode", 9), ("prefill", 36)):
        w = build(phase=phase)
        with FlopCounterMode(display=False) as counter:
            run_torch(w, w.forward, w.inputs)
        attention = 4 * layers * heads * head_dim * batch * query_key_pairs
        assert w.flops == counter.get_total_flops() + attention


def test_min_bytes_decode():
    w = build()
    weights = sum(p.numel() for p in w.module.parameters())    # the tied table once
    kv_per_token = 2 * 2 * 2 * 16                                # k and v, layers, kv heads, head_dim
    assert w.min_bytes == 4 * (weights + 2 * 9 * kv_per_token + 2 * kv_per_token + 2 * 128)
    assert w.tokens_per_iter == 2 and build(phase="prefill").tokens_per_iter == 16


@pytest.mark.parametrize("override,key", [
    ({"batch": -1}, "workload.batch"),
    ({"num_kv_heads": 3}, "workload.num_kv_heads"),
    ({"max_len": 10}, "workload.max_len"),                        # prompt 8 + 3 decode steps
    ({"cache": "paged", "block_size": 5}, "workload.block_size"),
    ({"cache": "paged", "num_blocks": 15}, "workload.num_blocks"),  # 2 sequences * 8 blocks
    ({"cache": "ring"}, "workload.cache"),
    ({"phase": "sample"}, "workload.phase"),
    ({"cache": "dynamic"}, "workload.cache"),                     # a growing cache is the generate phase's
    ({"phase": "generate", "new_tokens": 1}, "workload.new_tokens"),
    ({"phase": "generate", "check_tokens": 0}, "workload.check_tokens"),
    ({"mode": "fwd_bwd"}, "workload.mode"),
    ({"head_dim": 15}, "workload.head_dim"),
])
def test_bad_params_name_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        resolve(qd, cfg(**override), "cpu")
    assert e.value.key == key


def test_generate_sizes_its_cache_to_the_generation():
    p = resolve(qd, cfg(phase="generate", new_tokens=6, check_tokens=16), "cpu")
    assert (p["max_len"], p["check_tokens"]) == (8 + 6, 6)        # the check is at most the generation
    paged = resolve(qd, cfg(phase="generate", cache="paged", new_tokens=6), "cpu")
    assert paged["max_len"] == 16 and paged["num_blocks"] == 2 * 16 // 4     # whole blocks
    gpu = resolve(qd, cfg(phase="generate", preset="qwen3_0_6b", prompt_len=2048), "cuda")
    assert (gpu["new_tokens"], gpu["max_len"]) == (256, 2048 + 256)


# --- parity with Hugging Face transformers -------------------------------------------------------

def hf_qwen3(model: qd.Transformer):
    """transformers' Qwen3ForCausalLM with our model's weights (a config built here: no hub)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM
    a = model.args
    config = Qwen3Config(vocab_size=a.vocab_size, hidden_size=a.hidden_size, intermediate_size=a.intermediate_size,
                         num_hidden_layers=a.num_layers, num_attention_heads=a.num_heads,
                         num_key_value_heads=a.num_kv_heads, head_dim=a.head_dim, max_position_embeddings=a.max_len,
                         rms_norm_eps=a.rms_eps, rope_parameters={"rope_type": "default", "rope_theta": a.rope_theta},
                         tie_word_embeddings=a.tie_embeddings, attn_implementation="eager")
    hf = Qwen3ForCausalLM(config).eval()
    H, KV, D, I = a.num_heads, a.num_kv_heads, a.head_dim, a.intermediate_size
    ours = {k: v for k, v in model.state_dict().items() if ".kv_cache." not in k}
    theirs = {"model.embed_tokens.weight": ours["tok_embeddings.weight"], "model.norm.weight": ours["norm.weight"],
              "lm_head.weight": ours["output.weight"]}
    for i in range(a.num_layers):
        src, dst = f"layers.{i}.", f"model.layers.{i}."
        q, k, v = ours[src + "attention.wqkv.weight"].split([H * D, KV * D, KV * D])
        gate, up = ours[src + "feed_forward.w13.weight"].split([I, I])
        theirs.update({
            dst + "self_attn.q_proj.weight": q, dst + "self_attn.k_proj.weight": k,
            dst + "self_attn.v_proj.weight": v, dst + "self_attn.o_proj.weight": ours[src + "attention.wo.weight"],
            dst + "self_attn.q_norm.weight": ours[src + "attention.q_norm.weight"],
            dst + "self_attn.k_norm.weight": ours[src + "attention.k_norm.weight"],
            dst + "input_layernorm.weight": ours[src + "attention_norm.weight"],
            dst + "post_attention_layernorm.weight": ours[src + "ffn_norm.weight"],
            dst + "mlp.gate_proj.weight": gate, dst + "mlp.up_proj.weight": up,
            dst + "mlp.down_proj.weight": ours[src + "feed_forward.w2.weight"],
        })
    hf.load_state_dict(theirs, strict=True)
    assert (hf.lm_head.weight is hf.model.embed_tokens.weight) == a.tie_embeddings
    return hf


# float32 on CPU, same weights: only summation order differs (measured ~2e-7 on logits of ~1).
PARITY = dict(rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cache,tie", [("static", True), ("paged", True), ("static", False)])
def test_logits_equal_transformers_qwen3(cache, tie):
    torch.manual_seed(0)
    p = resolve(qd, cfg(cache=cache, tie_embeddings=tie), "cpu")
    model = qd.build_model(p, torch.float32, CPU)
    hf = hf_qwen3(model)
    model.setup_caches(p, torch.float32, CPU)
    prompt = torch.randint(p["vocab_size"], (p["batch"], p["prompt_len"]))
    with torch.no_grad():
        theirs = hf(input_ids=prompt, use_cache=True)
        ours = model(prompt, torch.arange(p["prompt_len"]), attend_cache=False)   # all positions
        torch.testing.assert_close(ours, theirs.logits, **PARITY)
        past = theirs.past_key_values
        for step in range(3):
            token = torch.randint(p["vocab_size"], (p["batch"], 1))
            theirs = hf(input_ids=token, past_key_values=past, use_cache=True)
            past = theirs.past_key_values
            ours = qd.decode_one_token(model, token, torch.tensor([p["prompt_len"] + step]))
            torch.testing.assert_close(ours, theirs.logits[:, -1], **PARITY)


@pytest.mark.parametrize("cache", ["static", "paged", "dynamic"])
def test_greedy_generation_equals_transformers_generate(cache):
    from harness.worker.generate import Steps, greedy_trace
    w = build(phase="generate", cache=cache, dtype="float32")
    tokens, _ = greedy_trace(Steps.eager(w), w.generation.new_tokens, tuple)
    prompt = w.inputs[0]
    with torch.no_grad():
        theirs = hf_qwen3(w.module).generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                             max_new_tokens=w.generation.new_tokens, min_new_tokens=w.generation.new_tokens)
    assert torch.equal(tokens.T, theirs[:, prompt.shape[1]:])


# --- through the CLI -----------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_eager_and_inductor_paged_decode(sweep_dir):
    # one layer: Inductor's CPU compile time grows with the unrolled layers, the path is the same
    out = run_harness("-m", "workload=qwen_decoder", "workload.cache=paged", "workload.num_layers=1",
                      "backend=eager,inductor", "bench=quick", f"hydra.sweep.dir={sweep_dir}")
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [l for l in out.stdout.splitlines() if l.startswith("qwen_decoder[")]
    assert len(lines) == 2 and all(" ok " in l and "tok/s" in l and "dB ok" in l for l in lines), out.stdout
    for record in records(sweep_dir):
        assert record["status"] == "ok" and record["numerics"]["passed"]
        assert record["numerics"]["steps"] == 3
        assert record["params"]["cache"] == "paged"
        assert record["throughput"]["tokens_per_s"] > 0
