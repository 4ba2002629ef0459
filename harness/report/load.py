"""Sweep directories -> pandas: one summary row per run, plus the long kernel and memory tables.

A sweep is any folder tree with `record.json` files in it (earlier attempts kept beside a
re-run, `record.<stamp>.<status>.json`, are history, not results, and are not read). Each run
dir may also hold the normalised tables its record's `artifacts` names:
`kernels.parquet` (harness.collect.kernel_table.COLUMNS), `memory.parquet` (kind, bytes, buffers,
source) and `memory_buffers.parquet` (name, bytes, shape, kind, ...). Any of them may be
missing: a run that was not profiled, or failed, still gets its summary row, and every table
says why it has no rows for it (`status`, `reason`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness import clocks
from harness.collect.devices import Peaks, lookup_device, peak_dtype
from harness.describe import (TAG_KEYS, THRESHOLDS, backend_label, backend_traits,
                              between_processes, busiest_host_load, gpu_figures, record_flags,
                              variant)
from harness.errors import InputError
from harness.record import KNOWN_SCHEMA_VERSIONS, RECORD_NAME

# Columns that identify a run in every table.
KEY_COLUMNS = ["workload", "variant", "backend", "run_id"]
# What the artifacts are called in a record, and the file name used when a record names none.
ARTIFACT_FILES = {"kernels": "kernels.parquet", "memory": "memory.parquet",
                  "memory_buffers": "memory_buffers.parquet"}
# The keys a record's `artifacts` may name them by (the worker writes `memory_table`).
ARTIFACT_KEYS = {"kernels": ("kernels", "kernel_table"), "memory": ("memory", "memory_table"),
                 "memory_buffers": ("memory_buffers",)}
# fp8 recipes run their GEMMs in fp8 whatever the workload's (activation) dtype says.
FP8_RECIPES = ("tensorwise", "torchao", "rowwise", "rowwise_with_gw_hp", "fp8")
MEMORY_KINDS = ("parameter", "output", "temp", "workspace", "constant", "total", "runtime_peak")
# Figures a table is made of: a record whose value here is not a number (`"median_ms": "fast"`)
# would become a row with a blank, so it is refused instead. None/null is allowed (not measured).
NUMERIC_KEYS = {"timing": ("median_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms", "cv", "min_ms"),
                "gpu": ("busy_ms_per_iter", "kernel_ms_per_iter", "host_gap_ms", "idle_share"),
                "numerics": ("min_sqnr_db", "max_abs_err")}


class UnusableRecord(InputError):
    """A record that reads as JSON but whose figures no table or gate can use: an ok run
    without a finite positive wall median, a figure that is not a number. `report` stops on
    it naming the file; `compare` lists it as unusable and exits incomplete (DESIGN: a number
    that is not a finite positive time never passes a gate)."""


@dataclass
class Sweep:
    """Everything a report is made of. Every frame has KEY_COLUMNS first."""
    roots: list[Path]
    records: list[dict[str, Any]]          # raw records, with "_run_dir" added
    summary: pd.DataFrame                  # one row per run
    kernels: pd.DataFrame                  # one row per (run, kernel); runs without: no rows
    memory: pd.DataFrame                   # one row per (run, kind)
    buffers: pd.DataFrame                  # one row per (run, buffer)
    missing: dict[str, dict[str, str]] = field(default_factory=dict)  # table -> run_id -> why
    unusable: dict[str, str] = field(default_factory=dict)   # record path -> why (skip_unusable)


def record_paths(roots: list[Path]) -> list[Path]:
    """Every record.json under each root; a root that is not a folder or holds no record is a
    user mistake, reported naming it."""
    found: list[Path] = []
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise InputError(f"{root}: no such directory")
        if root.is_file():
            if root.name == RECORD_NAME:
                found.append(root)
                continue
            raise InputError(f"{root}: expected a sweep or run directory, got a file")
        paths = sorted(root.rglob(RECORD_NAME))
        if not paths:
            raise InputError(f"{root}: no {RECORD_NAME} found (not a sweep or run directory?)")
        found.extend(paths)
    return found


def read_record(path: Path) -> dict[str, Any]:
    """A record, checked enough that the tables can trust it; one line naming the file if not."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read ({e})") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: corrupt record, not JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(record, dict):
        raise InputError(f"{path}: corrupt record, expected a JSON object")
    missing = [k for k in ("status", "workload", "backend") if k not in record]
    if missing:
        raise InputError(f"{path}: corrupt record, missing {', '.join(missing)}")
    if record["status"] not in ("ok", "failed", "skipped"):
        raise InputError(f"{path}: corrupt record, status {record['status']!r} is not "
                         "ok, failed or skipped")
    version = record.get("schema_version")
    if version not in KNOWN_SCHEMA_VERSIONS or isinstance(version, bool):
        raise InputError(f"{path}: unknown schema_version {version!r} (this harness reads "
                         f"{' and '.join(map(str, KNOWN_SCHEMA_VERSIONS))})")
    for key in ("timing", "numerics", "gpu", "compile"):
        if record.get(key) is not None and not isinstance(record[key], dict):
            raise InputError(f"{path}: corrupt record, {key} is not an object")
    for key, fields in NUMERIC_KEYS.items():
        for name in fields:
            value = (record.get(key) or {}).get(name)
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, (int, float))):
                raise UnusableRecord(f"{path}: unusable record, {key}.{name} is {value!r}, "
                                     "expected a number")
    if record["status"] == "ok":
        median = (record.get("timing") or {}).get("median_ms")
        if not (isinstance(median, (int, float)) and math.isfinite(median) and median > 0):
            got = "no timing" if not record.get("timing") else f"timing.median_ms {median!r}"
            raise UnusableRecord(f"{path}: unusable record, an ok run needs a finite positive "
                                 f"timing.median_ms (ms per iteration), got {got}")
    return record


