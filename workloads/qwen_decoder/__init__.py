"""Qwen3-style decoder (plain PyTorch, random weights), static or paged KV cache (seed 004).

Presets (model.py): qwen3_0_6b (static cache), seed004 (9 layers, batch 32, paged pool
bf16[2,4233,16,8,128]), cpu_tiny. Any key left null takes the preset's value.
"""
from dataclasses import dataclass
from typing import Optional

from harness.config import WorkloadConfig
from harness import plugins


@plugins.workload("qwen_decoder", build="workloads.qwen_decoder.model:build")
@dataclass
class QwenDecoderConfig(WorkloadConfig):
    dtype: Optional[str] = None     # None: the preset's (bfloat16 on the GPU presets)
    phase: str = "decode"           # prefill (last-position logits of a prompt) | decode (one token, warm cache)
    cache: Optional[str] = None     # static | paged; None: the preset's
    batch: Optional[int] = None
    prompt_len: Optional[int] = None
    max_len: Optional[int] = None
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
