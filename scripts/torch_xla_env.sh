#!/usr/bin/env bash
# PyTorch/XLA's own environment, beside the main one: torch_xla 2.9.0 is built against torch 2.9,
# the project pins torch 2.13, so the two cannot share a venv.
#
#   scripts/torch_xla_env.sh                        # -> .venv-torch-xla/ (git-ignored)
#   .venv-torch-xla/bin/python -m harness workload=conv backend=torch_xla
#   .venv-torch-xla/bin/python -m pytest -m torch_xla
#
# The project goes in editable, without its dependencies (they would pull torch 2.13); its other
# dependencies are read from pyproject.toml, so the two lists cannot drift apart.
#
# Measured on the 2-core CPU machine (2026-11-30, other jobs running): 247 s from an empty pip
# cache (184 s for the two wheels alone), 7.4 GB.
#
# Not in .ci/run: the build (~4 min, 3.4 GB downloaded, 7.4 GB on disk) plus the torch_xla tests
# (`-m torch_xla`: 42 s on the 2-core machine, as measured for issue 32) would add about 5 min to
# every fresh CI run, whose tests must finish in 10, and its disk use. CI keeps the part that
# needs no torch_xla: the memory collector on a real PyTorch/XLA dump (tests/test_torch_xla_dump.py).
# PyPI's x86_64 torch 2.9.1 is the CUDA build: libtorch links cudart, cuBLAS, cuDNN, NCCL and
# more, so `import torch` fails without the 4.3 GB of nvidia-* wheels even on the CPU
# ("libcublas.so.*[0-9] not found"). PyTorch's CPU wheel index is not reachable from here;
# where it is, TORCH_INDEX_URL=<that index> takes the CPU build (torch_xla still comes from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${TORCH_XLA_VENV:-.venv-torch-xla}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.9.1
TORCH_XLA_VERSION=2.9.0

start=$(date +%s)
"$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install --quiet)

if [ -n "${TORCH_INDEX_URL:-}" ]; then
  "${pip[@]}" --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION"
fi
"${pip[@]}" "torch==$TORCH_VERSION" "torch_xla==$TORCH_XLA_VERSION"

# The project's dependencies but torch, plus pytest from the test extra.
mapfile -t deps < <("$VENV/bin/python" - <<'EOF'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
name = lambda req: re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower()
for req in project["dependencies"]:
    if name(req) != "torch":
        print(req)
for req in project["optional-dependencies"]["test"]:
    if name(req) == "pytest":
        print(req)
EOF
)
"${pip[@]}" "${deps[@]}"
"${pip[@]}" --no-deps -e .

# torch must still be 2.9: a dependency that asked for another torch would have replaced it.
PJRT_DEVICE=CPU "$VENV/bin/python" - <<EOF
import torch, torch_xla
assert torch.__version__.startswith("$TORCH_VERSION"), torch.__version__
x = torch.ones(2, device=torch_xla.device())
assert (x + x).cpu().tolist() == [2.0, 2.0]
print(f"torch {torch.__version__}, torch_xla {torch_xla.__version__}, device {x.device}: ok")
EOF

echo "built $VENV in $(( $(date +%s) - start )) s, $(du -sh "$VENV" | cut -f1)"
