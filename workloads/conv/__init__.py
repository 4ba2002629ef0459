"""Conv2d forward / forward+backward (seed 002: the 10->10 3x3 conv on an unbatched [10,90,80]).

Presets (model.py): seed002, resnet50_stage2..5 (batch 32, bf16, channels_last), cpu_small.
Any key left null takes the preset's value.
"""
from dataclasses import dataclass
from typing import Optional

from harness.orchestrator.config import WorkloadConfig
from harness.orchestrator import plugins


@plugins.workload("conv", build="workloads.conv.model:build")
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
