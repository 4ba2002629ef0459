"""Findings rules: each fires on tables built to show it and stays quiet on tables that do not;
and on the committed H100 traces, the eager vs Inductor fp8 difference is found and named."""
from __future__ import annotations

import pandas as pd
import pytest

from conftest import FIXTURES
from harness.report.findings import FindingsConfig, findings_from

MIB = 1024 ** 2


def summary(*runs: dict) -> pd.DataFrame:
    base = dict(workload="w", variant="v", status="ok", reason="", median_ms=1.0, cv=0.01,
                min_sqnr_db=40.0, max_abs_err=1e-3, numerics_passed=True,
                kernel_ms_per_iter=float("nan"), gpu_busy_ms_per_iter=float("nan"))
    return pd.DataFrame([{**base, "run_id": r["backend"], **traits(r["backend"]), **r} for r in runs])


def traits(label: str) -> dict:
    """The summary's trait columns for a label, as its backend declares them."""
    from harness.orchestrator import plugins
    from schema2 import backend_config
    name, cfg = backend_config(label)
    t = plugins.backend_spec(name).traits(cfg)
    return {"family": t.family, "graphs": t.graphs, "pair": t.pair or ""}


def kernels(run_id: str, *rows: tuple) -> pd.DataFrame:
    """rows: (kernel, category, us per iteration[, pct_peak_flops, pct_peak_bw])"""
    out = []
    for r in rows:
        k, c, us, pf, pb = (*r, float("nan"), float("nan"))[:5]
        out.append(dict(run_id=run_id, backend=run_id, kernel=k, category=c,
                        time_us_per_iter=us, pct_peak_flops=pf, pct_peak_bw=pb, suspect=False))
    return pd.DataFrame(out)


def kinds(found: pd.DataFrame) -> list[str]:
    return list(found["kind"])


def test_category_difference_names_the_kernels():
    s = summary({"backend": "inductor"}, {"backend": "xla"})
    k = pd.concat([kernels("inductor", ("gemm_a", "gemm", 500), ("triton_amax", "fp8_cast", 50)),
                   kernels("xla", ("gemm_b", "gemm", 500), ("loop_convert_fusion", "fp8_cast", 300),
                           ("input_reduce_fusion", "fp8_cast", 100))])
    f = findings_from(s, k)
    row = f[f["kind"] == "category"].iloc[0]
    assert row["backends"] == "xla,inductor" and row["magnitude"] == pytest.approx(0.35)
    assert "loop_convert_fusion (300.0 us)" in row["evidence"] and "triton_amax" in row["evidence"]
    assert "in fp8_cast" in row["sentence"]
    quiet = pd.concat([kernels("inductor", ("gemm_a", "gemm", 500), ("t", "fp8_cast", 50)),
                       kernels("xla", ("gemm_b", "gemm", 505), ("l", "fp8_cast", 52))])
    assert "category" not in kinds(findings_from(s, quiet))


def test_layout_copy_share_with_buffers():
    s = summary({"backend": "xla"})
    k = kernels("xla", ("gemm", "gemm", 100), ("transpose_fusion", "copy", 60))
    b = pd.DataFrame({"run_id": ["xla"], "name": ["kv_cache"], "bytes": [64 * MIB],
                      "shape": ["bf16[2,4233,16,8,128]"], "kind": ["parameter"]})
    f = findings_from(s, k, buffers=b)
    row = f[f["kind"] == "layout"].iloc[0]
    assert row["score"] == pytest.approx(60 / 160)
    assert "transpose_fusion (60.0 us)" in row["evidence"]
    assert "kv_cache bf16[2,4233,16,8,128] 64.0 MiB" in row["evidence"]
    small = kernels("xla", ("gemm", "gemm", 100), ("transpose_fusion", "copy", 5))
    assert "layout" not in kinds(findings_from(s, small))


