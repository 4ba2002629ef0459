"""What the GPU's clocks did while a run was timed, read from its record (torch-free).

The worker reads NVML right after each timed sample, outside its window
(harness/worker/gpu_state.py); the record keeps the readings per process as lists aligned with
that process's `samples_ms` (`timing.processes[i].gpu_state`). Here they become the SM clock
range of the run, the count of throttled samples behind the `throttled` flag, and the sentence
compare and the findings print when two runs ran at different clocks.

A sample counts as throttled when the SM clock read after it is below 90% of the reference clock
(the GPU's maximum SM clock, or the clock `bench.lock_clocks` locked it at), or when NVML names a
reason in THROTTLE_REASONS. nvbench drops samples below 75% of the peak clock (NVIDIA/nvbench#206,
`--throttle-threshold`, 80% by default there, `--discard-on-throttle`); we keep every sample and
flag instead, at 90%: on the H200 a GEMM that loses 10% of its clock loses up to 10% of its time,
five times the 2% CV goal.

Also NVML's session (`nvml_session`), for both sides that talk to NVML: the worker's readings
and the orchestrator's clock lock (harness/orchestrator/clock_lock.py).
"""
from __future__ import annotations

import contextlib
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

# NVML's clock-event reasons (`nvmlClocksEventReason*`, called `nvmlClocksThrottleReason*` before
# driver 535): bit -> the name a record keeps.
REASONS = {
    0x001: "gpu_idle",
    0x002: "applications_clocks_setting",
    0x004: "sw_power_cap",
    0x008: "hw_slowdown",
    0x010: "sync_boost",
    0x020: "sw_thermal_slowdown",
    0x040: "hw_thermal_slowdown",
    0x080: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
# The reasons that hold a busy GPU below the clock it would run at. Not counted:
# - gpu_idle: the reading comes right after a synchronisation, when the GPU has just gone idle;
#   NVML reports it between samples whatever clock the sample ran at;
# - applications_clocks_setting: the clock is held at a chosen value (bench.lock_clocks, an
#   administrator's `nvidia-smi -ac/-lgc`): a setting, not a slowdown, and the clock itself is
#   judged by the 90% rule against the locked clock;
# - sync_boost, display_clock_setting: settings of a multi-GPU sync group and of a display.
THROTTLE_REASONS = ("sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown",
                    "hw_power_brake_slowdown")
BELOW_REFERENCE = 0.90          # of the reference clock: below it a sample counts as throttled
DIFFERENT_CLOCKS = 0.03         # two runs' median SM clocks further apart than this differ
# The per-sample lists of a process's gpu_state, each aligned with its samples_ms.
FIELDS = ("sm_clock_mhz", "mem_clock_mhz", "temperature_c", "power_w", "clocks_event_reasons")


def reason_names(mask: int) -> list[str]:
    """NVML's reason bit mask as names; an unknown bit is kept as its hex value."""
    names = [name for bit, name in REASONS.items() if mask & bit]
    rest = mask & ~sum(REASONS)
    return names + ([f"0x{rest:x}"] if rest else [])


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class ClockSummary:
    """A run's GPU state during timing, all processes together."""
    samples: int                    # timed samples with an SM clock reading
    sm_min_mhz: float
    sm_median_mhz: float
    sm_max_mhz: float
    reference_mhz: float | None     # the max SM clock, or the locked clock
    reference: str                  # "max" | "locked"
    below: int                      # samples below BELOW_REFERENCE of the reference clock
    throttled: int                  # samples below it or with a reason in THROTTLE_REASONS
    reasons: dict[str, int] = field(default_factory=dict)   # THROTTLE_REASONS seen -> samples
    power_max_w: float | None = None
    temperature_max_c: float | None = None

    def range_text(self) -> str:
        """`SM 1755-1980 MHz`: the console line's and the summary's clock figure."""
        lo, hi = round(self.sm_min_mhz), round(self.sm_max_mhz)
        return f"SM {lo} MHz" if lo == hi else f"SM {lo}-{hi} MHz"


def process_states(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The gpu_state of each timed process that has readings."""
    processes = ((record.get("timing") or {}).get("processes")) or []
    return [p["gpu_state"] for p in processes
            if isinstance(p, dict) and isinstance(p.get("gpu_state"), dict)
            and p["gpu_state"].get("sm_clock_mhz")]


def locked_clock_mhz(record: Mapping[str, Any]) -> float | None:
    lock = (record.get("environment") or {}).get("sm_clock_lock") or {}
    return _number(lock.get("sm_clock_mhz")) if lock.get("locked") else None


def summary(record: Mapping[str, Any]) -> ClockSummary | None:
    """The SM clock range, throttled samples and throttle reasons of a run's timed samples;
    None where no process recorded GPU state (CPU runs, runs before it was recorded, no NVML)."""
    states = process_states(record)
    if not states:
        return None
    locked = locked_clock_mhz(record)
    maxima = [m for m in (_number(s.get("max_sm_clock_mhz")) for s in states) if m]
    reference = locked or (max(maxima) if maxima else None)
    clocks: list[float] = []
    below = throttled = 0
    reasons: dict[str, int] = {}
    for state in states:
        named = state.get("clocks_event_reasons") or []
        for i, raw in enumerate(state["sm_clock_mhz"]):
            clock = _number(raw)
            seen = [r for r in (named[i] if i < len(named) and named[i] else []) if r in THROTTLE_REASONS]
            for r in seen:
                reasons[r] = reasons.get(r, 0) + 1
            slow = clock is not None and reference is not None and clock < BELOW_REFERENCE * reference
            below += slow
            throttled += bool(slow or seen)
            if clock is not None:
                clocks.append(clock)
    if not clocks:
        return None

    def peak(key: str) -> float | None:
        values = [v for s in states for v in map(_number, s.get(key) or []) if v is not None]
        return max(values) if values else None
    return ClockSummary(samples=len(clocks), sm_min_mhz=min(clocks), sm_median_mhz=statistics.median(clocks),
                        sm_max_mhz=max(clocks), reference_mhz=reference,
                        reference="locked" if locked else "max", below=below, throttled=throttled,
                        reasons=reasons, power_max_w=peak("power_w"), temperature_max_c=peak("temperature_c"))


def throttled_flag(record: Mapping[str, Any]) -> dict[str, str] | None:
    """The `throttled` flag, naming how many samples and why; None when none was."""
    s = summary(record)
    if s is None or not s.throttled:
        return None
    ref = (f"{BELOW_REFERENCE:.0%} of the {s.reference_mhz:.0f} MHz "
           f"{'locked' if s.reference == 'locked' else 'maximum'} SM clock") if s.reference_mhz else "the reference clock"
    why = ", ".join(f"{name} x{n}" for name, n in sorted(s.reasons.items(), key=lambda kv: -kv[1]))
    return {"code": "throttled", "detail": (
        f"{s.throttled} of {s.samples} timed samples throttled ({s.below} below {ref}"
        + (f"; reasons: {why}" if why else "") + f"); {s.range_text()} during timing")}


def different_clocks(a: Mapping[str, Any], b: Mapping[str, Any], names: tuple[str, str] = ("base", "new"),
                     tolerance: float = DIFFERENT_CLOCKS) -> str:
    """The sentence compare and the findings print when two runs ran at different clocks: their
    median SM clocks during timing more than `tolerance` apart, or one with throttled samples and
    the other without. Reads summary rows (harness/report/load.py: `sm_clock_median_mhz`,
    `sm_clock_min_mhz`, `sm_clock_max_mhz`, `throttled_samples`); "" when they agree or either
    side has no readings."""
    ma, mb = _number(a.get("sm_clock_median_mhz")), _number(b.get("sm_clock_median_mhz"))
    if not ma or not mb:
        return ""
    ta, tb = (_number(r.get("throttled_samples")) or 0.0 for r in (a, b))
    apart = abs(ma - mb) / max(ma, mb) > tolerance
    if not apart and bool(ta) == bool(tb):
        return ""

    def side(name: str, r: Mapping[str, Any], median: float, throttled: float) -> str:
        lo, hi = _number(r.get("sm_clock_min_mhz")), _number(r.get("sm_clock_max_mhz"))
        span = f" ({lo:.0f}-{hi:.0f})" if lo is not None and hi is not None and lo != hi else ""
        return f"{name} median SM clock {median:.0f} MHz{span}, {throttled:.0f} throttled sample(s)"
    return (f"ran at different clocks: {side(names[0], a, ma, ta)}; {side(names[1], b, mb, tb)}"
            + (f" ({100 * (mb / ma - 1):+.1f}%)" if apart else ""))


@contextlib.contextmanager
def nvml_session(missing: str) -> Iterator[tuple[Any, str | None]]:
    """NVML initialised inside and shut down after: yields (pynvml, None), or (None, why not):
    `missing` where nvidia-ml-py is not installed (each caller says what goes without it), else
    NVML's own error. pynvml is imported here, when asked: tests put a fake in sys.modules."""
    try:
        import pynvml
    except ImportError:
        yield None, missing
        return
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        yield None, f"NVML did not initialise: {e}"
        return
    try:
        yield pynvml, None
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()
