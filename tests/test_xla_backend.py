"""backend=xla (torchax -> jax.jit -> XLA) on the CPU: numerics against the workloads' float32
references, the fp8 program of fp8_linear's backward, the donated KV cache, dumps and traces.

In-process tests call `backends.xla.prepare` as the worker does. XLA reads XLA_FLAGS once per
process, so the dump and buffer-assignment checks run through the CLI (a fresh worker each).
Importing torchax breaks torch.compile in the same process (DESIGN.md): nothing after these
tests in one pytest process should need Inductor in-process.
"""
from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("torchax")

from backends.xla import autograd, backend as xla, dump  # noqa: E402
from harness.orchestrator import plugins  # noqa: E402
from harness.worker.backend import RunContext  # noqa: E402
from harness.collect.hlo import fp8_dot_generals, input_output_aliases  # noqa: E402
from harness.collect.xla_buffer_assignment import aliased_parameters  # noqa: E402
from harness.errors import ConfigError  # noqa: E402
from harness.worker.numerics import compare  # noqa: E402
from harness.worker.workload import run_torch  # noqa: E402
from tests.conftest import build_workload, check_steps, records, run_harness  # noqa: E402

CPU = torch.device("cpu")
XLA_CFG = dataclasses.asdict(plugins.backend_spec("xla").schema(name="xla", platform="cpu"))


build = build_workload


def ctx(tmp_path: Path) -> RunContext:
    return RunContext(tmp_path, CPU, tmp_path / "compile_cache")


def run_checks(workload, tmp_path: Path):
    """What the worker does up to numerics: prepare, first call, the remaining check steps."""
    prepared = xla.prepare(workload, XLA_CFG, ctx(tmp_path))
    outputs, check = check_steps(prepared, workload)
    return prepared, outputs, check


def test_available_here():
    assert xla.unavailable() is None


@pytest.mark.parametrize("mode", ["fwd", "fwd_bwd"])
def test_fp8_linear_passes_numerics_and_runs_fp8_dots(mode, tmp_path):
    w = build("fp8_linear", mode=mode)
    prepared, outputs, check = run_checks(w, tmp_path)
    assert check.passed, check.detail
    info = prepared.compile_info
    # forward: one fp8 GEMM; fwd_bwd: the Function's own backward adds grad_x and grad_w in fp8
    # (e5m2 gradient), not JAX's derivative of the forward
    gemms = 3 if mode == "fwd_bwd" else 1
    assert info["fp8_dot_generals_before_opt"] == gemms
    assert info["hlo_ops_after_opt"]["dot"] == gemms
    assert info["fp8_gemm_custom_call"] is None            # a CPU: no cuBLASLt
    assert info["lower_s"] > 0 and info["xla_compile_s"] > 0
    assert info["cost"]["flops"] >= w.flops * 0.9
    assert {"argument_bytes", "output_bytes", "alias_bytes", "temp_bytes"} <= set(info["memory"])
    if mode == "fwd_bwd":
        assert info["grad_targets"] == ["input0", "weight"]
        # The same program as eager: XLA is much closer to eager than either is to float32.
        eager = run_torch(w, w.forward, w.inputs)
        for name, x, e in zip(w.output_names, outputs[0], eager):
            assert x.dtype == e.dtype and x.shape == e.shape, name
            assert compare([[x]], [[e]], 0).min_sqnr_db > check.min_sqnr_db + 10, name


def test_jax_derivative_of_the_forward_would_not_be_the_fp8_backward(tmp_path):
    """Without the custom_vjp, JAX differentiates through the fp8 cast and dot: no e5m2 GEMMs."""
    w = build("fp8_linear", mode="fwd_bwd")
    original = autograd.autograd_functions_as_custom_vjp
    try:
        autograd.autograd_functions_as_custom_vjp = lambda env: __import__("contextlib").nullcontext()
        prepared = xla.prepare(w, XLA_CFG, ctx(tmp_path))
        prepared.synchronize(prepared.step(*prepared.inputs))
    finally:
        autograd.autograd_functions_as_custom_vjp = original
    assert prepared.compile_info["fp8_dot_generals_before_opt"] == 1


@pytest.mark.parametrize("overrides", [dict(mode="fwd"), dict(mode="fwd_bwd"),
                                       dict(preset="seed002", mode="fwd_bwd"),
                                       dict(preset="resnet50_stage5", batch=1, mode="fwd_bwd")])
