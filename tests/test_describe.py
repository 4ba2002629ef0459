"""describe: one place that decides a run's data-derived flags (assess), applied to schema-1
records when they are read and written into schema-2 records by the orchestrator; and the
console line that shows them."""
from __future__ import annotations

import copy

import pytest

from harness.describe import (Thresholds, assess, backend_label, flag_codes, gpu_figures,
                              graph_mode, merge_flags, record_flags, summary_line)
from schema2 import DECODE, FP8_FWD, reference, schema2


def codes(flags: list[dict]) -> list[str]:
    return [f["code"] for f in flags]


def test_schema1_gpu_figures_come_from_the_kernel_summary():
    r = reference(DECODE["inductor"])     # qwen decode static, inductor default, H100
    gpu = gpu_figures(r)
    k = r["kernels"]
    assert gpu["busy_ms_per_iter"] == pytest.approx(k["gpu_busy_us_per_iter"] / 1e3)
    assert gpu["host_gap_ms"] == pytest.approx(k["gap_us_per_iter"] / 1e3)
    assert gpu["idle_share"] == pytest.approx(k["gap_share"])
    assert gpu_figures(reference("compile_fp8_linear_xla_565d049b")) is None   # not profiled


def test_host_bound_is_the_idle_share_against_the_threshold():
    r = reference(DECODE["inductor"])
    share = r["kernels"]["gap_share"]
    (flag,) = [f for f in assess(r) if f["code"] == "host_bound"]
    assert f"GPU idle {100 * share:.0f}% of the {r['timing']['median_ms']:.4g} ms step" in flag["detail"]
    assert "host_bound" not in codes(assess(r, Thresholds(host_bound_idle_share=share + 0.01)))
    assert "host_bound" not in codes(assess(reference(FP8_FWD["inductor"])))   # 4.5% idle


def test_a_cv_of_185_percent_is_flagged_high_cv_with_its_samples():
    r = reference(FP8_FWD["inductor"])
    r["timing"].update(cv=1.85, samples_ms=[0.04] * 9 + [88.8], median_ms=0.04)
    (flag,) = [f for f in assess(r) if f["code"] == "high_cv"]
    assert flag["detail"] == "within-process CV 185% (samples 0.04-88.8 ms, median 0.04 ms)"
    r["timing"]["cv"] = 0.10                                   # at the line: not above it
    assert "high_cv" not in codes(assess(r))


def test_process_spread_from_the_between_process_medians():
    r = schema2(reference(FP8_FWD["inductor"]), process_medians_ms=[0.302, 0.238, 0.190, 0.180, 0.177])
    (flag,) = [f for f in r["flags"] if f["code"] == "process_spread"]
    between = r["timing"]["between"]
    assert between["n"] == 5 and between["min_ms"] == pytest.approx(0.177)
    assert flag["detail"] == (f"5 processes: medians 0.177-0.302 ms, CV {100 * between['cv']:.1f}%")
    quiet = schema2(reference(FP8_FWD["xla"]), process_medians_ms=[0.2086, 0.2080, 0.2094])
    assert "process_spread" not in codes(quiet["flags"])


def test_graph_mode_without_replays_and_profile_without_command_buffers():
    ind = schema2(reference(DECODE["inductor"]), label="inductor:reduce-overhead",
                  cudagraphs={"graphs_recorded": 1, "graph_replays": 0,
                              "skips": ["mutated inputs (2 instances)"], "partitions": 1,
                              "cudagraphable_partitions": 1})
    (flag,) = [f for f in ind["flags"] if f["code"] == "no_graph_replay"]
    assert flag["detail"] == "1 graph(s) recorded, none replayed: mutated inputs (2 instances)"
    # Inductor's default mode is no graph mode: empty evidence is no flag
    default = schema2(reference(DECODE["inductor"]), cudagraphs={"graphs_recorded": 0,
                                                                 "graph_replays": 0})
    assert "no_graph_replay" not in codes(default["flags"])
    xla = schema2(reference(DECODE["xla"]), command_buffers={
        "enabled": True, "types": ["FUSION", "CUBLAS"], "during_profiling": False})
    assert "profile_differs" in codes(xla["flags"])


