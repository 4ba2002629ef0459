"""Inductor's static memory plan from its output code: seed 001 (torch 2.5, a float8 linear,
forward and backward in one log) and wrappers captured by tests/fixtures/inductor/capture.py
(torch 2.11 on an H100, torch 2.13 on CPU: `def call(self, args)` in a Runner class).

The seed 001 numbers below were worked out by hand from the file:
forward  buf0 f32[1024] 4096, buf11 4096, buf1 bf16[] 2, buf8 f32[] 4, buf2 f32[512,256]
         strides (1,512) 524288, buf3 2048, buf4 2, buf5 4, buf6 f8[2048,4096] 8388608,
         buf7 f8[4096,8192] 33554432, buf9 bf16[2048,8192] 33554432; the peak is at buf9
         (line 844): 4096+2+4+2+4+8388608+33554432+33554432 = 75501578; the largest set of
         live non-outputs is buf11+buf1+buf2+buf3 = 530434; returned storages buf9, buf5,
         buf7 (as buf10), buf6 (as buf13), buf8 (as buf14) = 75497480.
backward buf0 2048, buf1 2, buf3 4, buf2 f8[2048,8192] 16777216, buf4 bf16[2048,4096]
         16777216, buf6 bf16[8192,4096] 67108864; peak at buf6 (line 1196) = 100663300;
         temp buf1+buf3+buf2 = 16777222; outputs buf6+buf4 = 83886080.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness.collect import inductor_plan as ind
from harness.collect.inductor_output_code import parse_output_code
from harness.collect.memory_table import memory_table_from_files
from harness.errors import InputError

SEED_001 = Path(__file__).parent / "fixtures/seeds/001_torchao_float8_profile_inductor_output_code.txt"
INDUCTOR = Path(__file__).parent / "fixtures/inductor"


@pytest.fixture(scope="module")
def seed() -> list[ind.GraphPlan]:
    return parse_output_code(SEED_001.read_text(), str(SEED_001))


def test_seed_001_has_a_forward_and_a_backward(seed):
    assert [(g.name, g.line) for g in seed] == [("0_forward", 802), ("0_backward", 1161)]


def test_seed_001_forward_plan(seed):
    fwd = seed[0]
    assert fwd.inputs == {"primals_1": 67108864, "primals_2": 16777216}
    assert fwd.input_shapes == {"primals_1": "bfloat16[8192,4096]", "primals_2": "bfloat16[2048,4096]"}
    assert (fwd.peak_bytes, fwd.peak_line) == (75501578, 844)
    assert fwd.temp_peak_bytes == 530434
    assert fwd.output_bytes == 75497480
    assert [fwd.storages[s].first_name for s in fwd.outputs] == ["buf9", "buf5", "buf7", "buf6", "buf8"]
    assert fwd.allocated_bytes == 76032012
    # buf10 = reinterpret(buf7), buf12 = buf4, buf14 = buf8, buf13 = reinterpret(buf6)
    assert fwd.reused_bytes == 33554432 + 2 + 4 + 8388608
    assert fwd.naive_bytes == 117975058
    assert fwd.plan_saved_bytes == 117975058 - 75501578
    buf2 = next(b for b in fwd.buffers if b.name == "buf2")
    assert (buf2.shape, buf2.stride, buf2.bytes) == ((512, 256), (1, 512), 524288)


def test_seed_001_backward_plan(seed):
    bwd = seed[1]
    assert sum(bwd.inputs.values()) == 75497480
    assert bwd.inputs["permute_3"] == 33554432   # f8 (8192, 4096) strides (1, 8192)
    assert (bwd.peak_bytes, bwd.peak_line, bwd.temp_peak_bytes) == (100663300, 1196, 16777222)
    assert bwd.output_bytes == 83886080
    assert bwd.reused_bytes == 16777216          # buf5 = reinterpret_tensor(buf2, ...)


def test_seed_001_memory_table():
    summary, buffers = memory_table_from_files([SEED_001])
    rows = {(g, k): b for g, k, b in zip(summary["graph"], summary["kind"], summary["bytes"])}
    assert rows[("0_forward", "parameter")] == 83886080
    assert rows[("0_forward", "output")] == 75497480
    assert rows[("0_forward", "temp")] == 530434
    assert rows[("0_forward", "total")] == 83886080 + 75501578
    assert rows[("0_backward", "temp")] == 16777222
    assert rows[("0_backward", "total")] == 75497480 + 100663300
    assert pd.isna(rows[("0_forward", "workspace")])   # cuBLAS scratch is not in the output code
    assert set(summary["source"]) == {"inductor_output_code"}
    buf10 = buffers[(buffers["graph"] == "0_forward") & (buffers["name"] == "buf10")].iloc[0]
    assert (buf10["kind"], buf10["storage"], buf10["note"]) == ("output", "buf7", "reuses buf7")


def test_cuda_wrapper_torch_2_11():
    fwd, = parse_output_code((INDUCTOR / "mlp_train.cuda.0.py").read_text())
    bwd, = parse_output_code((INDUCTOR / "mlp_train.cuda.1.py").read_text())
    assert (fwd.name, fwd.input_bytes, fwd.peak_bytes, fwd.output_bytes) == ("0_forward", 2167808, 589836, 589828)
    assert fwd.returned_inputs == ["primals_1", "primals_3", "primals_4"]   # saved for backward
    assert (bwd.name, bwd.input_bytes, bwd.peak_bytes, bwd.temp_peak_bytes) == ("0_backward", 2752516, 2364416, 262144)
    # `buf0 = addmm_1; del addmm_1  # reuse`, later `buf5 = buf0`: the input-gradient is written
    # into a saved activation's storage and returned, so it is not new memory.
    assert bwd.returned_inputs == ["addmm_1"] and bwd.output_bytes == 2102272


def test_cpu_wrapper_torch_2_13_runner_class():
    fwd, = parse_output_code((INDUCTOR / "mlp_train.cpu.0.py").read_text())
    bwd, = parse_output_code((INDUCTOR / "mlp_train.cpu.1.py").read_text())
    assert (fwd.line, fwd.input_bytes, fwd.peak_bytes, fwd.temp_peak_bytes) == (175, 2167808, 589828, 0)
    assert (bwd.input_bytes, bwd.peak_bytes, bwd.output_bytes, bwd.reused_bytes) == (2752516, 2429952, 2167808, 327680)


def test_storage_bytes_follow_strides():
    assert ind.storage_bytes((4096, 8192), (1, 4096), "float8_e4m3fn", "x", 1) == 33554432
    assert ind.storage_bytes((2, 3), (0, 1), "float32", "x", 1) == 12     # expanded: one row
    assert ind.storage_bytes((0, 5), (5, 1), "float32", "x", 1) == 0
    assert ind.storage_bytes((), (), "bfloat16", "x", 1) == 2


# --- malformed input ------------------------------------------------------------------

def _cut(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "output_code.py"
    path.write_text(text)
    return path


def test_call_without_return(tmp_path):
    lines = SEED_001.read_text().split("\n")
    path = _cut(tmp_path, "\n".join(lines[:850]))
    with pytest.raises(InputError, match=rf"^{path}:850: truncated: 'call' at line 802 has no return"):
        memory_table_from_files([path])


def test_allocation_cut_mid_line(tmp_path):
    text = SEED_001.read_text()
    cut = text.index("buf7 = empty_strided_cuda((4096, 8192)") + 30
    path = _cut(tmp_path, text[:cut])
    with pytest.raises(InputError, match=rf"^{path}:840: expected 'bufN = empty_strided_"):
        memory_table_from_files([path])


def test_del_of_an_unknown_buffer(tmp_path):
    path = _cut(tmp_path, SEED_001.read_text().replace("        del buf0\n", "        del buf99\n", 1))
    with pytest.raises(InputError, match=rf"^{path}:819: buf99 is used but was never assigned"):
        memory_table_from_files([path])


def test_dynamic_shapes_are_refused(tmp_path):
    path = _cut(tmp_path, SEED_001.read_text().replace("empty_strided_cuda((1024, ), (1, ), torch.float32)",
                                                       "empty_strided_cuda((s0, ), (1, ), torch.float32)", 1))
    with pytest.raises(InputError, match=rf"^{path}:809: symbolic shape"):
        memory_table_from_files([path])


def test_fallback_outputs_are_unsized_and_said_so():
    code = """