def params_json(params: dict[str, Any]) -> str:
    return json.dumps(params or {}, sort_keys=True, default=str)


def gemm_dtype(params: dict[str, Any]) -> str | None:
    """Which peak a whole-run TFLOP/s is compared with: fp8 for fp8 recipes, else the
    workload's dtype; None (no % of peak) when neither says."""
    if str(params.get("recipe", "")).lower() in FP8_RECIPES:
        return "fp8"
    return peak_dtype(str(params["dtype"])) if params.get("dtype") else None


def _f(value: Any) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def clock_columns(record: dict[str, Any]) -> dict[str, float]:
    state = clocks.summary(record)
    if state is None:
        return {k: math.nan for k in ("sm_clock_min_mhz", "sm_clock_median_mhz", "sm_clock_max_mhz",
                                      "throttled_samples", "gpu_state_samples")}
    return {"sm_clock_min_mhz": state.sm_min_mhz, "sm_clock_median_mhz": state.sm_median_mhz,
            "sm_clock_max_mhz": state.sm_max_mhz, "throttled_samples": float(state.throttled),
            "gpu_state_samples": float(state.samples)}


def summary_row(record: dict[str, Any]) -> dict[str, Any]:
    params = record.get("params") or ((record.get("config") or {}).get("workload") or {})
    timing = record.get("timing") or {}
    thr = record.get("throughput") or {}
    num = record.get("numerics") or {}
    env = record.get("environment") or {}
    mem = record.get("memory") or {}
    between = between_processes(record)
    gpu = gpu_figures(record) or {}
    idle = _f(gpu.get("idle_share"))
    flags = record_flags(record)
    traits = backend_traits(record)
    busiest = busiest_host_load(record)
    tflops = _f(thr.get("tflops"))
    gbps = _f(thr.get("gbps_min_bytes"))
    pct_flops = pct_bw = math.nan
    spec = lookup_device(env.get("gpu_name"))
    if spec is not None:
        peaks = Peaks(spec, _f(env.get("sm_clock_mhz")) if env.get("sm_clock_mhz") else None)
        dtype = gemm_dtype(params)
        if dtype and not math.isnan(tflops):
            pct_flops = 100.0 * tflops / peaks.tflops(dtype)
        if not math.isnan(gbps):
            pct_bw = 100.0 * gbps / peaks.hbm_gbps
    return {
        "workload": record.get("workload", ""),
        # a warm-cache run measures the same program: only its compile time differs
        "variant": variant(params) + (",warm cache" if (record.get("compile") or {}).get("cache") == "warm" else ""),
        "backend": backend_label(record),
        "run_id": record.get("run_id", ""),
        # the sweep directory the run is in (load: named relative to the root it was given by)
        "sweep": record.get("_sweep", ""),
        "status": record["status"],
        "reason": record.get("reason") or "",
        # wall time per iteration: the median of the per-process medians (schema 1: one process)
        "median_ms": _f(timing.get("median_ms")),
        "p10_ms": _f(timing.get("p10_ms")),
        "p90_ms": _f(timing.get("p90_ms")),
        "cv": _f(timing.get("cv")),               # within a process (schema 2: median of them)
        "processes": _f(between["n"]) if between else (1.0 if timing else math.nan),
        "between_min_ms": _f(between.get("min_ms")) if between else math.nan,
        "between_max_ms": _f(between.get("max_ms")) if between else math.nan,
        "between_cv": _f(between.get("cv")) if between else math.nan,
        # the share of the run's cores other work took while it was timed (the busiest process)
        "host_other_share": _f(busiest[2]["other_share"]) if busiest else math.nan,
        "tflops": tflops,
        "tokens_per_s": _f(thr.get("tokens_per_s")),
        "gbps_min_bytes": gbps,
        "pct_peak_flops": pct_flops,
        "pct_peak_bw": pct_bw,
        "compile_s": _f(record.get("compile_s")),
        "memory_total_bytes": math.nan,          # filled from memory.parquet (kind total)
        "runtime_peak_bytes": _f(mem.get("runtime_peak_bytes")),
        "numerics_passed": num.get("passed") if num else None,
        "min_sqnr_db": _f(num.get("min_sqnr_db")),
        "max_abs_err": _f(num.get("max_abs_err")),
        "kernel_ms_per_iter": math.nan,           # filled from kernels.parquet
        # GPU busy time per iteration (overlapping streams counted once) from the profiling
        # pass, and the host gap: wall median - GPU busy; NaN where not profiled.
        "gpu_busy_ms_per_iter": _f(gpu.get("busy_ms_per_iter")),
        "host_gap_ms": _f(gpu.get("host_gap_ms")),
        "idle_share": idle,
        "host_bound": (bool(idle > THRESHOLDS.host_bound_idle_share) if idle == idle else None),
        # the GPU's SM clock during timing (harness/clocks.py), NaN where not read
        **clock_columns(record),
        "flags": ",".join(flag["code"] for flag in flags),
        "schema_version": record.get("schema_version"),
        "backend_name": record.get("backend", ""),
        # what the backend configuration is (its declaration, never its label)
        "family": traits.family, "graphs": traits.graphs, "pair": traits.pair or "",
        "backend_mode": ((record.get("config") or {}).get("backend") or {}).get("mode") or "",
        "device": env.get("gpu_name") or env.get("device") or "",
        "params_json": params_json(params),
        # interleaved runs (harness/orchestrator/interleave.py): the group they alternated in and
        # each process's median, in process order, for the pair's ratio of adjacent couples
        "interleave_group": ((timing.get("interleave") or {}).get("group")) or "",
        "process_medians_json": json.dumps([p.get("median_ms") for p in timing.get("processes") or []
                                            if isinstance(p, dict)]),
        "run_dir": record.get("_run_dir", ""),
    }


