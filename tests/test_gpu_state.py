"""GPU state per timed sample and clock locking, against a fake NVML (no GPU here): the
readings line up with the samples in the record, the `throttled` flag counts the right samples,
and a locked clock is always restored. The real H200 check is scripts/gpu_session.sh."""
from __future__ import annotations

import sys
import time
import types

import pytest

from harness import clocks, describe
from harness.orchestrator import clock_lock, combine
from harness.orchestrator.config import check_bench
from harness.orchestrator.spawn import Interrupted
from harness.errors import ConfigError
from harness.worker import gpu_state, timing

# What the fake GPU reports after each sample: SM clock, reason mask. Sample 2 runs at 1400 MHz
# under the SW power cap, sample 5 has a HW thermal slowdown at full clock; gpu_idle and the
# applications-clocks setting (samples 1, 3) are not throttling.
SM_MHZ = [1980, 1980, 1400, 1980, 1950, 1980]
REASONS = [0x0, 0x1, 0x4, 0x2, 0x0, 0x40]


class FakeNvmlError(Exception):
    pass


def fake_nvml(power_supported: bool = True, lock_error: str | None = None) -> types.ModuleType:
    nvml = types.ModuleType("pynvml")
    nvml.NVMLError = FakeNvmlError
    nvml.NVML_CLOCK_SM, nvml.NVML_CLOCK_MEM, nvml.NVML_TEMPERATURE_GPU = 1, 2, 0
    nvml.calls = []
    reads = {"sm": 0, "reasons": 0}

    def clock(handle, kind):
        if kind == nvml.NVML_CLOCK_MEM:
            return 3201
        value = SM_MHZ[reads["sm"] % len(SM_MHZ)]
        reads["sm"] += 1
        return value

    def reasons(handle):
        value = REASONS[reads["reasons"] % len(REASONS)]
        reads["reasons"] += 1
        return value

    def power(handle):
        if not power_supported:
            raise FakeNvmlError("Not Supported")
        return 650_000      # mW

    def set_locked(handle, lo, hi):
        if lock_error:
            raise FakeNvmlError(lock_error)
        nvml.calls.append(("lock", handle, lo, hi))

    nvml.nvmlInit = lambda: nvml.calls.append(("init",))
    nvml.nvmlShutdown = lambda: nvml.calls.append(("shutdown",))
    nvml.nvmlDeviceGetHandleByIndex = lambda i: f"gpu{i}"
    nvml.nvmlDeviceGetHandleByUUID = lambda u: f"uuid:{u.decode()}"
    nvml.nvmlDeviceGetMaxClockInfo = lambda h, kind: 1980
    nvml.nvmlDeviceGetClockInfo = clock
    nvml.nvmlDeviceGetTemperature = lambda h, sensor: 41
    nvml.nvmlDeviceGetPowerUsage = power
    nvml.nvmlDeviceGetCurrentClocksEventReasons = reasons
    nvml.nvmlDeviceSetGpuLockedClocks = set_locked
    nvml.nvmlDeviceResetGpuLockedClocks = lambda h: nvml.calls.append(("reset", h))
    return nvml


@pytest.fixture
def nvml(monkeypatch):
    fake = fake_nvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(gpu_state, "device_handle", lambda n: ("gpu0", "00000000:19:00.0", "pci_bus_id"))
    return fake


def timed_process(repeats: int = len(SM_MHZ)) -> dict:
    """One worker process's timing dict, as measure.time_and_collect leaves it."""
    with gpu_state.recording("cuda") as state:
        t = timing.measure(lambda: sum(range(100)), lambda out: None, warmup=0, repeats=repeats,
                           min_repeat_ms=0.05, max_iters=4, settle_first=False, after_sample=state.after_sample)
    out = dict(vars(t), gpu_state=state.state(), started_at=time.time())
    return out


def record_of(processes: list[dict], **extra) -> dict:
    return {"status": "ok", "workload": "fp8_linear", "backend": "inductor", "params": {"mode": "fwd"},
            "timing": combine.timing(processes), **extra}


def test_readings_line_up_with_the_samples_in_the_record(nvml):
    record = record_of([timed_process(), timed_process()])
    for p in record["timing"]["processes"]:
        state = p["gpu_state"]
        assert all(len(state[f]) == len(p["samples_ms"]) == len(SM_MHZ) for f in clocks.FIELDS)
        assert state["sm_clock_mhz"] == SM_MHZ and state["mem_clock_mhz"] == [3201] * 6
        assert state["power_w"] == [650.0] * 6 and state["max_sm_clock_mhz"] == 1980
        assert state["clocks_event_reasons"][1:3] == [["gpu_idle"], ["sw_power_cap"]]
        assert state["device"] == "00000000:19:00.0" and state["read_ms"] >= 0
        assert isinstance(p["started_at"], float)