def test_idle_gap_is_a_hypothesis():
    s = summary({"backend": "inductor", "median_ms": 1.0, "gpu_busy_ms_per_iter": 0.5})
    k = kernels("inductor", ("gemm", "gemm", 500))
    row = findings_from(s, k).query("kind == 'idle'").iloc[0]
    assert row["magnitude"] == pytest.approx(0.5)
    assert "hypothesis" in row["sentence"] and "reduce-overhead" in row["sentence"]
    busy = summary({"backend": "inductor", "median_ms": 1.0, "gpu_busy_ms_per_iter": 0.9})
    assert "idle" not in kinds(findings_from(busy, k))


def test_roofline_low_gemm_but_not_suspect_or_good_ones():
    s = summary({"backend": "xla"})
    low = kernels("xla", ("cublas_gemm", "gemm", 400, 30.0, 5.0), ("e", "elementwise", 10))
    row = findings_from(s, low).query("kind == 'roofline'").iloc[0]
    assert row["magnitude"] == pytest.approx(30.0) and "cublas_gemm" in row["evidence"]
    good = kernels("xla", ("cublas_gemm", "gemm", 400, 75.0, 5.0), ("e", "elementwise", 10))
    assert "roofline" not in kinds(findings_from(s, good))
    suspect = low.assign(suspect=[True, False])
    assert "roofline" not in kinds(findings_from(s, suspect))


def test_memory_kind_difference_with_largest_buffers():
    s = summary({"backend": "inductor"}, {"backend": "xla"})
    m = pd.DataFrame({"run_id": ["inductor"] * 3 + ["xla"] * 3,
                      "kind": ["parameter", "temp", "total"] * 2,
                      "bytes": [100 * MIB, 10 * MIB, 110 * MIB, 100 * MIB, 40 * MIB, 140 * MIB]})
    b = pd.DataFrame({"run_id": ["xla"], "name": ["fusion.3"], "bytes": [32 * MIB],
                      "shape": ["f32[2048,4096]"], "kind": ["temp"]})
    row = findings_from(s, memory=m, buffers=b).query("kind == 'memory'").iloc[0]
    assert row["backends"] == "xla,inductor" and row["magnitude"] == pytest.approx(30.0)
    assert "fusion.3 f32[2048,4096] 32.0 MiB" in row["evidence"]
    same = m.assign(bytes=[100 * MIB, 10 * MIB, 110 * MIB, 100 * MIB, 11 * MIB, 111 * MIB])
    assert "memory" not in kinds(findings_from(s, memory=same))


def test_a_lower_bound_is_not_compared():
    # H200 conv fwd_bwd, Inductor max-autotune: the backward's outputs come from an extern
    # kernel whose sizes the output code does not state; 0 bytes is "at least 0", not less
    s = summary({"backend": "inductor"}, {"backend": "xla"})
    m = pd.DataFrame({"run_id": ["inductor", "xla"], "kind": ["output", "output"],
                      "bytes": [0.0, 12.5 * MIB], "note": ["lower bound: 2 of unknown size (buf2, buf1)", ""]})
    assert "memory" not in kinds(findings_from(s, memory=m))
    assert "memory" in kinds(findings_from(s, memory=m.assign(note=["", ""])))


def test_numerics_gap():
    s = summary({"backend": "inductor", "min_sqnr_db": 38.0}, {"backend": "xla", "min_sqnr_db": 22.0})
    row = findings_from(s).query("kind == 'numerics'").iloc[0]
    assert row["backends"] == "xla,inductor" and row["magnitude"] == pytest.approx(16.0)
    close = s.assign(min_sqnr_db=[38.0, 33.0])
    assert "numerics" not in kinds(findings_from(close))
    assert "numerics" in kinds(findings_from(close, cfg=FindingsConfig(numerics_min_db=3.0)))


def test_speed_and_status_and_ranking():
    s = summary({"backend": "eager", "median_ms": 3.0}, {"backend": "inductor", "median_ms": 1.0},
                {"backend": "xla", "status": "failed", "reason": "timeout", "median_ms": float("nan")})
    f = findings_from(s)
    assert kinds(f)[:2] == ["status", "speed"]        # a failure first, then by score
    assert list(f["rank"]) == [1, 2]
    assert "inductor is 3.00x faster than eager" in f.iloc[1]["sentence"]
    noisy = s.assign(cv=[0.5, 0.5, 0.5])
    assert "speed" not in kinds(findings_from(noisy))


