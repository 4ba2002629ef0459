"""Conv2d forward / forward+backward (seed 002: the 10->10 3x3 conv on an unbatched [10,90,80]).

Presets (below): seed002, resnet50_stage2..5 (batch 32, bf16, channels_last), cpu_small.
Any key left null takes the preset's value.
"""
from dataclasses import dataclass
from typing import Any, Optional

from harness.errors import ConfigError
from harness.orchestrator.config import WorkloadConfig
from harness.orchestrator import plugins
from harness.params import require_bool, require_choice, require_float_dtype, require_positive

_RESNET50 = dict(batch=32, kernel_size=3, stride=1, padding=1, bias=False, channels_last=True,
                 unbatched=False, dtype="bfloat16")
PRESETS: dict[str, dict[str, Any]] = {
    # seed 002: weight [10,10,3,3] + bias, input [10,90,80] unsqueezed to a batch of 1, float32
    "seed002": dict(batch=1, in_channels=10, out_channels=10, height=90, width=80, kernel_size=3,
                    stride=1, padding=0, bias=True, channels_last=False, unbatched=True, dtype="float32"),
    # the 3x3 conv of each ResNet-50 bottleneck stage (conv2_x .. conv5_x), at its resolution
    "resnet50_stage2": dict(_RESNET50, in_channels=64, out_channels=64, height=56, width=56),
    "resnet50_stage3": dict(_RESNET50, in_channels=128, out_channels=128, height=28, width=28),
    "resnet50_stage4": dict(_RESNET50, in_channels=256, out_channels=256, height=14, width=14),
    "resnet50_stage5": dict(_RESNET50, in_channels=512, out_channels=512, height=7, width=7),
    "cpu_small": dict(batch=2, in_channels=8, out_channels=16, height=16, width=16, kernel_size=3,
                      stride=1, padding=1, bias=True, channels_last=False, unbatched=False, dtype="float32"),
}
DEFAULT_PRESET = {"cuda": "resnet50_stage3", "cpu": "cpu_small"}


def output_hw(p: dict[str, Any]) -> tuple[int, int]:
    k, s, pad = p["kernel_size"], p["stride"], p["padding"]
    return (p["height"] + 2 * pad - k) // s + 1, (p["width"] + 2 * pad - k) // s + 1


def validate(p: dict[str, Any]) -> None:
    require_positive(p, "batch", "in_channels", "out_channels", "height", "width", "kernel_size", "stride")
    if not isinstance(p["padding"], int) or isinstance(p["padding"], bool) or p["padding"] < 0:
        raise ConfigError("workload.padding", f"expected a non-negative integer, got {p['padding']!r}")
    require_bool(p, "bias", "channels_last", "unbatched")
    require_choice(p, "mode", ("fwd", "fwd_bwd"))
    require_float_dtype(p)
    if p["unbatched"] and p["batch"] != 1:
        raise ConfigError("workload.batch", f"an unbatched input is a batch of 1, got batch={p['batch']}")
    if p["unbatched"] and p["channels_last"]:
        raise ConfigError("workload.channels_last", "an unbatched [C,H,W] input has no channels_last layout")
    if min(output_hw(p)) < 1:
        raise ConfigError("workload.kernel_size", f"kernel {p['kernel_size']} with padding {p['padding']} "
                          f"does not fit a {p['height']}x{p['width']} input")


@plugins.workload("conv", build="workloads.conv.model:build", presets=PRESETS,
                  default_preset=DEFAULT_PRESET, validate=validate)
@dataclass
class ConvConfig(WorkloadConfig):
    mode: str = "fwd"               # fwd | fwd_bwd
    dtype: Optional[str] = None     # None: the preset's (seed002 is float32, ResNet stages bfloat16)
    batch: Optional[int] = None
    in_channels: Optional[int] = None
    out_channels: Optional[int] = None
    height: Optional[int] = None
    width: Optional[int] = None
    kernel_size: Optional[int] = None
    stride: Optional[int] = None
    padding: Optional[int] = None
    bias: Optional[bool] = None
    channels_last: Optional[bool] = None
    unbatched: Optional[bool] = None  # input [C,H,W], unsqueezed to a batch of 1 by Conv2d (seed 002)
