"""conv: seed 002's Conv2d and ResNet-50 stage shapes; FLOPs as FlopCounterMode counts them."""
from __future__ import annotations

import functools

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from conftest import build_workload, workload_cfg, resolve, records, run_harness
from harness.errors import ConfigError
from harness.worker.numerics import compare
from harness.worker.workload import run_torch
from workloads.conv import model as conv

SEED002_CONV_FLOPS = 12_355_200   # seed 002: "aten.convolution   12355.200K"


cfg = functools.partial(workload_cfg, "conv", preset="cpu_small")

build = functools.partial(build_workload, "conv", preset="cpu_small")


def test_seed002_is_the_seed_case():
    w = build(preset="seed002")
    (x,) = w.inputs
    assert x.shape == (10, 90, 80) and x.dtype == torch.float32
    assert w.module.weight.shape == (10, 10, 3, 3) and w.module.bias.shape == (10,)
    assert w.forward(w.module, x).shape == (10, 88, 78)   # unsqueezed to [1,...] and back, as in the seed


def test_seed002_flops_equal_flop_counter_and_the_seed():
    # FlopCounterMode counts 2 * multiply-adds of the convolution and nothing for the bias add.
    w = build(preset="seed002")
    with FlopCounterMode(display=False) as counter:
        w.forward(w.module, *w.inputs)
    assert w.flops == counter.get_total_flops() == SEED002_CONV_FLOPS

    # fwd+bwd: grad_x and grad_w are one forward's worth each (aten.convolution_backward)
    t = build(preset="seed002", mode="fwd_bwd")
    with FlopCounterMode(display=False) as counter:
        t.forward(t.module, *t.inputs).backward(t.grad_outputs[0])
    assert t.flops == counter.get_total_flops() == 3 * SEED002_CONV_FLOPS


def test_min_bytes_count_each_tensor_once():
    w = build(preset="seed002")
    x, weight, bias, y = 10 * 90 * 80, 10 * 10 * 9, 10, 10 * 88 * 78
    assert w.min_bytes == (x + weight + bias + y) * 4
    t = build(preset="seed002", mode="fwd_bwd")       # + read grad_y, write grad_x, grad_w, grad_b
    assert t.min_bytes == (x + weight + bias + y) * 4 * 2


@pytest.mark.parametrize("stage,channels,size", [(2, 64, 56), (3, 128, 28), (4, 256, 14), (5, 512, 7)])
def test_resnet50_presets_resolve_without_building(stage, channels, size):
    p = resolve(conv, cfg(preset=f"resnet50_stage{stage}"), "cuda")
    assert (p["batch"], p["in_channels"], p["height"], p["dtype"], p["channels_last"]) == (
        32, channels, size, "bfloat16", True)
    assert conv.conv_flops(p) == 2 * 32 * channels * size * size * channels * 9


def test_auto_preset_per_device():
    assert resolve(conv, cfg(preset="auto"), "cuda")["preset"] == "resnet50_stage3"
    assert resolve(conv, cfg(preset="auto"), "cpu")["preset"] == "cpu_small"


@pytest.mark.parametrize("mode", ["fwd", "fwd_bwd"])
@pytest.mark.parametrize("overrides", [{"preset": "seed002"}, {"preset": "cpu_small"},
                                       {"preset": "cpu_small", "dtype": "bfloat16", "channels_last": True}])
def test_eager_passes_its_threshold(mode, overrides):
    w = build(mode=mode, **overrides)
    outs = run_torch(w, w.forward, w.inputs)
    result = compare([outs], w.reference(), w.min_sqnr_db, w.output_names)
    assert result.passed, result.detail
    assert len(outs) == len(w.output_names) == (1 if mode == "fwd" else 4)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_threshold_fails_a_wrong_convolution(dtype):
    w = build(dtype=dtype)
    ref = w.reference()
    x, m = w.inputs[0], w.module
    with torch.no_grad():
        wrong = {
            "no bias": torch.nn.functional.conv2d(x, m.weight, None, padding=1),
            "flipped kernel": torch.nn.functional.conv2d(x, m.weight.flip(-1, -2), m.bias, padding=1),
            "shifted by a pixel": m(x).roll(1, dims=-1),
        }
    for what, y in wrong.items():
        assert not compare([(y,)], ref, w.min_sqnr_db).passed, what


@pytest.mark.parametrize("override,key", [
    ({"batch": -1}, "workload.batch"),
    ({"padding": -1}, "workload.padding"),
    ({"kernel_size": 40}, "workload.kernel_size"),
    ({"dtype": "int8"}, "workload.dtype"),
    ({"mode": "bwd"}, "workload.mode"),
    ({"preset": "seed002", "batch": 2}, "workload.batch"),   # an unbatched input is one image
    ({"preset": "resnet50"}, "workload.preset"),
])
def test_bad_params_name_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        build(**override)
    assert e.value.key == key


@pytest.mark.slow
def test_cli_eager_and_inductor(sweep_dir):
    out = run_harness("-m", "workload=conv", "backend=eager,inductor", "bench=quick",
                      f"hydra.sweep.dir={sweep_dir}")
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [l for l in out.stdout.splitlines() if l.startswith("conv[")]
    assert len(lines) == 2 and all(" ok " in l and "dB ok" in l for l in lines), out.stdout
    for record in records(sweep_dir):
        assert record["status"] == "ok"
        assert record["numerics"]["passed"]
        assert record["throughput"]["flops_per_iter"] == 2 * 2 * 16 * 16 * 16 * 8 * 9
