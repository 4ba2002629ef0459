"""Each op the workloads need on XLA (ours or torchax's), traced by torchax under jax.jit on the
CPU, against torch eager on the same inputs.

Importing torchax breaks torch.compile in the same process (DESIGN.md): these tests import it
lazily, and nothing after them in one pytest process should need Inductor in-process.
"""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("torchax")

from harness.worker.numerics import sqnr_db  # noqa: E402
from workloads.fp8_linear import model as fp8_linear  # noqa: E402
from workloads.qwen_decoder import model as qwen_decoder  # noqa: E402

E4M3, E5M2 = torch.float8_e4m3fn, torch.float8_e5m2


def on_xla(fn, *tensors):
    """fn(*tensors) through torchax + jax.jit (our lowerings registered) -> (outputs, the input
    tensors as fn left them: in-place writes show there)."""
    import jax
    import torchax

    from backends.xla import lowerings
    from backends.xla.convert import jax_to_torch, torch_to_numpy

    env = torchax.default_env()
    lowerings.register(env)

    def traced(*arrays):
        with env:
            ts = env.j2t_iso(list(arrays))
            out = fn(*ts)
            return env.t2j_iso(env.v2t_iso(out)), env.t2j_iso(env.v2t_iso(ts))

    out, after = jax.jit(traced)(*[torch_to_numpy(t) for t in tensors])
    convert = lambda tree: jax.tree_util.tree_map(jax_to_torch, tree)  # noqa: E731
    return convert(out), convert(after)


def fp8_operands(a_dtype=E4M3, b_dtype=E4M3, M=32, K=64, N=48):
    torch.manual_seed(0)
    a, b = torch.randn(M, K, dtype=torch.bfloat16), torch.randn(N, K, dtype=torch.bfloat16)
    a8, sa = fp8_linear.to_fp8(a, a_dtype)
    b8, sb = fp8_linear.to_fp8(b, b_dtype)
    return a8, b8.t(), sa.reciprocal(), sb.reciprocal()     # b column-major, as _scaled_mm wants


@pytest.mark.parametrize("a_dtype,b_dtype", [(E4M3, E4M3), (E5M2, E4M3)])
@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float32])
def test_scaled_mm_tensorwise_matches_eager(a_dtype, b_dtype, out_dtype):
    a8, b8, sa, sb = fp8_operands(a_dtype, b_dtype)
    mm = lambda a, b, x, y: torch._scaled_mm(a, b, scale_a=x, scale_b=y, out_dtype=out_dtype)  # noqa: E731
    eager = mm(a8, b8, sa, sb)
    xla, _ = on_xla(mm, a8, b8, sa, sb)
    assert xla.dtype == out_dtype and xla.shape == eager.shape
    # the same fp8 products summed in float32: only summation order (and a final bf16 rounding) differ
    assert sqnr_db(xla.float(), eager.float()) > (45 if out_dtype == torch.bfloat16 else 100)


def test_scaled_mm_rowwise_scales_and_bias():
    a8, b8, _, _ = fp8_operands()
    sa, sb = torch.rand(a8.shape[0], 1) + 0.5, torch.rand(1, b8.shape[1]) + 0.5
    bias = torch.randn(b8.shape[1], dtype=torch.bfloat16)
    xla, _ = on_xla(lambda a, b, x, y, c: torch._scaled_mm(a, b, scale_a=x, scale_b=y, bias=c,
                                                           out_dtype=torch.bfloat16), a8, b8, sa, sb, bias)
    expected = (a8.float() @ b8.float()) * sa * sb + bias.float()
    assert sqnr_db(xla.float(), expected) > 45