SUMMARY_COLUMNS = list(summary_row({"status": "ok", "workload": "", "backend": ""}))


def _varying(group: list[dict[str, Any]]) -> list[str]:
    """The keys whose values differ among these flat dicts (a key a dict lacks altogether, written
    before it existed, is compared among the dicts that have it)."""
    keys = sorted({k for d in group for k in d})
    return [k for k in keys if len({json.dumps(d[k], sort_keys=True, default=str)
                                    for d in group if k in d}) > 1]


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in (config or {}).items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _distinguish_variants(rows: list[dict[str, Any]], records: list[dict[str, Any]]) -> None:
    """Two runs of a workload in one sweep whose tags agree but whose parameters differ (faulty's
    `fault`, an explicit M) must not share a variant name, or tables would add them up: the
    parameters that vary among runs with the same tags are appended as key=value. (Grouping by
    tags, not by workload: a paged cache's num_blocks need not label the static-cache runs; and by
    sweep: another sweep's runs are never compared with these.) Then runs of the same backend
    label that still share a variant (the same config at two seeds) are told apart by the rest of
    their config that differs (`seed=1`), so that no table takes them for one run or for two
    backends."""
    by_tags: dict[tuple[str, str, str], list[int]] = {}
    for i, row in enumerate(rows):
        by_tags.setdefault((row["sweep"], row["workload"], row["variant"]), []).append(i)
    for group in by_tags.values():
        params = [{k: v for k, v in json.loads(rows[i]["params_json"]).items()
                   if k not in TAG_KEYS and k != "name"} for i in group]
        varying = _varying(params)
        for i, p in zip(group, params):
            _append(rows[i], [(k, p.get(k)) for k in varying])
    by_variant: dict[tuple[str, str, str], list[int]] = {}
    for i, row in enumerate(rows):
        by_variant.setdefault((row["sweep"], row["workload"], row["variant"]), []).append(i)
    for group in by_variant.values():
        configs = {i: {k: v for k, v in _flat(records[i].get("config") or {}).items()
                       if not k.startswith(("workload.", "backend."))} for i in group}
        labels: dict[str, list[int]] = {}
        for i in group:
            labels.setdefault(rows[i]["backend"], []).append(i)
        varying = sorted({k for runs in labels.values() if len(runs) > 1
                          for k in _varying([configs[i] for i in runs])})
        # every run of the variant gets the keys, with its own values, so that the other
        # backends' runs stay beside the runs of theirs they were measured with
        for i in group:
            _append(rows[i], [(k, configs[i][k]) for k in varying if k in configs[i]])


