"""kernel_table on the H100 traces (golden) and on small synthetic traces (the edge cases)."""
from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.collect.devices import lookup_device
from harness.collect.kernel_diff import category_diff, category_summary, kernel_diff
from harness.collect.kernel_table import COLUMNS, kernel_table, launch_overhead
from harness.collect.trace_io import read_trace
from harness.errors import InputError

TRACES = Path(__file__).resolve().parent / "fixtures" / "traces"
H100 = {name: TRACES / f"h100_fp8_linear_{name}.trace.json.gz"
        for name in ("fwd_eager", "fwd_inductor", "fwd_bwd_eager", "fwd_bwd_inductor")}
M, K, N = 2048, 4096, 8192
GEMM_FLOPS = 2 * M * K * N  # one fp8 _scaled_mm of the seed shape


@pytest.fixture(scope="module")
def h100() -> dict[str, pd.DataFrame]:
    return {name: kernel_table(path) for name, path in H100.items()}


# ------------------------------------------------------------------ golden: the H100 traces

@pytest.mark.parametrize("name,gemms", [("fwd_eager", 1), ("fwd_inductor", 1),
                                        ("fwd_bwd_eager", 3), ("fwd_bwd_inductor", 3)])
def test_h100_iterations_and_gemm_counts(h100, name, gemms):
    t = h100[name]
    assert list(t.columns) == COLUMNS
    assert t.attrs["iters"] == 5 and t.attrs["iters_source"] == "harness_iter"
    assert t.attrs["launches_excluded"] == 0
    # per-iteration counts are whole numbers: every kernel ran once per iteration or more
    assert np.allclose(t["calls_per_iter"], t["calls_per_iter"].round())
    gemm = t[t["category"] == "gemm"]
    assert gemm["calls_per_iter"].sum() == gemms           # fwd: x@w.T; fwd+bwd: + grad_x, grad_w
    assert gemm["flops"].sum() == gemms * GEMM_FLOPS
    assert t["share"].sum() == pytest.approx(1.0)
    assert set(t["category"]) == {"gemm", "fp8_cast", "copy"}
    assert (t["source"] == "kineto").all()


def test_h100_inductor_fwd_bwd_table(h100):
    t = h100["fwd_bwd_inductor"]
    assert t.attrs["device_spec"] == "h100_sxm"
    gemm = t[t["category"] == "gemm"]
    assert all(k.startswith("nvjet_sm90_") for k in gemm["kernel"])
    # cuBLAS fp8 GEMMs at 66-73% of the dense 1979 TFLOP/s: plausible, so not suspect
    assert gemm["pct_peak_flops"].between(60, 80).all() and not gemm["suspect"].any()
    assert gemm["achieved_tflops"].between(1200, 1500).all()
    # the scale kernels (1 element) are far below 1% of anything: flagged, not reported
    tiny = t[t["kernel"].str.startswith("triton_per_fused__to_copy_abs_clamp_max")]
    assert tiny["suspect"].all()
    # Triton kernels carry their own args as inputs and outputs: bytes are known
    assert t.loc[t["category"] == "fp8_cast", "bytes"].notna().all()
    assert t.loc[t["category"] == "fp8_cast", "flops"].isna().all()
    amax = t[t["kernel"] == "triton_red_fused_abs_max_2"].iloc[0]
    assert amax["calls_per_iter"] == 1 and amax["pct_peak_bw"] == pytest.approx(73.1, abs=0.1)


def test_h100_category_summary_next_to_seed_000(h100):
    summary = category_summary({"eager": h100["fwd_bwd_eager"],
                                "inductor": h100["fwd_bwd_inductor"]}).round(3)
    assert list(summary.index) == ["gemm", "fp8_cast", "copy", "All"]
    assert summary.loc["gemm"].tolist() == [0.293, 0.297]
    assert summary.loc["fp8_cast"].tolist() == [2.023, 0.203]
    assert summary.loc["copy"].tolist() == [0.381, 0.002]
    assert summary.loc["All"].tolist() == [2.697, 0.502]
    # seed 000 (torchao, Dec 2024): 0_gemm 0.360, 1_f8_overhead 0.463, 2_other 0.015 ms


