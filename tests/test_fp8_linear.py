"""fp8_linear: the torchao tensorwise recipe, its FLOPs/bytes and a tolerance that can fail."""
from __future__ import annotations

import pytest
import torch

from harness.errors import ConfigError
from harness.worker.numerics import compare
from harness.worker.workload import run_torch
from workloads.fp8_linear import model as fp8_linear

CPU = torch.device("cpu")


def build(**overrides):
    cfg = {"name": "fp8_linear", "preset": "cpu_small", "mode": "fwd", "dtype": "bfloat16",
           "min_sqnr_db": None, "recipe": "tensorwise", "M": None, "K": None, "N": None}
    cfg.update(overrides)
    torch.manual_seed(0)
    return fp8_linear.build(cfg, CPU)


def test_scale_matches_seed_graph():
    # Seed 000: abs -> max -> f64 -> clamp_min(1e-12) -> reciprocal * 448 -> f32
    t = torch.tensor([[-2.0, 1.0], [0.5, 0.25]], dtype=torch.bfloat16)
    assert fp8_linear.tensorwise_scale(t, torch.float8_e4m3fn).item() == pytest.approx(224.0)
    assert fp8_linear.tensorwise_scale(torch.zeros(2), torch.float8_e5m2).item() == pytest.approx(57344.0 / 1e-12)


@pytest.mark.parametrize("mode,names", [("fwd", ("y",)), ("fwd_bwd", ("y", "grad_x", "grad_w"))])
def test_eager_passes_its_threshold(mode, names):
    w = build(mode=mode)
    outs = run_torch(w, w.forward, w.inputs)
    assert [o.shape for o in outs] == [r.shape for r in w.reference()[0]]
    result = compare([outs], w.reference(), w.min_sqnr_db, w.output_names)
    assert result.passed, result.detail
    assert w.output_names == names
    # lossy, and visibly so: fp8 is far from exact
    assert result.min_sqnr_db < 40


def test_threshold_can_fail_a_broken_scale():
    w = build()
    outs = run_torch(w, w.forward, w.inputs)
    broken = (outs[0] * 1.1,)   # a 10% scale error
    assert not compare([broken], w.reference(), w.min_sqnr_db).passed


def test_bf16_baseline_is_much_closer_than_fp8():
    fp8 = compare([run_torch(w := build(), w.forward, w.inputs)], w.reference(), 0).min_sqnr_db
    bf16 = compare([run_torch(b := build(recipe="bf16"), b.forward, b.inputs)], b.reference(), 0).min_sqnr_db
    assert bf16 > fp8 + 10


def test_flops_and_bytes_seed_shapes():
    w = build(preset="cpu_small", M=2048, K=4096, N=8192)
    assert w.flops == 2 * 2048 * 4096 * 8192
    assert w.min_bytes == (2048 * 4096 + 8192 * 4096 + 2048 * 8192) * 2
    t = build(preset="cpu_small", M=64, K=128, N=256, mode="fwd_bwd")
    assert t.flops == 3 * 2 * 64 * 128 * 256


@pytest.mark.parametrize("override,key", [({"M": 0}, "workload.M"), ({"recipe": "rowwise"}, "workload.recipe"),
                                          ({"K": 100}, "workload.K"), ({"preset": "huge"}, "workload.preset"),
                                          ({"mode": "bwd"}, "workload.mode")])
def test_bad_params_name_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        build(**override)
    assert e.value.key == key


def test_presets_include_seed_shapes():
    assert fp8_linear.PRESETS["seed"] == {"M": 2048, "K": 4096, "N": 8192}


@pytest.mark.parametrize("mode", ["fwd", "fwd_bwd"])
def test_torchao_recipe_agrees_with_the_hand_written_one(mode):
    """torchao's own Float8Linear (convert_to_float8_training, tensorwise) against the recipe
    written out in model.py, same weights and inputs: outputs and gradients at >= 40 dB of each
    other (measured on this CPU: bit-identical, SQNR infinite; on the GPU scripts/gpu_session.sh
    torchao)."""
    pytest.importorskip("torchao.float8")
    from harness.worker.numerics import sqnr_db
    ours, theirs = build(mode=mode), build(mode=mode, recipe="torchao")
    assert type(theirs.module[0]).__name__ == "Float8Linear" and theirs.module[0].__module__.startswith("torchao")
    a, b = run_torch(ours, ours.forward, ours.inputs), run_torch(theirs, theirs.forward, theirs.inputs)
    assert len(a) == len(b) == len(ours.output_names)
    for name, x, y in zip(ours.output_names, a, b):
        assert sqnr_db(y, x) >= 40.0, name
    check = compare([b], theirs.reference(), theirs.min_sqnr_db, theirs.output_names)
    assert check.passed, check.detail


def test_torchao_recipe_without_torchao_is_unsupported(monkeypatch):
    import sys
    from harness.errors import Unsupported
    monkeypatch.setitem(sys.modules, "torchao", None)
    monkeypatch.setitem(sys.modules, "torchao.float8", None)
    with pytest.raises(Unsupported, match="workload.recipe=torchao needs torchao"):
        build(recipe="torchao")
