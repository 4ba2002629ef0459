#!/usr/bin/env bash
# The nightly job: sweep, report, append to history, compare with the previous night (or a
# pinned baseline) as a report, judge the series over all nights (`regressions`), write the
# dashboard. Exits 1 while a regression is open (the exit code of `regressions`), and non-zero
# when a sweep failed.
#
#   scripts/nightly.sh                                   # runs here, one job after another
#   NIGHTLY_LAUNCHER=hydra/launcher=slurm scripts/nightly.sh hydra.launcher.partition=gpu
#   NIGHTLY_BASELINE=results/reference/h100 scripts/nightly.sh
#   NIGHTLY_SWEEPS=$'workload=conv backend=eager,inductor\nworkload=fp8_linear backend=xla' scripts/nightly.sh
#
# The launcher submits the jobs itself (hydra-submitit-launcher): no sbatch script to write.
# Re-running on the same day resumes: runs with an `ok` record are skipped, failed ones retried.
# Extra arguments are Hydra overrides applied to every sweep (e.g. bench.repeats=30).
#
# NIGHTLY_SWEEPS: one sweep per line, each line the overrides of one `python -m harness -m`
# call into the night's directory (default: the list below). NIGHTLY_HISTORY: the history
# store (default results/history). NIGHTLY_DATE: the night (default today), the sweep's folder
# and its date in the history. NIGHTLY_DASHBOARD: where the dashboard goes (default
# $NIGHTLY_ROOT/dashboard; a static site, open index.html from file://).
set -euo pipefail
cd "$(dirname "$0")/.."

DEFAULT_SWEEPS="\
+experiment=nightly
+experiment=nightly workload=fp8_linear workload.mode=fwd_bwd
+experiment=nightly workload=fp8_linear workload.recipe=bf16 workload.mode=fwd,fwd_bwd
+experiment=nightly workload=conv workload.mode=fwd_bwd
+experiment=nightly workload=qwen_decoder workload.phase=prefill
+experiment=nightly workload=qwen_decoder workload.cache=paged"

ROOT=${NIGHTLY_ROOT:-results/nightly}
DAY=${NIGHTLY_DATE:-$(date +%Y-%m-%d)}
SWEEP=$ROOT/$DAY
SWEEPS=${NIGHTLY_SWEEPS:-$DEFAULT_SWEEPS}
HISTORY=${NIGHTLY_HISTORY:-results/history}
DASHBOARD=${NIGHTLY_DASHBOARD:-$ROOT/dashboard}
read -r -a LAUNCHER <<< "${NIGHTLY_LAUNCHER:-}"
BASELINE=${NIGHTLY_BASELINE:-$(ls -d "$ROOT"/????-??-?? 2>/dev/null | grep -v "/$DAY\$" | sort | tail -n 1 || true)}

# A sweep that fails (a job killed at its time limit, preempted, cancelled: the launcher then
# raises) still leaves a record per run: report what there is, and fail at the end.
failed_sweeps=0
while IFS= read -r line; do
  [ -n "${line//[[:space:]]/}" ] || continue
  read -r -a overrides <<< "$line"
  if ! python -m harness -m "${overrides[@]}" "hydra.sweep.dir=$SWEEP" "${LAUNCHER[@]}" "$@" </dev/null; then
    echo "nightly: sweep failed: $line" >&2
    failed_sweeps=$((failed_sweeps + 1))
  fi
done <<< "$SWEEPS"

python -m harness.report "$SWEEP"
# the night's date, also when NIGHTLY_DATE names another day than today
python -m harness.report history "$SWEEP" --store "$HISTORY" --night "$DAY"
# compare.md says what moved since the previous night, run by run; it is a report, not the
# gate: one noisy night against another raises false alarms and hides slow drifts.
if [ -n "$BASELINE" ]; then
  python -m harness.report compare "$BASELINE" "$SWEEP" --out "$SWEEP/compare.md" >/dev/null \
    || echo "nightly: compare with $BASELINE exited $? (see $SWEEP/compare.md; not the gate)"
else
  echo "no earlier night under $ROOT and no NIGHTLY_BASELINE: nothing to compare against"
fi
# The gate: change points over every night of every series (exit 1 while a regression is open).
regressed=0
python -m harness.report regressions "$HISTORY" | tee "$SWEEP/regressions.txt" || regressed=$?
if python -c "import plotly" 2>/dev/null; then
  python -m harness.report dashboard "$HISTORY" --out "$DASHBOARD" \
    || echo "nightly: the dashboard failed (the verdict above stands)" >&2
else
  echo "nightly: plotly is not installed here: no dashboard tonight (elsewhere: python -m harness.report dashboard $HISTORY --out DIR)" >&2
fi
if [ "$failed_sweeps" -gt 0 ]; then
  echo "nightly: $failed_sweeps sweep(s) failed; their runs' records say why" >&2
  [ "$regressed" -ne 0 ] || regressed=1
fi
exit "$regressed"