@pytest.mark.parametrize("label,buffers,expected", [
    ("inductor:reduce-overhead", None, "cudagraphs"),
    ("inductor:max-autotune:dynamic", None, "cudagraphs"),
    ("inductor:max-autotune-no-cudagraphs", None, None), ("inductor", None, None),
    ("xla", None, "command_buffers"), ("xla:no-cmdbuf", None, None),
    ("xla", {"enabled": False, "why": "no command buffers on cpu"}, None),
    ("xla:autotune0", {"enabled": True}, "command_buffers"), ("eager", None, None)])
def test_graph_mode_from_the_declared_traits_and_the_stated_settings(label, buffers, expected):
    r = schema2(reference(DECODE["inductor"]), label=label, command_buffers=buffers)
    assert graph_mode(r) == expected


def test_schema1_text_flags_and_assessed_flags_merge_by_code():
    r = reference("paged_qwen_decoder_inductor_d68c5f48")   # a memory collector failed there
    r["flags"].append("kernel collector: InputError: x")
    flags = record_flags(r)
    assert codes(flags) == ["collector", "host_bound", "high_cv"]
    assert flags[0]["detail"].startswith("memory collector: InputError") \
        and flags[0]["detail"].endswith("; kernel collector: InputError: x")
    # a schema-1 recompile flag in text and the counter are one flag
    r = reference(FP8_FWD["inductor"])
    r["compile"]["recompiles_during_timing"] = 1
    r["flags"] = ["recompiled during timing (1 graph(s)): the timing mixes compile and run"]
    assert codes(record_flags(r)) == ["recompiled"]
    assert summary_line(r).endswith("!! recompiled")       # the console line shows it


def test_schema2_flags_are_kept_and_a_rule_newer_than_the_record_adds_its_code():
    """The orchestrator assessed the record when it wrote it; a reader keeps those flags and adds
    the codes today's rules find in its figures that it does not carry (here host_bound, as if
    written before that rule)."""
    r = schema2(reference(DECODE["inductor"]), flags=[{"code": "collector", "detail": "d"}],
                assessed=False)
    assert codes(record_flags(r)) == ["collector", "host_bound"]
    assert record_flags(r)[0] == {"code": "collector", "detail": "d"}
    assert merge_flags(r["flags"] + [{"code": "collector", "detail": "d"}]) == r["flags"]


def test_gpu_time_above_the_wall_is_flagged_not_read_as_a_negative_host_gap():
    """H200 prefill: 37.5 ms of kernels while profiled, 35.8 ms wall while timed."""
    r = schema2(reference(DECODE["inductor"]), assessed=False)
    r["timing"]["median_ms"] = 35.8
    r["gpu"] = {"busy_ms_per_iter": 37.5, "kernel_ms_per_iter": 37.5, "host_gap_ms": -1.7,
                "idle_share": -0.047, "host_bound": False}
    (flag,) = [f for f in assess(r) if f["code"] == "gpu_over_wall"]
    assert "4.7% above the 35.8 ms timed wall" in flag["detail"]
    assert "host_bound" not in codes(assess(r))
    r["gpu"].update(busy_ms_per_iter=36.0, kernel_ms_per_iter=36.0)    # within 2%: noise
    assert "gpu_over_wall" not in codes(assess(r))


def test_console_line_marks_flags_and_shows_gpu_time_for_both_schemas():
    one = reference(DECODE["inductor"])
    line = summary_line(one)
    assert line.endswith("!! host_bound")
    gpu = gpu_figures(one)
    assert f"gpu {gpu['busy_ms_per_iter']:.4g} ms, host gap {gpu['host_gap_ms']:.3g} ms" in line
    two = schema2(one, label="inductor:max-autotune", process_medians_ms=[5.6, 5.7, 6.9])
    line = summary_line(two)
    assert "inductor:max-autotune" in line and "3 procs 5.6-6.9" in line
    assert line.endswith("!! host_bound,process_spread")
    assert flag_codes(two) == ["host_bound", "process_spread"]


def test_backend_label_schema1_mode_and_schema2_label():
    r = copy.deepcopy(reference(FP8_FWD["inductor"]))
    assert backend_label(r) == "inductor"
    r["config"]["backend"]["mode"] = "max-autotune"
    assert backend_label(r) == "inductor:max-autotune"
    assert backend_label(schema2(r, label="inductor:reduce-overhead")) == "inductor:reduce-overhead"