JAX = TRACES / "h100_jax_fp8_linear_fwd_bwd.perfetto_trace.json.gz"
JAX_DUMP = TRACES / "h100_jax_fp8_linear_fwd_bwd.xla_dump"


def test_h100_jax_fp8_fwd_bwd_with_its_hlo_dump():
    """Plain JAX on the H100 (capture script next to the fixture): XLA runs the step as one
    CUDA graph, so every kernel says hlo_op=command_buffer_1; kernels are matched to HLO
    instructions by name, cuBLAS's by schedule position."""
    t = kernel_table(JAX, device="NVIDIA H100 80GB HBM3", hlo_dir=JAX_DUMP)
    assert t.attrs["source"] == "perfetto" and t.attrs["iters"] == 5
    assert t.attrs["launches_excluded"] == 0
    assert np.allclose(t["calls_per_iter"], t["calls_per_iter"].round())
    assert t["share"].sum() == pytest.approx(1.0)
    gemm = t[t["category"] == "gemm"]
    assert len(gemm) == 3 and gemm["calls_per_iter"].sum() == 3
    assert all(k.startswith("nvjet_sm90_") for k in gemm["kernel"])
    assert gemm["flops"].sum() == 3 * GEMM_FLOPS
    assert gemm["pct_peak_flops"].between(65, 80).all() and not gemm["suspect"].any()
    cats = dict(zip(t["kernel"], t["category"]))
    # amax (both stages), scale arithmetic, quantising converts and fp8 transposes
    for k in ("input_reduce_fusion", "input_reduce_fusion_3", "loop_divide_fusion",
              "fusion_20", "loop_convert_fusion_1", "wrapped_transpose_2"):
        assert cats[k] == "fp8_cast", k
    # cuBLAS writes f32; XLA converts the result to bf16 in a separate kernel
    assert cats["wrapped_convert"] == "elementwise" and cats["Memset 0"] == "copy"
    summary = category_summary({"xla": t}).round(3)["xla"]
    assert summary.to_dict() == {"gemm": 0.281, "fp8_cast": 0.201, "elementwise": 0.114,
                                 "copy": 0.001, "All": 0.598}
    # 1409 us wall per iteration in a naive block_until_ready loop: 58% is not GPU work
    gap = launch_overhead(t, wall_us_per_iter=1409.0)
    assert gap["gap_share"] == pytest.approx(0.578, abs=0.002)


def test_h100_jax_trace_without_its_dump_names_kinds_not_fp8():
    t = kernel_table(JAX, device="h100_sxm")
    cats = dict(zip(t["kernel"], t["category"]))
    assert cats["input_reduce_fusion"] == "reduction"
    assert cats["loop_convert_fusion_1"] == "elementwise"
    assert cats["wrapped_transpose"] == "copy"
    assert t.loc[t["category"] == "gemm", "calls_per_iter"].sum() == 3
    assert t["flops"].isna().all()


def test_fast_cut_and_full_parse_agree(tmp_path, h100):
    """Kineto's own layout is cut from the text; any other layout is parsed whole."""
    for name in ("fwd_bwd_eager", "fwd_bwd_inductor"):
        data, _ = read_trace(H100[name])
        compact = tmp_path / f"{name}.json"
        compact.write_text(json.dumps(data))
        pd.testing.assert_frame_equal(kernel_table(compact), h100[name])


def test_the_background_scan_is_the_scan_and_a_failed_one_is_done_here(h100, monkeypatch):
    """`python -m harness.kernels` scans in two child processes while it imports pandas: their
    result is the in-process scan's and gives the same table; a text the scan does not take
    gives None, without forking, and the caller reads the trace itself."""
    from harness.collect.kineto_scan import scan, scan_in_background
    from harness.collect.trace_read import read_bytes
    for name in ("fwd_bwd_eager", "fwd_bwd_inductor"):
        background = scan_in_background(read_bytes(H100[name]))()
        found = scan(read_bytes(H100[name]))
        assert background["op_events"] == found["op_events"]
        # (the ops' ids were found on their own in the background: more of them are asked)
        np.testing.assert_equal({k: v for k, v in background.items() if k not in ("asked", "op_keys")},
                                {k: v for k, v in found.items() if k not in ("asked", "op_keys")})
        pd.testing.assert_frame_equal(kernel_table(H100[name], scanned=background), h100[name])

    monkeypatch.setattr("os.fork", lambda: pytest.fail("forked to scan a trace the scan refuses"))
    assert scan_in_background(b'{"traceEvents": [')() is None      # a cut trace: scanned here
    assert scan_in_background(read_bytes(JAX))() is None            # a JAX perfetto trace


