"""Qwen3-style decoder (plain PyTorch, random weights), static or paged KV cache (seed 004).

Presets (below): qwen3_0_6b (static cache), seed004 (9 layers, batch 32, paged pool
bf16[2,4233,16,8,128]), cpu_tiny. Any key left null takes the preset's value.

`phase=generate` is a whole greedy generation (harness/worker/generate.py times it): the prompt's
prefill gives the first token, then `new_tokens - 1` decode steps, the position advancing and
the cache filling. Its cache holds exactly `prompt_len + new_tokens` positions (gpt-fast's
max_seq_length; `max_len` applies to the other phases), or, with `cache=dynamic`, none at all:
keys and values grow by concatenation, a new sequence length every step.
"""
from dataclasses import dataclass
from typing import Any, Optional

from harness.errors import ConfigError
from harness.orchestrator.config import WorkloadConfig
from harness.orchestrator import plugins
from harness.params import require_bool, require_choice, require_float_dtype, require_positive

_QWEN3_0_6B = dict(hidden_size=1024, num_layers=28, num_heads=16, num_kv_heads=8, head_dim=128,
                   intermediate_size=3072, vocab_size=151936, rope_theta=1e6, rms_eps=1e-6,
                   tie_embeddings=True)
PRESETS: dict[str, dict[str, Any]] = {
    "qwen3_0_6b": dict(_QWEN3_0_6B, batch=16, prompt_len=1024, max_len=2048, cache="static",
                       block_size=16, num_blocks=None, dtype="bfloat16", new_tokens=256, check_tokens=16),
    # Seed 004 (XLA buffer assignment of a decode step): batch 32 (s32[32] tokens and positions),
    # 9 layers (nine bf16[6144,1024] fused gate/up weights), fused qkv bf16[4096,1024] =
    # (16 + 2 * 8) heads * 128, o_proj bf16[1024,2048], embedding bf16[151936,1024], and a paged
    # pool bf16[2,4233,16,8,128]: 4233 blocks of 16 tokens, 8 KV heads of 128.
    # 4096 = 32 * 2048 / 16 of its blocks are mapped.
    "seed004": dict(_QWEN3_0_6B, num_layers=9, batch=32, prompt_len=1024, max_len=2048, cache="paged",
                    block_size=16, num_blocks=4233, dtype="bfloat16", new_tokens=256, check_tokens=16),
    "cpu_tiny": dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                     intermediate_size=128, vocab_size=128, rope_theta=1e6, rms_eps=1e-6,
                     tie_embeddings=True, batch=2, prompt_len=8, max_len=32, cache="static",
                     block_size=4, num_blocks=None, dtype="float32", new_tokens=8, check_tokens=8),
}
DEFAULT_PRESET = {"cuda": "qwen3_0_6b", "cpu": "cpu_tiny"}
DECODE_CHECK_STEPS = 3   # decode numerics: tokens at pos, pos+1, pos+2 over the same cache tensors
CACHES = ("static", "paged", "dynamic")
PREALLOCATED = ("static", "paged")      # the caches the decode and prefill phases take


def validate(p: dict[str, Any]) -> None:
    require_choice(p, "mode", ("fwd",))
    require_choice(p, "phase", ("prefill", "decode", "generate"))
    require_choice(p, "cache", CACHES if p["phase"] == "generate" else PREALLOCATED)
    require_positive(p, "batch", "prompt_len", "max_len", "num_layers", "hidden_size", "num_heads",
                     "num_kv_heads", "head_dim", "intermediate_size", "vocab_size")
    if p["phase"] == "generate":
        validate_generation(p)
    require_bool(p, "tie_embeddings")
    require_float_dtype(p)
    if p["num_heads"] % p["num_kv_heads"]:
        raise ConfigError("workload.num_kv_heads", f"expected a divisor of num_heads={p['num_heads']}, "
                          f"got {p['num_kv_heads']}")
    if p["head_dim"] % 2:
        raise ConfigError("workload.head_dim", f"expected an even number (RoPE rotates pairs), got {p['head_dim']}")
    needed = p["prompt_len"] + (DECODE_CHECK_STEPS if p["phase"] == "decode" else 0)
    if needed > p["max_len"]:
        raise ConfigError("workload.max_len", f"expected at least prompt_len + {needed - p['prompt_len']} "
                          f"decode steps = {needed}, got {p['max_len']}")
    if p["cache"] == "paged":
        require_positive(p, "block_size")
        if p["phase"] == "generate":      # the generation's positions, in whole blocks
            p["max_len"] = -(-p["max_len"] // p["block_size"]) * p["block_size"]
        if p["max_len"] % p["block_size"]:
            raise ConfigError("workload.block_size", f"expected a divisor of max_len={p['max_len']}, "
                              f"got {p['block_size']}")
        mapped = p["batch"] * p["max_len"] // p["block_size"]
        if p["num_blocks"] is None:
            p["num_blocks"] = mapped
        require_positive(p, "num_blocks")
        if p["num_blocks"] < mapped:
            raise ConfigError("workload.num_blocks", f"expected at least batch * max_len / block_size = "
                              f"{mapped}, got {p['num_blocks']}")


def validate_generation(p: dict[str, Any]) -> None:
    """generate: at least two tokens (TPOT is over the decode steps after the first token), a
    check of at most all of them, and a cache of exactly the generation's positions."""
    require_positive(p, "new_tokens", "check_tokens")
    if p["new_tokens"] < 2:
        raise ConfigError("workload.new_tokens", f"expected at least 2 (the prefill's token and one decode "
                          f"step), got {p['new_tokens']}")
    p["check_tokens"] = min(p["check_tokens"], p["new_tokens"])
    p["max_len"] = p["prompt_len"] + p["new_tokens"]


@plugins.workload("qwen_decoder", build="workloads.qwen_decoder.model:build", presets=PRESETS,
                  default_preset=DEFAULT_PRESET, validate=validate)
@dataclass
class QwenDecoderConfig(WorkloadConfig):
    dtype: Optional[str] = None     # None: the preset's (bfloat16 on the GPU presets)
    phase: str = "decode"           # prefill (last-position logits of a prompt) | decode (one token, warm cache) | generate
    cache: Optional[str] = None     # static | paged | dynamic (generate only); None: the preset's
    batch: Optional[int] = None
    prompt_len: Optional[int] = None
    max_len: Optional[int] = None
    new_tokens: Optional[int] = None      # generate: tokens generated per sequence (>= 2)
    check_tokens: Optional[int] = None    # generate: greedy tokens compared with eager's (numerics)
    block_size: Optional[int] = None      # paged cache
    num_blocks: Optional[int] = None      # paged cache; None: batch * max_len / block_size
    num_layers: Optional[int] = None
    hidden_size: Optional[int] = None
    num_heads: Optional[int] = None
    num_kv_heads: Optional[int] = None
    head_dim: Optional[int] = None
    intermediate_size: Optional[int] = None
    vocab_size: Optional[int] = None
    tie_embeddings: Optional[bool] = None