def _append(row: dict[str, Any], items: list[tuple[str, Any]]) -> None:
    extra = ",".join(f"{k}={v}" for k, v in items)
    if extra:
        row["variant"] = f"{row['variant']},{extra}" if row["variant"] else extra


def artifact_paths(record: dict[str, Any]) -> dict[str, str]:
    """kind -> path relative to the run dir: schema 2 lists typed artifacts
    (`[{"kind", "path", "format"}]`), schema 1 mapped names to paths."""
    artifacts = record.get("artifacts") or {}
    if isinstance(artifacts, list):
        return {str(a.get("kind")): str(a.get("path")) for a in artifacts
                if isinstance(a, dict) and a.get("path")}
    return {str(k): str(v) for k, v in artifacts.items() if v}


def _artifact(record: dict[str, Any], name: str) -> Path | None:
    run_dir = Path(record["_run_dir"])
    artifacts = artifact_paths(record)
    rel = next((artifacts[k] for k in ARTIFACT_KEYS[name] if artifacts.get(k)),
               ARTIFACT_FILES[name])
    path = run_dir / rel
    return path if path.is_file() else None


_NULLABLE_DTYPES = frozenset({"Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32",
                              "UInt64", "Float32", "Float64", "boolean"})


def _read_table(path: Path):
    """A run's table as an Arrow table (pandas per file cost 2.5 ms each, most of loading a
    100-run sweep; the tables are joined in Arrow and converted once)."""
    import pyarrow.parquet as pq
    try:
        return pq.ParquetFile(path).read()
    except Exception as e:  # pyarrow raises many types for a truncated or foreign file
        raise InputError(f"{path}: corrupt table ({type(e).__name__}: {e})") from None


def _join(tables: list, rows: list[int], keys: list[dict[str, Any]],
          columns: list[str]) -> pd.DataFrame:
    """Runs' tables as one frame, KEY_COLUMNS first and `_row` (the run's summary row) last.
    Tables written by other versions may lack columns (filled with nulls) or type one
    differently (promoted; where Arrow cannot, pandas joins them as objects)."""
    if not tables:
        return pd.DataFrame(columns=KEY_COLUMNS + columns + ["_row"])
    import pyarrow as pa
    counts = [t.num_rows for t in tables]
    # pandas' own dtypes where a file names one Arrow cannot (nullable Int64 byte counts); the
    # rest of the metadata (each file's index, the kernel table's attrs) is the file's own
    nullable = {}
    for t in tables:
        for col in (t.schema.pandas_metadata or {}).get("columns", []):
            if col.get("numpy_type") in _NULLABLE_DTYPES and col.get("name") is not None:
                nullable.setdefault(col["name"], col["numpy_type"])
    tables = [t.replace_schema_metadata(None) for t in tables]
    try:
        data = pa.concat_tables(tables, promote_options="permissive").to_pandas(
            integer_object_nulls=True)   # as pandas joins int columns with missing values
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        data = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
    for col, dtype in nullable.items():
        if col in data.columns:
            data[col] = data[col].astype(dtype)
    data = data.drop(columns=[c for c in KEY_COLUMNS + ["_row"] if c in data.columns])
    ids = pd.DataFrame({k: np.repeat(np.array([key[k] for key in keys], dtype=object), counts)
                        for k in KEY_COLUMNS})
    ids["_row"] = np.repeat(rows, counts)
    return pd.concat([ids[KEY_COLUMNS], data, ids[["_row"]]], axis=1)


