"""Compile time as phases, cold vs warm cache, and recompiles caught in the timed window."""
from __future__ import annotations

import pytest

from conftest import records, run_harness

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cold_warm(tmp_path_factory):
    root = tmp_path_factory.mktemp("compile")
    proc = run_harness("-m", "workload=faulty", "backend=inductor,xla", "bench=quick",
                       "bench.compile_cache=cold,warm", f"bench.compile_cache_dir={root / 'cache'}",
                       f"hydra.sweep.dir={root / 'sweep'}")
    assert proc.returncode == 0, proc.stderr
    recs = records(root / "sweep")
    return {(r["backend"], r["compile"]["cache"]): r for r in recs}


@pytest.mark.parametrize("backend", ["inductor", "xla"])
def test_phases_present_and_within_first_call(cold_warm, backend):
    for cache in ("cold", "warm"):
        r = cold_warm[(backend, cache)]
        assert r["status"] == "ok", r["reason"]
        phases = r["compile"]["phases"]
        measured = {k: v for k, v in phases.items() if k.endswith("_s") and v is not None}
        assert {"capture_s", "graph_codegen_s", "other_s"} <= set(measured)
        assert all(v >= 0 for v in measured.values())
        assert sum(measured.values()) <= r["compile_s"] * 1.001
        assert phases["notes"]   # what could not be separated is said, not invented


# What each cache covers: Inductor's FX-graph/AOT caches skip lowering, codegen and kernel
# compiles (the whole first call shrinks); JAX's persistent cache skips XLA's compile() but
# not torchax tracing and lower(), which dominate a tiny program.
@pytest.mark.parametrize("backend,measure", [("inductor", lambda r: r["compile_s"]),
                                             ("xla", lambda r: r["compile"]["phases"]["graph_codegen_s"])])
def test_warm_cache_compiles_faster(cold_warm, backend, measure):
    cold, warm = cold_warm[(backend, "cold")], cold_warm[(backend, "warm")]
    assert warm["compile"]["priming_run"]["status"] == "ok"
    assert measure(warm) < measure(cold)


def test_recompiling_workload_is_flagged(tmp_path):
    proc = run_harness("workload=faulty", "workload.fault=recompile", "backend=inductor", "bench=quick",
                       f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    (r,) = records(tmp_path)
    assert r["compile"]["recompiles_during_timing"] > 0
    assert any(f.startswith("recompiled during timing") for f in r["flags"])
