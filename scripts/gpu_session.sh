#!/usr/bin/env bash
# The H200 reference runs, in parts that each fit one device call (10 minutes), on a
# 2-GPU node (nvidia-h200-x2): sweeps go through the local_gpus launcher, one job per GPU.
#   source scripts/device_setup.sh; scripts/gpu_session.sh PART [PART...]
# Each part writes its runs under results/h200/<part> and, as soon as it ends, a tarball of
# them without traces and dumps (records, tables, small output code) to $OUT/<part>.tgz, so a
# call cut short still brings back every part it finished.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=results/h200
OUT=${OUT:-/tmp/out}
mkdir -p "$ROOT" "$OUT"
H="python3 -m harness"
# The VM's MemTotal starts far below its memory and grows as it is used (KINDS.md): 80% of
# MemTotal, the default limit, could kill a compile; the machine has 128 GiB (256 on x2).
MEM=bench.max_host_mem_gb=100
PAIRS=inductor_max_autotune,xla,inductor,xla_no_cmdbuf      # conf/experiment/fair.yaml

pack() {   # pack PART: the part's results, small files only, into $OUT
  tar -czf "$OUT/$1.tgz" --exclude='*.json.gz' --exclude='compile_cache' --exclude='jax_trace' --exclude='plotly.min.js' \
      --exclude='*.tmp' --exclude='.submitit' -C "$ROOT" "$1" 2>/dev/null
  ls -la "$OUT/$1.tgz"
}
sweep() { part=$1; shift; $H -m hydra/launcher=local_gpus "hydra.sweep.dir=$ROOT/$part" $MEM "$@" 2>&1 | grep -v '^  \[worker\]'; }

part_first() {   # issue 18: the first processes on a fresh machine, nothing else running
  nvidia-smi topo -m > "$OUT/topo.txt"; nvidia-smi --query-gpu=index,name,clocks.sm,clocks.max.sm --format=csv >> "$OUT/topo.txt"
  $H workload=fp8_linear backend=inductor bench.processes=5 bench.reference_timer=true gpu_pool=[0] $MEM \
     "hydra.run.dir=$ROOT/first/fp8_fwd_inductor" 2>&1 | grep -v '^  \[worker\]'
  pack first
}
part_fair_fp8() {  # issues 18, 19: fp8 fwd, fwd_bwd, conv stage3 fwd_bwd on both pairs
  sweep fair workload=fp8_linear workload.mode=fwd,fwd_bwd backend=$PAIRS bench.processes=3 bench.reference_timer=true
  sweep fair workload=conv workload.mode=fwd_bwd backend=$PAIRS bench.processes=3 bench.reference_timer=true
  pack fair
}
part_decode_smoke() {   # issue 19: does the decode step replay CUDA graphs? (4 layers, quick)
  sweep smoke workload=qwen_decoder workload.num_layers=4 workload.cache=static,paged backend=inductor_cudagraphs bench=quick bench.profile=true
  pack smoke
}
part_fair_qwen() {   # issue 19: decode static and paged, prefill, both pairs; graphs alone on decode
  part_fair_decode; part_fair_prefill
}
part_fair_decode() {   # the decode step in each compiler's idiom; graph modes and the control pair
  sweep fair workload=qwen_decoder workload.phase=decode workload.cache=static,paged backend=$PAIRS,inductor_cudagraphs bench.processes=2
  pack fair
}
part_fair_decode_graphs() {   # only what the 2026-11 session could not measure (graph modes; paged control)
  sweep fair workload=qwen_decoder workload.phase=decode workload.cache=static,paged backend=inductor_max_autotune,inductor_cudagraphs bench.processes=2
  part_fair_decode_control
}
part_fair_decode_control() {
  sweep fair workload=qwen_decoder workload.phase=decode workload.cache=paged backend=xla_no_cmdbuf bench.processes=2
  pack fair
}
part_fair_prefill() {
  sweep fair workload=qwen_decoder workload.phase=prefill backend=$PAIRS bench.processes=2 bench.reference_timer=true
  pack fair
}
part_generate_smoke() {   # issue 21: does a generation run under graphs and XLA? (2 layers, 8 tokens)
  sweep generate_smoke workload=qwen_decoder workload.phase=generate workload.num_layers=2 workload.prompt_len=64 \
    workload.new_tokens=8 workload.cache=static,paged backend=inductor_cudagraphs,xla bench=quick
  pack generate_smoke
}
part_node() {   # issue 17: the default pool over both GPUs against one GPU; CV alone/unpinned/pinned
  local args="workload=fp8_linear,conv workload.mode=fwd,fwd_bwd backend=inductor"
  local t0=$SECONDS
  sweep node/pool2 $args; echo "default pool (both GPUs): $((SECONDS - t0)) s" | tee -a "$OUT/node.txt"
  t0=$SECONDS
  sweep node/pool1 $args gpu_pool=[0]; echo "gpu_pool=[0]: $((SECONDS - t0)) s" | tee -a "$OUT/node.txt"
  sweep node/unpinned workload=fp8_linear backend=inductor seed=0,1 cpu_pinning=none
  sweep node/pinned workload=fp8_linear backend=inductor seed=0,1 cpu_pinning=auto
  pack node
}
part_twice() {   # issue 18: the same sweep twice, compared
  for n in 1 2; do sweep twice/$n workload=fp8_linear backend=inductor,xla bench.processes=3; done
  python3 -m harness.report compare "$ROOT/twice/1" "$ROOT/twice/2" --out "$ROOT/twice/compare.md" | tail -30
  pack twice
}
# Issue 21: generations of Qwen3-0.6B shapes (random weights), prompt 512, 256 new tokens, batch 1
# and 16, Inductor default and with CUDA graphs against XLA; one cache per part (6 runs, 3 per GPU:
# ~2.5 min each for Inductor, ~1.5 for XLA, so ~8 min a part). 5 timed generations = 1275 decode steps.
GEN="workload=qwen_decoder workload.phase=generate workload.prompt_len=512 workload.new_tokens=256 workload.batch=1,16 bench.repeats=5 bench.warmup=1"
part_generate_static() { sweep generate $GEN workload.cache=static backend=inductor,inductor_cudagraphs,xla; pack generate; }
part_generate_paged() { sweep generate $GEN workload.cache=paged backend=inductor,inductor_cudagraphs,xla; pack generate; }
part_generate_dynamic() {   # a cache grown per step: Inductor's symbolic length against XLA's program per length
  # (~4.5 min: the two sweeps side by side, one per GPU; XLA compiles 11 decode programs of ~16 s)
  local dyn="workload=qwen_decoder workload.phase=generate workload.cache=dynamic workload.prompt_len=512 workload.new_tokens=12 workload.batch=1 bench.repeats=5 bench.warmup=1"
  sweep generate $dyn backend=inductor backend.dynamic=true &
  sweep generate $dyn backend=xla
  wait
  pack generate
}

