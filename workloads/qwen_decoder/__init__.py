"""Qwen3-style decoder (plain PyTorch, random weights), static or paged KV cache (seed 004).

Presets (model.py): qwen3_0_6b (static cache), seed004 (9 layers, batch 32, paged pool
bf16[2,4233,16,8,128]), cpu_tiny. Any key left null takes the preset's value.

`phase=generate` is a whole greedy generation (harness/worker/generate.py times it): the prompt's
prefill gives the first token, then `new_tokens - 1` decode steps, the position advancing and
the cache filling. Its cache holds exactly `prompt_len + new_tokens` positions (gpt-fast's
max_seq_length; `max_len` applies to the other phases), or, with `cache=dynamic`, none at all:
keys and values grow by concatenation, a new sequence length every step.
"""
from dataclasses import dataclass
from typing import Optional

from harness.orchestrator.config import WorkloadConfig
from harness.orchestrator import plugins


@plugins.workload("qwen_decoder", build="workloads.qwen_decoder.model:build")
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
