"""What a findings-doc template reads (harness/report/docs/__init__.py renders it): a sweep's
runs (`SweepView`), a run's figures (`Run`, each a `Fig` that prints at its digits and knows its
run's flags), the report's verdict between two runs, and the filters that print figures."""
from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from harness.describe import flagged_text, noise_codes
from harness.errors import InputError
from harness.report import fidelity as F
from harness.report.load import Sweep, finite
from harness.report.tables import MIB, comparable_category, fmt_num
from harness.report.verdict import FASTER, decide


class Fig(float):
    """A figure as a template prints it: a float (so arithmetic and comparisons work) that
    prints with `digits` significant digits ("n/a" where unknown) and knows its run's flags (the
    `cell` filter appends them)."""
    digits: int
    flags: tuple[str, ...]

    def __new__(cls, value: Any, digits: int = 3, flags: Iterable[str] = ()):
        self = super().__new__(cls, float(value) if finite(value) else math.nan)
        self.digits, self.flags = digits, tuple(flags)
        return self

    def __str__(self) -> str:
        return n(self, self.digits)

    __repr__ = __str__


def n(value: Any, digits: int = 3) -> str:
    """Significant digits; "n/a" where the value is unknown."""
    return fmt_num(value, digits) if finite(value) else "n/a"


def fixed(value: Any, decimals: int = 1) -> str:
    return f"{float(value):,.{decimals}f}" if finite(value) else "n/a"


def pct(value: Any, digits: int = 2) -> str:
    """A share (0.089) as a percent number (8.9), without the sign."""
    return n(100.0 * float(value), digits) if finite(value) else "n/a"


def us(value: Any, digits: int = 3) -> str:
    """Milliseconds as microseconds."""
    return n(1000.0 * float(value), digits) if finite(value) else "n/a"


def cell(value: Any, digits: int | None = None, bold: bool = False) -> str:
    """A table cell: the figure, in bold where `bold` (the side a verdict calls faster), then its
    run's flags (`0.682 !host_bound,high_cv`, `**0.2118** !high_cv`)."""
    text = n(value, digits or getattr(value, "digits", 3))
    return flagged_text(f"**{text}**" if bold else text, getattr(value, "flags", ()))


def span(values: Iterable[Any], digits: int = 3, scale: float = 1.0, sep: str = "-") -> str:
    """`lo-hi` of the known values (one value where they agree at these digits)."""
    known = [float(v) * scale for v in values if finite(v)]
    if not known:
        return "n/a"
    lo, hi = n(min(known), digits), n(max(known), digits)
    return lo if lo == hi else f"{lo}{sep}{hi}"


def cpuset(cores: Any) -> str:
    """A record's CPU set as ranges: [0, 1, 2, 3, 8] -> 0-3,8."""
    if not cores:
        return "unpinned"
    cores, parts = sorted(int(c) for c in cores), []
    start = prev = cores[0]
    for c in cores[1:] + [None]:
        if c is not None and c == prev + 1:
            prev = c
            continue
        parts.append(f"{start}-{prev}" if prev != start else f"{start}")
        if c is not None:
            start = prev = c
    return ",".join(parts)


def deviation(ratio: Any) -> float:
    """How far a ratio is from 1 (0.931 and 1.069 are both 0.069)."""
    return abs(float(ratio) - 1.0)


# ------------------------------------------------------------------------------ runs

def _matches(run: Run, where: dict[str, Any]) -> bool:
    """Each `key=value` of `where` holds for the run: a summary column or a workload parameter,
    compared as text (batch=16 and batch="16" alike), or `dir`, the run dir's name;
    `key__not=value` is its negation."""
    row = run.row
    for key, want in where.items():
        negate = key.endswith("__not")
        key = key[:-len("__not")] if negate else key
        have = (Path(row["run_dir"]).name if key == "dir" else
                row[key] if key in row else run.params.get(key, None))
        if (str(have) == str(want)) == negate:
            return False
    return True


def date(epoch_s: Any) -> str:
    """A record's time stamp (seconds since the epoch) as its UTC date."""
    import datetime
    return datetime.datetime.fromtimestamp(float(epoch_s), datetime.timezone.utc).strftime("%Y-%m-%d")


