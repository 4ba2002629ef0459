"""history: a sweep appended once to a date-partitioned Parquet store, never twice."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from conftest import copy_sweep, report_cli
from harness.report.history import read_store

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cpu_sweep")]


def test_history_appends_once_and_plots_the_trend(cpu_sweep, tmp_path):
    sweep = copy_sweep(cpu_sweep, tmp_path / "sweep")
    store = tmp_path / "history"
    first = report_cli("history", sweep, "--store", store)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"5 run(s) appended to {store}, 0 already there")
    parts = list(store.glob("date=*/*.parquet"))
    assert parts and all(p.parent.name.startswith("date=20") for p in parts)
    trend = store / "_trend.png"
    assert trend.read_bytes()[:4] == b"\x89PNG" and trend.stat().st_size > 5000

    again = report_cli("history", sweep, "--store", store)
    assert again.returncode == 0
    assert again.stdout.startswith(f"0 run(s) appended to {store}, 5 already there")
    h = read_store(store)
    assert len(h) == 5 and h["record_sha"].is_unique
    assert set(h["status"]) == {"ok", "failed"}
    assert pd.read_parquet(store)["workload"].value_counts().to_dict() == {"faulty": 3,
                                                                          "fp8_linear": 2}


def test_a_resumed_sweep_appends_only_its_new_runs(cpu_sweep, tmp_path):
    sweep = copy_sweep(cpu_sweep, tmp_path / "sweep")
    store = tmp_path / "history"
    extra = sorted(sweep.glob("faulty_eager_*"))[0]
    moved = extra.rename(tmp_path / "later")
    assert report_cli("history", sweep, "--store", store).stdout.startswith("4 run(s) appended")
    moved.rename(extra)
    assert report_cli("history", sweep, "--store", store).stdout.startswith(
        "1 run(s) appended to")
    assert len(read_store(store)) == 5
