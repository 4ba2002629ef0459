#!/usr/bin/env bash
# The nightly job: sweep, report, compare with the previous night (or a pinned baseline),
# append to history; exits non-zero when something regressed.
#
#   scripts/nightly.sh                                   # runs here, one job after another
#   NIGHTLY_LAUNCHER=hydra/launcher=slurm hydra.launcher.partition=gpu scripts/nightly.sh
#   NIGHTLY_BASELINE=results/reference/h100 scripts/nightly.sh
#
# The launcher submits the jobs itself (hydra-submitit-launcher): no sbatch script to write.
# Re-running on the same day resumes: runs with an `ok` record are skipped, failed ones retried.
# Extra arguments are Hydra overrides applied to every sweep (e.g. bench.repeats=30).
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT=${NIGHTLY_ROOT:-results/nightly}
DAY=${NIGHTLY_DATE:-$(date +%Y-%m-%d)}
SWEEP=$ROOT/$DAY
read -r -a LAUNCHER <<< "${NIGHTLY_LAUNCHER:-}"
BASELINE=${NIGHTLY_BASELINE:-$(ls -d "$ROOT"/????-??-?? 2>/dev/null | grep -v "/$DAY\$" | sort | tail -n 1 || true)}

sweep() { python -m harness -m +experiment=nightly "hydra.sweep.dir=$SWEEP" "${LAUNCHER[@]}" "$@"; }

sweep "${@}"                                                          # every workload x backend
sweep workload=fp8_linear workload.mode=fwd_bwd "${@}"
sweep workload=fp8_linear workload.recipe=bf16 workload.mode=fwd,fwd_bwd "${@}"
sweep workload=conv workload.mode=fwd_bwd "${@}"
sweep workload=qwen_decoder workload.phase=prefill "${@}"
sweep workload=qwen_decoder workload.cache=paged "${@}"

python -m harness.report "$SWEEP"
python -m harness.report history "$SWEEP"
if [ -n "$BASELINE" ]; then
  python -m harness.report compare "$BASELINE" "$SWEEP"    # exit 1 on a regression
else
  echo "no earlier night under $ROOT and no NIGHTLY_BASELINE: nothing to compare against"
fi
