"""Each workload and backend is declared once (its package registers its schema); Hydra checks
every key against the schema of the option chosen; a new workload needs no edit elsewhere."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import REPO, composed, harness_env, records, run_harness
from harness.orchestrator import plugins
from harness.orchestrator.config import check_bench, options, register_configs

register_configs()
CPU = torch.device("cpu")


def sweep_params(experiment: str) -> dict[str, list[str]]:
    """The sweeper's parameters an experiment sets, each as its list of values."""
    params = composed(f"+experiment={experiment}", hydra=True)["hydra"]["sweeper"]["params"]
    return {k: str(v).split(",") for k, v in params.items()}


def test_options_come_from_the_packages():
    assert {"fp8_linear", "conv", "qwen_decoder", "faulty"} <= set(options("workload"))
    assert {"eager", "inductor", "inductor_cudagraphs", "inductor_max_autotune", "xla", "xla_no_cmdbuf",
            "torch_xla"} <= set(options("backend"))
    assert not list((REPO / "conf" / "workload").glob("*.yaml"))      # no second declaration
    assert not list((REPO / "conf" / "backend").glob("*.yaml"))


@pytest.mark.parametrize("option", sorted(plugins.workloads()))
def test_every_workload_builds_at_its_cpu_preset(option):
    cfg = composed(f"workload={option}", "device=cpu")
    torch.manual_seed(0)
    workload = plugins.load(plugins.workload_spec(cfg["workload"]["name"]).build)(cfg["workload"], CPU)
    assert workload.flops > 0 and workload.inputs
    assert workload.params.get("preset", "cpu") != "seed"


@pytest.mark.parametrize("option", options("backend"))
def test_every_backend_option_composes_with_its_label(option):
    cfg = composed(f"backend={option}")
    spec = plugins.backend_spec(cfg["backend"]["name"])
    assert dataclasses.is_dataclass(spec.schema)
    label = spec.label(cfg["backend"])
    expected = {"inductor": "inductor", "inductor_cudagraphs": "inductor:reduce-overhead",
                "inductor_max_autotune": "inductor:max-autotune", "xla": "xla", "xla_no_cmdbuf": "xla:no-cmdbuf"}
    assert label == expected.get(option, option)


@pytest.mark.parametrize("group", ["bench", "hydra/launcher", "experiment"])
def test_every_other_option_composes(group):
    for option in options(group):
        override = f"+experiment={option}" if group == "experiment" else f"{group}={option}"
        cfg = composed(override)
        check_bench(cfg["bench"])


def test_a_key_of_another_backend_is_rejected_by_hydra(tmp_path):
    proc = run_harness("backend=xla", "backend.mode=max-autotune", f"hydra.run.dir={tmp_path}")
    assert proc.returncode != 0
    assert "Key 'mode' not in 'XlaConfig'" in proc.stderr
    assert not (tmp_path / "record.json").exists()


def test_the_orchestrator_imports_no_torch():
    code = ("import sys; from harness.orchestrator.config import register_configs; register_configs(); "
            "import harness.orchestrator.run, harness.describe; "
            "print(sorted(m for m in ('torch', 'jax', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# A workload from outside the repository: a package with an entry point, and nothing else.
THROWAWAY = '''
from dataclasses import dataclass

from harness.orchestrator import plugins
from harness.orchestrator.config import WorkloadConfig


@plugins.workload("throwaway_axpy", build="throwaway_axpy.model:build")
@dataclass
class AxpyConfig(WorkloadConfig):
    dtype: str = "float32"
    n: int = 1024
'''
THROWAWAY_MODEL = '''
import torch

from harness.worker.workload import Workload


class Axpy(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.a = torch.nn.Parameter(torch.full((n,), 2.0), requires_grad=False)

    def forward(self, x, y):
        return self.a * x + y


def forward(module, x, y):
    return module(x, y)


def build(cfg, device):
    n = cfg["n"]
    x, y = torch.randn(n, device=device), torch.randn(n, device=device)
    module = Axpy(n).to(device)
    return Workload(name="throwaway_axpy", params=dict(cfg), module=module, inputs=(x, y), forward=forward,
                    flops=2.0 * n, min_bytes=12.0 * n, min_sqnr_db=60.0,
                    reference=lambda: [((2.0 * x + y).cpu().double(),)])
'''


@pytest.mark.slow
def test_a_throwaway_workload_registers_through_an_entry_point_and_runs(tmp_path):
    site = tmp_path / "site"
    package = site / "throwaway_axpy"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(THROWAWAY))
    (package / "model.py").write_text(textwrap.dedent(THROWAWAY_MODEL))
    dist = site / "throwaway_axpy-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: throwaway-axpy\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[harness.orchestrator.plugins]\nthrowaway_axpy = throwaway_axpy\n")
    # the repo, the throwaway package, then what was there (the GPU machine's packages)
    site_path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    env = harness_env(dict(os.environ, PYTHONPATH=site_path))
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "harness", "workload=throwaway_axpy", "workload.n=4096",
                           "backend=eager", "bench=quick", f"hydra.run.dir={run_dir}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = records(run_dir)
    assert record["status"] == "ok", record["reason"]
    assert record["workload"] == "throwaway_axpy" and record["params"]["n"] == 4096
    assert record["numerics"]["passed"]
    # and Hydra checks its keys like any other workload's
    typo = subprocess.run([sys.executable, "-m", "harness", "workload=throwaway_axpy", "workload.m=1",
                           f"hydra.run.dir={tmp_path / 'typo'}"], cwd=REPO, env=env, capture_output=True, text=True)
    assert typo.returncode != 0 and "Key 'm' not in 'AxpyConfig'" in typo.stderr