def search(text: Any, pattern: str) -> bool:
    """A Jinja test: the text matches the regular expression somewhere."""
    return re.search(pattern, str(text)) is not None


@dataclass
class Process:
    """One fresh process of a run: its median, CV and samples (after the warm-up's, `settle`)."""
    median: Fig
    cv: Fig
    samples: list[float]
    settle: list[float]
    iters: int
    first_call_s: Fig
    # the GPU during its timed samples (NVML, one reading a sample): median SM clock and power,
    # samples with a clock-event reason (power cap, slowdown), the device's maximum SM clock;
    # the other processes' share of its cores (host_load). NaN where not recorded.
    sm_clock: Fig = Fig(math.nan)
    max_sm_clock: Fig = Fig(math.nan)
    power_w: Fig = Fig(math.nan)
    capped: int = 0
    other_share: Fig = Fig(math.nan)

    def slow_prefix(self, above_ms: float) -> dict[str, Any] | None:
        """How long the process stayed at a slow level from its start: the warm-up and timed
        samples up to the last one above `above_ms` after which none is (count and seconds of
        those samples); None where it ends above (it never settled)."""
        seq = list(self.settle) + list(self.samples)
        slow = [i for i, s in enumerate(seq) if s > above_ms]
        if not slow:
            return {"samples": 0, "s": Fig(0.0), "timed": 0}
        last = slow[-1]
        if last == len(seq) - 1:
            return None
        return {"samples": last + 1, "s": Fig(sum(seq[:last + 1]) * self.iters / 1000.0, 2),
                "timed": max(0, last + 1 - len(self.settle))}


