"""The GPU's state after each timed sample, from NVML (nvidia-ml-py, `import pynvml`).

Once per timed sample (a generation is a sample), right after the sample's closing
synchronisation and before the next one starts, so never inside a timed window: the SM and
memory clocks, the temperature, the power draw and the clock-event (throttle) reasons. The
record keeps them as lists aligned with the process's `samples_ms`
(`timing.processes[i].gpu_state`, DESIGN.md), so a slow sample can be set beside the clock it
ran at. tritonbench's nightly records the same quantities once per run, as one snapshot
(`get_nvidia_gpu_states`); a snapshot cannot say whether the 3rd sample of 15 throttled.

What a reading is: NVML's current SM clock and reasons are the state at the instant of the
read, right after the sample; power is NVML's power draw (on Hopper the average over the last
second, so it spans the sample). `read_ms` is the median cost of one reading of all the
fields: it delays the next sample's start, never a sample itself.

The GPU is found by its PCI bus id (torch's device properties), the mapping that survives a
CUDA_VISIBLE_DEVICES subset and a CUDA_DEVICE_ORDER that differs from NVML's PCI order; else
by its UUID; else torch's own CUDA_VISIBLE_DEVICES mapping.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any, Callable, Iterator

from harness.clocks import FIELDS, nvml_session, reason_names

INSTALL_HINT = "nvidia-ml-py is not installed (pip install nvidia-ml-py): no GPU state per sample"


def device_handle(nvml) -> tuple[Any, str, str]:
    """(NVML handle, the id it was found by, how) for torch's current CUDA device."""
    import torch
    device_index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(device_index)
    bus = [getattr(props, k, None) for k in ("pci_domain_id", "pci_bus_id", "pci_device_id")]
    if all(isinstance(x, int) for x in bus):
        bus_id = f"{bus[0]:08x}:{bus[1]:02x}:{bus[2]:02x}.0"
        return nvml.nvmlDeviceGetHandleByPciBusId(bus_id.encode()), bus_id, "pci_bus_id"
    uuid = getattr(props, "uuid", None)
    if uuid is not None:
        text = str(uuid)
        text = text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"
        return nvml.nvmlDeviceGetHandleByUUID(text.encode()), text, "uuid"
    index = torch.cuda._get_nvml_device_index(device_index)
    return nvml.nvmlDeviceGetHandleByIndex(index), str(index), "cuda_visible_devices"


class Recorder:
    """One process's readings; `after_sample` is the timing loop's callback."""

    def __init__(self, nvml, handle, device: str, mapped_by: str):
        self.nvml, self.handle = nvml, handle
        self.lists: dict[str, list[Any]] = {name: [] for name in FIELDS}
        self.read_s: list[float] = []
        self.errors: dict[str, str] = {}
        self.info: dict[str, Any] = {"source": "nvml", "device": device, "mapped_by": mapped_by,
                                     "max_sm_clock_mhz": self._get("max_sm_clock_mhz", lambda: nvml.nvmlDeviceGetMaxClockInfo(
                                         handle, nvml.NVML_CLOCK_SM))}
        self.readers: dict[str, Callable[[], Any]] = {
            "sm_clock_mhz": lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM),
            "mem_clock_mhz": lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM),
            "temperature_c": lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU),
            "power_w": lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,      # mW
            # driver >= 535; an older one's NVML_ERROR_FUNCTION_NOT_FOUND is kept like any unreported field
            "clocks_event_reasons": lambda: reason_names(nvml.nvmlDeviceGetCurrentClocksEventReasons(handle)),
        }

    def _get(self, name: str, read: Callable[[], Any]) -> Any:
        """A field's value, or None with the error kept once (a field this GPU does not report,
        NVML_ERROR_NOT_SUPPORTED, stays None in every sample and the lists stay aligned)."""
        try:
            return read()
        except self.nvml.NVMLError as e:
            self.errors.setdefault(name, str(e))
            return None

    def after_sample(self) -> None:
        start = time.perf_counter()
        for name, read in self.readers.items():
            self.lists[name].append(self._get(name, read))
        self.read_s.append(time.perf_counter() - start)

    def state(self) -> dict[str, Any]:
        out = dict(self.info, **self.lists)
        out["read_ms"] = 1e3 * statistics.median(self.read_s) if self.read_s else None
        if self.errors:
            out["errors"] = dict(self.errors)
        return out


class Recording:
    """What `recording` yields: `after_sample` (None where nothing is read) and the state."""

    def __init__(self, recorder: Recorder | None, unavailable: str | None):
        self.recorder, self.unavailable = recorder, unavailable
        self.after_sample = recorder.after_sample if recorder is not None else None

    def state(self) -> dict[str, Any] | None:
        """The process's `gpu_state`: the readings, or on a GPU without NVML why there are none;
        None on the CPU."""
        if self.recorder is not None:
            return self.recorder.state()
        return {"unavailable": self.unavailable} if self.unavailable else None


@contextlib.contextmanager
def recording(device_type: str | None) -> Iterator[Recording]:
    """Read the GPU's state after each sample of the timing inside; on the CPU nothing."""
    if device_type != "cuda":
        yield Recording(None, None)
        return
    with nvml_session(INSTALL_HINT) as (nvml, why):
        recorder = None
        if nvml is not None:
            try:
                recorder = Recorder(nvml, *device_handle(nvml))
            except (nvml.NVMLError, RuntimeError) as e:
                why = f"no NVML handle for torch's device: {e}"
        yield Recording(recorder, why)
