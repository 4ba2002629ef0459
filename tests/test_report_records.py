"""The report on real schema-1 records (results/reference/h100) and on schema-2 records made
from them: strict inputs, flags in every table a reader sees, the three times of a run with
their spread, the headline and control pairs, CUDA-graph evidence, categories by source op."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness.report import generate
from harness.report.load import load
from schema2 import DECODE, FP8_FWD, REFERENCE, copy_reference, reference, schema2, write_run
from conftest import report_cli

# one worker builds the module's reports (each worker would build its own)
pytestmark = pytest.mark.xdist_group("report_records")

RECOMPILE_TEXT = "recompiled during timing (2 graph(s)): the timing mixes compile and run"


def recompiled_and_noisy(sweep: Path) -> Path:
    """fp8 fwd on eager, inductor (recompiled twice during timing: 88.8 ms samples among
    0.19 ms ones, CV 185%, as a run seen on the H200) and xla, schema 1."""
    copy_reference(sweep, FP8_FWD["eager"], FP8_FWD["xla"])
    r = reference(FP8_FWD["inductor"])
    r["compile"]["recompiles_during_timing"] = 2
    r["flags"] = [RECOMPILE_TEXT]
    r["timing"].update(cv=1.85, samples_ms=[0.19] * 9 + [88.8])
    write_run(sweep, FP8_FWD["inductor"], r, tables_from=FP8_FWD["inductor"])
    return sweep


@pytest.fixture(scope="module")
def flagged_report(tmp_path_factory) -> Path:
    sweep = recompiled_and_noisy(tmp_path_factory.mktemp("flagged") / "sweep")
    proc = report_cli(sweep)
    assert proc.returncode == 0, proc.stderr
    assert "!! 1 run(s) flagged (recompiled 1, high_cv 1): see Flags in report.md" in proc.stdout
    return sweep


# ----------------------------------------------------------------------- strict inputs

@pytest.mark.parametrize("version", [3, 0, "2", None])
def test_a_record_of_an_unknown_schema_version_is_refused_naming_the_file(tmp_path, version):
    sweep = copy_reference(tmp_path / "sweep", FP8_FWD["eager"])
    path = sweep / FP8_FWD["eager"] / "record.json"
    r = json.loads(path.read_text())
    r["schema_version"] = version
    path.write_text(json.dumps(r))
    proc = report_cli(sweep)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {path}: unknown schema_version {version!r} (this harness reads 1 and 2)"]


def test_a_median_that_is_not_a_number_is_refused_naming_the_file(tmp_path):
    sweep = copy_reference(tmp_path / "sweep", FP8_FWD["eager"])
    path = sweep / FP8_FWD["eager"] / "record.json"
    r = json.loads(path.read_text())
    r["timing"]["median_ms"] = "fast"
    path.write_text(json.dumps(r))
    why = "unusable record, timing.median_ms is 'fast', expected a number"
    for command in ([], ["explain"]):
        proc = report_cli(*command, sweep)
        assert proc.returncode == 2, command
        assert proc.stderr.strip().splitlines() == [f"error: {path}: {why}"]
    # the gate lists it as unusable and is incomplete (issue 28)
    proc = report_cli("compare", sweep, sweep)
    assert proc.returncode == 3 and f"- `NEW {path}`: {why}" in proc.stdout


def test_schema2_typed_artifacts_find_the_tables(tmp_path):
    sweep = tmp_path / "sweep"
    r = schema2(reference(FP8_FWD["inductor"]))
    assert {"kind": "kernel_table", "path": "kernels.parquet", "format": ""} in r["artifacts"]
    write_run(sweep, "run", r, tables_from=FP8_FWD["inductor"])
    s = load([sweep])
    assert len(s.kernels) == 8 and not s.missing["kernels"]
    assert s.summary.loc[0, "schema_version"] == 2


# ------------------------------------------------------------------- flags (issue 20)

def test_recompiled_run_is_flagged_in_summary_csv_report_md_and_compile_csv(flagged_report):
    s = pd.read_csv(flagged_report / "summary.csv").set_index("backend")
    assert s.loc["inductor", "flags"] == "recompiled,high_cv"
    assert s["flags"].isna().sum() == 2                     # eager and xla: none
    md = (flagged_report / "report.md").read_text()
    row = next(line for line in md.splitlines()
               if line.startswith("| fp8_linear | fwd,tensorwise,seed | inductor |"))
    assert "| **recompiled,high_cv** |" in row
    flags_section = md.split("### Flags")[1].split("## ")[0]
    assert f"`recompiled` {RECOMPILE_TEXT}" in flags_section
    c = pd.read_csv(flagged_report / "compile.csv").set_index("backend")
    assert c.loc["inductor", "recompiles_during_timing"] == 2
    assert c.loc["inductor", "flags"] == "recompiled,high_cv"
    f = pd.read_csv(flagged_report / "flags.csv")
    assert list(f["code"]) == ["recompiled", "high_cv"]


def test_cv_of_185_percent_is_flagged_in_the_report(flagged_report):
    f = pd.read_csv(flagged_report / "flags.csv").set_index("code")
    assert f.loc["high_cv", "detail"] == ("within-process CV 185% (samples 0.19-88.8 ms, "
                                          "median 0.1877 ms)")
    md = (flagged_report / "report.md").read_text()
    assert "`high_cv` within-process CV 185%" in md


def test_explain_names_the_recompiled_the_noisy_and_the_host_bound_run(tmp_path):
    sweep = recompiled_and_noisy(tmp_path / "sweep")
    copy_reference(sweep, DECODE["inductor"])                # idle 50% of the decode step
    proc = report_cli("explain", sweep)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    fp8 = lines[lines.index("== fp8_linear") + 1:]
    assert fp8[0].endswith(f"inductor on fp8_linear [fwd,tensorwise,seed] is flagged recompiled: "
                           f"{RECOMPILE_TEXT}. Meaning: the compiler compiled again during "
                           "timing: the timing mixes compile and run.")
    assert "[flag, score 1.00] inductor on fp8_linear [fwd,tensorwise,seed] is flagged high_cv: " \
           "within-process CV 185%" in fp8[1]
    share = reference(DECODE["inductor"])["kernels"]["gap_share"]
    assert (f"[flag, score {share:.2f}] inductor on qwen_decoder [fwd,decode,static,qwen3_0_6b] "
            f"is flagged host_bound: GPU idle {100 * share:.0f}%") in proc.stdout


# ------------------------------------------------------ the three times (issue 18)

@pytest.fixture(scope="module")
def schema2_sweep(tmp_path_factory) -> Path:
    """Inductor fp8 fwd in five fresh processes (medians as measured on the H200) and XLA in
    three; the qwen decode pair as the headline (max-autotune vs xla) and the control pair
    (default vs no-cmdbuf); graph evidence on the graph modes."""
    sweep = tmp_path_factory.mktemp("schema2") / "sweep"
    write_run(sweep, "fp8_inductor", schema2(reference(FP8_FWD["inductor"]),
                                             process_medians_ms=[0.302, 0.238, 0.190, 0.180, 0.177]),
              tables_from=FP8_FWD["inductor"])
    write_run(sweep, "fp8_xla", schema2(reference(FP8_FWD["xla"]),
                                        process_medians_ms=[0.2086, 0.2080, 0.2094]),
              tables_from=FP8_FWD["xla"])
    ind, xla = reference(DECODE["inductor"]), reference(DECODE["xla"])
    graphs = {"graphs_recorded": 1, "graph_replays": 0, "partitions": 1,
              "cudagraphable_partitions": 1,
              "skips": ["skipping cudagraphs due to mutated inputs (2 instances)"]}
    buffers = {"enabled": True, "types": ["FUSION", "CUBLAS", "CUBLASLT"], "during_profiling": True}
    runs = {"decode_max_autotune": schema2(ind, label="inductor:max-autotune", run_id="d1",
                                           cudagraphs=graphs),
            "decode_default": schema2(ind, run_id="d2"),
            "decode_xla": schema2(xla, run_id="d3", command_buffers=buffers),
            "decode_xla_no_cmdbuf": schema2(xla, label="xla:no-cmdbuf", run_id="d4",
                                            command_buffers={"enabled": False})}
    for name, r in runs.items():
        write_run(sweep, name, r, tables_from=DECODE[r["backend"]])
    report = generate([sweep])
    assert report.markdown.is_file()
    return sweep


def test_schema2_summary_has_process_spread_gpu_time_and_host_gap(schema2_sweep):
    s = pd.read_parquet(schema2_sweep / "summary.parquet")
    ind = s[(s["workload"] == "fp8_linear") & (s["backend"] == "inductor")].iloc[0]
    assert ind["processes"] == 5 and ind["median_ms"] == pytest.approx(0.190)
    assert (ind["between_min_ms"], ind["between_max_ms"]) == pytest.approx((0.177, 0.302))
    r = json.loads((schema2_sweep / "fp8_inductor" / "record.json").read_text())
    assert ind["between_cv"] == pytest.approx(r["timing"]["between"]["cv"])
    assert ind["gpu_busy_ms_per_iter"] == pytest.approx(r["gpu"]["busy_ms_per_iter"])
    assert ind["host_gap_ms"] == pytest.approx(0.190 - r["gpu"]["busy_ms_per_iter"])
    assert ind["idle_share"] == pytest.approx(r["gpu"]["idle_share"])
    assert not ind["host_bound"] and ind["flags"] == "process_spread"
    dec = s[(s["workload"] == "qwen_decoder") & (s["backend"] == "inductor")].iloc[0]
    assert dec["host_bound"] and dec["processes"] == 1 and pd.isna(dec["between_cv"])


def test_report_md_shows_wall_with_both_spreads_gpu_time_and_host_gap(schema2_sweep):
    md = (schema2_sweep / "report.md").read_text()
    summary = md.split("## Summary")[1].split("### Flags")[0]
    header = next(line for line in summary.splitlines() if line.startswith("| workload"))
    for column in ("wall ms", "CV %", "procs", "between procs ms (CV)", "GPU ms", "host gap ms",
                   "idle %", "flags"):
        assert f"| {column} |" in header
    assert "GPU ms: GPU busy time per iteration in the profiling pass" in summary
    r = json.loads((schema2_sweep / "fp8_inductor" / "record.json").read_text())
    row = next(line for line in summary.splitlines() if "| fp8_linear |" in line
               and "| inductor |" in line)
    assert f"| 0.177–0.302 ({100 * r['timing']['between']['cv']:.2g}%) |" in row
    assert "| 5 |" in row and "**process_spread**" in row


# -------------------------------------------------------------- pairs (issue 19)

def test_headline_and_control_pairs_are_shown_and_named(schema2_sweep):
    p = pd.read_csv(schema2_sweep / "pairs.csv").set_index("pair")
    assert list(p.index) == ["headline", "control"]
    assert (p.loc["headline", "inductor"], p.loc["headline", "xla"]) == ("inductor:max-autotune", "xla")
    assert (p.loc["control", "inductor"], p.loc["control", "xla"]) == ("inductor", "xla:no-cmdbuf")
    ind, xla = reference(DECODE["inductor"]), reference(DECODE["xla"])
    for pair in ("headline", "control"):
        assert p.loc[pair, "inductor_over_xla"] == pytest.approx(
            ind["timing"]["median_ms"] / xla["timing"]["median_ms"])
        assert p.loc[pair, "inductor_gpu_ms"] == pytest.approx(ind["kernels"]["gpu_busy_us_per_iter"] / 1e3)
        assert p.loc[pair, "xla_host_gap_ms"] == pytest.approx(
            xla["timing"]["median_ms"] - xla["kernels"]["gpu_busy_us_per_iter"] / 1e3)
    md = (schema2_sweep / "report.md").read_text()
    section = md.split("## Inductor vs XLA: the headline and control pairs")[1].split("\n## ")[0]
    assert "- **headline**: inductor:max-autotune vs xla, each compiler at its best" in section
    assert "- **control**: inductor vs xla:no-cmdbuf, each compiler without CUDA graphs" in section
    assert "| headline | qwen_decoder |" in section and "| control | qwen_decoder |" in section
    # fp8 ran only inductor (default) and xla (default): neither pair is complete
    assert "no ok xla:no-cmdbuf run beside inductor on 1 variant(s): fp8_linear" in section


def test_explain_says_which_pair_is_which(schema2_sweep):
    proc = report_cli("explain", schema2_sweep)
    assert proc.returncode == 0, proc.stderr
    head = [l for l in proc.stdout.splitlines() if "] Headline pair on qwen_decoder" in l]
    ctrl = [l for l in proc.stdout.splitlines() if "] Control pair on qwen_decoder" in l]
    assert len(head) == len(ctrl) == 1
    assert "(inductor:max-autotune vs xla: each compiler at its best" in head[0]
    assert "(inductor vs xla:no-cmdbuf: each compiler without CUDA graphs" in ctrl[0]
    assert "wall 5.614 vs 5.729 ms; GPU 2.83 ms vs 5.38 ms" in head[0]


def test_graph_evidence_for_every_inductor_graph_mode_run_and_xla_settings(schema2_sweep):
    g = pd.read_csv(schema2_sweep / "graphs.csv").set_index("run_id")
    assert set(g.index) == {"d1", "d3", "d4", reference(FP8_FWD["xla"])["run_id"]}
    assert g.loc["d1", "mechanism"] == "cudagraphs" and g.loc["d1", "graph_replays"] == 0
    assert g.loc["d1", "skips"] == "skipping cudagraphs due to mutated inputs (2 instances)"
    assert g.loc["d3", "command_buffer_types"] == "FUSION,CUBLAS,CUBLASLT"
    assert not g.loc["d4", "graph_mode"] and not g.loc["d4", "command_buffers_enabled"]
    md = (schema2_sweep / "report.md").read_text()
    section = md.split("## CUDA graphs and command buffers")[1].split("\n## ")[0]
    assert ("| inductor:max-autotune | ok | 1 recorded, 0 replayed; 1 of 1 partitions "
            "cudagraphable; skipped: skipping cudagraphs due to mutated inputs (2 instances) |"
            ) in section
    assert "| xla | ok | on (FUSION,CUBLAS,CUBLASLT); kept while profiling |" in section
    assert "| xla:no-cmdbuf | ok | off |" in section


def test_graph_mode_idle_cause_in_explain(schema2_sweep):
    proc = report_cli("explain", schema2_sweep)
    line = next(l for l in proc.stdout.splitlines() if "[graphs," in l and "inductor:max-autotune" in l)
    assert "runs in a graph mode (CUDA graphs) yet the GPU idles" in line
    assert "no CUDA graph replayed (skipped: skipping cudagraphs due to mutated inputs" in line
    assert "[flag" in proc.stdout and "is flagged no_graph_replay: 1 graph(s) recorded, none " \
                                       "replayed" in proc.stdout


# ------------------------------------------------------------ categories by source op

def with_ops(run: Path, ops: dict[str, tuple[str, str]]) -> None:
    """Give a run's kernel table the collector's `op` and `op_category` columns."""
    k = pd.read_parquet(run / "kernels.parquet")
    k["op"] = [ops.get(name, (None, None))[0] for name in k["kernel"]]
    k["op_category"] = [ops.get(name, (None, None))[1] for name in k["kernel"]]
    (run / "kernels.parquet").unlink()
    k.to_parquet(run / "kernels.parquet")


SDPA = "aten::_scaled_dot_product_cudnn_attention"
XLA_ATTENTION = {"gemm_fusion_dot_general_170": ("scaled_dot_product_attention/aten::bmm", "attention"),
                 "gemm_fusion_dot_general_171": ("scaled_dot_product_attention/aten::bmm", "attention"),
                 "wrapped_transpose": ("scaled_dot_product_attention/aten::transpose", "attention"),
                 "wrapped_transpose_1": ("scaled_dot_product_attention/aten::transpose", "attention")}


def test_categories_compare_by_source_op_with_the_kernel_category_beside_it(tmp_path):
    sweep = copy_reference(tmp_path / "sweep", DECODE["inductor"], DECODE["xla"])
    xla_k = pd.read_parquet(sweep / DECODE["xla"] / "kernels.parquet")
    ind_k = pd.read_parquet(sweep / DECODE["inductor"] / "kernels.parquet")
    with_ops(sweep / DECODE["xla"], XLA_ATTENTION)
    sdpa = ind_k.loc[ind_k["category"] == "attention", "kernel"]
    with_ops(sweep / DECODE["inductor"], {k: (SDPA, "attention") for k in sdpa})
    from harness.report import build_tables
    from harness.report.tables import category_split, category_wide
    long = build_tables(load([sweep]))["kernels_by_category"]
    variant = "fwd,decode,static,qwen3_0_6b"
    wide = category_wide(long, "qwen_decoder", variant)
    xla_attention = xla_k[xla_k["kernel"].isin(XLA_ATTENTION)]["time_us_per_iter"].sum() / 1e3
    assert wide.loc["attention", "xla"] == pytest.approx(xla_attention)
    assert wide.loc["attention", "inductor"] == pytest.approx(
        ind_k.loc[ind_k["category"] == "attention", "time_us_per_iter"].sum() / 1e3)
    # the rest falls back to the kernel's own category, per kernel
    rest = xla_k[~xla_k["kernel"].isin(XLA_ATTENTION)]
    assert wide.loc["copy", "xla"] == pytest.approx(
        rest.loc[rest["category"] == "copy", "time_us_per_iter"].sum() / 1e3)
    split = category_split(long, "qwen_decoder", variant).set_index(["op category", "kernel category"])
    assert split.loc[("attention", "copy"), "xla"] == pytest.approx(
        xla_k[xla_k["kernel"].str.startswith("wrapped_transpose")]["time_us_per_iter"].sum() / 1e3)
    assert split.loc[("attention", "gemm"), "inductor"] == 0.0
    assert set(long.loc[long["category"].notna(), "basis"]) == {"op"}


def test_old_kernel_tables_fall_back_to_the_kernel_category():
    from harness.report import build_tables
    from harness.report.tables import category_split, category_wide
    sweep = load([REFERENCE / DECODE["inductor"], REFERENCE / DECODE["xla"]])
    long = build_tables(sweep)["kernels_by_category"]
    rows = long[long["category"].notna()]
    assert (rows["op_category"] == rows["category"]).all() and set(rows["basis"]) == {"kernel"}
    variant = "fwd,decode,static,qwen3_0_6b"
    assert category_wide(long, "qwen_decoder", variant).loc["attention", "xla"] == 0.0
    assert category_split(long, "qwen_decoder", variant).empty


# ----------------------------------------------------------------- the whole reference

def test_the_h100_reference_reports_with_its_flags(tmp_path):
    proc = report_cli(REFERENCE, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    s = pd.read_csv(tmp_path / "out" / "summary.csv")
    paged = s[(s["variant"] == "fwd,decode,paged,qwen3_0_6b") & (s["backend"] == "inductor")]
    assert paged["flags"].item() == "collector,host_bound,high_cv"
    flags = pd.read_csv(tmp_path / "out" / "flags.csv")
    assert set(flags["code"]) == {"collector", "host_bound", "high_cv"}
    md = (tmp_path / "out" / "report.md").read_text()
    assert "### Flags" in md and "## Inductor vs XLA: the headline and control pairs" in md
    assert "settings not recorded (schema 1; XLA's default has command buffers on)" in md


def test_compile_table_reads_the_priming_run_of_either_schema(tmp_path):
    from harness.report.tables import compile_table
    one = reference(FP8_FWD["inductor"])
    one["compile"].update(cache="warm", priming_run={"ok": True, "compile_s": 7.5})
    two = schema2(reference(FP8_FWD["xla"]))
    two["compile"].update(cache="warm", priming_run={"ok": True, "first_call_s": 12.5})
    write_run(tmp_path / "sweep", "one", one)
    write_run(tmp_path / "sweep", "two", two)
    c = compile_table(load([tmp_path / "sweep"])).set_index("backend")
    assert c.loc["inductor", "priming_first_call_s"] == 7.5
    assert c.loc["xla", "priming_first_call_s"] == 12.5


def test_a_parameter_older_records_lack_does_not_split_the_h200_decode_runs():
    """The H200 snapshot's decode runs come from two sessions: the later records carry the
    generation keys (new_tokens, check_tokens) the earlier ones predate. They are one variant,
    so each pair of the fair comparison finds both sides."""
    h200 = Path(__file__).resolve().parents[1] / "results" / "reference" / "h200" / "fair"
    s = load([h200]).summary
    decode = s[(s["workload"] == "qwen_decoder") & s["variant"].str.contains("decode")]
    assert set(decode["variant"]) == {"fwd,decode,static,qwen3_0_6b", "fwd,decode,paged,qwen3_0_6b"}
    assert len(decode) == 10


def test_a_parameter_that_differs_still_splits_variants(tmp_path):
    for name, m in (("a", 1024), ("b", 2048)):
        r = schema2(reference(FP8_FWD["inductor"]))
        r["params"]["M"] = m
        write_run(tmp_path / "sweep", name, r)
    variants = set(load([tmp_path / "sweep"]).summary["variant"])
    assert len(variants) == 2 and all("M=" in v for v in variants), variants


def test_the_h200_generations_give_ttft_tpot_and_a_latency_per_position():
    """Real records: Qwen3-0.6B shapes, prompt 512, 256 new tokens, on the H200."""
    from harness.report.generation import generation_table, positions_long
    sweep = load([Path(__file__).resolve().parents[1] / "results" / "reference" / "h200" / "generate"])
    table = generation_table(sweep)
    assert len(table) == 8 and set(table["new_tokens"]) == {256} and set(table["prompt_len"]) == {512}
    assert set(table["compiles"]) == {2} and set(table["recompiles"]) == {0}
    # the record's timing holds one TPOT per generation: the summary's median is the median TPOT
    merged = table.merge(sweep.summary[["run_id", "median_ms"]], on="run_id")
    assert (merged["tpot_p50_ms"] - merged["median_ms"]).abs().max() < 1e-9
    assert (table["ttft_p50_ms"] > 0).all() and (table["tpot_p99_ms"] >= table["tpot_p50_ms"]).all()
    positions = positions_long(sweep)
    per_run = positions[positions["token"] > 0].groupby("run_id")["position"].agg(["count", "min", "max"])
    assert set(per_run["count"]) == {255} and set(per_run["min"]) == {512} and set(per_run["max"]) == {766}
