"""Nights of a history store made from real records, their times scaled: to see the dashboard and
the regression verdicts at work without waiting for real nights (the dashboard's browser test,
its screenshots).

    python scripts/synthetic_nights.py RECORDS_DIR... --out OUT [--nights 10] [--start 2026-01-01]
        [--noise 0.02] [--shift LABEL,NIGHT,FACTOR[,NIGHTS]]... [--seed 0]

Night k (0-based) copies every record.json under the RECORDS_DIRs to OUT/nights/<date>/<run>/, with
every time of its timing and gpu sections (`*_ms`, `*_ms_per_iter`, the samples) multiplied by
that night's factor for the run (throughputs divided by it), and `environment.git_sha` set to a
made-up commit of that night (`synthetic` + date, hashed); then appends the night to the store
OUT/history through `python -m harness.report history NIGHT --night DATE`, as scripts/nightly.sh
does. A run's factor is 1 + normal noise (sd `--noise`), times FACTOR from night NIGHT on (for
NIGHTS nights, default all) for the runs whose backend label is LABEL: `inductor,7,1.3` is a 30%
step at night 7, `xla:no-cmdbuf,4,3,1` a single 3x night. Prints the store's path.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.report.__main__ import main as report_main  # noqa: E402

SCALED_SECTIONS = ("timing", "gpu")
THROUGHPUTS = ("tflops", "gbps_min_bytes", "tokens_per_s")


@dataclass(frozen=True)
class Shift:
    label: str
    night: int
    factor: float
    nights: int | None

    @classmethod
    def parse(cls, text: str) -> "Shift":
        parts = text.split(",")
        try:
            if len(parts) not in (3, 4):
                raise ValueError
            return cls(parts[0], int(parts[1]), float(parts[2]),
                       int(parts[3]) if len(parts) == 4 else None)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--shift {text!r}: expected LABEL,NIGHT,FACTOR[,NIGHTS], e.g. inductor,7,1.3 "
                "or xla:no-cmdbuf,4,3,1") from None

    def applies(self, label: str, night: int) -> bool:
        last = None if self.nights is None else self.night + self.nights
        return label == self.label and night >= self.night and (last is None or night < last)


def scale_times(section, factor: float):
    """Every `*_ms` / `*_ms_per_iter` number (or list of them) in a record section, scaled."""
    if isinstance(section, list):
        return [scale_times(x, factor) for x in section]
    if not isinstance(section, dict):
        return section
    out = {}
    for key, value in section.items():
        timed = key.endswith("_ms") or key.endswith("_ms_per_iter")
        if timed and isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = value * factor
        elif timed and isinstance(value, list):
            out[key] = [v * factor for v in value]
        else:
            out[key] = scale_times(value, factor)
    return out


def scaled_record(record: dict, factor: float, git_sha: str) -> dict:
    out = dict(record)
    for name in SCALED_SECTIONS:
        if out.get(name):
            out[name] = scale_times(out[name], factor)
    thr = dict(out.get("throughput") or {})
    for key in THROUGHPUTS:
        if isinstance(thr.get(key), (int, float)):
            thr[key] = thr[key] / factor
    out["throughput"] = thr
    out["environment"] = {**(out.get("environment") or {}), "git_sha": git_sha}
    return out


def night_factor(label: str, night: int, shifts: list[Shift], noise: float,
                 rng: np.random.Generator) -> float:
    factor = max(0.05, 1.0 + rng.normal(0.0, noise))
    for shift in shifts:
        if shift.applies(label, night):
            factor *= shift.factor
    return factor


def write_night(records: list[Path], root: Path, night: int, date: str, shifts: list[Shift],
                noise: float, rng: np.random.Generator) -> Path:
    night_dir = root / "nights" / date
    git_sha = hashlib.sha1(f"synthetic {date}".encode()).hexdigest()
    for path in records:
        record = json.loads(path.read_text())
        factor = night_factor(record.get("backend_label", ""), night, shifts, noise, rng)
        run_dir = night_dir / path.parent.name
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "record.json").write_text(json.dumps(scaled_record(record, factor, git_sha),
                                                        indent=1))
    return night_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("records", type=Path, nargs="+",
                   help="folders with record.json files (searched down)")
    p.add_argument("--out", type=Path, required=True,
                   help="writes OUT/nights/<date>/ and the store OUT/history")
    p.add_argument("--nights", type=int, default=10)
    p.add_argument("--start", default="2026-01-01", help="the first night's date")
    p.add_argument("--noise", type=float, default=0.02, help="night-to-night sd of the factor")
    p.add_argument("--shift", type=Shift.parse, action="append", default=[])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    records = sorted(r for folder in args.records for r in folder.rglob("record.json"))
    if not records:
        p.error(f"{' '.join(map(str, args.records))}: no record.json under them")
    rng = np.random.default_rng(args.seed)
    start = dt.date.fromisoformat(args.start)
    store = args.out / "history"
    for night in range(args.nights):
        date = (start + dt.timedelta(days=night)).isoformat()
        night_dir = write_night(records, args.out, night, date, args.shift, args.noise, rng)
        code = report_main(["history", str(night_dir), "--store", str(store), "--night", date,
                            "--no-plot"])
        if code:
            return code
    print(store)
    return 0


if __name__ == "__main__":
    sys.exit(main())
