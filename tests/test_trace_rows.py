"""Which rows of a trace are the program (issue 28, items 2 and 3): iteration markers checked like
kernels, and a JAX trace's device kernels picked by what they are. Every bad input is a copy of
a real H100 trace (tests/fixtures/traces) edited the way the issue's cases edited it."""
from __future__ import annotations

import copy
import gzip
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, REPO, with_repo_path
from harness.collect.kernel_table import kernel_table
from harness.errors import InputError

TRACES = FIXTURES / "traces"
EAGER_FWD = TRACES / "h100_fp8_linear_fwd_eager.trace.json.gz"       # 924.1 us of kernels/iter
JAX = TRACES / "h100_jax_fp8_linear_fwd_bwd.perfetto_trace.json.gz"   # 597.8 us/iter
EAGER_FWD_US, JAX_US = 924.1, 597.8


def load(trace: Path) -> dict:
    return json.loads(gzip.decompress(trace.read_bytes()))


def save(data: dict, path: Path) -> Path:
    path.write_text(json.dumps(data))     # Python's json: NaN stays NaN, as a user's edit would
    return path


def markers(data: dict) -> list[dict]:
    return [e for e in data["traceEvents"] if e.get("cat") == "user_annotation"
            and e.get("name", "").startswith("harness_iter")]


def kernels_cli(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.kernels", str(path), "--top", "3"],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=with_repo_path(dict(os.environ)))


def refused(path: Path) -> str:
    with pytest.raises(InputError) as e:
        kernel_table(path)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    proc = kernels_cli(path)
    assert proc.returncode == 2 and proc.stdout == "" and proc.stderr == f"error: {message}\n"
    return message


def test_the_real_traces_give_the_figures_the_edits_are_checked_against():
    assert kernel_table(EAGER_FWD).attrs["kernel_us_per_iter"] == pytest.approx(EAGER_FWD_US, abs=0.05)
    assert kernel_table(JAX).attrs["kernel_us_per_iter"] == pytest.approx(JAX_US, abs=0.05)


# ------------------------------------------------------------------------- item 2: markers

def _no_dur(e):
    del e["dur"]


@pytest.mark.parametrize("edit,why", [
    (_no_dur, "has no 'dur' (or a NaN one)"),
    (lambda e: e.update(dur=-e["dur"]), "has a 'dur' of -"),
    (lambda e: e.update(dur=math.nan), "has no 'dur' (or a NaN one)"),
    (lambda e: e.update(dur=0), "has a 'dur' of 0"),
], ids=["missing", "negative", "nan", "zero"])
def test_item02_a_marker_without_a_positive_duration_is_refused(tmp_path, edit, why):
    data = load(EAGER_FWD)
    marker = markers(data)[2]
    edit(marker)
    message = refused(save(data, tmp_path / "edited.trace.json"))
    assert f"iteration marker 'harness_iter_2' at ts {marker['ts']} {why}" in message
    assert message.endswith("expected a finite start and a positive duration in us")


def test_item02_every_marker_twice_is_counted_once_and_said(tmp_path):
    data = load(EAGER_FWD)
    data["traceEvents"] += [copy.deepcopy(e) for e in markers(data)]
    path = save(data, tmp_path / "twice.trace.json")
    table = kernel_table(path)
    assert table.attrs["iters"] == 5                  # not 10: the figures are not halved
    assert table.attrs["kernel_us_per_iter"] == pytest.approx(EAGER_FWD_US, abs=0.05)
    note = "5 duplicated harness_iter marker(s) (same name, start and duration) counted once"
    assert table.attrs["notes"] == [note]
    proc = kernels_cli(path)
    assert proc.returncode == 0 and f"   note: {note}" in proc.stdout


def test_item02_a_marker_repeated_at_another_time_or_overlapping_is_refused(tmp_path):
    data = load(EAGER_FWD)
    first, second = markers(data)[:2]
    moved = dict(copy.deepcopy(first), ts=first["ts"] + 10.0)
    data["traceEvents"].append(moved)
    message = refused(save(data, tmp_path / "repeated.trace.json"))
    assert (f"iteration marker 'harness_iter_0' appears twice, at ts {first['ts']} and "
            f"{moved['ts']}; expected one marker per iteration") in message

    data = load(EAGER_FWD)
    first, second = markers(data)[:2]
    first["dur"] = second["ts"] - first["ts"] + 50.0   # runs into the next iteration
    message = refused(save(data, tmp_path / "overlap.trace.json"))
    assert "iteration markers 'harness_iter_0'" in message and "'harness_iter_1'" in message
    assert "overlap" in message


# ------------------------------------------------------------------ item 3: device rows

def _device_events(data: dict) -> list[dict]:
    return [e for e in data["traceEvents"] if e.get("pid") == 1 and e.get("ph") == "X"]


def _without_thread_names(data: dict) -> dict:
    data["traceEvents"] = [e for e in data["traceEvents"]
                           if not (e.get("ph") == "M" and e.get("name") == "thread_name")]
    return data


def _xla_ops_line(data: dict, verbatim: bool) -> dict:
    """An "XLA Ops" line (tid 15) repeating the stream's kernels: verbatim copies (CUPTI args
    and all), or as XProf derives it (the op's name and module, no activity args)."""
    for e in _device_events(data):
        line = dict(copy.deepcopy(e), tid=15)
        if not verbatim:
            line["args"] = {"hlo_op": e["args"].get("hlo_op", ""),
                            "hlo_module": e["args"].get("hlo_module", "")}
        data["traceEvents"].append(line)
    return data


def test_item03_a_derived_line_without_thread_names_is_told_apart_by_its_args(tmp_path):
    data = _without_thread_names(_xla_ops_line(load(JAX), verbatim=False))
    table = kernel_table(save(data, tmp_path / "derived.perfetto_trace.json"))
    assert table.attrs["kernel_us_per_iter"] == pytest.approx(JAX_US, abs=0.05)   # not 1195.6


def test_item03_a_line_named_xla_ops_is_left_out(tmp_path):
    data = _xla_ops_line(load(JAX), verbatim=True)
    data["traceEvents"].append({"ph": "M", "pid": 1, "tid": 15, "name": "thread_name",
                                "args": {"name": "XLA Ops"}})
    table = kernel_table(save(data, tmp_path / "named.perfetto_trace.json"))
    assert table.attrs["kernel_us_per_iter"] == pytest.approx(JAX_US, abs=0.05)


def test_item03_two_lines_of_the_same_kernels_without_names_are_refused(tmp_path):
    data = _without_thread_names(_xla_ops_line(load(JAX), verbatim=True))
    message = refused(save(data, tmp_path / "ambiguous.perfetto_trace.json"))
    assert ("thread 14 of pid 1 (no thread_name) and thread 15 of pid 1 (no thread_name) repeat "
            "125 kernels (same name, start and duration)") in message


def test_item03_unrecognisable_device_threads_are_refused(tmp_path):
    data = _without_thread_names(_xla_ops_line(load(JAX), verbatim=False))
    for e in _device_events(data):
        e["args"] = {"hlo_module": e["args"].get("hlo_module", "")}   # no activity args left
    message = refused(save(data, tmp_path / "bare.perfetto_trace.json"))
    assert "cannot tell which of the 2 threads of the GPU process hold its kernels" in message


def test_item03_one_unnamed_device_line_is_read(tmp_path):
    data = _without_thread_names(load(JAX))
    table = kernel_table(save(data, tmp_path / "one.perfetto_trace.json"))
    assert table.attrs["kernel_us_per_iter"] == pytest.approx(JAX_US, abs=0.05)
