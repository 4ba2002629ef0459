"""A busy host: the CPU time other work took on a run's cores while it was timed
(harness/worker/host_load.py), the `host_busy` flag it raises (describe.assess), the flag read
from older records' load average, and end to end: a busy loop pinned to the worker's core
flags the run, the same run alone does not."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, harness_env
from harness.describe import NOISE_FLAGS, THRESHOLDS, assess, host_busy, summary_line
from harness.worker import host_load

CPU_REFERENCE = REPO / "results" / "reference" / "cpu_torch_xla"
H200_REFERENCE = REPO / "results" / "reference" / "h200"
PR_SET_NAME = 15
# Well above what a Python start costs (0.1-0.4 CPU-s on a loaded 2-core machine): the
# intermediate process of the stranger test is reaped by us, so its start is our own time.
SPIN_CPU_S = 1.0


def snapshot(monotonic_s: float, busy_s: float, own_s: float, cores=(0, 1)) -> host_load.Snapshot:
    tick = host_load.TICK_S
    return host_load.Snapshot(monotonic_s, 1.0, tuple(cores), round(busy_s / tick), 0, round(own_s / tick))


def test_cpu_ticks_sum_the_busy_fields_of_the_run_cores_only():
    with open("/proc/stat") as f:
        text = f.read()
    lines = {line.split()[0]: [int(x) for x in line.split()[1:]] for line in text.splitlines()
             if line.startswith("cpu") and line[3:4].isdigit()}
    core = min(int(name[3:]) for name in lines)
    busy, steal = host_load.cpu_ticks((core,), text)
    fields = lines[f"cpu{core}"]     # user nice system idle iowait irq softirq steal ...
    assert busy == fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]
    assert steal == fields[7]
    assert host_load.cpu_ticks((10_000,), text) == (0, 0)        # a core the machine lacks


def test_a_window_is_busy_minus_own_over_the_cores_time():
    w = host_load.window(snapshot(10.0, 5.0, 1.0), snapshot(11.0, 6.5, 1.8))
    assert w["window_s"] == pytest.approx(1.0) and w["cores"] == [0, 1]
    assert (w["cores_busy_cpu_s"], w["own_cpu_s"]) == (pytest.approx(1.5), pytest.approx(0.8))
    assert w["other_cpu_s"] == pytest.approx(0.7) and w["other_share"] == pytest.approx(0.35)
    # tick truncation can put own a tick above busy on an idle core: never a negative share
    idle = host_load.window(snapshot(0.0, 1.0, 0.0), snapshot(1.0, 1.5, 0.51))
    assert idle["other_cpu_s"] == 0.0 and idle["other_share"] == 0.0
    assert host_load.window(None, snapshot(1.0, 1.0, 1.0)) is None
    assert host_load.window(snapshot(0.0, 1.0, 0.0, (0,)), snapshot(1.0, 1.0, 0.0, (1,))) is None


def _spinner(new_session: bool, name: bytes = b"") -> subprocess.Popen:
    """A child that burns SPIN_CPU_S of CPU (however long the loaded machine takes), says so
    on stdout and then sleeps until killed."""
    code = ("import ctypes, sys, time\n"
            f"ctypes.CDLL(None).prctl({PR_SET_NAME}, {name!r}, 0, 0, 0)\n" if name else "import sys, time\n")
    code += (f"while time.process_time() < {SPIN_CPU_S}: pass\n"
             "print('spun', flush=True)\ntime.sleep(600)\n")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            start_new_session=new_session)


@pytest.mark.parametrize("new_session", [False, True], ids=["same group", "own session"])
def test_own_time_counts_the_workers_group_and_descendants_that_left_it(new_session):
    before = host_load.own_ticks()
    child = _spinner(new_session, name=b"a) (b c")    # a name /proc/<pid>/stat must parse around
    try:
        assert child.stdout.readline() == "spun\n"
        assert (host_load.own_ticks() - before) * host_load.TICK_S >= SPIN_CPU_S - 2 * host_load.TICK_S
        ppid, pgrp, _ = host_load._proc_stat(str(child.pid))
        assert ppid == os.getpid() and (pgrp == child.pid) == new_session
    finally:
        child.kill()
        child.wait()


def test_a_stranger_is_not_own_time():
    """A process of another session that is not our descendant (started through a
    short-lived intermediate, so init adopts it) is other work, not the worker's. The counting
    runs in a session of its own, as a worker does: pytest's workers share one process group,
    whose other members' time would count as this test's own."""
    spin = ("import time\n"
            f"while time.process_time() < {SPIN_CPU_S}: pass\n"
            "print(1, flush=True)\ntime.sleep(600)")
    middle = ("import subprocess, sys\n"
              f"p = subprocess.Popen([sys.executable, '-c', {spin!r}], start_new_session=True,"
              " stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)\n"
              "print(p.pid, flush=True)\nprint(p.stdout.readline().strip(), flush=True)\n")
    counter = ("import subprocess, sys\n"
               "from harness.worker import host_load\n"
               "before = host_load.own_ticks()\n"
               f"m = subprocess.Popen([sys.executable, '-c', {middle!r}], stdout=subprocess.PIPE, text=True,"
               " start_new_session=True)\n"
               "stranger = m.stdout.readline().strip()\n"
               "assert m.stdout.readline() == '1\\n'\n"
               "m.wait()\n"
               "print(stranger, host_load.own_ticks() - before, flush=True)\n")
    # (the stranger holds no end of the captured pipes: it writes to its intermediate only)
    out = subprocess.run([sys.executable, "-c", counter], capture_output=True, text=True, timeout=120,
                         start_new_session=True, cwd=REPO, env=harness_env())
    assert out.returncode == 0, out.stderr
    stranger, ticks = map(int, out.stdout.split())
    try:
        # the intermediate was reaped by the counter (its start lands in its cutime); the
        # stranger's SPIN_CPU_S was not
        assert ticks * host_load.TICK_S < SPIN_CPU_S
    finally:
        os.kill(stranger, 9)


def timed_record(share: float, other_cpu_s: float = 0.5, processes: int = 1) -> dict:
    load = {"cores": [0], "window_s": 1.0, "loadavg_1m_before": 2.0, "loadavg_1m_after": 2.5,
            "other_cpu_s": other_cpu_s, "other_share": share}
    idle = dict(load, other_share=0.01, other_cpu_s=0.01)
    return {"status": "ok", "workload": "faulty", "backend": "eager",
            "timing": {"median_ms": 1.0, "cv": 0.01,
                       "processes": [{"median_ms": 1.0, "host_load": idle}] * (processes - 1)
                       + [{"median_ms": 1.0, "host_load": load}]},
            "environment": {"loadavg_1m": 9.0, "cpu_count": 1, "affinity": [0]}}


def test_host_busy_names_the_share_the_cores_and_the_process():
    (flag,) = [f for f in assess(timed_record(0.43, processes=3)) if f["code"] == "host_busy"]
    assert flag["detail"] == ("other work took 43% of the run's core 0 while it was timed in process 3 "
                              "of 3 (0.50 CPU-s in 1.00 s; load average 2.00 before, 2.50 after)")
    assert "host_busy" in summary_line(dict(timed_record(0.43), flags=[flag]))
    assert "host_busy" in NOISE_FLAGS


def test_the_measured_share_decides_over_the_load_average():
    limit = THRESHOLDS.host_busy_other_share
    assert host_busy(timed_record(limit + 0.01)) is not None
    # below the share, the start's load average of 9 on one core does not flag a measured run
    assert host_busy(timed_record(limit - 0.01)) is None
    # a share from a few 10 ms ticks in a short window is not a measurement
    assert host_busy(timed_record(0.5, other_cpu_s=THRESHOLDS.host_busy_min_other_cpu_s / 2)) is None


def test_older_cpu_references_read_busy_from_their_load_average():
    """results/reference/cpu_torch_xla was recorded before the CPU time of other work was: its
    torch_xla runs at a load average of 3.5-5.4 on 2 cores are host_busy as read today, its
    torchax decode runs at 2.6-2.7 are too, the torchax runs at 1.6-1.7 are not, and a skipped
    run (no median) is never flagged."""
    flagged = {}
    for path in sorted(CPU_REFERENCE.rglob("record.json")):
        r = json.loads(path.read_text())
        flagged[path.parent.name] = (r["environment"]["loadavg_1m"], host_busy(r) is not None, r["status"])
    assert flagged["conv_torch_xla_2d174500"][:2] == (pytest.approx(3.54, abs=0.01), True)
    assert flagged["qwen_decoder_torch_xla_de047a7c"][:2] == (pytest.approx(5.20, abs=0.01), True)
    assert flagged["qwen_decoder_eager_429b0e73"][:2] == (pytest.approx(2.73, abs=0.01), True)
    assert flagged["conv_eager_2e5fd9c8"][:2] == (pytest.approx(1.74, abs=0.01), False)
    assert flagged["fp8_linear_torch_xla_d19ad38b"] == (pytest.approx(2.67, abs=0.01), False, "skipped")
    (detail,) = [f["detail"] for f in assess(json.loads(
        (CPU_REFERENCE / "torch_xla" / "conv_torch_xla_2d174500" / "record.json").read_text()))
        if f["code"] == "host_busy"]
    assert detail.startswith("load average 3.54 at the start on a 2-core machine")


def test_a_gpu_nodes_load_average_flags_nothing():
    """The H200 records hold a load average of a many-core node whose jobs run on disjoint
    cores, and no core count: nothing is read from it."""
    for path in sorted(H200_REFERENCE.rglob("record.json"))[:20]:
        r = json.loads(path.read_text())
        assert "loadavg_1m" in r["environment"] and host_busy(r) is None


# ------------------------------------------------------------------- end to end, on one core

def on_one_core(mode: str, core: int) -> dict:
    """scripts/host_busy.py: the harness pinned to `core`, alone or beside a busy loop pinned
    there too (the worker inherits the CPU set, as it inherits its GPU's cores on a GPU node)."""
    proc = subprocess.run([sys.executable, "scripts/host_busy.py", "--core", str(core), "--runs", "1",
                           "--mode", mode, "--json"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert run["cores"] == [core] and run["window_s"] > 0 and run["own_cpu_s"] > 0
    return run


def idlest_core() -> tuple[int, float]:
    return min(((c, host_load.core_busy_share(c, 0.5)) for c in sorted(os.sched_getaffinity(0))),
               key=lambda x: x[1])


@pytest.mark.slow
def test_a_busy_loop_pinned_to_the_workers_core_flags_host_busy():
    core, _ = idlest_core()
    run = on_one_core("busy", core)
    assert run["other_share"] > THRESHOLDS.host_busy_other_share
    assert "host_busy" in run["flags"]


@pytest.mark.slow
def test_the_same_run_alone_is_not_host_busy():
    quiet = THRESHOLDS.host_busy_other_share / 2
    core, share = idlest_core()
    if share > quiet:
        pytest.skip(f"no idle core to run alone on: others use {100 * share:.0f}% of the idlest, core {core}")
    run = on_one_core("alone", core)
    if run["other_share"] > THRESHOLDS.host_busy_other_share and host_load.core_busy_share(core) > quiet:
        pytest.skip(f"core {core} got busy during the run: others took {100 * run['other_share']:.0f}%")
    assert run["other_share"] <= THRESHOLDS.host_busy_other_share, run
    assert "host_busy" not in run["flags"]