class Run:
    """One run as a template reads it."""

    def __init__(self, row: dict[str, Any], record: dict[str, Any], kernels: pd.DataFrame,
                 memory: pd.DataFrame, buffers: pd.DataFrame):
        self.row, self.rec, self._kernels, self._memory = row, record, kernels, memory
        self._buffers = buffers
        self.label, self.sweep = row["backend"], row["sweep"]
        self.workload, self.variant = row["workload"], row["variant"]
        self.family, self.graphs, self.pair = row["family"], row["graphs"], row["pair"]
        self.params = json.loads(row.get("params_json") or "{}")
        self.flags = [c for c in str(row.get("flags") or "").split(",") if c]
        self.noisy = noise_codes(self.flags)

    def __repr__(self) -> str:
        return f"<run {self.sweep}: {self.workload} [{self.variant}] {self.label}>"

    def fig(self, value: Any, digits: int = 3) -> Fig:
        return Fig(value, digits, self.flags)

    def col(self, name: str, digits: int = 3) -> Fig:
        if name not in self.row:
            raise InputError(f"no summary column {name!r} (have: {', '.join(self.row)})")
        return self.fig(self.row[name], digits)

    def at(self, path: str, digits: int = 3) -> Any:
        """A value of the record by its dotted path; a number comes back as a figure."""
        value: Any = self.rec
        for part in path.split("."):
            if isinstance(value, list) and part.isdigit():
                value = value[int(part)]
            elif isinstance(value, dict) and part in value:
                value = value[part]
            else:
                raise InputError(f"{self!r}: its record has no {path!r} (stops at {part!r})")
        return self.fig(value, digits) if isinstance(value, (int, float)) and not isinstance(value, bool) \
            else value

    @property
    def wall(self) -> Fig:
        return self.col("median_ms", 4)

    @property
    def gpu(self) -> Fig:
        return self.col("gpu_busy_ms_per_iter")

    @property
    def gap(self) -> Fig:
        return self.col("host_gap_ms")

    @property
    def kernel(self) -> Fig:
        return self.col("kernel_ms_per_iter")

    @property
    def cv(self) -> Fig:
        return self.fig(100.0 * self.row["cv"], 3)

    @property
    def between_cv(self) -> Fig:
        return self.fig(100.0 * self.row["between_cv"], 3)

    @property
    def spread(self) -> Fig:
        """The process medians' spread, (max - min) / median, in %."""
        lo, hi, med = self.row["between_min_ms"], self.row["between_max_ms"], self.row["median_ms"]
        return self.fig(100.0 * (hi - lo) / med if finite(lo) else math.nan)

    @property
    def idle(self) -> Fig:
        return self.fig(100.0 * self.row["idle_share"], 2)

    @property
    def procs(self) -> int:
        return int(self.row["processes"]) if finite(self.row["processes"]) else 1

    @property
    def procs_min(self) -> Fig:
        return self.col("between_min_ms", 4)

    @property
    def procs_max(self) -> Fig:
        return self.col("between_max_ms", 4)

    @property
    def p10(self) -> Fig:
        return self.col("p10_ms", 4)

    @property
    def p90(self) -> Fig:
        return self.col("p90_ms", 4)

    @property
    def tflops(self) -> Fig:
        return self.col("tflops")

    @property
    def tokens_per_s(self) -> Fig:
        return self.col("tokens_per_s", 4)

    @property
    def compile_s(self) -> Fig:
        return self.col("compile_s", 3)

    @property
    def peak_mib(self) -> Fig:
        return self.fig(self.row["runtime_peak_bytes"] / MIB, 4)

    @property
    def sqnr(self) -> Fig:
        return self.col("min_sqnr_db", 3)

    @property
    def processes(self) -> list[Process]:
        out = []
        for p in (self.rec.get("timing") or {}).get("processes") or []:
            gpu = p.get("gpu_state") or {}
            clocks, power = gpu.get("sm_clock_mhz") or [], gpu.get("power_w") or []
            out.append(Process(self.fig(p.get("median_ms"), 4), self.fig(100.0 * p.get("cv", math.nan)),
                               list(p.get("samples_ms") or []), list(p.get("settle_samples_ms") or []),
                               int(p.get("iters_per_sample") or 1), Fig(p.get("first_call_s"), 2),
                               Fig(statistics.median(clocks) if clocks else math.nan, 4),
                               Fig(gpu.get("max_sm_clock_mhz", math.nan), 4),
                               Fig(statistics.median(power) if power else math.nan, 3),
                               sum(1 for reasons in gpu.get("clocks_event_reasons") or [] if reasons),
                               Fig(100.0 * (p.get("host_load") or {}).get("other_share", math.nan), 2)))
        return out

    def category(self, name: str, by: str = "op") -> Fig:
        """ms per iteration of a kernel category: by source op (`op`, what the report compares) or
        by the kernel itself (`kernel`)."""
        k = self._kernels
        if k.empty:
            return self.fig(math.nan)
        cats = comparable_category(k) if by == "op" else k["category"]
        return self.fig(k.loc[cats == name, "time_us_per_iter"].sum() / 1000.0)

    def kernels(self, pattern: str) -> dict[str, Any]:
        """The kernels whose name matches `pattern` (a regular expression): how many, their
        time and calls per iteration, and their % of peak bandwidth and FLOP/s (ranges)."""
        k = self._kernels
        rx = re.compile(pattern)
        sel = k[[bool(rx.search(str(name))) for name in k["kernel"]]] if len(k) else k
        def rng(col: str) -> list[float]:
            return list(pd.to_numeric(sel[col], errors="coerce").dropna()) if col in sel else []
        return {"count": len(sel), "ms": self.fig(sel["time_us_per_iter"].sum() / 1000.0 if len(sel) else 0.0),
                "calls": self.fig(sel["calls_per_iter"].sum() if len(sel) else 0.0),
                "pct_peak_bw": rng("pct_peak_bw"), "pct_peak_flops": rng("pct_peak_flops"),
                "names": list(sel["kernel"]) if len(sel) else []}

    def buffers(self, kind: str | None = None, pattern: str = "") -> list[dict[str, Any]]:
        """The run's buffers (memory_buffers.parquet), largest first: of a kind, and/or whose
        name matches `pattern`."""
        b = self._buffers
        if len(b) and kind is not None:
            b = b[b["kind"] == kind]
        if len(b) and pattern:
            b = b[b["name"].astype(str).str.contains(pattern, regex=True)]
        if not len(b):
            return []
        b = b.assign(bytes=pd.to_numeric(b["bytes"], errors="coerce")).sort_values("bytes", ascending=False)
        return [{**r, "mib": Fig(r["bytes"] / MIB, 3)} for r in b.to_dict("records")]

    def memory_note(self, kind: str) -> str:
        """The memory table's note on a kind ("3758096384 bytes donated (aliased to outputs)")."""
        m = self._memory
        notes = [str(x) for x in m.loc[m["kind"] == kind, "note"].dropna()] if len(m) and "note" in m else []
        return "; ".join(x for x in notes if x)

    def memory(self, kind: str) -> Fig:
        """MiB of a memory kind in the run's memory table (parameter, temp, total, ...)."""
        m = self._memory
        got = m.loc[m["kind"] == kind, "bytes"] if len(m) else []
        return self.fig(float(pd.to_numeric(got).sum()) / MIB if len(got) else math.nan, 4)