def test_nothing_to_say_is_an_empty_table():
    s = summary({"backend": "inductor"}, {"backend": "xla"})
    assert findings_from(s).empty


def test_real_h100_traces_eager_vs_inductor():
    from harness.collect.kernel_table import kernel_table
    traces = FIXTURES / "traces"
    k = pd.concat([kernel_table(traces / f"h100_fp8_linear_fwd_bwd_{b}.trace.json.gz")
                   .assign(run_id=b, backend=b) for b in ("eager", "inductor")])
    s = summary({"backend": "eager", "median_ms": 2.8}, {"backend": "inductor", "median_ms": 0.6})
    f = findings_from(s, k)
    cat = f[f["kind"] == "category"].iloc[0]
    assert cat["backends"] == "eager,inductor" and "in fp8_cast" in cat["sentence"]
    assert "elementwise_kernel" in cat["evidence"] and "triton_" in cat["evidence"]
    # Inductor's three fp8 GEMMs run at 66-72% of the H100's dense fp8 peak: no roofline finding
    assert not ((f["kind"] == "roofline") & (f["backends"] == "inductor")
                & f["unit"].str.contains("FLOP")).any()


# ------------------------------------------------ Finding, flags, pairs, graphs, source ops

from harness.report.findings import Finding  # noqa: E402
from harness.report.graphs import COLUMNS as GRAPH_COLUMNS  # noqa: E402


def test_a_finding_is_one_row_of_the_table():
    f = Finding("speed", "w", "v", ("inductor", "xla"), 2, "x", 1.7, "ev", "s.")
    assert f.row() == dict(kind="speed", workload="w", variant="v", backends="inductor,xla",
                           magnitude=2.0, unit="x", score=1.0, evidence="ev", sentence="s.")


def test_flags_rank_first_after_failures_with_their_figures():
    s = summary({"backend": "inductor", "cv": 1.85, "median_ms": 1.0},
                {"backend": "eager", "median_ms": 3.0},
                {"backend": "xla", "status": "failed", "reason": "timeout"})
    flags = pd.DataFrame([{"workload": "w", "variant": "v", "backend": "inductor",
                           "run_id": "inductor", "code": "high_cv", "detail": "within-process CV 185%"},
                          {"workload": "w", "variant": "v", "backend": "inductor",
                           "run_id": "inductor", "code": "recompiled", "detail": "2 graph(s)"}])
    f = findings_from(s, flags=flags)
    assert kinds(f) == ["status", "flag", "flag"]     # and no speed finding on a CV of 185%
    cv, recompiled = f.iloc[1], f.iloc[2]
    assert (cv["magnitude"], cv["unit"], cv["score"]) == (pytest.approx(185.0),
                                                         "% CV within a process", 1.0)
    assert "inductor on w [v] is flagged high_cv: within-process CV 185%." in cv["sentence"]
    assert (recompiled["unit"], recompiled["score"]) == ("flag", 1.0)
    assert recompiled["sentence"] == ("inductor on w [v] is flagged recompiled: 2 graph(s). "
                                      "Meaning: the compiler compiled again during timing: the "
                                      "timing mixes compile and run.")


def graphs(*rows: dict) -> pd.DataFrame:
    base = dict(workload="w", variant="v", status="ok", mechanism="cudagraphs", graph_mode=True,
                evidence=True, graphs_recorded=1, graph_replays=100, skips="", partitions=1,
                cudagraphable_partitions=1, command_buffers_enabled=None,
                command_buffer_types="", command_buffers_why="", during_profiling=None, trace="")
    return pd.DataFrame([{**base, "run_id": r["backend"], **r} for r in rows], columns=GRAPH_COLUMNS)


