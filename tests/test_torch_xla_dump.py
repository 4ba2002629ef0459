"""A PyTorch/XLA buffer assignment read by the memory collector (runs everywhere: no torch_xla).

tests/fixtures/torch_xla/ holds the dump of one qwen_decoder decode step (cpu_tiny: 2 layers,
static KV cache, float32), as backend=torch_xla kept it: torch_xla 2.9.0 on PJRT CPU, the step
compiled as `torch_xla.compile(..., name="harness_torch_xla_step")`. It is the older single-file
layout of seed 004 (allocations, `Total bytes used`, `Used values`, `HloLiveRange`) plus the
memory-usage report; the parser reads it unchanged.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.collect import xla_buffer_assignment as xba
from harness.collect.xla_memory_report import parse_memory_report
from harness.collect.memory_table import memory_table_from_files

FOLDER = Path(__file__).parent / "fixtures/torch_xla"
STEM = "module_0000.harness_torch_xla_step.693.cpu_after_optimizations"
ASSIGNMENT = FOLDER / f"{STEM}-buffer-assignment.txt"
REPORT = FOLDER / f"{STEM}-memory-usage-report.txt"
# cpu_tiny's static cache: per layer a k and a v f32[batch 2, max_len 32, kv_heads 2, head_dim 16]
CACHE_BYTES = 2 * 2 * (2 * 32 * 2 * 16) * 4


@pytest.fixture(scope="module")
def dump() -> xba.BufferAssignment:
    return xba.parse_buffer_assignment(ASSIGNMENT.read_text(), str(ASSIGNMENT))


def test_memory_table_of_a_decode_step():
    summary, buffers = memory_table_from_files([ASSIGNMENT])
    table = {k: (b, n) for k, b, n in summary[["kind", "bytes", "buffers"]].itertuples(index=False)}
    assert table == {"parameter": (366124, 30), "output": (3128, 4), "temp": (16674, 82),
                     "workspace": (0, 0), "constant": (44, 3), "total": (385970, 101)}
    assert set(summary.graph) == {STEM}
    # the live range's peak (instruction 50 of 106) lists the buffers live then
    assert buffers.loc[buffers.peak.astype(bool), "bytes"].sum() == 375929


def test_the_kv_cache_is_donated(dump):
    """torch_xla aliases each tensor updated in place (index_copy_ into the cache) to its input:
    the four cache parameters are live-out, and nothing else is."""
    donated = [(a.parameter, a.parameter_shape, a.size) for a in dump.allocations
               if a.parameter is not None and a.maybe_live_out]
    assert donated == [(10, "f32[2,32,2,16]", 8192), (11, "f32[2,32,2,16]", 8192),
                       (22, "f32[2,32,2,16]", 8192), (23, "f32[2,32,2,16]", 8192)]
    assert xba.memory_analysis(dump)["alias_size_in_bytes"] == CACHE_BYTES
    summary, _ = memory_table_from_files([ASSIGNMENT])
    assert summary.set_index("kind").loc["parameter", "note"] == f"{CACHE_BYTES} bytes donated (aliased to outputs)"


def test_the_tied_embedding_is_one_parameter(dump):
    """f32[128,64]: the two layers' fused qkv weights and the embedding, which lm_head shares.
    Module.to(xla) unties it (backends/torch_xla.py: to_device_keeping_ties); untied, a fourth
    f32[128,64] parameter of 32768 bytes was there."""
    shapes = [a.parameter_shape for a in dump.allocations if a.parameter is not None]
    assert shapes.count("f32[128,64]") == 3


def test_the_memory_report_agrees():
    """Given with the report, the same table: the report's total is checked against the dump's."""
    alone, _ = memory_table_from_files([ASSIGNMENT])
    both, _ = memory_table_from_files([ASSIGNMENT, REPORT])
    assert both.bytes.tolist() == alone.bytes.tolist()
    assert parse_memory_report(REPORT.read_text(), str(REPORT)).total_bytes == 385970