def _by_run(table: pd.DataFrame) -> tuple[dict[Any, pd.DataFrame], pd.DataFrame]:
    """A per-run table's rows by run_id, split in one pass, and its empty frame for a run
    without rows (harness/report/tables.py's by_variant does the same by variant)."""
    if not len(table):
        return {}, table
    groups = table.groupby("run_id", sort=False).indices
    return {run_id: table.iloc[idx] for run_id, idx in groups.items()}, table.iloc[0:0]


class SweepView:
    """The runs of one sweep directory."""

    def __init__(self, name: str, sweep: Sweep):
        self.name, self._sweep = name, sweep
        self._records = {r["_run_dir"]: r for r in sweep.records}
        # Each run is built once, with its rows of the kernels, memory and buffers tables (each
        # table split by run in one pass): the docs look runs up hundreds of times, and filtering
        # every table for each run they built was most of a render's time.
        tables = [_by_run(t) for t in (sweep.kernels, sweep.memory, sweep.buffers)]
        self._runs = [Run(row, self._records.get(row["run_dir"], {}),
                          *(rows.get(row["run_id"], empty) for rows, empty in tables))
                      for row in sweep.summary.to_dict("records")]

    def __repr__(self) -> str:
        return f"<sweep {self.name}: {len(self._runs)} runs>"

    def json_lines(self, name: str) -> list[dict[str, Any]]:
        """The JSON objects, one a line, of a file kept in the sweep directory beside its runs
        (`fidelity_inductor_fp8.txt`: scripts/fidelity.py's rounds); other lines are skipped."""
        path = Path(next(iter(self._records))).parent / name
        try:
            lines = path.read_text().splitlines()
        except OSError as e:
            raise InputError(f"{path}: cannot read ({e})") from None
        return [json.loads(line) for line in lines if line.lstrip().startswith("{")]

    def runs(self, backend: str | None = None, **where: Any) -> list[Run]:
        if backend is not None:
            where["backend"] = backend
        return [r for r in self._runs if _matches(r, where)]

    def run(self, backend: str | None = None, **where: Any) -> Run:
        found = self.runs(backend, **where)
        if len(found) != 1:
            said = ", ".join(f"{k}={v}" for k, v in ({"backend": backend} if backend else {}).items())
            said = ", ".join(filter(None, [said, *(f"{k}={v}" for k, v in where.items())]))
            have = "; ".join(f"{r.workload} [{r.variant}] {r.label}" for r in found) if found else \
                "; ".join(sorted({f"{r.workload} [{r.variant}] {r.label}" for r in self._runs}))
            raise InputError(f"sweep {self.name!r}: {len(found)} runs match {said} "
                             f"(expected one; {'they are' if found else 'its runs are'}: {have})")
        return found[0]

    def pair(self, name: str, **where: Any) -> "Pair":
        """The fair pair `name` (headline, control) of the variant `where` selects: the sides by
        their declared traits, the verdict the report prints."""
        return Pair(name, self.run(pair=name, family="inductor", **where),
                    self.run(pair=name, family="xla", **where))

    def generation(self, **where: Any) -> list[dict[str, Any]]:
        from harness.report.generation import generation_table
        table = generation_table(self._sweep)
        runs = {r.row["run_id"]: r for r in self._runs}
        out = []
        for row in table.to_dict("records"):
            run = runs[row["run_id"]]
            if not _matches(run, where):
                continue
            out.append({**{k: run.fig(v, 3) if isinstance(v, float) else v for k, v in row.items()},
                        "run": run})
        return out

    def findings(self, **where: Any) -> list[dict[str, Any]]:
        """The rows `explain` prints for this sweep (harness/report/findings.py), those whose
        columns match `where` (kind="latency_growth")."""
        from harness.report.findings import findings
        found = findings(self._sweep)
        return [r for r in found.to_dict("records") if all(str(r.get(k)) == str(v) for k, v in where.items())]

    def attempts(self) -> list[dict[str, Any]]:
        """Earlier attempts of this sweep's runs, kept beside a re-run (`record.<time>.<status>.json`):
        the run dir, the time stamp, the status and the reason."""
        out = []
        for run_dir in sorted(self._records):
            for path in sorted(Path(run_dir).glob("record.*.*.json")):
                stamp, status = path.name.split(".")[1:3]
                r = json.loads(path.read_text())
                out.append({"run_dir": Path(run_dir).name, "stamp": stamp, "status": status,
                            "backend": r.get("backend_label") or r.get("backend"),
                            "workload": r.get("workload"), "reason": r.get("reason") or ""})
        return out

    def fidelity(self) -> list[dict[str, Any]]:
        rows = F.rows(self._sweep.records)
        return [{**r, "ratio": Fig(r["ratio"], 3)} for r in rows]

    @property
    def span_s(self) -> Fig:
        """The sweep's wall time: its first run's start to its last run's end (from the records)."""
        starts = [r.get("started_at") for r in self._records.values() if r.get("started_at")]
        ends = [r.get("finished_at") for r in self._records.values() if r.get("finished_at")]
        return Fig(max(ends) - min(starts) if starts and ends else math.nan, 3)

    def env(self, key: str) -> list[Any]:
        """The distinct values of an environment field over the sweep's runs (`driver`)."""
        values = []
        for r in self._records.values():
            value: Any = r.get("environment") or {}
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value is not None and value not in values:
                values.append(value)
        return values


