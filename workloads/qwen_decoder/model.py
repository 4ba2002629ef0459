"""A Qwen3-style decoder in plain PyTorch, with a static or a paged KV cache; prefill or decode.

The model, top to bottom: token embedding; per layer RMSNorm -> attention (fused qkv projection,
RMSNorm of q and k per head before RoPE, RoPE with the rotate-half convention, grouped-query
attention, output projection) -> residual -> RMSNorm -> SwiGLU MLP (fused gate/up, as seed 004's
bf16[6144,1024] is) -> residual; final RMSNorm; lm_head (optionally tied to the embedding).

The KV cache is module state, as in gpt-fast: each attention layer owns its cache buffers and
updates them in place (`index_copy_` / `index_put_`), so their addresses never change and
Inductor's CUDA graphs replay (a cache passed in as graph inputs is copied into the graph's
static inputs, or skips the graphs, every step). The buffers are listed in
`Workload.state_buffers`: the XLA backend, whose jit drops in-place writes to module state,
passes them in, takes them back and donates them: the functional form XLA wants.

Phases:
- prefill: a prompt of `prompt_len` tokens at positions 0..L-1 attends causally to itself and
  writes its keys/values into the cache; returns the logits of the last position [batch, vocab]
  (what generation samples from; all positions would be [32, 1024, 151936] bf16 = 10 GB at seed004).
- decode: one token per sequence at position `pos` = prompt_len, over a cache warmed by a prefill
  at build time; attends over the whole cache (max_len keys) with a mask of the valid positions;
  returns logits [batch, vocab]. All sequences of a batch share their positions.
- generate: a greedy generation of `new_tokens` per sequence; harness/worker/generate.py runs the loop.
  The workload gives its two steps: prefill (the module's forward: prompt -> first token) and
  decode (`Workload.steps["decode"]`), each returning (next_token [B, 1], next_position, logits,
  *carry) with the argmax inside the step, so the next token never leaves the device; decode
  takes (token, position, *carry). The static and paged caches are module state (no carry); the
  dynamic cache is the carry: keys and values grown by concatenation, a new length every step.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.params import resolve
from harness.worker.workload import Generation, LazyMapping, Workload, torch_dtype
from workloads.qwen_decoder import (DECODE_CHECK_STEPS, DEFAULT_PRESET, PRESETS, PREALLOCATED,
                                   validate)

# Logits against a float32 copy of the model with its own cache. float32 differs only in summation
# order (bitwise equal on CPU eager, 133 dB under Inductor). bf16 rounds every activation and the
# layers' errors add up: 37 dB on CPU at qwen3_0_6b's 28 layers (batch 2, prompt 64); on an H100
# 37-41 dB, eager and Inductor, at qwen3_0_6b and seed004, decode and prefill. A cache write lost
# between decode steps drops cpu_tiny (prompt 8) to 14 dB, float32 or bf16; at prompt 1024 one
# lost key of 1025 hides in bf16 noise, so tests/test_qwen_decoder.py is where that is caught.
# generate compares its logits with eager's in the same dtype, step by step until a sequence's token
# differs (harness/worker/generate.py), against the same thresholds. Measured on the CPU, batch 16, prompt
# 64, 16 tokens, Qwen3-0.6B layer shapes: bf16 Inductor 36.3-36.6 dB (2 layers, 3 seeds) and 37.0 dB
# (8 layers), XLA 37.2-37.3 dB (2 layers, 3 seeds); in every run 1-10 of the 16 sequences flipped a
# token, the first at step 0 or 1, between logits tied in bf16 (eager's top-2 margin 0 or 0.0156,
# one bf16 step): an early flip is expected and reported, not failed. float32: 130-138 dB, no flip.
DEFAULT_MIN_SQNR_DB = {"float32": 80.0, "float16": 30.0, "bfloat16": 28.0}
INIT_STD = 0.02


@dataclass
class ModelArgs:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    rope_theta: float = 1e6
    rms_eps: float = 1e-6
    tie_embeddings: bool = True
    max_len: int = 2048         # positions the RoPE table covers

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> "ModelArgs":
        return cls(**{f.name: p[f.name] for f in fields(cls) if f.name in p})


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # float32 statistics whatever the activation dtype: bf16 squares overflow their mantissa
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


def rope_table(head_dim: int, max_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [max_len, head_dim], each frequency repeated for the two halves (rotate-half)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    freqs = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().float(), emb.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, T, heads, D]; cos, sin [T, D]."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    cos, sin = cos[:, None, :].to(x.dtype), sin[:, None, :].to(x.dtype)
    return x * cos + rotated * sin


def block_slots(input_pos: torch.Tensor, block_table: torch.Tensor, block_size: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Physical blocks [B, T] and offsets [T] of positions input_pos [T]."""
    return block_table[:, input_pos // block_size].long(), input_pos % block_size


def written_entries(cache: Mapping[str, torch.Tensor], input_pos: torch.Tensor,
                    block_table: torch.Tensor | None, block_size: int) -> dict[str, torch.Tensor]:
    """What the cache buffers (by name, static `k_cache`/`v_cache` or paged `pool`) hold at
    positions input_pos: the entries a check compares, float32 on the CPU. Indexed where the
    buffer lives, one buffer at a time (a backend may hand them over lazily: 3.6 GB at Qwen3-0.6B)."""
    out = {}
    for name in cache:
        t = cache[name].detach()
        pos = input_pos.to(t.device)
        if name.endswith(".pool"):
            blocks, offsets = block_slots(pos, block_table.to(t.device), block_size)
            out[name] = t[:, blocks, offsets[None]].float().cpu()
        else:
            out[name] = t[:, pos].float().cpu()
    return out


class StaticKVCache(nn.Module):
    """One layer's k and v buffers [batch, max_len, kv_heads, head_dim], updated in place."""

    def __init__(self, batch: int, max_len: int, kv_heads: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device):
        super().__init__()
        shape = (batch, max_len, kv_heads, head_dim)
        # zeros, not empty: a NaN in an unwritten slot would survive its zero attention weight
        self.register_buffer("k_cache", torch.zeros(shape, dtype=dtype, device=device))
        self.register_buffer("v_cache", torch.zeros(shape, dtype=dtype, device=device))

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               block_table: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v [B, T, kv_heads, D] at input_pos [T]; the whole cache, k and v."""
        self.k_cache.index_copy_(1, input_pos, k)
        self.v_cache.index_copy_(1, input_pos, v)
        return self.k_cache, self.v_cache


class PagedKVCache(nn.Module):
    """One layer's pool [2, num_blocks, block_size, kv_heads, head_dim] (k and v, as seed 004),
    addressed through the model's block table [batch, max_len / block_size] of physical blocks."""

    def __init__(self, num_blocks: int, block_size: int, kv_heads: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device):
        super().__init__()
        self.block_size = block_size
        self.register_buffer("pool", torch.zeros((2, num_blocks, block_size, kv_heads, head_dim),
                                                 dtype=dtype, device=device))

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               block_table: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v [B, T, kv_heads, D] at input_pos [T]; k, v [B, max_len, kv_heads, D]
        gathered through the block table."""
        blocks, offsets = block_slots(input_pos, block_table, self.block_size)
        kv_index = torch.arange(2, device=self.pool.device)[:, None, None]      # [2, 1, 1]
        self.pool.index_put_((kv_index, blocks[None], offsets[None, None]), torch.stack([k, v]))
        kv = self.pool[:, block_table.long()].flatten(2, 3)                      # [2, B, max_len, H, D]
        return kv[0], kv[1]


class GrowingKVCache:
    """One layer's keys and values so far [batch, length, kv_heads, head_dim], grown by
    concatenation (Hugging Face's DynamicCache): no preallocated cache, so every decode step
    sees a new length. A plain object made inside the step, its tensors the step's carry."""

    def __init__(self, k: torch.Tensor | None = None, v: torch.Tensor | None = None):
        self.k, self.v = k, v

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               block_table: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        self.k = k if self.k is None else torch.cat([self.k, k], dim=1)
        self.v = v if self.v is None else torch.cat([self.v, v], dim=1)
        return self.k, self.v


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = args.num_heads, args.num_kv_heads, args.head_dim
        qkv_dim = (args.num_heads + 2 * args.num_kv_heads) * args.head_dim
        self.wqkv = nn.Linear(args.hidden_size, qkv_dim, bias=False)
        self.wo = nn.Linear(args.num_heads * args.head_dim, args.hidden_size, bias=False)
        self.q_norm = RMSNorm(args.head_dim, args.rms_eps)
        self.k_norm = RMSNorm(args.head_dim, args.rms_eps)
        self.kv_cache: StaticKVCache | PagedKVCache | None = None     # Transformer.setup_caches

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, input_pos: torch.Tensor,
                block_table: torch.Tensor | None, attend_cache: bool,
                cache: GrowingKVCache | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        H, KV, D = self.n_heads, self.n_kv_heads, self.head_dim
        q, k, v = self.wqkv(x).split([H * D, KV * D, KV * D], dim=-1)
        q = apply_rope(self.q_norm(q.view(B, T, H, D)), cos, sin)
        k = apply_rope(self.k_norm(k.view(B, T, KV, D)), cos, sin)
        v = v.view(B, T, KV, D)
        k_all, v_all = (cache or self.kv_cache).update(input_pos, k, v, block_table)

        if attend_cache:
            # Decode reads the whole cache; rather than repeat each KV head for its query heads
            # (a copy of the cache per step), fold the query heads of a group into the query
            # length: q [B, KV, rep*T, D] against k, v [B, KV, S, D].
            S, rep = k_all.shape[1], H // KV
            valid = torch.arange(S, device=x.device)[None, :] <= input_pos[:, None]   # [T, S]
            qg = q.transpose(1, 2).reshape(B, KV, rep * T, D)
            y = F.scaled_dot_product_attention(qg, k_all.transpose(1, 2), v_all.transpose(1, 2),
                                               attn_mask=valid.repeat(rep, 1))
            y = y.reshape(B, H, T, D)
        else:
            # Prefill from position 0: the prompt attends causally to its own keys.
            rep = H // KV
            k = k.repeat_interleave(rep, dim=2)
            v = v.repeat_interleave(rep, dim=2)
            y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                               is_causal=True)
        return self.wo(y.transpose(1, 2).reshape(B, T, H * D))


class FeedForward(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.w13 = nn.Linear(args.hidden_size, 2 * args.intermediate_size, bias=False)  # gate; up
        self.w2 = nn.Linear(args.intermediate_size, args.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w13(x).chunk(2, dim=-1)
        return self.w2(F.silu(gate) * up)


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attention_norm = RMSNorm(args.hidden_size, args.rms_eps)
        self.attention = Attention(args)
        self.ffn_norm = RMSNorm(args.hidden_size, args.rms_eps)
        self.feed_forward = FeedForward(args)

    def forward(self, x, cos, sin, input_pos, block_table, attend_cache, cache=None) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), cos, sin, input_pos, block_table, attend_cache, cache)
        return x + self.feed_forward(self.ffn_norm(x))


class Transformer(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.hidden_size)
        self.layers = nn.ModuleList(TransformerBlock(args) for _ in range(args.num_layers))
        self.norm = RMSNorm(args.hidden_size, args.rms_eps)
        self.output = nn.Linear(args.hidden_size, args.vocab_size, bias=False)
        if args.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight
        # float32 whatever the model dtype (apply_rope casts at use); not in the state dict
        cos, sin = rope_table(args.head_dim, args.max_len, args.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.register_buffer("block_table", None, persistent=False)    # paged cache: setup_caches

    def setup_caches(self, p: dict[str, Any], dtype: torch.dtype, device: torch.device,
                     block_table: torch.Tensor | None = None) -> None:
        """A cache per layer (gpt-fast's setup_caches); the paged cache's block table is drawn
        here unless given (a reference model shares the measured model's placement). The
        dynamic cache is none: the generation's steps carry it."""
        if p["cache"] not in PREALLOCATED:
            return
        if p["cache"] == "paged":
            if block_table is None:
                # Sequences own scattered blocks, as an allocator that has run a while leaves
                # them: a table mapping block i to block i would let a broken gather pass.
                per_seq = p["max_len"] // p["block_size"]
                order = torch.randperm(p["num_blocks"])[: p["batch"] * per_seq]
                block_table = order.view(p["batch"], per_seq).to(dtype=torch.int32)
            self.register_buffer("block_table", block_table.to(device), persistent=False)
        for layer in self.layers:
            layer.attention.kv_cache = (
                StaticKVCache(p["batch"], p["max_len"], p["num_kv_heads"], p["head_dim"], dtype, device)
                if p["cache"] == "static" else
                PagedKVCache(p["num_blocks"], p["block_size"], p["num_kv_heads"], p["head_dim"], dtype, device))

    def cache_buffers(self) -> tuple[str, ...]:
        """Names (as in named_buffers) of the buffers the forward updates in place."""
        return tuple(name for name, _ in self.named_buffers() if ".kv_cache." in name)

    def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor, attend_cache: bool,
                last_only: bool = False, caches: list[GrowingKVCache] | None = None) -> torch.Tensor:
        """tokens [B, T] at positions input_pos [T] -> logits [B, T, vocab] ([B, vocab] if last_only).
        `caches`: one per layer in place of the module's own (the dynamic cache)."""
        x = self.tok_embeddings(tokens)
        cos, sin = self.rope_cos[input_pos], self.rope_sin[input_pos]
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, input_pos, self.block_table, attend_cache, caches[i] if caches else None)
        if last_only:
            x = x[:, -1]
        return self.output(self.norm(x))


