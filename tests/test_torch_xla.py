"""backend=torch_xla (PyTorch/XLA lazy tensors on PJRT_DEVICE=CPU), in its own environment:

    scripts/torch_xla_env.sh && .venv-torch-xla/bin/python -m pytest -m torch_xla

Elsewhere (the main env: torch 2.13, no torch_xla) this module is one skip line.

In-process tests call `backends.torch_xla.prepare` as the worker does, without dumps: XLA reads
XLA_FLAGS once per process, so the dump and its memory table are checked through the CLI.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.torch_xla
pytest.importorskip("torch_xla", reason="torch_xla is not installed here: scripts/torch_xla_env.sh builds its env")

from backends.torch_xla import backend as tx  # noqa: E402
from backends.xla import dump  # noqa: E402
from harness.worker.backend import RunContext  # noqa: E402
from harness.errors import ConfigError, Unsupported  # noqa: E402
from harness.worker.numerics import compare  # noqa: E402
from tests.conftest import build_workload, check_steps, run_harness  # noqa: E402

CPU = torch.device("cpu")
CFG = {"name": "torch_xla", "mode": "default", "xla_flags": "", "dump_hlo": False}


build = build_workload


def ctx(tmp_path: Path) -> RunContext:
    return RunContext(tmp_path, CPU, tmp_path / "compile_cache")


def run_checks(workload, tmp_path: Path):
    prepared = tx.prepare(workload, CFG, ctx(tmp_path))
    return prepared, check_steps(prepared, workload)[1]


def test_available_here():
    assert tx.unavailable() is None


@pytest.mark.parametrize("mode", ["fwd", "fwd_bwd"])
def test_conv_is_one_xla_program(mode, tmp_path):
    w = build("conv", mode=mode)
    prepared, check = run_checks(w, tmp_path)
    assert check.passed, check.detail
    first = prepared.compile_info["first_call"]
    # forward and autograd's backward traced into one graph, compiled once, run once
    assert (first["graphs_compiled"], first["executions"], first["fallback_ops"]) == (1, 1, [])
    assert first["compile_s"] > 0 and first["lazy_tracing_s"] > 0
    phases = prepared.compile_phases(first["compile_s"] + first["lazy_tracing_s"] + 0.5)
    assert phases["graph_codegen_s"] == first["compile_s"] and phases["other_s"] == pytest.approx(0.5)


@pytest.mark.parametrize("mode,cache", [("default", "static"), ("default", "paged"), ("dynamo", "static")])
def test_qwen_decode_updates_the_cache_in_place(mode, cache, tmp_path):
    w = build("qwen_decoder", phase="decode", cache=cache)
    prepared = tx.prepare(w, dict(CFG, mode=mode), ctx(tmp_path))
    outputs = []
    for k, inputs in enumerate(w.check_inputs):
        out = prepared.step(*prepared.convert(inputs))
        prepared.synchronize(out)
        outputs.append(prepared.to_torch(out))
        if k == 0:
            compiled = prepared.graphs_compiled()
    # a cache write lost between the three steps drops cpu_tiny to 14 dB (workloads/qwen_decoder.py)
    check = compare(outputs, w.reference(), w.min_sqnr_db, w.output_names)
    assert check.passed, check.detail
    # three steps, one program: compiled at the first, a graph-cache hit at the others
    assert prepared.compile_info["first_call"]["graphs_compiled"] == 1
    assert prepared.graphs_compiled() == compiled
    # the device module's cache, updated in place, is the cache eager leaves after the same steps
    with torch.no_grad():
        for inputs in w.check_inputs:
            w.forward(w.module, *inputs)
    eager = dict(w.module.named_buffers())
    state = prepared.state()
    assert set(state) == set(w.state_buffers)
    for name in w.state_buffers:
        assert compare([[state[name]]], [[eager[name]]], 100).passed, name


def test_unknown_mode_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"backend.mode: expected one of default, dynamo"):
        tx.prepare(build("conv"), dict(CFG, mode="reduce-overhead"), ctx(tmp_path))


def test_tied_weights_stay_one_device_tensor():
    import torch_xla
    model = build("qwen_decoder").module
    assert model.output.weight is model.tok_embeddings.weight
    tx.to_device_keeping_ties(model, torch_xla.device())
    assert model.output.weight is model.tok_embeddings.weight
    assert model.output.weight.device.type == "xla"


@pytest.mark.parametrize("mode", ["fwd", "fwd_bwd"])
def test_fp8_scaled_mm_is_unsupported_naming_the_op(mode, tmp_path):
    w = build("fp8_linear", mode=mode)
    prepared = tx.prepare(w, CFG, ctx(tmp_path))
    with pytest.raises(Unsupported, match=r"no XLA lowering for aten::_scaled_mm: it falls back"):
        prepared.step(*prepared.inputs)


def test_fp8_bf16_recipe_runs(tmp_path):
    prepared, check = run_checks(build("fp8_linear", recipe="bf16", mode="fwd_bwd"), tmp_path)
    assert check.passed, check.detail
    assert prepared.compile_info["first_call"]["fallback_ops"] == []


@pytest.mark.slow
def test_cli_sweep_records_dumps_and_memory_tables(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_harness("-m", "workload=conv,qwen_decoder,fp8_linear", "backend=torch_xla", "bench=quick",
                       f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {r["workload"]: (p.parent, r) for p in sweep.rglob("record.json") for r in [json.loads(p.read_text())]}
    fp8 = runs.pop("fp8_linear")[1]
    assert fp8["status"] == "skipped" and "aten::_scaled_mm" in fp8["reason"]
    for name, (run_dir, r) in runs.items():
        assert r["status"] == "ok", (name, r["reason"])
        assert r["numerics"]["passed"]
        assert r["compile"]["first_call"]["graphs_compiled"] == 1
        assert r["compile"]["recompiles_during_timing"] == 0
        # only the step's module is kept: optimised HLO, buffer assignment, memory-usage report
        kept = sorted(p.name for p in (run_dir / dump.DUMP_DIR).iterdir())
        assert len(kept) == 3 and all(tx.GRAPH_NAME in k for k in kept), kept
        assert {"xla_buffer_assignment", "xla_dump_file", "xla_optimized_hlo",
                "memory_table"} <= {a["kind"] for a in r["artifacts"]}
        by_kind = {k.rsplit(":", 1)[1]: v for k, v in r["memory"]["by_kind"].items()}
        assert by_kind["total"] == sum(by_kind[k] for k in ("parameter", "output", "temp", "constant"))
    # the KV cache is donated: its four tensors are parameters aliased to outputs
    import pandas as pd
    qwen_dir, qwen = runs["qwen_decoder"]
    table = pd.read_parquet(qwen_dir / "memory.parquet")
    p = qwen["params"]
    cache_bytes = 2 * p["num_layers"] * p["batch"] * p["max_len"] * p["num_kv_heads"] * p["head_dim"] * 4
    assert table.loc[table.kind == "parameter", "note"].item() == f"{cache_bytes} bytes donated (aliased to outputs)"