@pytest.mark.parametrize("evidence,cause", [
    (dict(graph_replays=0, skips="mutated inputs (2 instances)"),
     "no CUDA graph replayed (skipped: mutated inputs (2 instances))"),
    (dict(skips="cpu device (1 instances)"), "cudagraphs were skipped for part of the program: cpu"),
    (dict(partitions=3, cudagraphable_partitions=2),
     "1 of 3 graph partitions are not cudagraphable"),
    (dict(), "by elimination, host work between graph launches"),
    (dict(evidence=False), "cause unknown: the record carries no CUDA-graph evidence")])
def test_graph_mode_idle_names_its_cause(evidence, cause):
    label = "inductor:reduce-overhead"
    s = summary({"backend": label, "median_ms": 9.1, "gpu_busy_ms_per_iter": 2.5,
                 "host_gap_ms": 6.6, "idle_share": 6.6 / 9.1})
    k = kernels(label, ("gemm", "gemm", 2500))
    f = findings_from(s, k, graphs=graphs({"backend": label, **evidence}))
    (row,) = f[f["kind"] == "graphs"].itertuples()
    assert row.magnitude == pytest.approx(6.6) and row.score == pytest.approx(6.6 / 9.1)
    assert cause in row.sentence
    assert "idle" not in kinds(f)           # the graph rule explains a graph mode's idle time


def test_xla_command_buffer_settings_name_the_cause():
    s = summary({"backend": "xla", "median_ms": 1.0, "gpu_busy_ms_per_iter": 0.6, "host_gap_ms": 0.4,
                 "idle_share": 0.4})
    k = kernels("xla", ("gemm", "gemm", 600))
    xla = dict(backend="xla", mechanism="command_buffers", command_buffers_enabled=True,
               command_buffer_types="FUSION,CUBLAS", during_profiling=False)
    row = findings_from(s, k, graphs=graphs(xla)).query("kind == 'graphs'").iloc[0]
    assert "the profile ran without command buffers" in row["sentence"]
    assert "command buffers: on (FUSION,CUBLAS); off while profiling" in row["evidence"]
    busy = s.assign(gpu_busy_ms_per_iter=0.95, host_gap_ms=0.05, idle_share=0.05)
    assert "graphs" not in kinds(findings_from(busy, k, graphs=graphs(xla)))


def test_pairs_say_which_is_which_and_use_the_between_process_noise():
    s = summary({"backend": "inductor:max-autotune", "median_ms": 0.59, "cv": 0.001,
                 "gpu_busy_ms_per_iter": 0.5, "host_gap_ms": 0.09},
                {"backend": "xla", "median_ms": 0.60, "cv": 0.001, "gpu_busy_ms_per_iter": 0.55,
                 "host_gap_ms": 0.05},
                {"backend": "inductor", "median_ms": 0.85, "processes": 5, "between_cv": 0.2},
                {"backend": "xla:no-cmdbuf", "median_ms": 0.60, "processes": 5, "between_cv": 0.01})
    f = findings_from(s).query("kind == 'pair'")
    head, ctrl = f.iloc[0], f.iloc[1]
    assert head["backends"] == "inductor:max-autotune,xla" and head["sentence"].startswith(
        "Headline pair on w [v] (inductor:max-autotune vs xla: each compiler at its best")
    assert head["magnitude"] == pytest.approx(0.59 / 0.60)
    assert "inductor:max-autotune is 1.02x faster than xla (beyond 3 x CV); wall 0.59 vs 0.6 ms; "\
           "GPU 0.5 ms vs 0.55 ms; " \
           "host gap 0.09 ms vs 0.05 ms" in head["sentence"]
    # 0.85 vs 0.60 is 1.42x, inside 3 x hypot(20%, 1%): no winner called
    assert ctrl["sentence"].startswith("Control pair on w [v] (inductor vs xla:no-cmdbuf")
    assert "level within noise" in ctrl["sentence"]


