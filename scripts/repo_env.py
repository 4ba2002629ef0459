"""The environment the scripts start the harness in: the repo first on PYTHONPATH, and whatever
was there after it (on the GPU machine the carried packages live in a --target directory there)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))     # the harness importable from a clone that is not installed

from harness.orchestrator.forkserver import with_repo_path  # noqa: E402


def repo_env() -> dict[str, str]:
    return with_repo_path(os.environ)
