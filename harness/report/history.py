"""`python -m harness.report history SWEEP_DIR [--store DIR] [--night YYYY-MM-DD]`: night after
night, one store.

The store is a Parquet dataset partitioned by date, the night (`--night`, else the UTC day the
record was written): `<store>/date=YYYY-MM-DD/<part>.parquet`, hive style, readable with
`pd.read_parquet(store)`. Each row is one run's summary plus where
it came from. Appending is idempotent: every row carries `record_sha` (the hash of its
record.json bytes), and rows already in the store are not written again, so re-running history
on the same sweep (or on a resumed sweep that gained runs) appends only what is new.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.errors import InputError
from harness.record import RECORD_NAME
from harness.report.load import Sweep, load

DEFAULT_STORE = Path("results/history")
TREND_NAME = "_trend.png"   # "_" prefix: pyarrow skips it when reading the store as a dataset
# Columns a history row keeps: the summary's, plus provenance.
DROP = ("params_json",)


@dataclass
class Appended:
    store: Path
    rows_new: int
    rows_skipped: int
    files: list[Path]
    trend: Path | None


def _record_sha(run_dir: str) -> str:
    return hashlib.sha256((Path(run_dir) / RECORD_NAME).read_bytes()).hexdigest()[:20]


def _recorded_at(run_dir: str) -> pd.Timestamp:
    """When the run was recorded: the record's modification time (records are written once,
    never overwritten)."""
    mtime = (Path(run_dir) / RECORD_NAME).stat().st_mtime
    return pd.Timestamp(dt.datetime.fromtimestamp(mtime, tz=dt.timezone.utc))


def history_rows(sweep: Sweep) -> pd.DataFrame:
    s = sweep.summary.copy()
    s["record_sha"] = [_record_sha(d) for d in s["run_dir"]]
    s["recorded_at"] = [_recorded_at(d) for d in s["run_dir"]]
    s["sweep"] = ", ".join(str(r.resolve()) for r in sweep.roots)
    git = {r["_run_dir"]: (r.get("environment") or {}).get("git_sha") for r in sweep.records}
    s["git_sha"] = s["run_dir"].map(git)
    s["numerics_passed"] = s["numerics_passed"].astype("boolean")
    return s


def read_store(store: Path, must_exist: bool = False) -> pd.DataFrame:
    """Every row of the store, `date` as a column; an empty frame for an empty store, or with
    `must_exist` an InputError naming a store that is missing, not a folder, or without rows."""
    store = Path(store)
    files = sorted(store.glob("date=*/*.parquet"))
    if must_exist and not files:
        why = ("no such directory" if not store.exists() else
               "not a directory" if not store.is_dir() else
               "empty history store (no date=YYYY-MM-DD/*.parquet)")
        raise InputError(f"{store}: {why}; a store is written by `python -m harness.report "
                         f"history SWEEP_DIR --store {store}`")
    if not files:
        return pd.DataFrame()
    parts = []
    for f in files:
        try:
            part = pd.read_parquet(f)
        except Exception as e:
            raise InputError(f"{f}: corrupt history part ({type(e).__name__}: {e})") from None
        parts.append(part.assign(date=f.parent.name.split("=", 1)[1]))
    rows = pd.concat(parts, ignore_index=True)
    if must_exist and rows.empty:
        raise InputError(f"{store}: empty history store (its {len(files)} part(s) hold no rows); a store is "
                         f"written by `python -m harness.report history SWEEP_DIR --store {store}`")
    return rows


def _known_shas(store: Path) -> set[str]:
    shas: set[str] = set()
    for f in Path(store).glob("date=*/*.parquet"):
        try:
            shas.update(pd.read_parquet(f, columns=["record_sha"])["record_sha"])
        except Exception as e:
            raise InputError(f"{f}: corrupt history part ({type(e).__name__}: {e})") from None
    return shas


def append(roots: list[str | Path], store: str | Path = DEFAULT_STORE,
           plot: bool = True, night: str | None = None) -> Appended:
    """Append the sweeps' runs to the store, under `night` (YYYY-MM-DD: the nightly job's date,
    so that a night's runs land on one date however late they finish, and nights re-run on one
    day stay apart) or else under the UTC day each record was written."""
    store = Path(store)
    if store.exists() and not store.is_dir():
        raise InputError(f"{store}: history store must be a directory")
    rows = history_rows(load(roots))
    rows = rows.drop(columns=[c for c in DROP if c in rows.columns])
    known = _known_shas(store)
    fresh = rows[~rows["record_sha"].isin(known)]
    files = []
    dates = (pd.Series(night, index=fresh.index) if night is not None
             else fresh["recorded_at"].dt.strftime("%Y-%m-%d"))
    for date, part in fresh.groupby(dates, sort=True):
        folder = store / f"date={date}"
        folder.mkdir(parents=True, exist_ok=True)
        # Named by its content: the same rows give the same name, never a second copy.
        name = hashlib.sha256("".join(sorted(part["record_sha"])).encode()).hexdigest()[:16]
        path = folder / f"{name}.parquet"
        tmp = folder / f".{name}.parquet.tmp"
        part.reset_index(drop=True).to_parquet(tmp, index=False)
        tmp.replace(path)
        files.append(path)
    trend = None
    if plot:
        from harness.report.plots import trend as plot_trend
        history = read_store(store)
        if len(history):
            trend = plot_trend(history, store / TREND_NAME)
    return Appended(store=store, rows_new=len(fresh), rows_skipped=len(rows) - len(fresh),
                    files=files, trend=trend)