# Issue 29: three nights of scripts/nightly.sh on one GPU (nvidia-h200), dated one after another,
# into one history store; ~1.5 min a night (2 runs). The control pair (Inductor default vs XLA
# without command buffers) so the dashboard has a fair-pair ratio; max-autotune would take
# minutes to compile. nightly.sh skips the dashboard where plotly is missing; build it here:
#   tar -xzf nightly3.tgz -C results/h200 && python -m harness.report dashboard \
#     results/h200/nightly3/history --out results/reference/h200/dashboard
NIGHTLY3_SWEEPS=${NIGHTLY3_SWEEPS:-"workload=fp8_linear backend=inductor,xla_no_cmdbuf bench.processes=2"}
part_nightly3() {
  local day n t0
  if ! command -v python >/dev/null; then   # nightly.sh calls `python`; the image may have only python3
    mkdir -p /tmp/pybin && ln -sf "$(command -v python3)" /tmp/pybin/python && export PATH=/tmp/pybin:$PATH
  fi
  for n in 0 1 2; do
    day=$(date -u -d "+$n day" +%Y-%m-%d); t0=$SECONDS
    NIGHTLY_DATE=$day NIGHTLY_ROOT=$ROOT/nightly3/nights NIGHTLY_HISTORY=$ROOT/nightly3/history \
      NIGHTLY_DASHBOARD=$ROOT/nightly3/dashboard NIGHTLY_SWEEPS=$NIGHTLY3_SWEEPS \
      scripts/nightly.sh $MEM 2>&1 | grep -v '^  \[worker\]'
    echo "night $day: nightly.sh exit ${PIPESTATUS[0]}, $((SECONDS - t0)) s" | tee -a "$ROOT/nightly3/nights.txt"
  done
  cp "$ROOT/nightly3/nights.txt" "$OUT/nightly3.txt"
  pack nightly3
}

part_pack_all() {   # whatever the parts left, finished or not (a call cut short)
  for d in "$ROOT"/*/; do pack "$(basename "$d")"; done
}

for part in "$@"; do
  echo "=== $part $(date +%T)"
  "part_$part"
done
echo "=== done $(date +%T)"