def prefill(model: Transformer, tokens: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
    return model(tokens, input_pos, attend_cache=False, last_only=True)


def decode_one_token(model: Transformer, tokens: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
    return model(tokens, input_pos, attend_cache=True)[:, -1]


# -- generation: each step returns (next_token, next_position, logits, *carry) -------------------

def greedy(logits: torch.Tensor) -> torch.Tensor:
    """logits [B, vocab] -> the next tokens [B, 1], on the device."""
    return logits.argmax(dim=-1, keepdim=True)


def prefill_greedy(model: Transformer, tokens: torch.Tensor, input_pos: torch.Tensor):
    logits = prefill(model, tokens, input_pos)
    return greedy(logits), input_pos[-1:] + 1, logits


def decode_greedy(model: Transformer, tokens: torch.Tensor, input_pos: torch.Tensor):
    logits = decode_one_token(model, tokens, input_pos)
    return greedy(logits), input_pos + 1, logits


def _flat(caches: list[GrowingKVCache]) -> tuple[torch.Tensor, ...]:
    return tuple(t for c in caches for t in (c.k, c.v))


def prefill_growing(model: Transformer, tokens: torch.Tensor, input_pos: torch.Tensor):
    """The prompt's keys and values become the carry: k0, v0, k1, v1, ... [B, L, kv_heads, D]."""
    caches = [GrowingKVCache() for _ in model.layers]
    logits = model(tokens, input_pos, attend_cache=False, last_only=True, caches=caches)
    return (greedy(logits), input_pos[-1:] + 1, logits, *_flat(caches))


def decode_growing(model: Transformer, tokens: torch.Tensor, input_pos: torch.Tensor, *kv: torch.Tensor):
    caches = [GrowingKVCache(k, v) for k, v in zip(kv[0::2], kv[1::2])]
    logits = model(tokens, input_pos, attend_cache=True, caches=caches)[:, -1]
    return (greedy(logits), input_pos + 1, logits, *_flat(caches))


def init_weights(model: Transformer) -> None:
    """Normal(0, 0.02) matrices keep activations O(1) at any depth; norm weights around 1, not
    exactly 1, so that a norm applied to the wrong tensor cannot pass a parity test."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(1.0 + 0.1 * torch.randn(param.shape))
            else:
                param.copy_(INIT_STD * torch.randn(param.shape))


def build_model(p: dict[str, Any], dtype: torch.dtype, device: torch.device) -> Transformer:
    """Random weights drawn from torch's global RNG (the worker seeds it), in `dtype` on `device`."""
    model = Transformer(ModelArgs.from_params(p))
    init_weights(model)
    # parameters only: the RoPE table stays float32
    for param in model.parameters():
        param.data = param.data.to(device=device, dtype=dtype)
    model.rope_cos, model.rope_sin = model.rope_cos.to(device), model.rope_sin.to(device)
    return model.eval().requires_grad_(False)


def float32_copy(model: Transformer, p: dict[str, Any]) -> Transformer:
    """The same weights (as the model holds them, upcast) in a float32 model of its own, with
    float32 caches of its own at the same block placement."""
    ref = Transformer(model.args)
    ref.load_state_dict({k: v.float() for k, v in model.state_dict().items()
                         if ".kv_cache." not in k})
    device = model.tok_embeddings.weight.device
    ref = ref.to(device).eval().requires_grad_(False)
    ref.setup_caches(p, torch.float32, device, model.block_table)
    return ref


def attended_keys(p: dict[str, Any]) -> float:
    """Keys a decode step attends to: the token at pos = prompt_len sees 0..pos; over a
    generation, the mean over its decode steps at positions prompt_len .. prompt_len + new_tokens - 2."""
    if p["phase"] == "generate":
        return p["prompt_len"] + p["new_tokens"] / 2
    return p["prompt_len"] + 1


def count_flops(p: dict[str, Any]) -> float:
    """Matmul FLOPs of one step (2 per multiply-add), attention over the *valid* keys only.

    Decode's kernels run over all max_len cache slots and mask the rest; the count is the model's
    work (pos + 1 keys), as MFU counts it, not the masked waste. Prefill's causal attention counts
    L (L + 1) / 2 query-key pairs per head. Embedding lookups, norms, RoPE and softmax are not counted.
    """
    B, L, H, KV, D = p["batch"], p["prompt_len"], p["num_heads"], p["num_kv_heads"], p["head_dim"]
    hidden, inter, layers = p["hidden_size"], p["intermediate_size"], p["num_layers"]
    linear_per_token = 2 * layers * (hidden * (H + 2 * KV) * D + H * D * hidden + 3 * hidden * inter)
    lm_head_per_seq = 2 * hidden * p["vocab_size"]     # one position per sequence in both phases
    if p["phase"] != "prefill":                        # decode; generate: its decode steps
        query_key_pairs = attended_keys(p)
        tokens = B
    else:
        query_key_pairs = L * (L + 1) // 2
        tokens = B * L
    attention = 2 * 2 * layers * H * D * query_key_pairs * B   # QK^T and PV
    return float(tokens * linear_per_token + B * lm_head_per_seq + attention)


def count_min_bytes(p: dict[str, Any], model: Transformer, elem: int) -> float:
    """Weights read once (the embedding table only for its gathered rows, unless lm_head reads it
    whole as tied weights do), valid cache entries read once (decode), new keys/values written
    once, logits written once."""
    B, L, KV, D = p["batch"], p["prompt_len"], p["num_kv_heads"], p["head_dim"]
    tokens = B if p["phase"] != "prefill" else B * L
    weights = sum(t.numel() for t in model.parameters())   # a tied table is counted once
    if not p["tie_embeddings"]:
        weights -= model.tok_embeddings.weight.numel() - tokens * p["hidden_size"]
    kv_per_token = 2 * p["num_layers"] * KV * D
    cache_read = B * attended_keys(p) * kv_per_token if p["phase"] != "prefill" else 0
    cache_write = tokens * kv_per_token
    logits = B * p["vocab_size"]
    return float((weights + cache_read + cache_write + logits) * elem)


def build(cfg: dict[str, Any], device: torch.device) -> Workload:
    p = resolve(cfg, PRESETS, device.type, DEFAULT_PRESET, validate)
    dtype = torch_dtype(p["dtype"])
    B, L, decode = p["batch"], p["prompt_len"], p["phase"] == "decode"
    model = build_model(p, dtype, device)
    # Tokens before the cache: the paged cache draws its block placement, and with the same seed
    # a static and a paged build then see the same weights and the same tokens.
    prompt = torch.randint(p["vocab_size"], (B, L), device=device)
    prompt_pos = torch.arange(L, device=device)
    steps = [(torch.randint(p["vocab_size"], (B, 1), device=device), torch.tensor([L + i], device=device))
             for i in range(DECODE_CHECK_STEPS)]
    model.setup_caches(p, dtype, device)
    threshold = p["min_sqnr_db"] if p["min_sqnr_db"] is not None else DEFAULT_MIN_SQNR_DB[p["dtype"]]
    if p["phase"] == "generate":
        return generation_workload(p, model, (prompt, prompt_pos), threshold)

    if decode:
        with torch.no_grad():
            prefill(model, prompt, prompt_pos)       # the warm cache decode reads
        check_inputs, forward = list(steps), decode_one_token
    else:
        check_inputs, forward = [(prompt, prompt_pos)], prefill
    written_pos = torch.cat([pos for _, pos in check_inputs]) if decode else prompt_pos
    # The reference replays prefill and the check steps on a float32 copy with its own caches,
    # so the measured model's caches are left to the backend.
    ref_model: list[Transformer] = []

    def reference() -> list[tuple[torch.Tensor, ...]]:
        ref = float32_copy(model, p)
        ref_model[:] = [ref]
        with torch.no_grad():
            logits = prefill(ref, prompt, prompt_pos)
            if not decode:
                return [(logits.cpu(),)]
            return [(decode_one_token(ref, tokens, pos).cpu(),) for tokens, pos in steps]

    cache_names = model.cache_buffers()

    def written(buffers: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return written_entries(LazyMapping(cache_names, buffers.__getitem__), written_pos, model.block_table,
                               p["block_size"])

    def reference_state() -> dict[str, torch.Tensor]:
        if not ref_model:
            reference()
        # The check is the float32 copy's last use: dropping it here frees its weights and caches
        # (~10 GB at qwen3_0_6b, batch 16) before timing, so that torch's runtime peak is the
        # measured program's, as JAX's is.
        ref = ref_model.pop()
        return written(dict(ref.named_buffers()))

    return Workload(
        name="qwen_decoder", params=p, module=model, inputs=check_inputs[0], forward=forward,
        flops=count_flops(p), min_bytes=count_min_bytes(p, model, torch.finfo(dtype).bits // 8),
        reference=reference, min_sqnr_db=threshold, mode="fwd",
        tokens_per_iter=B if decode else B * L, state_buffers=cache_names, check_inputs=check_inputs,
        output_names=("logits",), reference_state=reference_state, state_probe=written, shape=shape(p),
    )


def shape(p: dict[str, Any]) -> str:
    """`batch 16, prompt 1024, cache 2048 (static), 28 layers x 1024, bfloat16`."""
    length = (f"prompt {p['prompt_len']}, {p['new_tokens']} new tokens" if p["phase"] == "generate"
              else f"prompt {p['prompt_len']}, cache {p['max_len']}")
    return (f"batch {p['batch']}, {length} ({p['cache']}), {p['num_layers']} layers x "
            f"{p['hidden_size']}, {p['dtype']}")


def generation_workload(p: dict[str, Any], model: Transformer, prompt: tuple[torch.Tensor, torch.Tensor],
                        threshold: float) -> Workload:
    """The prefill as the module's forward on the prompt, the decode step beside it; FLOPs and
    bytes per decode step (the timing's median is the median TPOT)."""
    growing = p["cache"] == "dynamic"
    first, decode = (prefill_growing, decode_growing) if growing else (prefill_greedy, decode_greedy)
    elem_bytes = torch.finfo(model.tok_embeddings.weight.dtype).bits // 8
    return Workload(
        name="qwen_decoder", params=p, module=model, inputs=prompt, forward=first, steps={"decode": decode},
        flops=count_flops(p), min_bytes=count_min_bytes(p, model, elem_bytes),
        # the generation checks its greedy tokens against eager's (harness/worker/generate.py)
        reference=lambda: [], min_sqnr_db=threshold, mode="fwd", tokens_per_iter=p["batch"],
        state_buffers=model.cache_buffers(), output_names=("next_token", "next_position", "logits"),
        generation=Generation(new_tokens=p["new_tokens"], check_tokens=p["check_tokens"], growing=growing),
        shape=shape(p),
    )
