"""The first run as a new user sees it on a machine without a GPU (issue 28, items 15 and 16):
the run and the sweep from a fresh working directory with the default output folders, what
their console says, and the README's claims about them."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, run_harness
from harness.describe import FLAG_CODES, summary_line
from harness.report.tables import SUMMARY_LEGEND, summary_markdown
from test_report import report_cli

README = (REPO / "README.md").read_text()
TIME = r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}"


def next_dir(stdout: str, cwd: Path) -> Path:
    """The folder the run's last line tells the user to report on."""
    last = stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"next: python -m harness\.report (\S+)", last)
    assert m, last
    return cwd / m[1]


@pytest.mark.slow
def test_item15_a_cpu_fp8_run_is_flagged_emulated_shows_its_shape_and_the_next_command(tmp_path):
    proc = run_harness("workload=fp8_linear", "backend=eager", "bench=quick", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("fp8_linear["))
    assert "M=64 K=128 N=256 (bfloat16 x[64,128] @ w[256,128]^T)" in line
    assert "no GPU time (CPU run)" in line and "emulated" in line.split("!! ")[1].split(",")
    run_dir = next_dir(proc.stdout, tmp_path)
    assert re.fullmatch(rf"results/runs/{TIME}_fp8_linear_eager", run_dir.relative_to(tmp_path).as_posix())
    record = json.loads((run_dir / "record.json").read_text())
    (flag,) = [f for f in record["flags"] if f["code"] == "emulated"]
    assert flag["detail"].startswith("fp8 _scaled_mm is emulated on the CPU")
    assert "workload.recipe=bf16" in flag["detail"] and "emulated" in FLAG_CODES
    assert record["shape"].startswith("M=64 K=128 N=256")
    # the next command works, and the report carries the flag wherever the median is
    report = report_cli(run_dir.relative_to(tmp_path), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "emulated 1" in report.stdout
    summary = pd.read_csv(run_dir / "summary.csv")
    assert summary.loc[0, "flags"].split(",")[0] == "emulated"
    md = (run_dir / "report.md").read_text()
    assert "`emulated` fp8 _scaled_mm is emulated on the CPU" in md.split("### Flags")[1]
    compare = report_cli("compare", run_dir, run_dir)
    row = next(l for l in compare.stdout.splitlines() if l.startswith("| fp8_linear |"))
    assert re.search(r"\| emulated[\w,]* / emulated[\w,]* \|", row), row


def test_item15_a_bf16_cpu_run_is_not_flagged(tmp_path):
    """The flag says what the device did, not what the workload is called."""
    from conftest import build_workload
    assert build_workload("fp8_linear", recipe="bf16").emulated == ""
    assert build_workload("fp8_linear").emulated.startswith("fp8 _scaled_mm is emulated on the CPU")


@pytest.mark.slow
def test_item16_sweep_folders_are_named_as_the_readme_says(tmp_path):
    assert "`results/sweeps/<time>/<workload>_<backend>_<hash>/`" in README
    assert "<n>_<workload>_<backend>" not in README
    proc = run_harness("-m", "workload=faulty", "workload.size=32,48", "backend=eager",
                       "bench=quick", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sweep = next_dir(proc.stdout, tmp_path)           # said once, after the last job
    assert proc.stdout.count("next: python -m harness.report") == 1
    assert re.fullmatch(rf"results/sweeps/{TIME}", sweep.relative_to(tmp_path).as_posix())
    runs = sorted(p.parent.name for p in sweep.glob("*/record.json"))
    assert len(runs) == 2 and all(re.fullmatch(r"faulty_eager_[0-9a-f]{8}", r) for r in runs), runs
    # the README's single-run folder, too
    assert "`results/runs/<time>_<workload>_<backend>/record.json`" in README

    # item 16: the report's legend explains the columns its table has, and only those
    report = report_cli(sweep)
    assert report.returncode == 0, report.stderr
    md = (sweep / "report.md").read_text()
    table, legend = _summary_table_and_legend(md)
    explained = [c for c in SUMMARY_LEGEND if f"{c}: " in legend]
    assert explained and set(explained) <= set(table)
    assert [c for c in SUMMARY_LEGEND if c in table] == explained
    assert "GPU ms" not in table and "GPU ms" not in legend        # a CPU sweep has no GPU time


def _summary_table_and_legend(md: str) -> tuple[list[str], str]:
    section = md.split("## Summary\n", 1)[1]
    lines = section.strip().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    legend = next(l for l in lines if not l.startswith("|") and l.strip())
    return header, legend


def test_item16_the_legend_follows_the_columns_of_a_gpu_table():
    """On the H100 reference the GPU columns are there, and so are their explanations."""
    from harness.report.load import load
    s = load([REPO / "results" / "reference" / "h100"])
    table, legend = _summary_table_and_legend("## Summary\n" + summary_markdown(s.summary))
    for column in ("wall ms", "GPU ms", "host gap ms", "idle %"):
        assert column in table and f"{column}: {SUMMARY_LEGEND[column]}" in legend
    explained = [c for c in SUMMARY_LEGEND if f"{c}: " in legend]
    assert set(explained) <= set(table)


def test_item16_the_readme_claims_three_figures_only_where_there_are_three():
    assert "about ten minutes" not in README
    assert "On a GPU every console line, summary row and\nreport says all three" in README
    cpu = {"workload": "faulty", "backend": "eager", "status": "ok", "params": {},
           "timing": {"median_ms": 1.5, "cv": 0.01}, "environment": {"device": "cpu"}}
    assert "wall 1.5 ms" in summary_line(cpu) and "no GPU time (CPU run)" in summary_line(cpu)
