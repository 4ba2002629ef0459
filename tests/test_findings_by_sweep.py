"""Runs are compared within their sweep (issue 31 item 3), and a finding between two runs, either
flagged noisy, states no ratio (issues 29 and 32): on the committed H200 tree, which holds the
fair, first, node/* and generate sweeps side by side, and on tables built to show it."""
from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from conftest import REPO
from harness.describe import NOISE_FLAGS, flagged_text
from harness.report.findings import findings, findings_from
from harness.report.load import by_sweep, load
from harness.report.verdict import FASTER, LEVEL, decide
from test_findings import kernels, summary
from test_report import report_cli

H200 = REPO / "results" / "reference" / "h200"


@pytest.fixture(scope="module")
def h200():
    return load([H200])


def test_the_h200_tree_is_its_sweeps_with_unique_run_ids(h200):
    s = h200.summary
    assert set(s["sweep"]) == {"fair", "first", "generate", "generate_smoke", "node/pinned",
                               "node/pool1", "node/pool2", "node/unpinned", "fair_fp8",
                               "fair_fp8_sequential", "isolation/forkserver", "isolation/spawn",
                               "torchao"}
    assert s["run_id"].is_unique
    # the same config in pool1 and pool2 has one record run_id: each is qualified by its sweep
    conv = s[(s["workload"] == "conv") & s["sweep"].str.startswith("node/pool")
             & (s["variant"] == "fwd,resnet50_stage3")]
    assert sorted(conv["run_id"]) == ["b2c35f03cbb3@node/pool1", "b2c35f03cbb3@node/pool2"]
    # two runs of one label in one sweep (seeds 0 and 1) are two variants, not two backends
    unpinned = s[s["sweep"] == "node/unpinned"]
    assert sorted(unpinned["variant"]) == ["fwd,tensorwise,seed,seed=0", "fwd,tensorwise,seed,seed=1"]
    # a sweep's variants are named within it: the smoke generations do not lengthen these
    assert "fwd,generate,static,qwen3_0_6b,batch=16" in set(s.loc[s["sweep"] == "generate", "variant"])
    sweeps = dict(by_sweep(h200))
    assert len(sweeps["fair"].summary) == 26 and len(sweeps["fair"].records) == 26
    assert set(sweeps["node/pool1"].kernels["run_id"]) <= set(sweeps["node/pool1"].summary["run_id"])


def test_explain_on_the_h200_tree_compares_runs_within_their_sweep_only(h200):
    found = findings(h200)
    rows = found.to_dict("records")
    assert set(found["sweep"]) >= {"fair", "node/pool1", "node/pool2", "generate"}
    s = h200.summary
    for r in rows:
        labels = r["backends"].split(",")
        assert r["sentence"].startswith(f"[{r['sweep']}] ")           # several sweeps: named
        if len(labels) == 2:
            assert labels[0] != labels[1], r["sentence"]                # never "inductor vs inductor"
        mine = s[(s["sweep"] == r["sweep"]) & (s["workload"] == r["workload"])
                 & (s["variant"] == r["variant"])]
        for label in labels:                                            # each run is of its sweep
            assert (mine["backend"] == label).sum() == 1, (r["sweep"], r["variant"], label)
    # pairs only where a sweep holds both sides (node/pool1 has no XLA run, torchao none): the
    # conv pair is fair's alone, and its GEMM/conv time is one run's
    pairs = found[found["kind"] == "pair"]
    assert set(pairs["sweep"]) == {"fair", "fair_fp8", "fair_fp8_sequential", "isolation/forkserver",
                                   "isolation/spawn"}
    assert set(pairs.loc[pairs["workload"] == "conv", "sweep"]) == {"fair"}
    conv_cat = found[(found["kind"] == "category") & (found["workload"] == "conv")]
    assert not conv_cat["sentence"].str.contains(r"0\.125 ms, 100%").any()   # pool1 + pool2 summed


def test_the_explain_cli_on_the_h200_tree_names_each_sweep():
    proc = report_cli("explain", H200)
    assert proc.returncode == 0, proc.stderr
    heads = [line for line in proc.stdout.splitlines() if line.startswith("== ")]
    assert "== fair: conv" in heads and "== node/pool1: conv" in heads
    said = re.findall(r"(\S+) is (?:[\d.]+x )?faster than (\S+?)[:,. ]", proc.stdout)
    assert said and all(a != b for a, b in said), [x for x in said if x[0] == x[1]]


# ------------------------------------------------------------------ noise flags (29, 32)

def noisy_pair(fast_flags: str, fast: dict, slow: dict) -> pd.DataFrame:
    return summary({"backend": "inductor", "flags": fast_flags, **fast},
                   {"backend": "eager", "flags": "", **slow})