def _why_missing(record: dict[str, Any], what: str) -> str:
    if record["status"] != "ok":
        return f"{record['status']}: {record.get('reason') or 'no reason recorded'}"
    return f"no {ARTIFACT_FILES[what]} (not collected for this run)"


def sweep_name(run_dir: Path, root: Path) -> str:
    """A run's sweep: the directory it is in, named by its path under the root given on the command
    line (`node/pool1` under `results/reference/h200`), or by its own name where it is the root
    (`fair` for `results/reference/h200/fair`) or above it (a run dir given as the root)."""
    parent = run_dir.parent
    root = root if root.is_dir() else root.parent.parent
    try:
        rel = parent.resolve().relative_to(root.resolve())
    except ValueError:
        return parent.resolve().name
    return root.resolve().name if rel == Path(".") else rel.as_posix()


def _records(roots: list[Path], skip_unusable: bool = False) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Every run's record once (a root given twice, or inside another, reads its runs once), with
    `_run_dir` and `_sweep` added; two sweep directories that would share a name are named by
    their paths instead. An unusable record stops the load (naming it), or with `skip_unusable`
    is left out and named in the second value."""
    records, seen, parents = [], set(), {}
    unusable: dict[str, str] = {}
    for root in roots:
        for path in record_paths([root]):
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            try:
                record = read_record(path)
            except UnusableRecord as e:
                if not skip_unusable:
                    raise
                unusable[str(path)] = str(e).removeprefix(f"{path}: ")
                continue
            record["_run_dir"], record["_sweep"] = str(path.parent), sweep_name(path.parent, root)
            parents.setdefault(record["_sweep"], set()).add(path.parent.resolve().parent)
            records.append(record)
    for record in records:
        if len(parents[record["_sweep"]]) > 1:
            record["_sweep"] = Path(record["_run_dir"]).parent.as_posix()
    return records, unusable


def _unique_run_ids(rows: list[dict[str, Any]]) -> None:
    """The same configuration in several sweeps has one run_id (it hashes the config): every table
    joins on run_id, so each of those runs is `run_id@sweep` here (compare matches runs of one
    sweep against another's, where ids are unique)."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["run_id"]] = counts.get(row["run_id"], 0) + 1
    for row in rows:
        if counts[row["run_id"]] > 1:
            row["run_id"] = f"{row['run_id']}@{row['sweep']}"


def load(roots: list[str | Path], skip_unusable: bool = False) -> Sweep:
    """Every record under the roots and its tables. An unusable record stops the load (naming
    it), or with `skip_unusable` is left out and named in `Sweep.unusable`."""
    roots = [Path(r) for r in roots]
    records, unusable = _records(roots, skip_unusable)
    rows = [summary_row(r) for r in records]
    _unique_run_ids(rows)
    _distinguish_variants(rows, records)
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    for col in ("numerics_passed", "host_bound"):
        summary[col] = summary[col].astype("boolean")

    found: dict[str, tuple[list, list[int], list[dict[str, Any]]]] = {
        k: ([], [], []) for k in ARTIFACT_FILES}
    missing: dict[str, dict[str, str]] = {k: {} for k in ARTIFACT_FILES}
    for i, record in enumerate(records):
        keys = {k: rows[i][k] for k in KEY_COLUMNS}
        label = keys["run_id"] or rows[i]["run_dir"]
        for name in ARTIFACT_FILES:
            path = _artifact(record, name)
            table = _read_table(path) if path is not None else None
            if table is None or table.num_rows == 0:
                missing[name][label] = (_why_missing(record, name) if table is None
                                        else f"{path.name} is empty")
                continue
            for part, value in zip(found[name], (table, i, keys)):
                part.append(value)

    from harness.collect.kernel_table import COLUMNS as KERNEL_COLUMNS
    kernels = _join(*found["kernels"], KERNEL_COLUMNS)
    memory = _join(*found["memory"], ["kind", "bytes", "buffers", "source"])
    buffers = _join(*found["memory_buffers"], ["name", "bytes", "shape", "kind"])
    if len(kernels):
        # each run's own sum, added in its table's order (as report tables and findings add)
        time_us = kernels["time_us_per_iter"].to_numpy(dtype=float)
        at = np.cumsum([0] + [t.num_rows for t in found["kernels"][0]])
        summary.loc[found["kernels"][1], "kernel_ms_per_iter"] = [
            np.nansum(time_us[a:b]) / 1e3 for a, b in zip(at[:-1], at[1:])]
    if len(memory):
        # each run's first row of a kind, as its table lists them
        first = memory.drop_duplicates(["_row", "kind"]).pivot(index="_row", columns="kind",
                                                               values="bytes")
        if "total" in first.columns:
            total = pd.to_numeric(first["total"], errors="coerce").dropna()
            summary.loc[total.index, "memory_total_bytes"] = total.to_numpy(dtype=float)
        if "runtime_peak" in first.columns:
            peak = pd.to_numeric(first["runtime_peak"], errors="coerce").dropna()
            peak = peak[summary.loc[peak.index, "runtime_peak_bytes"].isna().to_numpy()]
            summary.loc[peak.index, "runtime_peak_bytes"] = peak.to_numpy(dtype=float)
    kernels, memory, buffers = (t.drop(columns="_row") for t in (kernels, memory, buffers))
    summary = summary.sort_values(["workload", "variant", "backend"], kind="stable")
    return Sweep(roots=roots, records=records, summary=summary.reset_index(drop=True),
                 kernels=kernels, memory=memory, buffers=buffers, missing=missing,
                 unusable=unusable)


def by_sweep(sweep: Sweep) -> list[tuple[str, Sweep]]:
    """The loaded runs per sweep, in the order they were found: what reports, findings and pairs
    compare within (two sweeps' runs of one label are two measurements of one backend, never two
    backends)."""
    out = []
    for name in dict.fromkeys([r.get("_sweep", "") for r in sweep.records] + list(sweep.summary["sweep"])):
        summary = sweep.summary[sweep.summary["sweep"] == name].reset_index(drop=True)
        ids, dirs = set(summary["run_id"]), set(summary["run_dir"])
        keys = ids | dirs      # a missing table is keyed by run_id, or run_dir where there is none

        def mine(t: pd.DataFrame) -> pd.DataFrame:
            return t[t["run_id"].isin(ids)].reset_index(drop=True) if len(t) else t
        out.append((name, Sweep(
            roots=sweep.roots, records=[r for r in sweep.records if r.get("_run_dir") in dirs],
            summary=summary, kernels=mine(sweep.kernels), memory=mine(sweep.memory),
            buffers=mine(sweep.buffers),
            missing={t: {k: v for k, v in m.items() if k in keys}
                     for t, m in sweep.missing.items()})))
    return out


def match_key(row: pd.Series | dict[str, Any]) -> tuple:
    """The human identity of a run across sweeps (run_id also hashes bench and seed): the
    backend label covers the family and its variant in schema 1 and 2 alike."""
    return (row["workload"], row["backend"], row["params_json"])


def noise_floor(row: pd.Series | dict[str, Any]) -> tuple[float, str]:
    """How much a run's median moves by chance, as a CV, and where that comes from: the
    spread of fresh processes' medians where several ran (a host-bound run's median moves
    more between processes than its samples do within one: 70% vs 2% on the H200), else the
    spread of the samples within the process."""
    between, processes = row.get("between_cv", math.nan), row.get("processes", math.nan)
    if finite(between) and finite(processes) and processes > 1:
        return float(between), "between"
    cv = row.get("cv", math.nan)
    return (float(cv) if finite(cv) else 0.0), "within"


def finite(value: Any) -> bool:
    try:
        return value is not None and not np.isnan(float(value))
    except (TypeError, ValueError):
        return False
