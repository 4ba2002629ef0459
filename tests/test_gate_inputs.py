"""The nightly gate and the readers never pass a number that is not a time (issue 28, items 1, 5
and 6): real H100 reference records, edited the ways records and command lines go wrong."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from harness.report.__main__ import main as report_main
from schema2 import FP8_FWD, copy_reference, reference, write_run

FP8_EAGER = FP8_FWD["eager"]


class Proc:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def report_cli(capsys):
    """`python -m harness.report ARGS` in this process (its main, exit code and output)."""
    def run(*args) -> Proc:
        capsys.readouterr()
        try:
            code = report_main([str(a) for a in args])
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr()
        return Proc(code, out.out, out.err)
    return run


def edit_record(path: Path, edit) -> None:
    r = json.loads(path.read_text())
    edit(r)
    path.write_text(json.dumps(r))       # json writes NaN as NaN, as Python's json reads it


def set_median(value):
    def edit(r):
        r["timing"]["median_ms"] = value
    return edit


def drop_timing(r):
    del r["timing"]


BAD_MEDIANS = [(set_median(math.nan), "timing.median_ms nan"),
               (set_median(-1.0), "timing.median_ms -1.0"),
               (set_median(0), "timing.median_ms 0"),
               (drop_timing, "no timing")]


@pytest.mark.parametrize("side", ["base", "new"])
@pytest.mark.parametrize("edit,got", BAD_MEDIANS, ids=["nan", "negative", "zero", "no_timing"])
def test_item01_an_ok_record_without_a_finite_positive_median_is_unusable(tmp_path, side, edit,
                                                                         got, report_cli):
    base = copy_reference(tmp_path / "base", *FP8_FWD.values())
    new = copy_reference(tmp_path / "new", *FP8_FWD.values())
    bad = (base if side == "base" else new) / FP8_EAGER / "record.json"
    edit_record(bad, edit)
    why = ("unusable record, an ok run needs a finite positive timing.median_ms (ms per "
           f"iteration), got {got}")

    proc = report_cli("compare", base, new)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "No regression." not in proc.stdout and "not ok on both sides" not in proc.stdout
    assert f"- `{side.upper()} {bad}`: {why}" in proc.stdout
    assert f"unusable record(s): {side.upper()} {bad} ({why})" in proc.stderr
    assert "Traceback" not in proc.stderr

    for command in ([], ["explain"]):          # the report and explain refuse it, naming it
        proc = report_cli(*command, bad.parent.parent)
        assert proc.returncode == 2
        assert proc.stderr.splitlines() == [f"error: {bad}: {why}"]


@pytest.mark.parametrize("argv,message", [
    (["compare", "B", "N", "--threshold", "nan"], "argument --threshold: expected a finite "
                                                  "number >= 0, got 'nan'"),
    (["compare", "B", "N", "--threshold=-0.1"], "argument --threshold: expected a finite number "
                                                ">= 0, got '-0.1'"),
    (["compare", "B", "N", "--k", "inf"], "argument --k: expected a finite number >= 0, "
                                          "got 'inf'"),
    (["compare", "B", "N", "--alpha", "inf"], "argument --alpha: expected a finite number > 0, "
                                              "got 'inf'"),
])
def test_item05_bad_numbers_on_the_report_command_line_are_one_line(tmp_path, argv, message,
                                                                    report_cli):
    proc = report_cli(*argv)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"error: python -m harness.report compare: {message} (see --help)\n"


def test_item05_threshold_nan_cannot_turn_a_5x_slowdown_into_no_regression(tmp_path, report_cli):
    base = copy_reference(tmp_path / "base", FP8_EAGER)
    new = copy_reference(tmp_path / "new", FP8_EAGER)
    edit_record(new / FP8_EAGER / "record.json",
                lambda r: r["timing"].update(median_ms=5 * r["timing"]["median_ms"],
                                             samples_ms=[5 * x for x in r["timing"]["samples_ms"]]))
    assert report_cli("compare", base, new).returncode == 1
    assert report_cli("compare", base, new, "--threshold", "nan").returncode == 2


@pytest.mark.parametrize("tool,argv,message", [
    ("kernels", ["--sm-clock-mhz=-1000"], "argument --sm-clock-mhz: expected a finite number > 0, "
                                          "got '-1000'"),
    ("kernels", ["--sm-clock-mhz=nan"], "argument --sm-clock-mhz: expected a finite number > 0, "
                                        "got 'nan'"),
    ("kernels", ["--iters", "0"], "argument --iters: expected an integer >= 1, got '0'"),
    ("kernels", ["--top", "2.5"], "argument --top: expected an integer >= 1, got '2.5'"),
    ("kernels", ["--wall-us", "-3"], "argument --wall-us: expected a finite number > 0, got '-3'"),
    ("memory", ["--top", "-1"], "argument --top: expected an integer >= 0, got '-1'"),
    ("memory", ["--top", "nan"], "argument --top: expected an integer >= 0, got 'nan'"),
])
def test_item05_bad_numbers_on_the_kernels_and_memory_command_lines_are_one_line(tool, argv,
                                                                                 message, capsys):
    import importlib
    from conftest import FIXTURES
    target = {"kernels": FIXTURES / "traces" / "h100_fp8_linear_fwd_inductor.trace.json.gz",
              "memory": FIXTURES / "seeds" / "004_xla_gpu_buffer_assignment_qwen_decode.txt"}[tool]
    with pytest.raises(SystemExit) as e:
        importlib.import_module(f"harness.{tool}").main([str(target), *argv])
    out = capsys.readouterr()
    assert e.value.code == 2 and out.out == ""
    assert out.err == f"error: python -m harness.{tool}: {message} (see --help)\n"


def test_item06_a_run_measured_twice_in_base_is_compared_once_with_its_latest_ok_record(tmp_path,
                                                                                       report_cli):
    """The same config run twice into results/runs: two run dirs with one run_id."""
    base = copy_reference(tmp_path / "base", *FP8_FWD.values())
    again = reference(FP8_EAGER)
    again.update(started_at=again["started_at"] + 3600, finished_at=again["finished_at"] + 3600)
    again["timing"]["median_ms"] *= 1.01
    write_run(base, "again_" + FP8_EAGER, again, tables_from=FP8_EAGER)
    failed = dict(reference(FP8_EAGER), status="failed", reason="worker killed by signal SIGKILL",
                  finished_at=time.time())                # the very latest, but not ok
    write_run(base, "failed_" + FP8_EAGER, failed)
    new = copy_reference(tmp_path / "new", *FP8_FWD.values())

    proc = report_cli("compare", base, new, "--out", tmp_path / "c.md")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "missing from NEW" not in proc.stdout and "No regression." in proc.stdout
    note = next(line for line in proc.stdout.splitlines() if "ran 3 times" in line)
    assert f"compared the latest ok one, `{base / ('again_' + FP8_EAGER)}`" in note
    assert f"`{base / FP8_EAGER}` (ok)" in note and f"`{base / ('failed_' + FP8_EAGER)}` (failed)" in note
    import pandas as pd
    table = pd.read_csv(tmp_path / "c.csv")
    assert len(table) == 3
    eager = table[table["backend"] == "eager"].iloc[0]
    assert eager["base_median_ms"] == pytest.approx(again["timing"]["median_ms"])
    # duplicates on the NEW side: the same
    assert report_cli("compare", new, base).returncode == 0