# --------------------------------------------------------------------- synthetic Kineto

DEVICE = [{"id": 0, "name": "NVIDIA H100 80GB HBM3", "numSms": 132}]


class Kineto:
    """A tiny Kineto trace: CPU ops, their launches and kernels, in Kineto's text layout."""

    def __init__(self, device: list | None = DEVICE):
        self.events: list[dict] = []
        self.device = device
        self.next_id = 1

    def annotation(self, name: str, ts: float, dur: float, cat: str = "user_annotation"):
        self.events.append({"ph": "X", "cat": cat, "name": name, "pid": 1, "tid": 1, "ts": ts,
                            "dur": dur, "args": {"External id": self._id()}})

    def op(self, name: str, ts: float, kernels: list[tuple[str, float, float]], dims=(),
           types=(), concrete=(), launch_at: float | None = None, cat: str = "kernel",
           **extra_args) -> int:
        """An op at `ts` launching `kernels` [(name, gpu_ts, dur)] at `launch_at`."""
        ext = self._id()
        self.events.append({"ph": "X", "cat": "cpu_op", "name": name, "pid": 1, "tid": 1,
                            "ts": ts, "dur": 5.0, "args": {
                                "External id": ext, "Record function id": 0,
                                "Concrete Inputs": list(concrete) or [""] * len(dims),
                                "Input type": list(types), "Input Dims": [list(d) for d in dims],
                                "Ev Idx": ext, **extra_args}})
        for kname, gpu_ts, dur in kernels:
            corr = self._id()
            launch = ts + 1.0 if launch_at is None else launch_at
            self.events.append({"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel",
                                "pid": 1, "tid": 1, "ts": launch, "dur": 2.0,
                                "args": {"External id": ext, "cbid": 211, "correlation": corr}})
            args = {"External id": ext, "device": 0, "stream": 7, "correlation": corr}
            if cat != "kernel":
                args["bytes"] = 1 << 20
            self.events.append({"ph": "X", "cat": cat, "name": kname, "pid": 0, "tid": 7,
                                "ts": gpu_ts, "dur": dur, "args": args})
            self.events.append({"ph": "f", "id": corr, "pid": 0, "tid": 7, "ts": gpu_ts,
                                "cat": "ac2g", "name": "ac2g", "bp": "e"})
        return ext

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def kineto_text(self) -> str:
        """libkineto's layout: one event per block, ph/cat/name/pid/tid then ts/dur then args."""
        blocks = []
        for e in self.events:
            head = ", ".join(f'"{k}": {json.dumps(e[k])}' for k in ("ph", "cat", "name", "pid",
                                                                   "tid") if k in e)
            lines = [f"    {head},"]
            rest = {k: v for k, v in e.items() if k not in ("ph", "cat", "name", "pid", "tid",
                                                            "args")}
            if e.get("args") is not None:
                lines.append("    " + ", ".join(f'"{k}": {json.dumps(v)}'
                                                for k, v in rest.items()) + ",")
                args = ", ".join(f'"{k}": {json.dumps(v)}' for k, v in e["args"].items())
                lines.append('    "args": {\n      ' + args + "\n    }")
            else:
                lines.append("    " + ", ".join(f'"{k}": {json.dumps(v)}'
                                                for k, v in rest.items()))
            blocks.append("  {\n" + "\n".join(lines) + "\n  }")
        head = '{\n  "schemaVersion": 1,\n'
        if self.device is not None:
            head += f'  "deviceProperties": {json.dumps(self.device)},\n'
        return head + '  "traceEvents": [\n' + ",\n".join(blocks) + '\n  ],\n  "traceName": "t"\n}'

    def write(self, path: Path, layout: str = "kineto") -> Path:
        if layout == "kineto":
            text = self.kineto_text()
        else:
            data = {"schemaVersion": 1, "traceEvents": self.events}
            if self.device is not None:
                data["deviceProperties"] = self.device
            text = json.dumps(data)
        if path.suffix == ".gz":
            path.write_bytes(gzip.compress(text.encode()))
        else:
            path.write_text(text)
        return path