@pytest.mark.parametrize("src", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("fp8", [E4M3, E5M2])
def test_fp8_cast_is_bit_exact(src, fp8):
    torch.manual_seed(0)
    fmax = torch.finfo(fp8).max
    x = torch.cat([torch.randn(4096) * fmax / 8, torch.tensor([fmax, -fmax, 0.0, 1e-9, fmax / 3])]).to(src)
    x = x.clamp(-fmax, fmax)    # the workload clamps first: out-of-range casts differ (NaN vs inf)
    xla, _ = on_xla(lambda t: t.to(fp8), x)
    assert xla.dtype == fp8
    assert torch.equal(xla.view(torch.uint8), x.to(fp8).view(torch.uint8))


@pytest.mark.parametrize("fp8", [E4M3, E5M2])
def test_tensorwise_quantisation_matches_eager(fp8):
    # abs -> max -> float64 (float32 on JAX without x64) -> clamp -> fmax / amax -> scale, cast
    torch.manual_seed(0)
    x = torch.randn(64, 128, dtype=torch.bfloat16)
    (q, scale), _ = on_xla(lambda t: fp8_linear.to_fp8(t, fp8), x)
    q_ref, scale_ref = fp8_linear.to_fp8(x, fp8)
    torch.testing.assert_close(scale, scale_ref)
    # a scale one float32 ulp apart may move a value across a rounding boundary: almost all equal
    assert (q.view(torch.uint8) == q_ref.view(torch.uint8)).float().mean() > 0.999


def test_index_copy_in_place_writes_the_input():
    torch.manual_seed(0)
    cache, pos, k = torch.zeros(2, 16, 2, 8), torch.tensor([5, 6, 7]), torch.randn(2, 3, 2, 8)
    _, (cache_after, _, _) = on_xla(lambda c, p, v: c.index_copy_(1, p, v), cache, pos, k)
    expected = cache.clone().index_copy_(1, pos, k)
    assert torch.equal(cache_after, expected)


def test_paged_cache_write_and_gather_match_eager():
    torch.manual_seed(0)
    paged = qwen_decoder.PagedKVCache(num_blocks=11, block_size=4, kv_heads=2, head_dim=8, dtype=torch.float32,
                                      device=torch.device("cpu"))
    table = torch.randperm(11)[:8].view(2, 4).to(torch.int32)     # 2 sequences of 16 positions
    pool = torch.randn(paged.pool.shape)
    pos, k, v = torch.tensor([9]), torch.randn(2, 1, 2, 8), torch.randn(2, 1, 2, 8)

    def write_then_read(table, pool, pos, k, v):
        paged.pool = pool          # the module's buffer, as functional_call swaps it in
        return paged.update(pos, k, v, table)

    (k_all, v_all), (_, pool_after, *_) = on_xla(write_then_read, table, pool, pos, k, v)
    eager_pool = pool.clone()
    k_ref, v_ref = write_then_read(table, eager_pool, pos, k, v)
    assert torch.equal(pool_after, eager_pool)
    assert torch.equal(k_all, k_ref) and torch.equal(v_all, v_ref)


@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_matches_eager(causal):
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 2, 6, 16), torch.randn(2, 2, 6, 16), torch.randn(2, 2, 6, 16)
    mask = torch.arange(6)[None, :] <= torch.tensor([3])[:, None]      # decode-style bool mask [1, S]
    mask = mask.repeat(6, 1)

    def attend(q, k, v, mask):
        if causal:
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    xla, _ = on_xla(attend, q, k, v, mask)
    torch.testing.assert_close(xla, attend(q, k, v, mask), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype,channels_last,min_db", [(torch.float32, False, 100), (torch.bfloat16, True, 40)])
def test_conv2d_matches_eager(dtype, channels_last, min_db):
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 8, 12, 12, dtype=dtype).contiguous(memory_format=fmt)
    w = torch.randn(16, 8, 3, 3, dtype=dtype).contiguous(memory_format=fmt)
    b = torch.randn(16, dtype=dtype)
    conv = lambda x, w, b: torch.nn.functional.conv2d(x, w, b, stride=1, padding=1)  # noqa: E731
    xla, _ = on_xla(conv, x, w, b)
    assert sqnr_db(xla.float(), conv(x.double(), w.double(), b.double())) > min_db


def test_rmsnorm_and_rope_match_eager():
    torch.manual_seed(0)
    norm = qwen_decoder.RMSNorm(16, 1e-6)
    cos, sin = qwen_decoder.rope_table(16, 8, 1e6)
    x = torch.randn(2, 8, 4, 16, dtype=torch.bfloat16)
    weight = norm.weight.detach() + 0.1 * torch.randn(16)

    def fn(x, weight, cos, sin):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)
        return qwen_decoder.apply_rope(weight * xf.to(x.dtype), cos, sin)

    xla, _ = on_xla(fn, x, weight, cos, sin)
    assert sqnr_db(xla.float(), fn(x, weight, cos, sin).float()) > 40


@pytest.mark.parametrize("fast_accum,precision", [(True, "DEFAULT"), (False, "HIGHEST")])
def test_scaled_mm_fast_accum_is_the_dot_precision(fast_accum, precision):
    # XLA:GPU enables cuBLASLt fp8 fast accumulation exactly for DEFAULT precision
    import jax
    import jax.numpy as jnp

    from backends.xla import lowerings
    a = jnp.ones((32, 64), jnp.float8_e4m3fn)
    b = jnp.ones((64, 16), jnp.float8_e4m3fn)
    text = jax.jit(lambda a, b: lowerings.scaled_mm(a, b, jnp.float32(1), jnp.float32(1), out_dtype=torch.bfloat16,
                                                   use_fast_accum=fast_accum)).lower(a, b).as_text()
    [dot] = [line for line in text.splitlines() if "dot_general" in line]
    assert f"precision = [{precision}, {precision}]" in dot
