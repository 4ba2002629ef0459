"""Each timed sample beside the GPU's state after it: do the slow samples coincide with clock,
power or thermal events?

    python scripts/gpu_state.py SWEEP_OR_RUN_DIR [...]

Per run and process: every sample (ms, and its ratio to the process median) with the SM and
memory clocks, temperature, power and throttle reasons read right after it
(timing.processes[i].gpu_state, harness/worker/gpu_state.py); then, per run, the slow samples
(> 5% above their process median) against the others: their median SM clock and power, how many
had a throttle reason, and Spearman's rank correlation of sample time with SM clock and with
power over all samples (scipy), with the cost of one NVML reading.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import clocks  # noqa: E402
from harness.describe import backend_label, variant  # noqa: E402
from harness.report.load import read_record, record_paths  # noqa: E402

SLOW = 1.05     # a sample this far above its process median is "slow"


def _fmt(value, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def samples(record: dict) -> list[dict]:
    """One row per timed sample with readings: process, index, ms, ratio, and the state."""
    rows = []
    for k, p in enumerate((record.get("timing") or {}).get("processes") or []):
        state = p.get("gpu_state") or {}
        if not state.get("sm_clock_mhz"):
            continue
        median = statistics.median(p["samples_ms"])
        for i, ms in enumerate(p["samples_ms"]):
            row = {"process": k, "sample": i, "ms": ms, "ratio": ms / median}
            for f in clocks.FIELDS:   # a list shorter than the samples leaves the rest blank
                values = state.get(f) or []
                row[f] = values[i] if i < len(values) else None
            row["throttle"] = [r for r in row["clocks_event_reasons"] or [] if r in clocks.THROTTLE_REASONS]
            rows.append(row)
    return rows


def report(record: dict) -> list[str]:
    name = f"{record.get('workload')}[{variant(record.get('params') or {})}] {backend_label(record)}"
    rows = samples(record)
    states = clocks.process_states(record)
    if not rows:
        why = next((p.get("gpu_state", {}).get("unavailable") for p in (record.get("timing") or {}).get("processes", [])
                    if isinstance(p.get("gpu_state"), dict)), None)
        return [f"== {name}: no GPU state per sample{f' ({why})' if why else ''}"]
    read_ms = [s["read_ms"] for s in states if s.get("read_ms") is not None]
    lines = [f"== {name}: max SM clock {_fmt(states[0].get('max_sm_clock_mhz'))} MHz, one NVML reading "
             f"{_fmt(statistics.median(read_ms), 3) if read_ms else '-'} ms",
             "proc sample       ms  x median  SM MHz  mem MHz  temp C  power W  reasons"]
    for r in rows:
        lines.append(f"{r['process']:>4} {r['sample']:>6} {r['ms']:>8.4g} {r['ratio']:>9.3f} {_fmt(r['sm_clock_mhz']):>7} "
                     f"{_fmt(r['mem_clock_mhz']):>8} {_fmt(r['temperature_c']):>7} {_fmt(r['power_w'], 1):>8}  "
                     f"{','.join(r['clocks_event_reasons'] or []) or '-'}")
    lines.append(verdict(rows))
    return lines


def verdict(rows: list[dict]) -> str:
    from scipy import stats
    slow = [r for r in rows if r["ratio"] > SLOW]
    rest = [r for r in rows if r["ratio"] <= SLOW]

    def med(group: list[dict], key: str) -> str:
        values = [r[key] for r in group if r[key] is not None]
        return _fmt(statistics.median(values), 1) if values else "-"

    def rho(key: str) -> str:
        pairs = [(r["ms"], r[key]) for r in rows if r[key] is not None]
        if len(pairs) < 3 or len({p[1] for p in pairs}) < 2:
            return "- (constant)"
        res = stats.spearmanr(*zip(*pairs))
        return f"{res.statistic:+.2f} (p {res.pvalue:.2g})"
    return (f"-- {len(slow)} of {len(rows)} samples > {100 * (SLOW - 1):.0f}% above their process median: "
            f"median SM clock {med(slow, 'sm_clock_mhz')} vs {med(rest, 'sm_clock_mhz')} MHz, power "
            f"{med(slow, 'power_w')} vs {med(rest, 'power_w')} W, with a throttle reason "
            f"{sum(bool(r['throttle']) for r in slow)} vs {sum(bool(r['throttle']) for r in rest)}; Spearman "
            f"rho of sample time with SM clock {rho('sm_clock_mhz')}, with power {rho('power_w')}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for path in record_paths(args.dirs):
        print("\n".join(report(read_record(path))), end="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