def two_iterations() -> Kineto:
    """Warm-up kernel, two marked iterations of [amax, gemm (+ split-K reduce)], a tail kernel.

    Iteration 1's GEMM is launched inside its marker but runs after the marker ended (launches
    are asynchronous): it belongs to the iteration. The tail kernel runs inside nothing.
    """
    t = Kineto()
    t.op("aten::fill_", 10.0, [("warmup_fill_kernel", 12.0, 3.0)], dims=[[16]], types=["float"])
    for i, start in enumerate((100.0, 300.0)):
        t.annotation(f"harness_iter_{i}", start, 100.0)
        t.op("triton_red_fused_abs_max_0", start + 5, [("triton_red_fused_abs_max_0",
                                                         start + 10, 20.0)],
             dims=[[M, K], [1024]], types=["c10::BFloat16", "float"])
        gemm_start = start + 120.0 if i == 1 else start + 40.0   # after the marker's end
        t.op("aten::mm", start + 30, [("sm90_xmma_gemm_bf16bf16_bf16f32", gemm_start, 50.0),
                                      ("void cublasLt::splitKreduce_kernel<32, 16>",
                                       gemm_start + 50, 5.0)],
             dims=[[M, K], [K, N]], types=["c10::BFloat16", "c10::BFloat16"])
        t.op("aten::copy_", start + 60, [("Memcpy DtoD (Device -> Device)", start + 95, 4.0)],
             dims=[[512, 512], [512, 512]], types=["float", "float"], cat="gpu_memcpy")
    t.op("aten::fill_", 500.0, [("tail_fill_kernel", 505.0, 3.0)], dims=[[16]], types=["float"])
    return t


@pytest.mark.parametrize("layout", ["kineto", "compact"])
def test_synthetic_windows_counts_and_costs(tmp_path, layout):
    t = kernel_table(two_iterations().write(tmp_path / "t.json", layout))
    assert t.attrs["iters"] == 2 and t.attrs["launches_excluded"] == 2  # warm-up and tail
    rows = t.set_index("kernel")
    assert "warmup_fill_kernel" not in rows.index and "tail_fill_kernel" not in rows.index
    gemm = rows.loc["sm90_xmma_gemm_bf16bf16_bf16f32"]
    assert gemm["calls_per_iter"] == 1 and gemm["time_us_per_iter"] == 50.0
    assert gemm["category"] == "gemm" and gemm["flops"] == GEMM_FLOPS
    # mm's operands and its bf16 result, read and written once
    assert gemm["bytes"] == 2 * (M * K + K * N + M * N)
    assert gemm["achieved_tflops"] == pytest.approx(GEMM_FLOPS / 50e-6 / 1e12)
    assert gemm["pct_peak_flops"] == pytest.approx(100 * gemm["achieved_tflops"] / 989.4)
    # split-K: the reduce kernel is under the same aten::mm, FLOPs counted once (on the GEMM)
    reduce = rows.loc["void cublasLt::splitKreduce_kernel<32, 16>"]
    assert reduce["category"] == "gemm" and math.isnan(reduce["flops"])
    copy = rows.loc["Memcpy DtoD (Device -> Device)"]
    assert copy["category"] == "copy" and copy["bytes"] == 1 << 20
    assert copy["achieved_gbps"] == pytest.approx((1 << 20) / 4e-6 / 1e9)
    assert rows.loc["triton_red_fused_abs_max_0", "category"] == "fp8_cast"
    assert t["share"].sum() == pytest.approx(1.0)
    assert t.attrs["kernel_us_per_iter"] == pytest.approx(20 + 50 + 5 + 4)


