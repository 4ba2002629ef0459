"""How a run is named and flagged, once, for the console line, the tables and compare.

Kept free of torch and pandas: the orchestrator imports it to print each run's line.
Records of schema 2 carry `backend_label` and typed `flags` themselves; schema-1 records (the
H100 reference) are read through the same functions, and get the data-derived flags from
`assess` when they are read, so that old records show them too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness import clocks

# Workload parameters that name a variant, in this order: `fp8_linear[fwd,tensorwise,seed]`.
TAG_KEYS = ("mode", "recipe", "phase", "cache", "preset")

# Flag codes: what a run did not measure as asked. Each record flag is {"code", "detail"}.
FLAG_CODES = {
    "host_bound": "the GPU idled more than 10% of the step (host overhead decides the wall time)",
    "high_cv": "samples within a process spread more than 10% (CV)",
    "process_spread": "medians of fresh processes spread more than 5% (CV)",
    "recompiled": "the compiler compiled again during timing: the timing mixes compile and run",
    "position_recompiles": "a generation's step compiled again as the position moved, though its shapes did not",
    "collector": "a collector failed: a kernel or memory table is missing",
    "no_graph_replay": "a CUDA-graph mode did not replay graphs",
    "profile_differs": "the profiled program is not the timed one",
    "gpu_over_wall": "the profiled GPU time exceeds the timed wall: kernels ran slower under the profiler, so the host gap is not measured",
    "cpu_fallback": "a GPU node ran on the CPU",
    "emulated": "an op ran as a software emulation on this device (fp8 on the CPU): the time is the emulation's, not the hardware's",
    "host_busy": "other work took more than 10% of the run's cores while it was timed (a record "
                 "without that figure: a load average above one per core, all cores the run's)",
    "throttled": "timed samples ran below 90% of the reference SM clock or with a throttle reason (harness/clocks.py)",
    "flagged": "a schema-1 flag in free text (its detail says what)",
}

# Flags that make a run's median unreliable beside another's (its samples or processes spread,
# other work shared its cores): a finding between two runs, either of them flagged so, names the
# flags and states no ratio of their medians as a result. Not `throttled`: on the H200 every
# sample of a GEMM-bound run is power-capped (sw_power_cap at ~690 W of 700, SM 1560-1830 of
# 1980 MHz, 2026-12-02), the GPU's normal state under load, which both sides of a pair share;
# what makes two runs incomparable is running at different clocks, which compare and the pair
# findings say (harness/clocks.py), and the spread it adds is in the CV.
NOISE_FLAGS = ("high_cv", "process_spread", "host_busy")


def noise_codes(codes: str | list[str] | tuple[str, ...]) -> list[str]:
    """The NOISE_FLAGS among a run's flag codes (a list, or the summary's comma-joined text)."""
    have = set(codes.split(",") if isinstance(codes, str) else codes)
    return [code for code in NOISE_FLAGS if code in have]


def flagged_text(text: str, codes: str | list[str] | tuple[str, ...]) -> str:
    """A table cell of a flagged run: its value, then its flag codes, `0.682 !host_bound,high_cv`.
    One spelling wherever a flagged run's figure sits in a table (report.md, the findings docs,
    the dashboard), so that no cell of such a run reads as a plain measurement."""
    codes = [c for c in (codes.split(",") if isinstance(codes, str) else codes) if c]
    return f"{text} !{','.join(codes)}" if codes and text != "" else text


@dataclass(frozen=True)
class Thresholds:
    """Where a figure becomes a flag (docs/DESIGN.md, "What a figure is")."""
    host_bound_idle_share: float = 0.10   # GPU idle share of the step (host gap / wall)
    high_cv: float = 0.10                 # within-process CV of the samples
    process_spread_cv: float = 0.05       # CV of the per-process medians
    # GPU busy time in the profiling pass above the timed wall: kernels that ran slower under the
    # profiler (its per-kernel instrumentation, clocks), not a negative host gap.
    gpu_over_wall: float = 0.02
    # Other work's CPU time on the run's cores over the timed window, as a share of the cores'
    # time: the line of high_cv (docs/DESIGN.md, "A busy host") ...
    host_busy_other_share: float = 0.10
    # ... and at least this much of it: /proc counts in 10 ms ticks, each counter truncated.
    host_busy_min_other_cpu_s: float = 0.05
    # Records without that figure: the 1-minute load average at the start per core of a
    # machine whose cores were all the run's (the harness alone kept 1.1-1.3 on 2 cores).
    host_busy_loadavg_per_core: float = 1.0


THRESHOLDS = Thresholds()


def _number(value: Any) -> float | None:
    """A finite float, or None (missing, text, bool, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def variant(params: dict[str, Any]) -> str:
    """`fwd,tensorwise,seed`: the parameters that name a workload variant."""
    return ",".join(str(params[k]) for k in TAG_KEYS if params.get(k) is not None)


def backend_label(record: dict[str, Any]) -> str:
    """What tables call the backend: `inductor`, `inductor:max-autotune`, `xla:no-cmdbuf`.

    Schema 2 records carry the label their backend gave them; schema 1 records had only
    Inductor modes to tell apart."""
    if record.get("backend_label"):
        return str(record["backend_label"])
    backend = record.get("backend") or "?"
    mode = ((record.get("config") or {}).get("backend") or {}).get("mode")
    return f"{backend}:{mode}" if mode and mode != "default" else backend


def gpu_figures(record: dict[str, Any]) -> dict[str, float] | None:
    """GPU time per iteration beside the wall time: `busy_ms_per_iter` (GPU busy, overlapping
    streams once), `kernel_ms_per_iter` (kernel sum), `host_gap_ms` (wall median - busy) and
    `idle_share` (gap / wall). Schema 2 records carry them as `gpu`; schema 1 records as the
    kernel summary's launch-overhead figures (microseconds). None when not profiled."""
    gpu = record.get("gpu") or {}
    if _number(gpu.get("busy_ms_per_iter")) is not None:
        out = {k: _number(gpu.get(k)) for k in
               ("busy_ms_per_iter", "kernel_ms_per_iter", "host_gap_ms", "idle_share")}
    else:
        kernels = record.get("kernels") or {}
        busy_us, gap_us = (_number(kernels.get("gpu_busy_us_per_iter")),
                           _number(kernels.get("gap_us_per_iter")))
        if busy_us is None or gap_us is None:
            return None
        kernel_us = _number(kernels.get("kernel_us_per_iter"))
        out = {"busy_ms_per_iter": busy_us / 1e3,
               "kernel_ms_per_iter": None if kernel_us is None else kernel_us / 1e3,
               "host_gap_ms": gap_us / 1e3, "idle_share": _number(kernels.get("gap_share"))}
    wall = _number((record.get("timing") or {}).get("median_ms"))
    if out["host_gap_ms"] is None and wall:
        out["host_gap_ms"] = wall - out["busy_ms_per_iter"]
    if out["idle_share"] is None and out["host_gap_ms"] is not None and wall:
        out["idle_share"] = out["host_gap_ms"] / wall
    return out


def backend_traits(record: dict[str, Any]):
    """What the run's backend configuration is (`harness.orchestrator.plugins.Traits`: family,
    graph mechanism, fair pair), as the record states it or, for a record written before it did,
    as its backend declares it for the record's config. A backend that is not installed here
    reads as its own family with no graphs and no pair."""
    from harness.orchestrator import plugins
    stated = record.get("backend_traits")
    if isinstance(stated, dict) and stated.get("family"):
        return plugins.Traits(**{k: stated.get(k) for k in ("family", "graphs", "pair")})
    name = str(record.get("backend") or "?")
    spec = plugins.backends().get(name)
    if spec is None:
        return plugins.Traits(family=name)
    return spec.traits(((record.get("config") or {}).get("backend") or {}))


def graph_mode(record: dict[str, Any]) -> str | None:
    """How a run is meant to launch its kernels as graphs: `cudagraphs` (an Inductor graph
    mode) or `command_buffers` (XLA with command buffers on), as its backend declares
    (`backend_traits`); an XLA run whose record states they were off (on the CPU there are none)
    is None; else None."""
    graphs = backend_traits(record).graphs
    buffers = (record.get("compile") or {}).get("command_buffers")
    if graphs == "command_buffers" and isinstance(buffers, dict) and buffers.get("enabled") is False:
        return None
    return None if graphs == "none" else graphs


def between_processes(record: dict[str, Any]) -> dict[str, Any] | None:
    """The spread of the per-process medians (schema 2, `bench.processes` > 1), else None."""
    between = (record.get("timing") or {}).get("between") or {}
    return between if (_number(between.get("n")) or 1) > 1 else None


def busiest_host_load(record: dict[str, Any]) -> tuple[int, int, dict[str, Any]] | None:
    """(index, processes, host_load) of the timed process whose cores other work used most
    (`timing.processes[i].host_load`, harness/worker/host_load.py); None for records without."""
    processes = (record.get("timing") or {}).get("processes") or []
    loads = [(i, p["host_load"]) for i, p in enumerate(processes)
             if isinstance(p, dict) and isinstance(p.get("host_load"), dict)
             and _number(p["host_load"].get("other_share")) is not None]
    if not loads:
        return None
    i, load = max(loads, key=lambda x: x[1]["other_share"])
    return i, len(processes), load


def _cores(cores: list[int]) -> str:
    return f"core {cores[0]}" if len(cores) == 1 else (
        f"cores {','.join(map(str, cores))}" if len(cores) <= 8 else f"{len(cores)} cores")


def host_busy(record: dict[str, Any], thresholds: Thresholds = THRESHOLDS) -> dict[str, str] | None:
    """The `host_busy` flag of a timed run: other work's share of the run's cores while it was
    timed; a record without that figure, from its load average at the start, only where the
    run's cores were all the machine's (a load average is machine-wide: on a GPU node whose jobs
    run on disjoint cores it says nothing about this run's)."""
    if _number((record.get("timing") or {}).get("median_ms")) is None:
        return None
    busiest = busiest_host_load(record)
    if busiest is not None:
        i, n, load = busiest
        other_s = _number(load.get("other_cpu_s")) or 0.0
        if load["other_share"] <= thresholds.host_busy_other_share \
                or other_s < thresholds.host_busy_min_other_cpu_s:
            return None
        which = f" in process {i + 1} of {n}" if n > 1 else ""
        return {"code": "host_busy", "detail":
                f"other work took {100 * load['other_share']:.0f}% of the run's "
                f"{_cores(list(load.get('cores') or []))} while it was timed{which} ({other_s:.2f} "
                f"CPU-s in {load.get('window_s', 0):.2f} s; load average {load.get('loadavg_1m_before', 0):.2f} "
                f"before, {load.get('loadavg_1m_after', 0):.2f} after)"}
    env = record.get("environment") or {}
    load_1m, cpus = _number(env.get("loadavg_1m")), _number(env.get("cpu_count"))
    if load_1m is None or not cpus or len(env.get("affinity") or []) != cpus:
        return None
    if load_1m / cpus <= thresholds.host_busy_loadavg_per_core:
        return None
    return {"code": "host_busy", "detail":
            f"load average {load_1m:.2f} at the start on a {cpus:.0f}-core machine, all of its cores "
            "the run's (recorded before the CPU time of other work was)"}


def assess(record: dict[str, Any], thresholds: Thresholds = THRESHOLDS) -> list[dict[str, str]]:
    """The flags a record's own figures call for, each {"code", "detail"} with the figures.

    The one place these are decided: the orchestrator calls it when it writes a record (the
    worker adds the events only it sees: recompiles during timing, collector failures, a CPU
    fallback); the report calls it on schema-1 records, which were written before it
    existed."""
    flags = []
    timing = record.get("timing") or {}
    wall = _number(timing.get("median_ms"))
    gpu = gpu_figures(record)
    if gpu and wall and gpu["idle_share"] is not None \
            and gpu["idle_share"] > thresholds.host_bound_idle_share:
        flags.append({"code": "host_bound", "detail":
                      f"GPU idle {100 * gpu['idle_share']:.0f}% of the {wall:.4g} ms step: "
                      f"GPU busy {gpu['busy_ms_per_iter']:.4g} ms, host gap "
                      f"{gpu['host_gap_ms']:.4g} ms per iteration"})
    if gpu and wall and gpu["busy_ms_per_iter"] > wall * (1 + thresholds.gpu_over_wall):
        flags.append({"code": "gpu_over_wall", "detail":
                      f"GPU busy {gpu['busy_ms_per_iter']:.4g} ms per iteration while profiled, "
                      f"{100 * (gpu['busy_ms_per_iter'] / wall - 1):.1f}% above the {wall:.4g} ms "
                      f"timed wall: the host gap ({gpu['host_gap_ms']:.4g} ms) is not a measurement"})
    cv = _number(timing.get("cv"))
    if cv is not None and cv > thresholds.high_cv:
        samples = [x for x in (_number(v) for v in timing.get("samples_ms") or []) if x is not None]
        spread = (f"samples {min(samples):.4g}-{max(samples):.4g} ms" if samples else
                  f"p10-p90 {timing.get('p10_ms')}-{timing.get('p90_ms')} ms")
        median = f", median {wall:.4g} ms" if wall is not None else ""
        flags.append({"code": "high_cv",
                      "detail": f"within-process CV {100 * cv:.0f}% ({spread}{median})"})
    between = between_processes(record)
    if between and (_number(between.get("cv")) or 0.0) > thresholds.process_spread_cv:
        flags.append({"code": "process_spread", "detail":
                      f"{between['n']} processes: medians {between['min_ms']:.4g}-"
                      f"{between['max_ms']:.4g} ms, CV {100 * between['cv']:.1f}%"})
    busy = host_busy(record, thresholds)
    if busy:
        flags.append(busy)
    compile_info = record.get("compile") or {}
    graphs = compile_info.get("cudagraphs") or {}
    replays = _number(graphs.get("graph_replays"))
    replayed = bool(replays) if replays is not None else bool(graphs.get("replayed"))
    if graphs and graph_mode(record) == "cudagraphs" and not replayed:
        skips = "; ".join(map(str, graphs.get("skips") or [])) or "no skip reason recorded"
        flags.append({"code": "no_graph_replay", "detail":
                      f"{graphs.get('graphs_recorded', 0)} graph(s) recorded, none replayed: "
                      f"{skips}"})
    buffers = compile_info.get("command_buffers") or {}
    if buffers.get("enabled") and buffers.get("during_profiling") is False:
        flags.append({"code": "profile_differs", "detail":
                      "XLA command buffers on while timing, off while profiling: the kernel "
                      "table and GPU time are of the op-by-op program"})
    throttled = clocks.throttled_flag(record)
    if throttled:
        flags.append(throttled)
    return flags


def _typed(flag: Any) -> dict[str, str]:
    """A record flag as {"code", "detail"}; schema-1 flags were free text (collector failures
    and recompiles), mapped here."""
    if isinstance(flag, dict):
        return {"code": str(flag.get("code") or "flagged"), "detail": str(flag.get("detail") or "")}
    text = str(flag)
    code = ("recompiled" if text.startswith("recompiled") else
            "collector" if "collector" in text else "flagged")
    return {"code": code, "detail": text}


def merge_flags(flags: list[Any]) -> list[dict[str, str]]:
    """One flag per code, in first-seen order; details of the same code joined (a memory and
    a kernel collector failure are one `collector` flag with both)."""
    merged: dict[str, dict[str, str]] = {}
    for flag in map(_typed, flags):
        seen = merged.get(flag["code"])
        if seen is None:
            merged[flag["code"]] = dict(flag)
        elif flag["detail"] and flag["detail"] not in seen["detail"]:
            seen["detail"] = "; ".join(d for d in (seen["detail"], flag["detail"]) if d)
    return list(merged.values())


def record_flags(record: dict[str, Any]) -> list[dict[str, str]]:
    """A record's flags as {"code", "detail"}: those it carries (the orchestrator ran `assess`
    when it wrote a schema-2 record; schema-1 flags are text) and those today's `assess` finds in
    its figures under a code it does not already carry (a rule newer than the record; a
    schema-1 recompile text says what the counter says)."""
    own = merge_flags(list(record.get("flags") or []))
    have = {flag["code"] for flag in own}
    return own + [flag for flag in assess(record) if flag["code"] not in have]


def flag_codes(record: dict[str, Any]) -> list[str]:
    return [flag["code"] for flag in record_flags(record)]


def summary_line(record: dict[str, Any]) -> str:
    """One console line per run: name, backend, status, shape, the three times (on a GPU;
    a CPU run has no GPU time and says so), spread, flags."""
    params = record.get("params") or {}
    tags = variant(params)
    name = f"{record.get('workload')}[{tags}]" if tags else str(record.get("workload"))
    parts = [f"{name:<40}", f"{backend_label(record):<22}", f"{record.get('status', '?'):<7}"]
    if record.get("shape"):
        parts.append(str(record["shape"]))
    timing = record.get("timing") or {}
    if _number(timing.get("median_ms")) is not None:
        text = f"wall {timing['median_ms']:.4g} ms (cv {100 * (timing.get('cv') or 0):.1f}%"
        between = between_processes(record)
        if between:
            text += f", {between['n']} procs {between['min_ms']:.4g}-{between['max_ms']:.4g}"
        parts.append(text + ")")
    gpu = gpu_figures(record)
    if gpu:
        gap = gpu["host_gap_ms"]
        parts.append(f"gpu {gpu['busy_ms_per_iter']:.4g} ms"
                     + (f", host gap {gap:.3g} ms" if gap is not None else ""))
    elif (record.get("environment") or {}).get("device") == "cpu" and "median_ms" in timing:
        parts.append("no GPU time (CPU run)")    # of the three figures, only the wall exists here
    state = clocks.summary(record)
    if state is not None:
        parts.append(state.range_text())
    gen = record.get("generation") or {}
    if gen:     # the wall figure above is the median TPOT
        parts.append(f"TTFT {gen['ttft_ms']['p50']:.4g} ms, TPOT p99 {gen['tpot_ms']['p99']:.4g} ms")
    thr = record.get("throughput") or {}
    if thr.get("tflops"):
        parts.append(f"{thr['tflops']:.3g} TFLOP/s")
    if thr.get("tokens_per_s"):
        parts.append(f"{thr['tokens_per_s']:.4g} tok/s")
    num = record.get("numerics")
    if num:
        parts.append(f"sqnr {num['min_sqnr_db']:.1f} dB {'ok' if num['passed'] else 'FAIL'}")
    codes = flag_codes(record)
    if codes:
        parts.append("!! " + ",".join(codes))
    if record.get("status") != "ok":
        parts.append(f"-- {record.get('reason')}")
    return "  ".join(parts)