@pytest.mark.parametrize("code", NOISE_FLAGS)
def test_a_noisy_run_gets_no_ratio_and_no_beyond_noise(code):
    """Issue 29's loaded machine: inductor 0.1647 ms at CV 193%, eager 47.94 ms with samples as low
    as 0.3157 ms: the ranges overlap, so no speed finding, and no `beyond ... CV`."""
    s = noisy_pair(code, {"median_ms": 0.1647, "cv": 1.93, "p10_ms": 0.1, "p90_ms": 3.2},
                   {"median_ms": 47.94, "cv": 0.9, "p10_ms": 0.3157, "p90_ms": 60.0})
    f = findings_from(s)
    assert "speed" not in set(f["kind"])
    assert not f["sentence"].str.contains("beyond").any()
    said = decide("inductor", s.iloc[0], "eager", s.iloc[1])
    assert said.outcome == LEVEL and math.isnan(said.ratio) and f"inductor is flagged {code}" in said.text


def test_a_noisy_run_can_still_be_faster_by_ranges_apart_but_without_a_ratio():
    s = noisy_pair("high_cv", {"median_ms": 0.2, "cv": 0.3, "p10_ms": 0.15, "p90_ms": 0.3},
                   {"median_ms": 5.0, "cv": 0.01, "p10_ms": 4.9, "p90_ms": 5.1})
    row = findings_from(s).query("kind == 'speed'").iloc[0]
    assert math.isnan(row["magnitude"]) and row["unit"] == "no ratio (a run is flagged noisy)"
    assert "inductor is faster than eager: its samples and processes reach at most 0.3 ms, below " \
           "eager's least 4.9 ms (no ratio stated: inductor is flagged high_cv)" in row["sentence"]
    assert "x faster" not in row["sentence"] and "25" not in row["sentence"]


def test_the_same_runs_unflagged_get_their_ratio():
    s = noisy_pair("", {"median_ms": 0.2, "cv": 0.01}, {"median_ms": 5.0, "cv": 0.01})
    said = decide("inductor", s.iloc[0], "eager", s.iloc[1])
    assert said.outcome == FASTER and said.ratio == pytest.approx(25.0)
    assert "inductor is 25.00x faster than eager (beyond 3 x CV)" in \
        findings_from(s).query("kind == 'speed'").iloc[0]["sentence"]


def test_a_pair_with_a_noisy_side_states_no_ratio_and_an_idle_finding_says_it_is_noisy():
    s = summary({"backend": "inductor", "median_ms": 0.9, "cv": 0.15, "p10_ms": 0.76, "p90_ms": 1.09,
                 "flags": "host_bound,high_cv", "gpu_busy_ms_per_iter": 0.06, "host_gap_ms": 0.84,
                 "idle_share": 0.93, "kernel_ms_per_iter": 0.06},
                {"backend": "xla:no-cmdbuf", "median_ms": 0.1, "cv": 0.02, "p10_ms": 0.09,
                 "p90_ms": 0.11, "flags": ""})
    f = findings_from(s, kernels("inductor", ("cudnn_conv", "conv", 60.0)))
    pair = f.query("kind == 'pair'").iloc[0]
    assert math.isnan(pair["magnitude"]) and "no ratio stated: inductor is flagged high_cv" in pair["sentence"]
    idle = f.query("kind == 'idle'").iloc[0]
    assert idle["sentence"].endswith("inductor is flagged high_cv: its wall median, and so this gap, is noisy.")


def test_a_flagged_cell_reads_the_same_everywhere():
    assert flagged_text("0.682", "host_bound,high_cv") == "0.682 !host_bound,high_cv"
    assert flagged_text("0.682", "") == "0.682" and flagged_text("", ["high_cv"]) == ""


def test_report_md_marks_the_cells_of_flagged_runs(h200):
    from harness.report import build_tables
    from harness.report.pairs import pairs_markdown
    from harness.report.tables import summary_markdown
    fair = dict(by_sweep(h200))["fair"]
    tables = build_tables(fair)
    md = pairs_markdown(tables["pairs"], fair.summary)
    conv = next(line for line in md.splitlines() if line.startswith("| headline | conv"))
    assert "| 6.533 !high_cv,process_spread | xla faster (no ratio: noisy) |" in conv
    assert "| 0.7409 (CV 19%, between procs 19%) !host_bound,high_cv,process_spread |" in conv
    assert "| 0.6822 (CV 11%" in md and "level within noise" in md
    assert "| 0.741 !host_bound,high_cv,process_spread |" in summary_markdown(fair.summary)
    gen = dict(by_sweep(h200))["generate"]
    from harness.report.generation import generation_table, render_markdown
    g = generation_table(gen)
    assert set(g["flags"]) >= {"host_bound", "host_bound,high_cv"} and set(g["processes"]) == {1.0}
    assert "| procs | flags |" in render_markdown(g, None, REPO)