def test_iters_argument_markers_and_fallbacks(tmp_path):
    path = two_iterations().write(tmp_path / "t.json.gz")
    t = kernel_table(path, iters=4)       # e.g. each marker wrapped two inner steps
    assert t.attrs["iters"] == 4 and t.attrs["iters_source"] == "argument"
    assert t.set_index("kernel").loc["sm90_xmma_gemm_bf16bf16_bf16f32", "calls_per_iter"] == 0.5

    steps = Kineto()   # a user's trace from torch.profiler.schedule: ProfilerStep#N markers
    for i, start in enumerate((0.0, 100.0, 200.0)):
        steps.annotation(f"ProfilerStep#{i + 7}", start, 90.0)
        steps.op("aten::mm", start + 1, [("gemm_kernel", start + 10, 30.0)],
                 dims=[[8, 8], [8, 8]], types=["float", "float"])
    t = kernel_table(steps.write(tmp_path / "steps.json"))
    assert t.attrs["iters"] == 3 and t.attrs["iters_source"] == "ProfilerStep"

    bare = Kineto()    # no markers at all: the whole trace is one iteration
    bare.op("aten::mm", 1, [("gemm_kernel", 10, 30.0), ("gemm_kernel", 50, 30.0)],
            dims=[[8, 8], [8, 8]], types=["float", "float"])
    t = kernel_table(bare.write(tmp_path / "bare.json"))
    assert t.attrs["iters_source"] == "none" and t["calls_per_iter"].tolist() == [2.0]
    assert not t.attrs["per_iteration"]      # totals, and the CLI says so


def test_peaks_clock_scaling_and_suspects(tmp_path):
    path = two_iterations().write(tmp_path / "t.json")
    rated = kernel_table(path).set_index("kernel")
    slow = kernel_table(path, sm_clock_mhz=990.0).set_index("kernel")   # half the 1980 boost
    g = "sm90_xmma_gemm_bf16bf16_bf16f32"
    assert slow.loc[g, "pct_peak_flops"] == pytest.approx(2 * rated.loc[g, "pct_peak_flops"])
    # 5.5 PFLOP/s claimed for a bf16 GEMM: more than the device can do at that clock
    assert rated.loc[g, "pct_peak_flops"] > 100 and rated.loc[g, "suspect"]
    a100 = kernel_table(path, device="NVIDIA A100-SXM4-80GB").set_index("kernel")
    assert a100.loc[g, "pct_peak_flops"] == pytest.approx(
        100 * rated.loc[g, "achieved_tflops"] / 312.0)
    unknown = kernel_table(path, device="Some Future GPU")
    assert unknown["pct_peak_flops"].isna().all() and not unknown["suspect"].any()


def test_device_table():
    assert lookup_device("NVIDIA H100 80GB HBM3").key == "h100_sxm"
    assert lookup_device("NVIDIA H100 PCIe").key == "h100_pcie"
    assert lookup_device("NVIDIA H100 NVL").key == "h100_nvl"
    assert lookup_device("NVIDIA H200").key == "h200"
    assert lookup_device("NVIDIA A100-SXM4-80GB").key == "a100_sxm_80gb"
    assert lookup_device("NVIDIA B200").key == "b200"
    assert lookup_device("h100_sxm").key == "h100_sxm"
    assert lookup_device("Tesla T4") is None and lookup_device(None) is None
    h100 = lookup_device("NVIDIA H100 80GB HBM3")
    # dense, not the datasheet's with-sparsity headline (seed 003: 1979 / 3958)
    assert h100.tflops("bf16") == pytest.approx(1979 / 2, rel=1e-3)
    assert h100.tflops("fp8") == pytest.approx(3958 / 2, rel=1e-3)
    assert math.isnan(lookup_device("NVIDIA A100-SXM4-80GB").tflops("fp8"))


# ------------------------------------------------------------------- synthetic JAX perfetto

