"""The environment the scripts start the harness in: the repo first on PYTHONPATH, and whatever
was there after it (on the GPU machine the carried packages live in a --target directory there)."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def repo_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
