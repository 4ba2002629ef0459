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


def test_night_names_the_partition_and_nights_of_one_day_stay_apart(cpu_sweep, tmp_path):
    """scripts/nightly.sh passes its NIGHTLY_DATE: three nights recorded on one day land on
    three dates, not one."""
    store = tmp_path / "history"
    for night in ("2026-02-01", "2026-02-02", "2026-02-03"):
        sweep = copy_sweep(cpu_sweep, tmp_path / night)
        for rec in sweep.rglob("record.json"):     # a night's records differ from the last
            rec.write_text(rec.read_text().replace('"status"', f'"night": "{night}", "status"', 1))
        proc = report_cli("history", sweep, "--store", store, "--night", night, "--no-plot")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"5 run(s) appended to {store}, 0 already there")
    assert sorted(p.name for p in store.iterdir()) == ["date=2026-02-01", "date=2026-02-02",
                                                       "date=2026-02-03"]
    assert read_store(store).groupby("date").size().to_dict() == {
        "2026-02-01": 5, "2026-02-02": 5, "2026-02-03": 5}
    bad = report_cli("history", cpu_sweep, "--store", store, "--night", "02/03/2026")
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "error: --night '02/03/2026': expected a date YYYY-MM-DD, e.g. 2026-01-31")
