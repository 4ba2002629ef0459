"""Sizes in memory dumps (issue 28, items 4 and 9): a negative shape and an allocation beyond
int64 are refused with file:line, one line, exit 2; copies of the real fixtures, edited."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import FIXTURES, REPO, with_repo_path
from harness.collect.memory_table import memory_table_from_files

INDUCTOR = FIXTURES / "inductor" / "mlp_train.cpu.0.py"
SEED_004 = FIXTURES / "seeds" / "004_xla_gpu_buffer_assignment_qwen_decode.txt"
SPLIT = FIXTURES / "xla"
BEYOND = 2 ** 64


def memory_cli(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.memory", *map(str, paths)], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env=with_repo_path(dict(os.environ)))


def one_line_error(path: Path, line: int, *parts: str) -> None:
    proc = memory_cli(path)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {path}:{line}: ") and proc.stderr.count("\n") == 1
    for part in parts:
        assert part in proc.stderr, proc.stderr


def first_alloc_line(text: str) -> tuple[int, str]:
    for number, line in enumerate(text.split("\n"), 1):
        if re.search(r"buf\d+ = empty_strided_cpu\(\(\d+, \d+\)", line):
            return number, line
    raise AssertionError("no allocation in the fixture")


def test_item04_a_negative_shape_in_inductor_code_is_refused_at_its_line(tmp_path):
    text = INDUCTOR.read_text()
    number, line = first_alloc_line(text)
    assert "empty_strided_cpu((64, 1024), (1024, 1), torch.float32)" in line
    edited = tmp_path / "negative.py"
    edited.write_text(text.replace(line, line.replace("((64, 1024)", "((-64, 1024)"), 1))
    one_line_error(edited, number, "negative size in shape (-64, 1024): expected sizes and "
                                   "strides >= 0")
    stride = tmp_path / "negative_stride.py"
    stride.write_text(text.replace(line, line.replace("(1024, 1)", "(-1024, 1)"), 1))
    one_line_error(stride, number, "negative size in stride (-1024, 1)")
    # the unedited file: the total the edit used to shrink
    summary, _ = memory_table_from_files([INDUCTOR])
    assert summary.set_index("kind").loc["output", "bytes"] == 589828


def test_item04_a_negative_xla_size_is_refused_at_its_line(tmp_path):
    edited = tmp_path / "negative.txt"
    edited.write_text(SEED_004.read_text().replace("allocation 0: size 311164928",
                                                   "allocation 0: size -311164928", 1))
    one_line_error(edited, 2, "expected 'allocation N: size S[, attributes]:'")


def test_item09_an_inductor_allocation_beyond_int64_is_one_line(tmp_path):
    text = INDUCTOR.read_text()
    number, line = first_alloc_line(text)
    edited = tmp_path / "huge.py"
    edited.write_text(text.replace(line, line.replace("((64, 1024)", f"(({BEYOND}, 1024)"), 1))
    one_line_error(edited, number, "bytes is beyond int64 (at most 9223372036854775807)")


def test_item09_an_xla_allocation_beyond_int64_is_one_line_in_both_formats(tmp_path):
    # the older single file, with its total made to agree (otherwise the total check fires)
    text = SEED_004.read_text()
    total = int(re.search(r"Total bytes used: (\d+)", text)[1])
    single = tmp_path / "single.txt"
    single.write_text(text.replace("allocation 0: size 311164928",
                                   f"allocation 0: size {311164928 + BEYOND}", 1)
                      .replace(f"Total bytes used: {total}", f"Total bytes used: {total + BEYOND}"))
    one_line_error(single, 2, f"allocation 0 of {311164928 + BEYOND} bytes is beyond int64")

    # the newer split dump: a value's size in -buffer-assignment-values.txt's sibling
    split = tmp_path / "split"
    split.mkdir()
    for p in SPLIT.glob("jax_mlp.cpu.*"):
        shutil.copy(p, split / p.name)
    ba = split / "jax_mlp.cpu.buffer-assignment.txt"
    ba.write_text(ba.read_text().replace("allocation 0: size 8388608", f"allocation 0: size {BEYOND}", 1)
                  .replace("(size=8388608,offset=0)", f"(size={BEYOND},offset=0)", 1))
    proc = memory_cli(ba)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"error: {ba}:2: ") and "beyond int64" in proc.stderr

    values = split / "jax_mlp.cpu.buffer-assignment-values.txt"
    report = tmp_path / "report" / "jax_mlp.cpu.memory-usage-report.txt"
    report.parent.mkdir()
    text = (SPLIT / report.name).read_text()
    line = next(n for n, l in enumerate(text.split("\n"), 1) if l.startswith("Total bytes"))
    total = re.search(r"Total bytes(?: used)?: (\d+)", text)[1]
    report.write_text(text.replace(f": {total} (", f": {BEYOND} (", 1))
    one_line_error(report, line, "Total bytes of", "is beyond int64")
    assert values.exists()
