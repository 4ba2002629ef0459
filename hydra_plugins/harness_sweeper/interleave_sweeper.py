"""`hydra/sweeper: interleave` (conf/config.yaml's default): Hydra's basic sweeper, plus, where a
job's config says `bench.interleave: true`, the jobs that differ only in `backend` made one job
whose processes alternate (harness/orchestrator/interleave.py).

Hydra instantiates sweepers only from the `hydra_plugins` namespace package, hence this module;
with `bench.interleave` off everywhere it launches exactly the basic sweeper's jobs. (No
`from __future__ import annotations` here: Hydra's plugin scan executes this module before
it is in sys.modules, where a dataclass with string annotations cannot be built.)
"""
import logging
from dataclasses import dataclass
from typing import Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore

log = logging.getLogger(__name__)


@dataclass
class InterleaveSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.harness_sweeper.interleave_sweeper.InterleaveSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="interleave", node=InterleaveSweeperConf,
                             provider="harness")


class InterleaveSweeper(BasicSweeper):
    def get_job_batch(self) -> Sequence[Sequence[str]]:
        from harness.orchestrator.interleave import group_jobs
        batch = super().get_job_batch()
        if not self._may_interleave(batch):
            return batch
        grouped = group_jobs(batch, self._interleaves)
        if len(grouped) < len(batch):
            print(f"[sweep] bench.interleave: {len(batch)} runs as {len(grouped)} job(s); the runs that differ "
                  "only in backend alternate their processes", flush=True)
        return grouped

    def _may_interleave(self, batch: Sequence[Sequence[str]]) -> bool:
        """The sweep's own config asks for it, or a job's overrides name it."""
        bench = self.config.get("bench") if self.config is not None else None
        return bool(bench is not None and bench.get("interleave")) or any(
            "interleave" in o for job in batch for o in job)

    def _interleaves(self, job: Sequence[str]) -> bool:
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(job))
        return bool(cfg.bench.get("interleave"))
