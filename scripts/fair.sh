#!/usr/bin/env bash
# The fair comparison in full: both pairs (conf/experiment/fair.yaml) on every variant the
# findings cover, into one sweep dir, then the report (pairs side by side) and explain.
#   scripts/fair.sh [SWEEP_DIR] [extra hydra overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP=${1:-results/fair/$(date +%Y-%m-%d_%H-%M-%S)}; shift || true
sweep() { python -m harness -m +experiment=fair "hydra.sweep.dir=$SWEEP" "$@"; }

sweep workload=fp8_linear workload.mode=fwd,fwd_bwd "$@"
sweep workload=conv workload.mode=fwd_bwd "$@"
sweep workload=qwen_decoder workload.phase=decode workload.cache=static,paged "$@"
sweep workload=qwen_decoder workload.phase=prefill "$@"
python -m harness.report "$SWEEP"
python -m harness.report explain "$SWEEP"