HLO = """HloModule jit_step, entry_computation_layout={(bf16[2048,4096]{1,0})->bf16[2048,8192]{1,0}}

%fused_amax (param_0: bf16[2048,4096]) -> f32[] {
  %param_0 = bf16[2048,4096]{1,0} parameter(0)
  %abs.1 = bf16[2048,4096]{1,0} abs(bf16[2048,4096]{1,0} %param_0)
  %convert.1 = f32[2048,4096]{1,0} convert(bf16[2048,4096]{1,0} %abs.1)
  %constant.1 = f32[] constant(0)
  ROOT %reduce.1 = f32[] reduce(f32[2048,4096]{1,0} %convert.1, f32[] %constant.1), dimensions={0,1}, to_apply=%region_max
}

%fused_quantise (param_0.1: bf16[2048,4096], param_1: f32[]) -> f8e4m3fn[2048,4096] {
  %param_0.1 = bf16[2048,4096]{1,0} parameter(0)
  %param_1 = f32[] parameter(1)
  %convert.2 = f32[2048,4096]{1,0} convert(bf16[2048,4096]{1,0} %param_0.1)
  ROOT %convert.3 = f8e4m3fn[2048,4096]{1,0} convert(f32[2048,4096]{1,0} %convert.2)
}

ENTRY %main (p0: bf16[2048,4096], w: f8e4m3fn[8192,4096]) -> bf16[2048,8192] {
  %p0 = bf16[2048,4096]{1,0} parameter(0)
  %w = f8e4m3fn[8192,4096]{1,0} parameter(1)
  %input_reduce_fusion = f32[] fusion(bf16[2048,4096]{1,0} %p0), kind=kInput, calls=%fused_amax
  %loop_convert_fusion = f8e4m3fn[2048,4096]{1,0} fusion(bf16[2048,4096]{1,0} %p0, f32[] %input_reduce_fusion), kind=kLoop, calls=%fused_quantise
  %custom-call.3 = (bf16[2048,8192]{1,0}, s8[33554432]{0}) custom-call(f8e4m3fn[2048,4096]{1,0} %loop_convert_fusion, f8e4m3fn[8192,4096]{1,0} %w, f32[] %input_reduce_fusion, f32[] %input_reduce_fusion), custom_call_target="__cublas$lt$matmul$f8", backend_config={"gemm_backend_config":{"dot_dimension_numbers":{"lhs_contracting_dimensions":["1"],"rhs_contracting_dimensions":["1"],"lhs_batch_dimensions":[],"rhs_batch_dimensions":[]}}}
  ROOT %get-tuple-element = bf16[2048,8192]{1,0} get-tuple-element((bf16[2048,8192]{1,0}, s8[33554432]{0}) %custom-call.3), index=0
}
"""


def perfetto_trace(iterations: int = 3, sync_inside: bool = True) -> dict:
    """JAX's layout: /host:CPU markers, /device:GPU:0 stream kernels with string args, and a
    derived 'XLA Ops' line repeating them (must not be counted twice)."""
    ev = [{"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/host:CPU"}},
          {"ph": "M", "pid": 2, "name": "process_name", "args": {"name": "/device:GPU:0"}},
          {"ph": "M", "pid": 2, "tid": 13, "name": "thread_name",
           "args": {"name": "Stream #13(Kernel,MemcpyD2H)"}},
          {"ph": "M", "pid": 2, "tid": 99, "name": "thread_name", "args": {"name": "XLA Ops"}}]
    program = [("input_reduce_fusion", "input_reduce_fusion", 20.0),
               ("loop_convert_fusion", "loop_convert_fusion", 30.0),
               ("sm90_xmma_gemm_e4m3bf16_e4m3f32_f32_tn_n", "custom-call.3", 100.0)]
    for i in range(iterations):
        start = 1000.0 * (i + 1)
        t = start + 50.0
        for kname, hlo_op, dur in program:
            args = {"hlo_op": hlo_op, "hlo_module": "jit_step", "correlation_id": str(i),
                    "kernel_details": "regs:32 grid:132,1,1 block:128,1,1"}
            ev.append({"ph": "X", "pid": 2, "tid": 13, "ts": t, "dur": dur, "name": kname,
                       "args": args})
            ev.append({"ph": "X", "pid": 2, "tid": 99, "ts": t, "dur": dur, "name": hlo_op})
            t += dur + 2.0
        end = t if sync_inside else start + 60.0
        ev.append({"ph": "X", "pid": 1, "tid": 5, "ts": start, "dur": end - start,
                   "name": f"harness_iter_{i}"})
    # the result's copy back to the host after the profiled loop
    ev.append({"ph": "X", "pid": 2, "tid": 13, "ts": 9000.0, "dur": 8.0, "name": "MemcpyD2H",
               "args": {"memcpy_details": "kind_src:device kind_dst:pinned size:4096 async:0"}})
    return {"displayTimeUnit": "ns", "traceEvents": ev}


