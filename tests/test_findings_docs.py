"""Findings docs rendered from the committed records (issue 31): the committed docs are their own
rendering, a number that drifts from its record fails the check, claims in words are required
of the data, and a template writes no number of its own."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import REPO, SEEDS
from harness.errors import InputError
from harness.report import docs
from test_report import report_cli

MANIFEST = REPO / "docs" / "findings.toml"
H200 = REPO / "results" / "reference" / "h200"


def test_the_committed_docs_are_their_rendering_from_the_records():
    """docs/findings-h200.md, docs/findings-h100.md and the README's two summaries, each rendered
    from results/reference/: a committed number that is not the records' fails here."""
    outputs = docs.render_all(MANIFEST)
    names = {name for o in outputs for name in o.docs}
    assert names == {"h200", "h100", "readme-h200", "readme-h100"}
    drifted = [o for o in outputs if o.drifted]
    assert not drifted, "\n\n".join(o.diff() for o in drifted)


def _copy_tree(dst: Path) -> Path:
    """The repo's docs, the H200 and H100 snapshots and the seed profile, laid out as in the repo."""
    shutil.copytree(REPO / "docs", dst / "docs")
    shutil.copy(REPO / "README.md", dst / "README.md")
    for name in ("h200", "h100"):
        shutil.copytree(REPO / "results" / "reference" / name, dst / "results" / "reference" / name)
    seed = dst / "tests" / "fixtures" / "seeds"
    seed.mkdir(parents=True)
    shutil.copy(SEEDS / "000_torchao_float8_profile_summary.txt", seed)
    return dst


def test_a_number_that_drifts_from_its_record_fails_the_check(tmp_path):
    """XLA's fp8 forward median in its record moves from 0.2118 to 0.3 ms: the committed H200 doc
    no longer matches, `findings-doc --check` exits 1 naming it, and the diff it prints has the
    record's new figure in the main table (in the cell of that run)."""
    tree = _copy_tree(tmp_path)
    (record,) = (tree / "results/reference/h200/fair").glob("fp8_linear_xla_ce69e798/record.json")
    r = json.loads(record.read_text())
    r["timing"]["median_ms"] = 0.3
    record.write_text(json.dumps(r))
    proc = report_cli("findings-doc", "--check", "--manifest", tree / "docs" / "findings.toml", "h200")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"{tree / 'docs' / 'findings-h200.md'}: differs from its rendering (h200)")
    row = next(line for line in proc.stdout.splitlines()
               if line.startswith("+| fp8 fwd (x 2048x4096"))
    assert "| 0.3 (0.203) [0.2113-0.2119] |" in row
    unchanged = report_cli("findings-doc", "--check", "--manifest", tree / "docs" / "findings.toml", "h100")
    assert unchanged.returncode == 0, unchanged.stdout


def _tiny(tmp_path: Path, text: str) -> Path:
    """A template over a copy of the H200 fair fp8 forward runs (four runs: fast to load)."""
    sweep = tmp_path / "fair"
    for run in (H200 / "fair").glob("fp8_linear_*"):
        if json.loads((run / "record.json").read_text())["params"]["mode"] == "fwd":
            shutil.copytree(run, sweep / run.name)
    template = tmp_path / "doc.md.j2"
    template.write_text(text)
    return template


def test_a_claim_the_records_no_longer_bear_out_fails_naming_it(tmp_path):
    template = _tiny(tmp_path, '{% set f = sweep("fair") %}\n'
                               '{% set _ = require(f.run("xla").wall < f.run("xla:no-cmdbuf").wall, '
                               '"command buffers make XLA faster") %}\n'
                               'XLA {{ f.run("xla").wall }} ms.\n')
    assert docs.render(template, [tmp_path / "fair"]).strip() == "XLA 0.2118 ms."
    (record,) = (tmp_path / "fair").glob("fp8_linear_xla_ce69e798/record.json")
    r = json.loads(record.read_text())
    r["timing"]["median_ms"] = 0.25
    record.write_text(json.dumps(r))
    with pytest.raises(InputError, match=r"doc.md.j2:2: .*no longer bear out the claim "
                                         r"'command buffers make XLA faster'"):
        docs.render(template, [tmp_path / "fair"])


