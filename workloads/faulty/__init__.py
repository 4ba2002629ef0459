"""Test-only: a tiny matmul that crashes, hangs, raises or returns wrong numbers on request."""
from dataclasses import dataclass
from typing import Any

from harness.orchestrator.config import WorkloadConfig
from harness.orchestrator import plugins
from harness.params import require_choice, require_positive

FAULTS = ("none", "crash", "segfault", "hang", "wrong", "raise", "recompile", "leak")


def validate(p: dict[str, Any]) -> None:
    require_choice(p, "fault", FAULTS)
    require_positive(p, "size")


@plugins.workload("faulty", build="workloads.faulty.model:build", validate=validate)
@dataclass
class FaultyConfig(WorkloadConfig):
    fault: str = "none"             # none | crash | segfault | hang | wrong | raise | recompile | leak
    size: int = 64