def call(args):
    arg0_1, = args
    args.clear()
    assert_size_stride(arg0_1, (8, 8), (8, 1))
    buf0 = torch.ops.aten._foo.default(arg0_1)
    buf1 = empty_strided_cpu((8, 8), (8, 1), torch.float32)
    del buf0
    return (buf1, )

def get_args():
    arg0_1 = rand_strided((8, 8), (8, 1), device='cpu', dtype=torch.float32)
"""
    plan, = parse_output_code(code)
    assert plan.unsized == ["buf0"] and plan.inputs == {"arg0_1": 256}
    assert (plan.peak_bytes, plan.output_bytes, plan.temp_peak_bytes) == (256, 256, 0)


# --- graph partitions (torch >= 2.9) and files cut or made up (issue 20) ---------------

def test_partitioned_wrapper_torch_2_13():
    """`call` hands `partition0_args = [arg0_1, arg1_1]` to `partition_0`, which allocates
    buf0 (the mm) and buf1 (the relu) and returns both; buf0 is read again by partition_1 after
    the custom op, so buf0 + buf1 (2 x 64 KiB) is the peak, in partition_0 (line 72)."""
    plan, = parse_output_code((INDUCTOR / "partitioned.cpu.0.py").read_text())
    assert plan.name == "0_inference" and plan.line == 141
    assert plan.inputs == {"arg0_1": 65536, "arg1_1": 262144, "arg2_1": 262144}
    assert (plan.peak_bytes, plan.peak_line, plan.temp_peak_bytes) == (131072, 72, 131072)
    assert [plan.storages[s].first_name for s in plan.outputs] == ["buf4"]
    assert plan.output_bytes == 65536 and plan.unsized == ["buf2"]   # the custom op's result
    buf0 = plan.storages[next(b.storage for b in plan.buffers if b.name == "buf0")]
    assert buf0.freed_line == 153             # after partition_1 returns, not at `del buf0`
    summary, _ = memory_table_from_files([INDUCTOR / "partitioned.cpu.0.py"])
    assert dict(zip(summary["kind"], summary["bytes"]))["total"] == 589824 + 131072


def test_output_code_cut_after_calls_return(tmp_path):
    """Without get_args() the inputs' dtypes are unknown: smaller figures would be wrong."""
    for source in (SEED_001, INDUCTOR / "mlp_train.cuda.0.py", INDUCTOR / "partitioned.cpu.0.py"):
        text = source.read_text()
        end = text.index("\n", text.index("return (", text.rindex("def call"))) + 1
        path = _cut(tmp_path, text[:end])
        with pytest.raises(InputError, match=rf"^{path}:\d+: truncated: no dtype for input \w+ of "
                                             r"'call' at line \d+: expected its 'rand_strided"):
            memory_table_from_files([path])