def test_a_pair_finding_takes_its_verdict_at_the_configured_k():
    """The report hands findings its pairs table (verdicts at the default 3 x CV); another
    speed_k_cv makes the pair findings' own, so that a finding never states the table's k."""
    from harness.report.pairs import pair_table
    s = summary({"backend": "inductor", "median_ms": 0.85, "processes": 5, "between_cv": 0.2},
                {"backend": "xla:no-cmdbuf", "median_ms": 0.60, "processes": 5, "between_cv": 0.01})
    built = pair_table(s.assign(flags="", host_gap_ms=float("nan"), idle_share=float("nan")))
    (default,) = findings_from(s, pairs=built).query("kind == 'pair'")["sentence"]
    assert "level within noise (3 x CV)" in default
    # 0.85 / 0.60 - 1 = 0.42 is beyond 1.5 x hypot(20%, 1%) = 0.30
    (lower,) = findings_from(s, pairs=built, cfg=FindingsConfig(speed_k_cv=1.5)).query(
        "kind == 'pair'")["sentence"]
    assert "xla:no-cmdbuf is 1.42x faster than inductor (beyond 1.5 x CV)" in lower


def test_categories_by_source_op_make_attention_comparable():
    s = summary({"backend": "inductor"}, {"backend": "xla"})
    ind = kernels("inductor", ("sdpa_flash", "attention", 1700), ("nvjet", "gemm", 850))
    xla = kernels("xla", ("dot_170", "gemm", 840), ("dot_171", "gemm", 750),
                  ("transpose", "copy", 120), ("dot_2", "gemm", 850))
    ind["op_category"] = ["attention", "gemm"]
    xla["op_category"] = ["attention", "attention", "attention", "gemm"]
    f = findings_from(s, pd.concat([ind, xla]))
    # by kernel name, XLA would "spend 1.7 ms less in attention and 1.6 ms more in gemm";
    # by source op, attention is 1.7 vs 1.71 ms and gemm 0.85 vs 0.85 ms: nothing to say
    assert "category" not in kinds(f)
    xla.loc[xla["kernel"] == "transpose", "time_us_per_iter"] = 1000
    row = findings_from(s, pd.concat([ind, xla])).query("kind == 'category'").iloc[0]
    assert row["backends"] == "xla,inductor" and "in attention (by source op)" in row["sentence"]
    assert "transpose [copy] (1,000.0 us)" in row["evidence"] and "dot_170 [gemm]" in row["evidence"]



def test_a_comparison_with_a_busy_run_says_so_and_states_no_ratio():
    """cpu_torch_xla's qwen decode: xla 0.336 ms against torch_xla 31.4 ms on a busy host read
    "93.46x faster"; with torch_xla flagged host_busy, the finding names the flag and gives
    the medians, never a ratio."""
    s = summary({"backend": "xla", "median_ms": 0.3364}, {"backend": "torch_xla", "median_ms": 31.44})
    (quiet,) = findings_from(s)["sentence"]
    assert "xla is 93.46x faster than torch_xla" in quiet
    busy = findings_from(s.assign(flags=["", "high_cv,host_busy"]))
    (row,) = busy[busy["kind"] == "speed"].itertuples()
    assert row.magnitude != row.magnitude       # NaN: no ratio in the table either
    assert "(no ratio stated: torch_xla is flagged " in row.sentence and "host_busy" in row.sentence
    assert "(0.3364 vs 31.44 ms per iteration)" in row.sentence and "x faster" not in row.sentence


def test_a_pair_with_a_busy_side_has_no_ratio():
    s = summary({"backend": "inductor:max-autotune", "median_ms": 0.2},
                {"backend": "xla", "median_ms": 0.3364})
    said = findings_from(s).set_index("kind")
    assert "inductor:max-autotune is 1.68x faster than xla (beyond 3 x CV)" in said.loc["pair", "sentence"]
    row = findings_from(s.assign(flags=["", "host_busy"])).set_index("kind").loc["pair"]
    assert "xla is flagged host_busy" in row["sentence"] and "1.68x" not in row["sentence"]
    assert row["magnitude"] != row["magnitude"]       # NaN: no ratio in the table either