@pytest.mark.slow
@pytest.mark.parametrize("workload", ["conv", "qwen_decoder"])
def test_cli_negative_batch_is_one_line_and_exit_2(workload, tmp_path):
    out = run_harness(f"workload={workload}", "workload.batch=-1", "bench=quick", f"hydra.run.dir={tmp_path}")
    assert out.returncode == 2
    errors = [l for l in out.stderr.splitlines() if l.startswith("error:")]
    assert errors == ["error: workload.batch: expected a positive integer, got -1"], out.stderr


def test_the_fair_experiment_sweeps_both_sides_of_both_pairs():
    from harness.orchestrator import plugins
    from harness.report.pairs import PAIRS
    params = sweep_params("fair")
    assert set(params["workload"]) == {"fp8_linear", "conv", "qwen_decoder"}
    backends = [composed(f"backend={option}")["backend"] for option in params["backend"]]
    labels = {plugins.backend_spec(b["name"]).label(b) for b in backends}
    assert labels == {side for p in PAIRS for side in (p.inductor, p.xla)}
    assert composed("+experiment=fair")["bench"]["processes"] == 3


def test_the_generate_experiment_sweeps_the_presets():
    params = sweep_params("generate")
    assert params["workload.phase"] == ["generate"]
    assert params["workload.prompt_len"] == ["128", "512", "2048"] and params["workload.batch"] == ["1", "16"]
    assert params["workload.cache"] == ["static", "paged"]
    assert set(params["backend"]) == {"inductor", "inductor_cudagraphs", "inductor_max_autotune", "xla"}


def test_every_backend_option_declares_its_traits_and_the_fair_pairs_have_two_sides():
    """Reports read what a configuration is from its backend's declaration (family, graph
    mechanism, fair pair), never from its label."""
    from harness.orchestrator.plugins import FAIR_PAIRS, GRAPH_MECHANISMS
    sides: dict[str, set[str]] = {}
    for spec in plugins.backends().values():
        for option, overrides in [(spec.name, {}), *spec.variants.items()]:
            t = spec.traits({"name": spec.name, **overrides})
            assert t.family and t.graphs in GRAPH_MECHANISMS and t.pair in (*FAIR_PAIRS, None)
            if t.pair:
                sides.setdefault(t.pair, set()).add(t.family)
    assert sides == {"headline": {"inductor", "xla"}, "control": {"inductor", "xla"}}
    inductor = plugins.backend_spec("inductor")
    assert inductor.traits({"mode": "max-autotune", "dynamic": True}).pair is None


def test_pairs_come_from_declared_traits_not_labels():
    """A plugin's backends under labels the report has never seen still form the headline pair."""
    import pandas as pd
    from harness.report.pairs import pair_table
    row = dict(workload="w", variant="v", status="ok", cv=0.01, between_cv=float("nan"),
               gpu_busy_ms_per_iter=float("nan"), host_gap_ms=float("nan"), idle_share=float("nan"),
               flags="", graphs="cudagraphs", pair="headline")
    summary = pd.DataFrame([dict(row, backend="tuned-compiler-a", family="inductor", median_ms=2.0, run_id="a"),
                            dict(row, backend="tuned-compiler-b", family="xla", median_ms=1.0, run_id="b"),
                            dict(row, backend="xla:no-cmdbuf", family="xla", pair="control", median_ms=1.0,
                                 run_id="c")])
    (got,) = pair_table(summary).itertuples()
    assert (got.pair, got.inductor, got.xla, got.inductor_over_xla) == (
        "headline", "tuned-compiler-a", "tuned-compiler-b", 2.0)