@dataclass
class Pair:
    name: str
    inductor: Run
    xla: Run

    @property
    def verdict(self):
        return decide(self.inductor.label, self.inductor.row, self.xla.label, self.xla.row)

    @property
    def faster(self) -> str:
        return self.verdict.faster

    @property
    def row(self) -> dict[str, Any]:
        """The pair's row of the report's pairs table (harness/report/pairs.py: its figures and
        any column a later report adds)."""
        from harness.report.pairs import pair_table
        table = pair_table(pd.DataFrame([self.inductor.row, self.xla.row]))
        rows = table[table["pair"] == self.name].to_dict("records")
        if len(rows) != 1:
            raise InputError(f"{self.name} pair of {self.inductor!r} and {self.xla!r}: not in the pairs table")
        return rows[0]

    def bold(self, run: Run) -> bool:
        """Whether a table bolds this side: the verdict calls it faster."""
        said = self.verdict
        return said.outcome == FASTER and said.faster == run.label


def verdict(a: Run, b: Run, k: float = 3.0, min_change: float = 0.0):
    return decide(a.label, a.row, b.label, b.row, k=k, min_change=min_change)


def compare_sweeps(base: SweepView, new: SweepView) -> list[dict[str, Any]]:
    """`python -m harness.report compare BASE NEW`'s table (harness/report/compare.py), a row
    per matched run."""
    from harness.report.compare import compare
    return compare(base._sweep, new._sweep).table.to_dict("records")


def torchao_categories(path: Path) -> dict[str, Fig]:
    """torchao's profile summary ("Summary of time (ms) by kernel category", then a header, then
    `0_gemm   0.360` lines up to `All`), as category -> ms. Example: tests/fixtures/seeds/000_*."""
    lines = Path(path).read_text().splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("Summary of time (ms) by kernel category"))
    except StopIteration:
        raise InputError(f"{path}: no 'Summary of time (ms) by kernel category' block") from None
    out: dict[str, Fig] = {}
    for line in lines[start + 1:]:
        parts = line.split()
        if len(parts) == 2 and finite(_float(parts[1])):
            out[parts[0]] = Fig(float(parts[1]), 3)
            if parts[0] == "All":
                break
    if "All" not in out:
        raise InputError(f"{path}:{start + 1}: the category summary has no 'All' line")
    return out


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