def test_a_call_that_takes_and_allocates_nothing_is_refused(tmp_path):
    path = _cut(tmp_path, "def call(args):\n    return 1\n")
    with pytest.raises(InputError, match=rf"^{path}:1: 'call' takes no inputs and allocates "
                                         "nothing: expected Inductor output code"):
        memory_table_from_files([path])


def test_partitioned_wrappers_from_the_h200():
    """Inductor max-autotune on the H200 (torch 2.11, conv fwd+bwd): one partition each. The
    forward's conv template writes buf0; the backward's aten.convolution_backward is a
    fallback whose two results (the gradients) have no size in the code: said, not zero."""
    summary, _ = memory_table_from_files(sorted(INDUCTOR.glob("h200_conv_fwd_bwd_max_autotune.cuda.*.py")))
    rows = {(g, k): (b, n) for g, k, b, n in zip(summary["graph"], summary["kind"], summary["bytes"],
                                                  summary["note"])}
    assert rows[("0_forward", "parameter")][0] == 294912 + 6422528     # weight, input (bf16)
    assert rows[("0_forward", "output")][0] == 6422528                 # buf0 bf16[32,128,28,28]
    assert rows[("0_forward", "total")][0] == 294912 + 6422528 + 6422528
    assert rows[("0_backward", "parameter")][0] == 294912 + 2 * 6422528
    assert "lower bound: 2 of unknown size (buf2, buf1)" in rows[("0_backward", "output")][1]
    assert rows[("0_backward", "total")][1].startswith("lower bound: ")