@pytest.mark.parametrize("sync_inside", [True, False])
def test_perfetto_windows(tmp_path, sync_inside):
    path = tmp_path / "perfetto_trace.json.gz"
    path.write_bytes(gzip.compress(json.dumps(perfetto_trace(sync_inside=sync_inside)).encode()))
    t = kernel_table(path, device="NVIDIA H100 80GB HBM3")
    assert t.attrs["source"] == "perfetto" and t.attrs["iters"] == 3
    # three kernels per iteration, once each (the XLA Ops line is not counted), no D2H copy
    assert t["calls_per_iter"].tolist() == [1.0, 1.0, 1.0]
    assert t.attrs["launches_excluded"] == 1
    cats = dict(zip(t["kernel"], t["category"]))
    assert cats == {"sm90_xmma_gemm_e4m3bf16_e4m3f32_f32_tn_n": "gemm",
                    "loop_convert_fusion": "elementwise", "input_reduce_fusion": "reduction"}
    assert t["flops"].isna().all()          # without the HLO dump nothing is known


def test_perfetto_with_hlo_dump(tmp_path):
    path = tmp_path / "perfetto_trace.json"
    path.write_text(json.dumps(perfetto_trace()))
    dump = tmp_path / "xla_dump"
    dump.mkdir()
    (dump / "module_0001.jit_step.sm_9.0_gpu_after_optimizations.txt").write_text(HLO)
    t = kernel_table(path, device="h100_sxm", hlo_dir=dump).set_index("kernel")
    # with the dump the amax reduction and the quantising convert are recognised as fp8 work
    assert t.loc["input_reduce_fusion", "category"] == "fp8_cast"
    assert t.loc["loop_convert_fusion", "category"] == "fp8_cast"
    gemm = t.loc["sm90_xmma_gemm_e4m3bf16_e4m3f32_f32_tn_n"]
    assert gemm["category"] == "gemm" and gemm["flops"] == GEMM_FLOPS
    # operands (fp8 a, fp8 b, two f32 scales) + bf16 result; cuBLAS's s8 workspace left out
    assert gemm["bytes"] == M * K + N * K + 8 + 2 * M * N
    assert gemm["pct_peak_flops"] == pytest.approx(
        100 * GEMM_FLOPS / 100e-6 / 1e12 / 1978.9)
    quant = t.loc["loop_convert_fusion"]
    assert quant["bytes"] == 2 * M * K + 4 + M * K and math.isnan(quant["flops"])


# ---------------------------------------------------------------- summaries and malformed input

def test_summary_diff_and_overhead(h100):
    eager, inductor = h100["fwd_bwd_eager"], h100["fwd_bwd_inductor"]
    diff = category_diff(eager, inductor, ("eager", "inductor"))
    assert diff.loc["All", "delta"] == pytest.approx(
        diff.loc["All", "inductor"] - diff.loc["All", "eager"])
    per_kernel = kernel_diff(eager, inductor, ("eager", "inductor"))
    assert list(per_kernel.columns) == ["kernel", "category", "eager_us", "inductor_us",
                                        "delta_us"]
    assert per_kernel["delta_us"].abs().is_monotonic_decreasing
    assert per_kernel["delta_us"].sum() == pytest.approx(
        inductor["time_us_per_iter"].sum() - eager["time_us_per_iter"].sum())
    # the example: kernels ~0.5 ms of a 0.98 ms iteration in a naive loop
    gap = launch_overhead(inductor, wall_us_per_iter=980.0)
    assert gap["gpu_busy_us_per_iter"] == pytest.approx(502.4, abs=0.1)
    assert gap["gap_us_per_iter"] == pytest.approx(980.0 - 502.4, abs=0.1)
    assert 0.48 < gap["gap_share"] < 0.49


