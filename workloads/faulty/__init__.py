"""Test-only: a tiny matmul that crashes, hangs, raises or returns wrong numbers on request."""
from dataclasses import dataclass

from harness.orchestrator.config import WorkloadConfig
from harness.orchestrator import plugins


@plugins.workload("faulty", build="workloads.faulty.model:build")
@dataclass
class FaultyConfig(WorkloadConfig):
    fault: str = "none"             # none | crash | segfault | hang | wrong | raise | recompile | leak
    size: int = 64
