"""report.md, tables and plots from a sweep produced on this machine's CPU (conftest's
session-wide `cpu_sweep`: its fp8_linear runs carry the kernel tables of the committed H100
traces and small memory tables; the report must show them, and show why the other runs have
none)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import copy_sweep, report_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cpu_sweep")]


@pytest.fixture(scope="module")
def reported(cpu_sweep, tmp_path_factory) -> Path:
    sweep = copy_sweep(cpu_sweep, tmp_path_factory.mktemp("reported") / "sweep")
    proc = report_cli(sweep)
    assert proc.returncode == 0, proc.stderr
    assert "5 runs (4 ok, 1 failed)" in proc.stdout
    return sweep


def test_summary_has_every_run_with_status_and_reason(reported):
    s = pd.read_parquet(reported / "summary.parquet")
    assert len(s) == 5
    assert s.groupby("workload").size().to_dict() == {"faulty": 3, "fp8_linear": 2}
    failed = s[s["status"] == "failed"].iloc[0]
    assert failed["reason"] == "RuntimeError: faulty workload raised on request"
    ok = s[s["status"] == "ok"]
    assert (ok["p10_ms"] <= ok["median_ms"]).all() and (ok["median_ms"] <= ok["p90_ms"]).all()
    fp8 = s[s["workload"] == "fp8_linear"].set_index("backend")
    assert fp8.loc["eager", "variant"] == "fwd,tensorwise,cpu_small"
    assert fp8.loc["inductor", "memory_total_bytes"] == 13e6
    assert fp8.loc["inductor", "runtime_peak_bytes"] == 14e6
    assert fp8["numerics_passed"].all() and fp8["compile_s"].notna().all()
    # no GPU here: % of peak is unknown, not zero
    assert s["pct_peak_flops"].isna().all()
    assert pd.read_csv(reported / "summary.csv").shape[0] == 5


def test_kernel_categories_torchao_style_and_missing_runs_say_why(reported):
    cat = pd.read_parquet(reported / "kernels_by_category.parquet")
    fp8 = cat[(cat["workload"] == "fp8_linear") & cat["category"].notna()]
    wide = fp8.pivot_table(index="category", columns="backend", values="time_ms_per_iter")
    # the committed H100 fwd+bwd traces: fp8 casts are most of eager's time, Inductor fuses them
    assert wide.loc["fp8_cast", "eager"] > 3 * wide.loc["fp8_cast", "inductor"]
    assert wide.loc["All", "inductor"] == pytest.approx(
        wide.drop(index="All")["inductor"].sum())
    faulty = cat[cat["workload"] == "faulty"]
    assert faulty["category"].isna().all() and len(faulty) == 3
    assert "faulty workload raised" in " ".join(faulty["reason"])
    assert "no kernels.parquet" in " ".join(faulty["reason"])
    top = pd.read_parquet(reported / "kernels_top.parquet")
    assert top[top["backend"] == "inductor"]["rank"].max() == 10


def test_report_md_embeds_plots_that_exist(reported):
    md = (reported / "report.md").read_text()
    for section in ("## Findings", "## Summary", "## Time by kernel category",
                    "## Memory by kind", "## Roofline", "### Failed and skipped runs"):
        assert section in md
    assert "| fp8_cast |" in md and "RuntimeError: faulty workload raised on request" in md
    links = [line.split("](")[1].rstrip(")\n") for line in md.splitlines() if line.startswith("![")]
    names = {Path(link).name for link in links}
    assert {"speedup.png", "categories_fp8_linear.png", "memory_fp8_linear.png",
            "roofline.png"} <= names
    for link in links:
        png = reported / link
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    mem = pd.read_parquet(reported / "memory_by_kind.parquet")
    mem = mem[mem["workload"] == "fp8_linear"]
    assert set(mem.loc[mem["kind"].notna(), "kind"]) == {"parameter", "output", "temp", "total",
                                                         "runtime_peak"}


def test_a_dir_without_records_is_one_line_exit_2(tmp_path):
    proc = report_cli(tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {tmp_path}: no record.json found (not a sweep or run directory?)"


def test_a_corrupt_record_is_one_line_naming_it(cpu_sweep, tmp_path):
    sweep = copy_sweep(cpu_sweep, tmp_path / "sweep")
    (bad,) = sweep.glob("fp8_linear_eager_*/record.json")
    bad.write_text('{"status": "ok", "workload": ')
    proc = report_cli(sweep)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {bad}: corrupt record, not JSON (line 1: Expecting value)"]


def test_several_sweeps_make_one_report(cpu_sweep, tmp_path):
    a = copy_sweep(cpu_sweep, tmp_path / "a")
    b = copy_sweep(cpu_sweep, tmp_path / "b")
    for rec in b.rglob("record.json"):   # same runs, another night: shows as extra rows
        r = json.loads(rec.read_text())
        r["run_id"] = "b" + r["run_id"]
        rec.unlink()
        rec.write_text(json.dumps(r))
    proc = report_cli(a, b, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_parquet(tmp_path / "out" / "summary.parquet")) == 10


def test_compile_table_has_phases_per_run(reported):
    c = pd.read_parquet(reported / "compile.parquet")
    assert len(c) == 5   # every run, failed ones included
    ind = c[(c["workload"] == "fp8_linear") & (c["backend"] == "inductor")].iloc[0]
    assert ind["cache"] == "cold"
    phases = ind[["capture_s", "graph_codegen_s", "kernel_compile_wait_s", "other_s"]]
    assert phases.notna().all() and phases.sum() <= ind["first_call_s"] * 1.001
    eager = c[(c["workload"] == "fp8_linear") & (c["backend"] == "eager")].iloc[0]
    assert pd.isna(eager["capture_s"])   # nothing compiled, nothing invented
    assert (reported / "plots" / "compile_phases.png").stat().st_size > 0
    assert "## Compile time by phase" in (reported / "report.md").read_text()