def test_conv_passes_numerics(overrides, tmp_path):
    w = build("conv", **overrides)
    prepared, outputs, check = run_checks(w, tmp_path)
    assert check.passed, check.detail
    if w.params["channels_last"]:
        # NHWC memory in and out, as the torch backends have it: no transposes around the conv
        assert {"input0", "weight"} <= set(prepared.compile_info["channels_last_args"])
        eager = run_torch(w, w.forward, w.inputs)
        for x, e in zip(outputs[0], eager):
            assert x.is_contiguous(memory_format=torch.channels_last) == \
                e.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("cache", ["static", "paged"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_qwen_decode_carries_the_donated_cache(cache, dtype, tmp_path):
    w = build("qwen_decoder", phase="decode", cache=cache, dtype=dtype)
    assert len(w.check_inputs) >= 3
    prepared, _, check = run_checks(w, tmp_path)
    assert check.passed, check.detail
    info = prepared.compile_info
    assert info["state_buffers"] == list(w.state_buffers)
    assert info["state_donated_and_aliased"]                 # input_output_alias in the HLO header
    buffers = dict(w.module.named_buffers())
    cache_bytes = sum(buffers[n].numel() * buffers[n].element_size() for n in w.state_buffers)
    assert info["memory"]["alias_bytes"] == cache_bytes
    # XLA's form (functional, donated) against eager's (buffers updated in place), same weights
    # and steps: the cache XLA carries is the cache eager leaves
    with torch.no_grad():
        for inputs in w.check_inputs:
            w.forward(w.module, *inputs)
    written = {"float32": 100, "bfloat16": 40}[dtype]     # bf16: k/v rounded apart by an ulp here and there
    carried = prepared.state()
    assert set(carried) == set(w.state_buffers)
    for name in w.state_buffers:
        assert compare([[carried[name]]], [[buffers[name]]], written).passed, name
    # and the entries the steps wrote match the float32 reference's
    state = compare([list(w.state_probe(carried).values())], [list(w.reference_state().values())], w.min_sqnr_db)
    assert state.passed, state.detail


@pytest.mark.parametrize("cache", ["static", "paged"])
def test_qwen_prefill_passes_numerics(cache, tmp_path):
    _, _, check = run_checks(build("qwen_decoder", phase="prefill", cache=cache), tmp_path)
    assert check.passed, check.detail


def test_lost_cache_write_fails_numerics(tmp_path):
    """Feeding each decode step the warm cache again (what a dropped in-place write amounts to)
    must fail the decode check: the carried state is what makes it pass."""
    w = build("qwen_decoder", phase="decode", cache="static")
    prepared = xla.prepare(w, XLA_CFG, ctx(tmp_path))
    outputs = []
    for inputs in w.check_inputs:
        stale = xla.prepare(w, XLA_CFG, ctx(tmp_path)) if outputs else prepared
        out = stale.step(*stale.convert(inputs))
        outputs.append(stale.to_torch(out))
    assert not compare(outputs, w.reference(), w.min_sqnr_db).passed


def test_gpu_platform_without_gpu_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="backend.platform"):
        xla.prepare(build("fp8_linear"), dict(XLA_CFG, platform="gpu"), ctx(tmp_path))


def test_hlo_text_helpers():
    header = ("HloModule jit_harness_xla_step, is_scheduled=true, input_output_alias={ {1}: (21, {}, may-alias), "
              "{2}: (22, {}, may-alias) }, entry_computation_layout={(f32[2]{0})->f32[2]{0}}")
    assert [a["parameter"] for a in input_output_aliases(header)] == [21, 22]
    assignment = ("allocation 8: size 16384, parameter 21, shape |f32[2,16,4,2,16]| at ShapeIndex {}, maybe-live-out:\n"
                  "allocation 10: size 16384, parameter 2, shape |f32[64,64]| at ShapeIndex {}:\n")
    assert aliased_parameters(assignment) == [21]
    stablehlo = ("%0 = stablehlo.dot_general %a, %b, contracting_dims = [1] x [0] : "
                 "(tensor<64x128xf8E4M3FN>, tensor<128x256xf8E5M2>) -> tensor<64x256xf32>\n"
                 "%1 = stablehlo.dot_general %c, %d, contracting_dims = [1] x [0] : "
                 "(tensor<64x128xbf16>, tensor<128x256xbf16>) -> tensor<64x256xf32>")
    assert fp8_dot_generals(stablehlo) == 1


# ------------------------------------------------------------------------------------ the CLI

def _record(run_dir: Path) -> dict:
    [record] = records(run_dir)
    return record


def _run(run_dir: Path, *overrides: str) -> dict:
    """One run of the CLI with bench=quick: exit code 0 and its one record."""
    proc = run_harness(*overrides, "bench=quick", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _record(run_dir)


@pytest.mark.slow
def test_cli_fp8_linear_fwd_is_ok(tmp_path):
    run_dir = tmp_path / "run"
    record = _run(run_dir, "workload=fp8_linear", "backend=xla")
    assert record["status"] == "ok", record["reason"]
    assert record["numerics"]["passed"]


@pytest.mark.slow
def test_cli_fp8_linear_fwd_bwd_dumps_and_profile(tmp_path):
    run_dir = tmp_path / "run"
    record = _run(run_dir, "workload=fp8_linear", "workload.mode=fwd_bwd", "backend=xla", "bench.profile=true")
    assert record["status"] == "ok", record["reason"]
    info = record["compile"]
    assert info["xla_flags_applied"] and f"--xla_dump_to={run_dir}" in info["xla_flags"]
    assert info["fp8_dot_generals_before_opt"] == 3
    # only our module, only what the memory collector and a reader need
    kept = sorted(p.name for p in (run_dir / dump.DUMP_DIR).rglob("*") if p.is_file())
    assert 3 <= len(kept) <= 6 and all(dump.STEP_NAME in n for n in kept), kept
    assert any(n.endswith("-buffer-assignment.txt") for n in kept)
    assert any(n.endswith("-memory-usage-report.txt") for n in kept)
    assert (run_dir / info["optimized_hlo"]).read_text().startswith("HloModule jit_harness_xla_step")
    kinds = {a["kind"]: a for a in record["artifacts"]}
    assert kinds["xla_optimized_hlo"]["path"] == info["optimized_hlo"]
    assert kinds["trace"]["format"] == "perfetto"
    assert record["compile"]["command_buffers"]["enabled"] is False   # a CPU: none
    trace = run_dir / kinds["trace"]["path"]
    events = json.loads(gzip.decompress(trace.read_bytes()))
    names = {e.get("name") for e in (events["traceEvents"] if isinstance(events, dict) else events)}
    assert {f"harness_iter_{i}" for i in range(record["profile_iters"])} <= names


@pytest.mark.slow
def test_cli_qwen_decode_donation_shows_in_buffer_assignment(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_harness("-m", "workload=qwen_decoder", "workload.cache=static,paged", "backend=xla",
                       "bench=quick", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dirs = sorted(p.parent for p in sweep.rglob("record.json"))
    assert len(run_dirs) == 2
    for run_dir in run_dirs:
        record = _record(run_dir)
        assert record["status"] == "ok", record["reason"]
        info = record["compile"]
        assert info["state_donated_and_aliased"] and info["buffer_assignment_state_aliased"]
        # e.g. "allocation 8: size 16384, parameter 21, ..., maybe-live-out": the cache's own buffer
        [assignment] = (run_dir / dump.DUMP_DIR).glob("*-buffer-assignment.txt")
        assert len(aliased_parameters(assignment.read_text())) == len(info["state_buffers"])


@pytest.mark.slow
def test_cli_torch_xla_is_skipped_with_the_reason(tmp_path):
    run_dir = tmp_path / "run"
    record = _run(run_dir, "workload=fp8_linear", "backend=torch_xla")
    assert record["status"] == "skipped"
    assert "torch_xla" in record["reason"]


def test_torchax_cannot_trace_torchaos_float8_tensors(tmp_path):
    """Measured: torchax's trace dispatches aten.squeeze to torchao's Float8TrainingTensor, which
    refuses it; so XLA keeps the hand-written recipe and a recipe=torchao run is skipped, the op
    named. If torchax learns it, this test says so."""
    pytest.importorskip("torchao.float8")
    from harness.errors import Unsupported
    w = build("fp8_linear", recipe="torchao")
    prepared = xla.prepare(w, XLA_CFG, ctx(tmp_path))
    with pytest.raises(Unsupported, match=r"torchax cannot trace this program \(step 'step'\): NotImplementedError: "
                                          r"attempting to run aten\.squeeze\.default"):
        prepared.step(*prepared.convert(w.check_inputs[0]))
