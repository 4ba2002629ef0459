"""phase=generate end to end: records from the CLI (eager over two processes, XLA), and the
report's generation table, per-position plot, compile table and findings."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import records, run_harness

# one worker runs the module's sweep fixture (each worker would run its own)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("generation_report")]
TOKENS = 6
COMMON = ["workload=qwen_decoder", "workload.phase=generate", "workload.num_layers=1",
          f"workload.new_tokens={TOKENS}", "bench=quick"]


def _sweep(root: Path, *overrides: str) -> Path:
    out = run_harness("-m", *COMMON, *overrides, f"hydra.sweep.dir={root}")
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [l for l in out.stdout.splitlines() if l.startswith("qwen_decoder[")]
    assert lines and all(" ok " in l and "tok/s" in l and "TTFT" in l for l in lines), out.stdout
    return root


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """eager, static and dynamic cache, two processes each."""
    return _sweep(tmp_path_factory.mktemp("generate") / "sweep", "workload.cache=static,dynamic",
                  "backend=eager", "bench.processes=2")


@pytest.fixture(scope="module")
def xla_sweep(tmp_path_factory) -> Path:
    return _sweep(tmp_path_factory.mktemp("generate") / "xla", "workload.cache=static", "backend=xla")


def by_backend_and_cache(*roots: Path) -> dict[tuple[str, str], dict]:
    return {(r["backend"], r["params"]["cache"]): r for root in roots for r in records(root)}


def test_records_hold_the_generation_and_its_median_tpot(sweep, xla_sweep):
    runs = by_backend_and_cache(sweep, xla_sweep)
    assert set(runs) == {("eager", "static"), ("eager", "dynamic"), ("xla", "static")}
    for (backend, cache), r in runs.items():
        assert r["status"] == "ok", r["reason"]
        g = r["generation"]
        processes = 2 if backend == "eager" else 1
        assert g["generations"] == 5 * processes and len(g["processes"]) == processes   # bench=quick: 5 repeats
        assert g["new_tokens"] == TOKENS and len(g["per_token_median_ms"]) == TOKENS
        assert all(len(lat) == TOKENS for p in g["processes"] for lat in p["latency_ms"])
        assert g["first_position"] == r["params"]["prompt_len"] - 1
        # the timing's samples are the generations' TPOTs: the summary tables read them as steps
        assert r["timing"]["iters_per_sample"] == TOKENS - 1
        assert sorted(r["timing"]["samples_ms"]) == sorted(t for p in g["processes"] for t in p["tpot_ms"])
        assert r["throughput"]["tokens_per_s"] == pytest.approx(r["params"]["batch"] / r["timing"]["median_ms"] * 1e3)
        assert r["numerics"]["passed"] and r["numerics"]["matched_tokens"] == TOKENS
        assert r["params"]["max_len"] == r["params"]["prompt_len"] + TOKENS
    xla = runs[("xla", "static")]["compile"]
    assert xla["recompiles"] == 0 and [e["step"] for e in xla["generation_compiles"]] == ["prefill", "decode"]
    assert [c["step"] for c in xla["compiles"]] == ["step", "decode"] and xla["steps"]["decode"]["state_donated_and_aliased"]
    assert runs[("eager", "static")]["compile"]["recompiles"] is None       # eager compiles nothing


def test_report_has_the_generation_table_plot_and_recompiles(sweep, tmp_path):
    from harness.report import generate
    report = generate([sweep], tmp_path)
    table = report.tables["generation"]
    assert len(table) == 2
    assert (table["new_tokens"] == TOKENS).all() and (table["tpot_p50_ms"] > 0).all()
    assert (table["ttft_p50_ms"] <= table["ttft_p99_ms"]).all() and (table["matched_tokens"] == TOKENS).all()
    positions = report.tables["generation_positions"]
    assert len(positions) == 2 * TOKENS
    assert report.plots["generation"].name == "generation_latency_by_position.png"
    md = report.markdown.read_text()
    assert "## Generation: TTFT, TPOT" in md and "generation_latency_by_position.png" in md
    assert "recompiles" in report.tables["compile"].columns
    assert (tmp_path / "generation.parquet").exists() and (tmp_path / "generation_positions.csv").exists()


def _variant_of(run_dir: Path, target: Path, edit) -> None:
    """A copy of a run dir whose record `edit` changes (what a GPU run would have shown)."""
    shutil.copytree(run_dir, target)
    path = target / "record.json"
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))


def test_findings_name_recompiles_per_length_and_latency_growth(sweep, tmp_path):
    from harness.report import generate
    [static] = [p.parent for p in sweep.rglob("record.json")
                if json.loads(p.read_text())["params"]["cache"] == "static"]

    def recompiling(record):
        record["params"]["cache"] = "dynamic"
        record["generation"]["per_token_median_ms"] = [5.0] + [1.0] * (TOKENS - 1)     # flat: no growth finding
        record["compile"]["recompiles"] = TOKENS - 2
        record["compile"]["generation_compiles"] = [
            {"token": i, "step": "prefill" if i == 0 else "decode", "position": 7 + i, "graphs": 1, "step_s": 2.0}
            for i in range(TOKENS)]

    def growing(record):
        g = record["generation"]
        g["per_token_median_ms"] = [5.0] + [1.0 + 0.5 * i for i in range(TOKENS - 1)]   # 1 -> 3 ms

    root = tmp_path / "edited"
    _variant_of(static, root / "recompiling", recompiling)
    _variant_of(static, root / "growing", growing)
    report = generate([root], tmp_path / "report")
    found = report.tables["findings"]
    kinds = found.groupby("kind")["sentence"].apply(list).to_dict()
    [recompiles] = kinds["recompiles"]
    assert f"recompiled {TOKENS - 2} time(s) over a {TOKENS}-token generation" in recompiles
    assert "each new sequence length is a new program" in recompiles
    [growth] = kinds["latency_growth"]
    assert "grows 200% over 4 positions" in growth
