"""One finding: where and why runs differ, in one sentence with its number and evidence.

Its own module so that the modules with rules (harness/report/findings.py, generation.py) share
it without importing each other."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Finding:
    kind: str                     # status, flag, pair, speed, category, layout, idle, graphs, ...
    workload: str
    variant: str
    backends: tuple[str, ...]     # the run(s) it is about; the one with more of it first
    magnitude: float              # in `unit`; NaN where the figure is no result (a noisy run)
    unit: str
    score: float                  # 0..1: the share of an iteration or footprint at stake
    evidence: str
    sentence: str

    def row(self) -> dict[str, Any]:
        return {**asdict(self), "backends": ",".join(self.backends),
                "magnitude": float(self.magnitude),
                "score": float(min(max(self.score, 0.0), 1.0))}
