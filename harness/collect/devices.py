"""Device peaks: the denominators of every "% of peak" the kernel table prints.

Data, not code: one `DeviceSpec` per GPU model, looked up by the name the driver reports
(`torch.cuda.get_device_name()`, nvidia-smi, or a Kineto trace's `deviceProperties[].name`,
e.g. "NVIDIA H100 80GB HBM3").

Why these numbers and not torch/_inductor/analysis/device_info.py's (seed 003):
- NVIDIA's Hopper/Blackwell datasheets print tensor-core TFLOP/s *with 2:4 sparsity*
  (footnote "*With sparsity"). cuBLAS, cuDNN and Triton run dense maths, so every tensor-core
  figure below is the dense one: half the datasheet's headline (H100 SXM bf16 989.4, not 1979;
  fp8 1978.9, not 3958). A sparse peak makes every GEMM look half as good as it is.
- Peaks are at the rated boost clock. A clock-capped or hot GPU runs lower, so `scaled_tflops`
  multiplies by measured SM clock / rated boost clock (seed 003: "current_clock_rate /
  default_clock_rate"; FLOP/s = clock x SMs x FLOP/clock/SM, so the ratio is exact for compute).
  HBM bandwidth follows the memory clock, not the SM clock, so it is not scaled.
- fp32 is the non-tensor-core (CUDA core) peak; tf32 is the tensor-core peak for fp32 inputs
  with TF32 allowed. A float32 matmul is compared with `fp32`; if TF32 was on it shows >100%
  and is flagged suspect rather than silently wrong.
- torch's table keys "NVIDIA H100" exactly, which misses "NVIDIA H100 80GB HBM3"; we match by
  pattern, most specific first (PCIe / NVL before the SXM default).

Sources: NVIDIA H100 datasheet (SXM5 / PCIe / NVL columns), H200 datasheet, A100 datasheet
(SXM4 80GB / 40GB, PCIe 80GB), HGX B200 per-GPU figures.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

# Canonical dtype keys of `DeviceSpec.dense_tflops`; `peak_dtype` maps trace dtype names here.
DTYPES = ("fp4", "fp8", "bf16", "fp16", "tf32", "fp32", "fp64")


@dataclass(frozen=True)
class DeviceSpec:
    key: str                       # short name used in tables: "h100_sxm"
    name: str                      # marketing name
    match: str                     # regex searched in the upper-cased reported name
    dense_tflops: dict[str, float]  # dense (non-sparse) peak per dtype at the rated boost clock
    hbm_gbps: float                # memory bandwidth, GB/s (1e9 bytes/s)
    boost_clock_mhz: float         # rated max SM clock (nvidia-smi clocks.max.sm)
    memory_gb: float
    notes: str = ""

    def tflops(self, dtype: str) -> float:
        """Dense peak for a canonical dtype key; NaN where the device has no such unit."""
        return self.dense_tflops.get(dtype, math.nan)


def _hopper(fp8: float, bf16: float, tf32: float, fp32: float, fp64: float) -> dict[str, float]:
    return {"fp8": fp8, "bf16": bf16, "fp16": bf16, "tf32": tf32, "fp32": fp32, "fp64": fp64}


# Every A100 has the same 108 SMs at 1410 MHz; the SKUs differ in memory only. No fp8 units.
_AMPERE = {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5, "fp64": 9.7}


# Order matters: the first spec whose `match` is found in the reported name wins.
DEVICES: tuple[DeviceSpec, ...] = (
    DeviceSpec("h100_pcie", "H100 PCIe", r"H100.*PCIE",
               _hopper(fp8=1513.0, bf16=756.5, tf32=378.0, fp32=51.2, fp64=25.6),
               hbm_gbps=2000.0, boost_clock_mhz=1755.0, memory_gb=80.0,
               notes="datasheet fp8 3026 / bf16 1513 / tf32 756 are with sparsity"),
    DeviceSpec("h100_nvl", "H100 NVL", r"H100.*NVL",
               _hopper(fp8=1670.5, bf16=835.5, tf32=417.5, fp32=60.0, fp64=30.0),
               hbm_gbps=3900.0, boost_clock_mhz=1785.0, memory_gb=94.0,
               notes="datasheet fp8 3341 / bf16 1671 / tf32 835 are with sparsity"),
    DeviceSpec("h100_sxm", "H100 SXM5", r"H100",
               _hopper(fp8=1978.9, bf16=989.4, tf32=494.7, fp32=66.9, fp64=33.5),
               hbm_gbps=3350.0, boost_clock_mhz=1980.0, memory_gb=80.0,
               notes="datasheet fp8 3958 / bf16 1979 / tf32 989 are with sparsity; "
                     "torch reports it as 'NVIDIA H100 80GB HBM3'"),
    DeviceSpec("h200", "H200 SXM", r"H200",
               _hopper(fp8=1978.9, bf16=989.4, tf32=494.7, fp32=66.9, fp64=33.5),
               hbm_gbps=4800.0, boost_clock_mhz=1980.0, memory_gb=141.0,
               notes="same compute as H100 SXM; HBM3e 4.8 TB/s"),
    DeviceSpec("a100_pcie_80gb", "A100 PCIe 80GB", r"A100.*PCIE", _AMPERE,
               hbm_gbps=1935.0, boost_clock_mhz=1410.0, memory_gb=80.0),
    DeviceSpec("a100_sxm_40gb", "A100 SXM4 40GB", r"A100.*40GB", _AMPERE,
               hbm_gbps=1555.0, boost_clock_mhz=1410.0, memory_gb=40.0),
    DeviceSpec("a100_sxm_80gb", "A100 SXM4 80GB", r"A100", _AMPERE,
               hbm_gbps=2039.0, boost_clock_mhz=1410.0, memory_gb=80.0,
               notes="datasheet bf16 624 / tf32 312 are with sparsity"),
    DeviceSpec("b200", "B200 (HGX)", r"B200",
               {"fp4": 9000.0, "fp8": 4500.0, "bf16": 2250.0, "fp16": 2250.0, "tf32": 1100.0,
                "fp32": 75.0, "fp64": 37.0},
               hbm_gbps=7700.0, boost_clock_mhz=1965.0, memory_gb=180.0,
               notes="HGX B200 per-GPU dense figures (datasheet headline is with sparsity); "
                     "boost clock as reported by nvidia-smi on HGX B200, re-check per SKU"),
)


def lookup_device(name: str | None) -> DeviceSpec | None:
    """The spec for a reported GPU name ("NVIDIA H100 80GB HBM3") or a spec key ("h100_sxm")."""
    if not name:
        return None
    for spec in DEVICES:
        if name == spec.key:
            return spec
    upper = name.upper()
    for spec in DEVICES:
        if re.search(spec.match, upper):
            return spec
    return None


@dataclass(frozen=True)
class Peaks:
    """A device's peaks at the clock the measurement ran at."""
    spec: DeviceSpec
    sm_clock_mhz: float | None = None     # measured; None = assume the rated boost clock
    clock_ratio: float = field(init=False)

    def __post_init__(self) -> None:
        ratio = 1.0
        if self.sm_clock_mhz is not None and self.sm_clock_mhz > 0:
            ratio = self.sm_clock_mhz / self.spec.boost_clock_mhz
        object.__setattr__(self, "clock_ratio", ratio)

    def tflops(self, dtype: str) -> float:
        """Compute peak scaled by measured / rated SM clock."""
        return self.spec.tflops(dtype) * self.clock_ratio

    @property
    def hbm_gbps(self) -> float:
        return self.spec.hbm_gbps


# Trace dtype spellings -> canonical keys. Kineto writes the C++ names of the launching op's
# operands ("c10::BFloat16", "c10::Float8_e4m3fn", "float"); HLO writes "bf16", "f8e4m3fn".
_DTYPE_ALIASES: tuple[tuple[str, str], ...] = (
    (r"float8|f8e\d|fp8", "fp8"),
    (r"float4|f4e2m1|fp4", "fp4"),
    (r"bfloat16|^bf16$", "bf16"),
    (r"half|float16|^f16$", "fp16"),
    (r"tf32", "tf32"),
    (r"double|float64|^f64$", "fp64"),
    (r"^float$|float32|^f32$", "fp32"),
)


def peak_dtype(dtype: str | None) -> str | None:
    """Canonical peak key for a trace dtype name, None for integers / unknown."""
    if not dtype:
        return None
    low = dtype.lower()
    for pattern, key in _DTYPE_ALIASES:
        if re.search(pattern, low):
            return key
    return None