def test_a_field_the_gpu_does_not_report_stays_none_and_aligned(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(power_supported=False))
    monkeypatch.setattr(gpu_state, "device_handle", lambda n: ("gpu0", "0", "pci_bus_id"))
    state = timed_process(repeats=3)["gpu_state"]
    assert state["power_w"] == [None, None, None] and state["errors"] == {"power_w": "Not Supported"}
    assert len(state["sm_clock_mhz"]) == 3


def test_throttled_flag_counts_slow_clocks_and_throttle_reasons_only(nvml):
    record = record_of([timed_process(), timed_process()])
    s = clocks.summary(record)
    # per process: sample 2 (1400 MHz < 90% of 1980, sw_power_cap) and 5 (hw_thermal_slowdown)
    assert (s.samples, s.throttled, s.below) == (12, 4, 2)
    assert s.reasons == {"sw_power_cap": 2, "hw_thermal_slowdown": 2}
    flag = next(f for f in describe.assess(record) if f["code"] == "throttled")
    assert flag["detail"].startswith("4 of 12 timed samples throttled (2 below 90% of the 1980 MHz maximum SM clock")
    assert "SM 1400-1980 MHz" in describe.summary_line(record)
    # a state of the GPU under load, not noise (describe.NOISE_FLAGS): different clocks are said instead
    assert "throttled" not in describe.NOISE_FLAGS and "throttled" in describe.FLAG_CODES


def test_a_locked_clock_is_the_reference_and_no_reasons_no_flag():
    state = {"sm_clock_mhz": [1500, 1500, 1340], "clocks_event_reasons": [["applications_clocks_setting"]] * 3,
             "max_sm_clock_mhz": 1980}
    record = {"timing": {"processes": [{"samples_ms": [1, 1, 1], "gpu_state": state}]},
              "environment": {"sm_clock_lock": {"locked": True, "sm_clock_mhz": 1500}}}
    s = clocks.summary(record)
    assert (s.reference, s.reference_mhz, s.throttled) == ("locked", 1500, 1)   # 1340 < 0.9 x 1500
    record["environment"] = {}
    assert clocks.summary(record).throttled == 3          # against the 1980 MHz maximum
    assert clocks.summary({"timing": {"processes": [{"samples_ms": [1]}]}}) is None


def test_the_hook_in_the_worker_records_gpu_state_per_process(nvml, tmp_path):
    from harness.protocol import WorkerResult, WorkerTask
    from harness.worker.measure import Parts, time_it, timed_window
    prepared = types.SimpleNamespace(
        step=lambda: 1, inputs=(), synchronize=lambda out: None, cuda_events=False,
        graphs_compiled=lambda: None, run_evidence=lambda: {}, reset_peak_memory=lambda: None)
    bench = {"warmup": 0, "warmup_ms": 0, "repeats": 4, "min_repeat_ms": 0.05, "max_iters_per_repeat": 4}
    parts = Parts("first", lambda: None, numerics=lambda first: {}, profiled=lambda: None, profile_iters=0,
                  timed=lambda after_sample: (time_it(prepared, bench, after_sample), None))
    task = WorkerTask(config={"bench": bench}, run_dir=str(tmp_path), compile_cache_dir=str(tmp_path),
                      process_index=1, processes=2)
    result = WorkerResult(environment={"device": "cuda"})
    timed_window(task, prepared, parts, result)
    assert len(result.timing["gpu_state"]["sm_clock_mhz"]) == len(result.timing["samples_ms"]) == 4
    result = WorkerResult(environment={"device": "cpu"})
    timed_window(task, prepared, parts, result)
    assert "gpu_state" not in result.timing and "host_load" in result.timing


def test_without_nvml_the_state_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)      # import pynvml raises ImportError
    with gpu_state.recording("cuda") as state:
        assert state.after_sample is None
    assert state.state() == {"unavailable": gpu_state.INSTALL_HINT}


def test_an_nvml_session_is_shut_down_whatever_happens_inside(nvml, monkeypatch):
    with pytest.raises(RuntimeError):
        with clocks.nvml_session("not installed") as (session, why):
            assert (session, why) == (nvml, None)
            raise RuntimeError("a worker crashed")
    assert nvml.calls == [("init",), ("shutdown",)]

    def no_driver():
        raise FakeNvmlError("Driver Not Loaded")
    monkeypatch.setattr(nvml, "nvmlInit", no_driver)
    with clocks.nvml_session("not installed") as (session, why):
        assert (session, why) == (None, "NVML did not initialise: Driver Not Loaded")
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with clocks.nvml_session("not installed") as (session, why):
        assert (session, why) == (None, "not installed")


