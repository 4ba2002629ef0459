"""XLA buffer assignments, both layouts, on real dumps: seed 004 (older single file, GPU,
Qwen decode with a paged KV cache) and the split dumps captured with jax 0.10 (CPU) and
jax 0.11 (H100) by tests/fixtures/xla/capture.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.collect import xla_buffer_assignment as xba
from harness.collect.xla_memory_report import parse_memory_report
from harness.collect.memory_table import memory_table_from_files
from harness.errors import InputError

SEED_004 = Path(__file__).parent / "fixtures/seeds/004_xla_gpu_buffer_assignment_qwen_decode.txt"
XLA = Path(__file__).parent / "fixtures/xla"
SPLIT = ["jax_mlp.cpu", "torchax_mlp.cpu", "jax_mlp.gpu", "jax_mlp_cublas.gpu", "torchax_mlp.gpu"]


@pytest.fixture(scope="module")
def seed() -> xba.BufferAssignment:
    return xba.parse_buffer_assignment(SEED_004.read_text(), str(SEED_004))


def split_dump(name: str, folder: Path = XLA) -> xba.BufferAssignment:
    parts = [xba.parse_dump((folder / f"{name}.{s}").read_text(), str(folder / f"{name}.{s}"))
             for s in ("buffer-assignment.txt", "buffer-assignment-values.txt", "live-range.txt")]
    report = folder / f"{name}.memory-usage-report.txt"
    return xba.combine(parts, parse_memory_report(report.read_text(), str(report)))


def test_seed_004_allocations_and_total(seed):
    assert [a.index for a in seed.allocations] == list(range(54))
    assert seed.total_bytes == 1093622736 == sum(a.size for a in seed.allocations)
    first, kv, temp = seed.allocations[0], seed.allocations[1], seed.allocations[53]
    assert (first.size, first.parameter, first.parameter_shape) == (311164928, 5, "bf16[151936,1024]")
    # The paged KV cache pool is a parameter; the decode step returns slices of it (copies).
    assert (kv.parameter, kv.parameter_shape, kv.size) == (44, "bf16[2,4233,16,8,128]", 277413888)
    assert seed.allocations[48].output_shape.startswith("(bf16[32,8,128], bf16[32,8,128], bf16[4233,16,8,128]")
    assert [a.index for a in seed.allocations if a.thread_local] == [49, 50, 51]
    assert temp.preallocated_temp and temp.size == 985504 and len(temp.values) == 52
    assert [a.index for a in seed.allocations if a.maybe_live_out] == [2, 3, 33, 34, 48]
    v = seed.allocations[3].values[1]
    assert (v.name, v.size, v.offset, v.shape, v.is_workspace) == (
        "custom-call.19.0{1}", 4194304, 0, "s8[4194304]{0}", True)


def test_seed_004_peak_live_range(seed):
    lr = seed.live_range
    assert (lr.max_time, lr.peak_time, len(lr.peak)) == (166, 158, 50)
    assert [(b.name, b.bytes) for b in lr.peak[:5]] == [
        ("input_concatenate_fusion", 65536), ("wrapped_slice", 65536), ("loop_slice_fusion", 138706944),
        ("wrapped_slice.1", 138706944), ("tuple", 32)]
    assert (lr.peak[5].name, lr.peak[5].bytes) == ("p5.32.0", 311164928)
    assert (lr.peak[-1].name, lr.peak[-1].bytes) == ("p44.801.0", 277413888)
    assert lr.peak_bytes == 1092637220
    assert lr.ranges["wrapped_concatenate"] == (91, 92)


def test_seed_004_kinds_workspace_and_memory_analysis(seed):
    assert seed.bytes_by_kind() == {"parameter": 815092228, "output": 277544992, "temp": 985516, "constant": 0}
    # Nineteen cuBLAS workspaces, all at offset 0 of the live-out allocation 3.
    assert xba.workspace_footprint(seed.allocations[3]) == (4194304, 19)
    assert xba.memory_analysis(seed) == {"argument_size_in_bytes": 815092228, "output_size_in_bytes": 277544992,
                                         "alias_size_in_bytes": 0, "temp_size_in_bytes": 985504}


def test_seed_004_memory_table():
    summary, buffers = memory_table_from_files([SEED_004])
    got = dict(zip(summary["kind"], summary["bytes"]))
    assert got == {"parameter": 815092228, "output": 277544992, "temp": 985516, "workspace": 4194304,
                   "constant": 0, "total": 1093622736}
    assert dict(zip(summary["kind"], summary["buffers"]))["parameter"] == 45
    top = buffers.head(5)
    assert list(top["name"]) == ["p5.32.0", "p44.801.0", "loop_slice_fusion", "wrapped_slice.1", "wrapped_concatenate"]
    kv = buffers[buffers["name"] == "p44.801.0"].iloc[0]
    assert (kv["kind"], kv["shape"], bool(kv["peak"])) == ("parameter", "bf16[2,4233,16,8,128]{4,3,2,1,0}", True)
    copy = buffers[buffers["name"] == "wrapped_slice.1"].iloc[0]
    assert (copy["kind"], copy["shape"], copy["storage"]) == ("output", "bf16[1,4233,16,8,128]{4,3,2,1,0}", "allocation 3")
    borrowed = buffers[buffers["name"] == "wrapped_concatenate"].iloc[0]
    assert "sharing an output allocation" in borrowed["note"]
    assert (buffers["kind"] == "workspace").sum() == 19


@pytest.mark.parametrize("name", SPLIT)
def test_split_dumps_match_memory_analysis(name):
    ba = split_dump(name)
    assert ba.total_bytes == ba.allocated_bytes == ba.report.total_bytes
    expected = json.loads((XLA / f"{name}.memory_analysis.json").read_text())
    got = xba.memory_analysis(ba)
    assert got == {k: expected[k] for k in got}
    assert ba.live_range.peak_bytes == ba.live_range.stack_trace_peak_bytes
    # jax 0.11 on the GPU adds a `page` attribute to every allocation: kept, not fatal.
    assert all(a.other == (("page 0",) if name.endswith("gpu") else ()) for a in ba.allocations)


def test_cublas_workspace_is_carved_out_of_temp():
    summary, buffers = memory_table_from_files([XLA / "jax_mlp_cublas.gpu.buffer-assignment.txt"])
    got = dict(zip(summary["kind"], summary["bytes"]))
    # 33554944-byte temp block: two 32 MiB cuBLAS-Lt workspaces sharing offset 512, two tuple tables.
    assert got == {"parameter": 17891332, "output": 1114128, "temp": 512, "workspace": 33554432,
                   "constant": 0, "total": 52560404}
    assert got["parameter"] + got["output"] + got["temp"] + got["workspace"] == got["total"]
    ws = buffers[buffers["kind"] == "workspace"]
    assert list(ws["name"]) == ["cublas-lt-matmul.2{1}", "custom-call.2{1}"]


def test_jax_mlp_cpu_tables():
    summary, buffers = memory_table_from_files([XLA / "jax_mlp.cpu.buffer-assignment.txt"])
    got = dict(zip(summary["kind"], summary["bytes"]))
    assert got == {"parameter": 17891332, "output": 1114128, "temp": 33685504, "workspace": 0,
                   "constant": 0, "total": 52690964}
    # XLA CPU upcasts the bf16 weights to f32 copies in the temp block.
    assert list(buffers.head(2)["shape"]) == ["f32[1024,4096]{1,0}", "f32[4096,1024]{1,0}"]


# --- malformed input: cut or garbled copies of the real files -------------------------

def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _error(paths) -> str:
    with pytest.raises(InputError) as info:
        memory_table_from_files(paths)
    return str(info.value)


def test_seed_cut_in_the_middle_of_a_line(tmp_path):
    text = SEED_004.read_text()
    path = _write(tmp_path, "cut.txt", text[: len(text) // 2])
    msg = _error([path])
    assert msg.startswith(f"{path}:") and "used value" in msg
    line = int(msg.split(":")[1])
    assert 194 < line <= text[: len(text) // 2].count("\n") + 1


def test_seed_cut_at_a_line_boundary_inside_used_values(tmp_path):
    lines = SEED_004.read_text().split("\n")
    path = _write(tmp_path, "cut.txt", "\n".join(lines[:700]) + "\n")
    assert "truncated" in _error([path]) or "used value" in _error([path])


def test_seed_cut_inside_the_allocations(tmp_path):
    lines = SEED_004.read_text().split("\n")
    # Cut after allocation 2's header: it is left without values.
    path = _write(tmp_path, "cut.txt", "\n".join(lines[:6]) + "\n")
    assert _error([path]) == f"{path}:6: truncated: allocation 2 has no values"
    # Cut on a value line: reads as the newer split file; without its values file the
    # total cannot be checked, which is an error too.
    path = _write(tmp_path, "cut2.txt", "\n".join(lines[:100]) + "\n")
    assert "Total bytes used" in _error([path])


def test_seed_cut_in_the_peak_list(tmp_path):
    lines = SEED_004.read_text().split("\n")
    path = _write(tmp_path, "cut.txt", "\n".join(lines[:-5]))
    assert "buffers live at 158 are missing from the peak list" in _error([path])


def test_seed_sizes_that_do_not_add_up(tmp_path):
    text = SEED_004.read_text().replace("allocation 53: size 985504,", "allocation 53: size 985505,")
    path = _write(tmp_path, "garbled.txt", text)
    assert _error([path]) == (f"{path}:192: allocation sizes add up to 1093622737 bytes, but the dump "
                              "says Total bytes used: 1093622736")


def test_seed_unknown_line_in_a_section(tmp_path):
    lines = SEED_004.read_text().split("\n")
    lines.insert(10, " valve: <1 x @0> (size=4,offset=0): f32[]")
    path = _write(tmp_path, "garbled.txt", "\n".join(lines))
    assert _error([path]).startswith(f"{path}:11: expected 'allocation N: size S")


def test_value_overrunning_its_allocation(tmp_path):
    text = SEED_004.read_text().replace("(size=256,offset=0): bf16[128]", "(size=256,offset=8): bf16[128]")
    path = _write(tmp_path, "garbled.txt", text)
    assert "overruns allocation 45" in _error([path])


def test_unknown_allocation_attribute_is_kept(tmp_path):
    text = SEED_004.read_text().replace("allocation 2: size 138706944, maybe-live-out:",
                                        "allocation 2: size 138706944, page 7, maybe-live-out:")
    ba = xba.parse_buffer_assignment(text)
    assert ba.allocations[2].other == ("page 7",) and ba.allocations[2].maybe_live_out


@pytest.mark.parametrize("suffix", ["buffer-assignment-values.txt", "live-range.txt", "memory-usage-report.txt"])
def test_split_parts_cut_in_half(tmp_path, suffix):
    for s in ("buffer-assignment.txt", "buffer-assignment-values.txt", "live-range.txt", "memory-usage-report.txt"):
        text = (XLA / f"jax_mlp_cublas.gpu.{s}").read_text()
        if s == suffix:
            text = text[: len(text) // 2]
        _write(tmp_path, f"m.{s}", text)
    msg = _error([tmp_path / "m.buffer-assignment.txt"])
    assert msg.startswith(str(tmp_path / f"m.{suffix}") + ":")


def test_split_parts_of_different_modules(tmp_path):
    _write(tmp_path, "m.buffer-assignment.txt", (XLA / "jax_mlp.gpu.buffer-assignment.txt").read_text())
    _write(tmp_path, "m.buffer-assignment-values.txt", (XLA / "torchax_mlp.gpu.buffer-assignment-values.txt").read_text())
    assert "allocation sizes add up to 21102636 bytes" in _error([tmp_path / "m.buffer-assignment.txt"])


def test_memory_report_alone(tmp_path):
    summary, buffers = memory_table_from_files([XLA / "jax_mlp_cublas.gpu.memory-usage-report.txt"])
    assert list(zip(summary["kind"], summary["bytes"], summary["buffers"])) == [("total", 52560404, 9)]
    assert buffers.iloc[0]["bytes"] == 33554432 and buffers.iloc[0]["shape"] == "2×s8[33554432]"
