"""Strict trace input (issue 20): real H100 traces cut, split and edited the ways files really
break; every case is refused in one line naming the file (and the event), or read whole."""
from __future__ import annotations

import gzip
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import FIXTURES, REPO
from harness.collect.kernel_table import kernel_table
from harness.collect.trace_io import read_bytes
from harness.errors import InputError

TRACES = FIXTURES / "traces"
EAGER = TRACES / "h100_fp8_linear_fwd_bwd_eager.trace.json.gz"          # 1.15 MB of JSON
INDUCTOR = TRACES / "h100_fp8_linear_fwd_bwd_inductor.trace.json.gz"
PERFETTO = TRACES / "h100_jax_fp8_linear_fwd_bwd.perfetto_trace.json.gz"


def refused(path: Path) -> str:
    with pytest.raises(InputError) as e:
        kernel_table(path)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


def text(trace: Path) -> bytes:
    return gzip.decompress(trace.read_bytes())


# ----------------------------------------------------------------------- cut and split files

def test_kineto_trace_cut_to_its_first_300_kb_is_refused(tmp_path):
    cut = tmp_path / "cut.trace.json"
    cut.write_bytes(text(EAGER)[:300_000])
    assert "truncated or invalid JSON" in refused(cut)


@pytest.mark.parametrize("where", [0.6, 0.8, 0.95])
def test_kineto_trace_cut_just_after_an_event_is_refused(tmp_path, where):
    """A cut that ends on an event's closing brace, inside the kernels, still reads as whole
    events to the text scanner: the file's closing structure is what says it is cut."""
    whole = text(EAGER)
    end = whole.rindex(b"\n    }\n  }", 0, int(len(whole) * where)) + len(b"\n    }\n  }")
    assert whole[:end].count(b'"cat": "kernel"') > 0
    cut = tmp_path / "cut.trace.json"
    cut.write_bytes(whole[:end])
    assert "truncated or invalid JSON" in refused(cut)


def test_valid_multi_member_gzip_is_read_whole(tmp_path):
    """`cat a.gz b.gz`, pigz and bgzip write several members; zlib alone read only the first."""
    whole = text(INDUCTOR)
    two = tmp_path / "two_members.trace.json.gz"
    two.write_bytes(gzip.compress(whole[:len(whole) // 2]) + gzip.compress(whole[len(whole) // 2:]))
    assert read_bytes(two) == whole
    pd.testing.assert_frame_equal(kernel_table(two), kernel_table(INDUCTOR), check_like=False,
                                  check_exact=True)


def test_gzip_cut_or_followed_by_garbage_is_refused(tmp_path):
    packed = INDUCTOR.read_bytes()
    cut = tmp_path / "cut.trace.json.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    assert "truncated or corrupt gzip" in refused(cut)
    garbage = tmp_path / "garbage.trace.json.gz"
    garbage.write_bytes(packed + b"not gzip")
    assert "corrupt gzip: 8 bytes of something else after gzip member 1" in refused(garbage)


# ----------------------------------------------------------------------------- durations

_KERNEL_DUR = re.compile(rb'("cat": "kernel", [^\n]*\n    "ts": [\d.]+), "dur": ([\d.]+)')


def edit_first_kernel(trace: Path, replacement: bytes, tmp_path: Path) -> Path:
    """The trace with its first kernel's `, "dur": 12.3` replaced."""
    data = text(trace)
    m = _KERNEL_DUR.search(data)
    path = tmp_path / "edited.trace.json"
    path.write_bytes(data[:m.end(1)] + replacement + data[m.end():])
    return path


@pytest.mark.parametrize("replacement,problem", [
    (b"", "has no 'dur' (or a NaN one)"),
    (b', "dur": -8.128', "has a negative 'dur' (-8.128)"),
    (b', "dur": Infinity', "has an infinite 'dur' (inf)"),   # Python's json writes this
    (b', "dur": 1e999', "has an infinite 'dur' (inf)"),
    (b', "dur": NaN', "has no 'dur' (or a NaN one)"),
])
def test_bad_durations_are_refused_naming_the_event(tmp_path, replacement, problem):
    message = refused(edit_first_kernel(INDUCTOR, replacement, tmp_path))
    assert "GPU event 'triton_red_fused_abs_max_0' at ts 4602871856022.411 " + problem in message


def test_all_nan_durations_are_one_line_without_pandas_internals(tmp_path):
    path = tmp_path / "all_nan.trace.json"
    path.write_bytes(_KERNEL_DUR.sub(rb'\1, "dur": NaN', text(INDUCTOR)))
    proc = subprocess.run([sys.executable, "-m", "harness.kernels", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (f"error: {path}: GPU event 'triton_red_fused_abs_max_0' at ts "
                           "4602871856022.411 has no 'dur' (or a NaN one) (79 more such events); "
                           "expected a finite, non-negative duration in us\n")


def test_perfetto_event_without_dur_is_refused(tmp_path):
    data = text(PERFETTO)
    edited, n = re.subn(rb'"dur": [\d.]+, (?="name": "loop_convert_fusion_1")', b"", data, count=1)
    assert n == 1
    path = tmp_path / "edited.perfetto_trace.json"
    path.write_bytes(edited)
    assert "GPU event 'loop_convert_fusion_1' at ts " in refused(path)
    assert "has no 'dur' (or a NaN one)" in refused(path)