def test_two_runs_at_different_clocks_are_said_to_differ():
    a = {"sm_clock_median_mhz": 1980.0, "sm_clock_min_mhz": 1980.0, "sm_clock_max_mhz": 1980.0, "throttled_samples": 0}
    b = {"sm_clock_median_mhz": 1755.0, "sm_clock_min_mhz": 1650.0, "sm_clock_max_mhz": 1980.0, "throttled_samples": 9}
    text = clocks.different_clocks(a, b)
    assert text.startswith("ran at different clocks: base median SM clock 1980 MHz, 0 throttled")
    assert "new median SM clock 1755 MHz (1650-1980), 9 throttled sample(s) (-11.4%)" in text
    assert clocks.different_clocks(a, dict(a, sm_clock_median_mhz=1965.0)) == ""
    assert clocks.different_clocks(a, {"sm_clock_median_mhz": float("nan")}) == ""


# -- bench.lock_clocks --------------------------------------------------------------------------

def test_lock_clocks_locks_at_the_max_and_always_restores(nvml):
    with clock_lock.locked({"lock_clocks": True}, "0") as lock:
        assert nvml.calls[-1] == ("lock", "gpu0", 1980, 1980)
    assert lock == {"requested": True, "locked": True, "gpu": "0", "how": "nvml", "sm_clock_mhz": 1980,
                    "restored": True}
    for stop in (RuntimeError("worker crashed"), Interrupted("SIGTERM")):
        nvml.calls.clear()
        with pytest.raises(type(stop)):
            with clock_lock.locked({"lock_clocks": True, "lock_clocks_mhz": 1500}, "GPU-abc"):
                raise stop
        assert ("lock", "uuid:GPU-abc", 1500, 1500) in nvml.calls and ("reset", "uuid:GPU-abc") in nvml.calls


def test_lock_clocks_refused_runs_unlocked_and_says_why(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(lock_error="Insufficient Permissions"))
    with clock_lock.locked({"lock_clocks": True}, "0") as lock:
        pass
    assert lock["locked"] is False and lock["reason"] == "NVML: Insufficient Permissions"
    assert capsys.readouterr().err.strip() == ("[orchestrator] bench.lock_clocks: cannot lock the SM clock "
                                               "(NVML: Insufficient Permissions); running unlocked")
    with clock_lock.locked({"lock_clocks": True}, None) as lock:
        assert lock["reason"] == "no GPU"
    with clock_lock.locked({"lock_clocks": False}, "0") as lock:
        assert lock is None


def test_the_locked_gpu_is_the_one_the_run_uses(monkeypatch):
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert clock_lock.target_gpu("1", ["0", "1"]) == "1"            # the pool's slot
    assert clock_lock.target_gpu(None, ["0", "1"]) == "0"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert clock_lock.target_gpu(None, ["0", "1", "2", "3"]) == "2"
    # emptied by the user: the run goes to the CPU, and no GPU is locked (GPU 0 once was)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert clock_lock.target_gpu(None, ["0", "1"]) is None
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")                # emptied by submitit's launcher
    assert clock_lock.target_gpu(None, ["0", "1"]) == "0"


def test_lock_clocks_mhz_must_be_a_clock():
    from dataclasses import asdict
    from harness.orchestrator.config import BenchConfig
    with pytest.raises(ConfigError, match="bench.lock_clocks_mhz: expected null"):
        check_bench(dict(asdict(BenchConfig()), lock_clocks_mhz=-5))


def test_a_locked_run_at_its_locked_clock_is_not_flagged_throttled(nvml, tmp_path):
    # through the orchestrator: the lock reaches the record before its flags are judged (it
    # once came after them, and every sample at the 1500 MHz lock counted as below 90% of 1980)
    from conftest import composed
    from harness.orchestrator.run import Measurement
    from harness.orchestrator.spawn import Outcome
    from harness.protocol import WorkerResult
    cfg = composed("workload=faulty", "backend=eager", "bench=quick", "bench.isolation=spawn",
                   "bench.processes=1", "bench.lock_clocks=true", "bench.lock_clocks_mhz=1500")
    state = {"sm_clock_mhz": [1500] * 3, "clocks_event_reasons": [["applications_clocks_setting"]] * 3,
             "max_sm_clock_mhz": 1980}
    process = {"median_ms": 1.0, "cv": 0.0, "iters_per_sample": 1, "samples_ms": [1.0] * 3, "gpu_state": state}
    m = Measurement.start(cfg, tmp_path, "0", [0, 1], ["0", "1"])
    with clock_lock.locked(cfg["bench"], "0") as lock:
        m.outcomes.append(Outcome(result=WorkerResult(status="ok", environment={"device": "cuda"}, timing=process)))
    record = m.finish(lock).to_dict()
    assert record["environment"]["sm_clock_lock"]["sm_clock_mhz"] == 1500
    assert {k: record["environment"][k] for k in ("device", "gpu_slot", "cpu_set", "node_gpus")} == {
        "device": "cuda", "gpu_slot": "0", "cpu_set": [0, 1], "node_gpus": ["0", "1"]}
    assert record["status"] == "ok" and "throttled" not in describe.flag_codes(record)
