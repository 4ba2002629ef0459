"""The last line of a run and of a sweep: the command that reads what it wrote.

A new user's first run ended on its console line with nothing saying where the tables are or
how to see them; every run and sweep now ends with `next: python -m harness.report <dir>`.
A Hydra callback (conf/config.yaml), so that a sweep says it once, after its last job.
"""
from __future__ import annotations

import shlex
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def next_command(directory: str) -> str:
    return f"next: python -m harness.report {shlex.quote(str(directory))}"


class NextStep(Callback):
    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        print(next_command(config.hydra.run.dir), flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        print(next_command(config.hydra.sweep.dir), flush=True)