def test_malformed_input(tmp_path):
    def error(path, **kw) -> str:
        with pytest.raises(InputError) as e:
            kernel_table(path, **kw)
        assert "\n" not in str(e.value) and str(path) in str(e.value)
        return str(e.value)

    assert "no such file" in error(tmp_path / "missing.json")
    assert "is a directory" in error(tmp_path)
    text = H100["fwd_inductor"].read_bytes()
    truncated = tmp_path / "truncated.json.gz"
    truncated.write_bytes(text[: len(text) // 2])
    assert "truncated or corrupt gzip" in error(truncated)
    plain = tmp_path / "truncated.json"
    plain.write_bytes(gzip.decompress(text)[:5000])
    assert "truncated or invalid JSON" in error(plain)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"traceEvents": [{"ph": "X", "name": "x", "ts": 1}]}))
    assert "unknown trace format" in error(other)
    cpu_only = Kineto(device=None)   # a CPU run: ops but no GPU kernels
    cpu_only.annotation("harness_iter_0", 0, 10)
    cpu_only.events.append({"ph": "X", "cat": "cpu_op", "name": "aten::mm", "pid": 1, "tid": 1,
                            "ts": 1, "dur": 2, "args": {"External id": 99}})
    assert "no GPU kernel events" in error(cpu_only.write(tmp_path / "cpu.json"))
    no_gpu = tmp_path / "no_gpu.json"
    no_gpu.write_text(json.dumps({"traceEvents": [
        {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/host:CPU"}}]}))
    assert "no GPU device process" in error(no_gpu)
    assert "positive integer" in error(H100["fwd_inductor"], iters=0)


# --------------------------------------------------- traces the harness did not write (issue 20)

def renamed_markers(tmp_path: Path, name: bytes) -> Path:
    """The H100 Inductor trace with its harness_iter_N markers renamed (`name` + N)."""
    path = tmp_path / "user.trace.json"
    path.write_bytes(gzip.decompress(H100["fwd_bwd_inductor"].read_bytes())
                     .replace(b"harness_iter_", name))
    return path


def test_profiler_step_markers_count_iterations(tmp_path, h100):
    t = kernel_table(renamed_markers(tmp_path, b"ProfilerStep#"))
    assert t.attrs["iters_source"] == "ProfilerStep" and t.attrs["iters"] == 5
    assert t.attrs["per_iteration"]
    pd.testing.assert_frame_equal(t, h100["fwd_bwd_inductor"])


def test_without_markers_figures_are_totals_and_say_so(tmp_path, h100):
    path = renamed_markers(tmp_path, b"my_region_")
    t = kernel_table(path)
    assert t.attrs["iters_source"] == "none" and not t.attrs["per_iteration"]
    ours = h100["fwd_bwd_inductor"]
    assert t["time_us_per_iter"].sum() == pytest.approx(5 * ours["time_us_per_iter"].sum())
    given = kernel_table(path, iters=5)     # --iters: every launch of the trace, divided by 5
    assert given.attrs["per_iteration"] and given.attrs["iters_source"] == "argument"
    pd.testing.assert_frame_equal(given, ours)


def test_kineto_source_op_is_the_outermost_aten_op(h100):
    eager = h100["fwd_bwd_eager"]
    # aten::max of a transposed weight copies it first: the copy belongs to aten::max
    copy = eager[eager["kernel"].str.contains("elementwise_kernel<128, 4") &
                 eager["kernel"].str.contains("direct_copy")].iloc[0]
    assert (copy["category"], copy["op"], copy["op_category"]) == ("copy", "aten::max", "copy")
    assert set(eager.loc[eager["category"] == "gemm", "op"]) == {"aten::_scaled_mm"}
    inductor = h100["fwd_bwd_inductor"]
    triton = inductor[inductor["kernel"].str.startswith("triton_")]
    # Inductor's own kernels run under no aten op: their op category is the kernel's
    assert triton["op"].isna().all() and (triton["op_category"] == triton["category"]).all()
    assert set(inductor.loc[inductor["category"] == "gemm", "op"]) == {"aten::_scaled_mm"}