@pytest.mark.parametrize("line, error", [
    ('{{ sweep("fair").run(workload="fp8_linear").wall }}',
     r"doc.md.j2:1: InputError: sweep 'fair': 4 runs match workload=fp8_linear \(expected one"),
    ('{{ sweep("fair").run("xla").col("no_such_column") }}', r"doc.md.j2:1: .*no summary column 'no_such_column'"),
    ('{{ sweep("fair").run("xla").gpu_ms }}', r"doc.md.j2:1: .*has no attribute 'gpu_ms'"),
    ('{{ sweep("fair").run("xla").category }}', r"doc.md.j2:1: .*the template prints <bound method"),
    ('{{ sweep("nope") }}', r"doc.md.j2:1: .*no sweep 'nope' under .* \(have: fair\)"),
    ("{{ x ", r"doc.md.j2:1: unexpected end of template"),
])
def test_a_template_mistake_is_one_line_naming_the_template_line(tmp_path, line, error):
    template = _tiny(tmp_path, line + "\n")
    with pytest.raises(InputError, match=error):
        docs.render(template, [tmp_path / "fair"])


def test_the_cli_says_a_template_mistake_in_one_line(tmp_path):
    template = _tiny(tmp_path, '{{ sweep("fair").run(workload="fp8_linear").wall }}\n')
    proc = report_cli("findings-doc", "--template", template, tmp_path / "fair")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "4 runs match" in proc.stderr


def test_a_flagged_runs_cell_carries_its_flags_and_only_a_faster_verdict_is_bold(tmp_path):
    template = _tiny(tmp_path, '{{ pair_table(sweep("fair"), [("fwd", dict(mode="fwd"))], '
                               '["inductor:max-autotune", "xla", "inductor", "xla:no-cmdbuf"]) }}\n')
    table = docs.render(template, [tmp_path / "fair"])
    cells = table.strip().splitlines()[-1].strip("| ").split(" | ")
    assert cells[1] == "**0.1928 (0.181) [0.1928-0.193]**"          # headline: 1.10x beyond noise
    assert cells[3] == "0.193 (0.166) [0.1794-0.3184] !host_bound,high_cv,process_spread"
    assert cells[4] == "0.215 (0.206) [0.2146-0.2152]"               # control: level within noise


def test_a_bold_cell_of_a_flagged_run_carries_its_flags(tmp_path):
    """A cell the verdict bolds (findings-h100's fwd and prefill rows) keeps its run's flags after
    the bold figure, as every cell of a flagged run does; bolded by hand, it printed none."""
    template = _tiny(tmp_path, '{{ sweep("fair").run("inductor").wall | cell(bold=true) }} | '
                               '{{ sweep("fair").run("xla").wall | cell(bold=false) }}\n')
    assert docs.render(template, [tmp_path / "fair"]).strip() == \
        "**0.193** !host_bound,high_cv,process_spread | 0.2118"


def test_templates_write_no_number_of_their_own():
    """Every number in a findings doc is `{{ ... }}` over the data: none in the templates' prose."""
    found = {p.name: docs.literal_numbers(p.read_text())
             for p in sorted((REPO / "docs" / "templates").glob("*.j2"))}
    assert found and not any(found.values()), found
    assert docs.literal_numbers("took 55 s, `gpu_pool=[0]`, {{ r.wall }} ms on an H200\n") == [(1, "55")]


def test_the_torchao_category_summary_of_the_seed():
    got = docs.torchao_categories(SEEDS / "000_torchao_float8_profile_summary.txt")
    assert {k: float(v) for k, v in got.items()} == {"0_gemm": 0.360, "1_f8_overhead": 0.463,
                                                     "2_other": 0.015, "All": 0.838}


def test_a_section_goes_between_its_markers_and_nowhere_else(tmp_path):
    doc = docs.Doc("s", tmp_path / "t.md.j2", (), tmp_path / "README.md", "findings-x")
    text = "# T\n\n<!-- findings-x -->\nold 1\n<!-- /findings-x -->\n\n## Next\n"
    placed = docs.place(doc, "new {{ }}\n", text)
    assert placed.startswith("# T\n\n<!-- findings-x -->\n<!-- Generated by")
    assert placed.endswith("\nnew {{ }}\n<!-- /findings-x -->\n\n## Next\n")
    with pytest.raises(InputError, match="no <!-- findings-x --> ... <!-- /findings-x --> markers"):
        docs.place(doc, "x", "# T\n")
