#!/usr/bin/env bash
# The H200 reference runs, in parts that each fit one device call (10 minutes).
#   source scripts/device_setup.sh; scripts/gpu_session.sh PART [PART...]
# Each part writes its runs under results/h200/<part> and, as soon as it ends, a tarball of
# them without traces and dumps (records, tables, small output code) to $OUT/<part>.tgz, so a
# call cut short still brings back every part it finished.
#
# Parts up to part_pack_all ran on a 2-GPU node (nvidia-h200-x2) through the local_gpus launcher.
# The issue-30 parts at the end run on ONE H200 (nvidia-h200) through Hydra's basic launcher.
#
# The GPU machine has no network: the pure-Python wheels travel in .whl/ (git-ignored), made on a
# networked machine from the repo root (antlr4 4.9.3 is an sdist: pip wheel builds it):
#   pip download --no-deps --only-binary=:all: -d .whl hydra-core==1.3.8 omegaconf==2.3.1 \
#       torchax==0.0.14.dev20261026 submitit==1.5.4 hydra-submitit-launcher==1.2.0 nvidia-ml-py==13.615.71
#   pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3
#   pip download --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 -d .whl torchao==0.18.0
# torchao's wheel is cp310-abi3 (any CPython >= 3.10); its float8 training path is Python over
# torch._scaled_mm, its C++ extensions load on torch >= 2.11 only and are not used here. scipy
# comes with jax on the GPU machine (device_setup.sh checks it); orjson as before.
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

# Issue 27: the same runs under the fork server and under spawn, on one GPU, each isolation one
# sweep under Hydra's basic launcher (one orchestrator, so one fork server per backend family):
# fp8 fwd on xla and inductor:max-autotune, the decode step with CUDA graphs, 3 processes each.
# The figures should agree within the between-process spread (compare matches them by run_id:
# the isolation is not part of it); the sweep's wall time is in $OUT/isolation.txt.
isolation() {   # isolation forkserver|spawn [FP8_BACKENDS]
  local t0=$SECONDS fp8=${2:-xla,inductor_max_autotune}
  # profiling off: the comparison is of the timed figures (3 fp8 processes, 2 decode ones: one
  # device call holds both isolations)
  for args in "workload=fp8_linear backend=$fp8 bench.processes=3" \
              "workload=qwen_decoder workload.phase=decode backend=inductor_cudagraphs bench.processes=2"; do
    $H -m $args bench.profile=false bench.isolation=$1 gpu_pool=[0] $MEM "hydra.sweep.dir=$ROOT/isolation/$1" \
      2>&1 | grep -v '^  \[worker\]'
  done
  echo "bench.isolation=$1 (fp8 on $fp8, decode on inductor_cudagraphs): $((SECONDS - t0)) s" | tee -a "$OUT/isolation.txt"
}
compare_isolations() {
  python3 -m harness.report compare "$ROOT/isolation/spawn" "$ROOT/isolation/forkserver" \
    --out "$ROOT/isolation/compare.md" | tail -30
}
part_isolation_forkserver() { isolation forkserver; pack isolation; }
part_isolation_spawn() { isolation spawn; pack isolation; }
part_isolation_both() {   # one device call: fork server, then spawn, then the comparison (~8 min)
  isolation forkserver; pack isolation
  isolation spawn; pack isolation
  compare_isolations; pack isolation
}
part_isolation_compare() {   # after both: figures side by side, and the overhead per run on this machine
  compare_isolations
  python3 scripts/bench_overhead.py --repeats 3 | tee -a "$OUT/isolation.txt"
  pack isolation
}
part_isolation_inductor() {   # the fork server's Inductor runs again (2026-12-01: its server had loaded the
  # CUDA driver, every forked worker failed); the server's own test first, then the comparison
  # is made where the spawn half is: report compare results/h200/isolation/spawn .../forkserver
  timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_forkserver.py 2>&1 | tail -3 | tee -a "$OUT/isolation.txt"
  isolation forkserver inductor_max_autotune
  pack isolation
}
part_overhead() {   # issue 27: the harness's overhead per run on this machine (16 cores, idle), both isolations
  python3 scripts/bench_overhead.py --repeats ${OVERHEAD_REPEATS:-2} --runs 2 2>&1 | tee "$OUT/overhead.txt"
}
part_host_busy() {   # issue 32: what host_busy sees on an idle node, and on GPU runs beside busy loops
  python3 scripts/host_busy.py --runs 5 2>&1 | tee "$OUT/host_busy.txt"     # one core, CPU: alone, busy loop
  sweep host_busy/alone workload=fp8_linear backend=inductor,xla bench.processes=3
  local pids=() core
  for core in $(seq 0 $(( $(nproc) - 1 ))); do   # one busy loop on every core (not in a worker's group)
    taskset -c "$core" python3 -c 'while True: pass' & pids+=($!)
  done
  sweep host_busy/loaded workload=fp8_linear backend=inductor,xla bench.processes=3
  kill "${pids[@]}"
  python3 -m harness.report compare "$ROOT/host_busy/alone" "$ROOT/host_busy/loaded" \
    --out "$ROOT/host_busy/compare.md" | head -12 | tee -a "$OUT/host_busy.txt"
  pack host_busy
}
# ---------------------------------------------------------------------------------------------
# Issue 30, on ONE H200 (kind nvidia-h200), 30 minutes of device time in calls of <= 10 minutes.
# NEVER bench.lock_clocks=true here: this machine forbids changing clocks. (The harness would
# only print one line and run unlocked, but the parts below must not ask.)
# Minutes per part are estimated from the committed H200 records (results/reference/h200: wall_s
# of the same runs, minus the reference timer and profiling where a part turns them off).
# The calls, in order of priority (each call is a fresh shell: source device_setup.sh in each, ~0.3 min):
#   1. source scripts/device_setup.sh && scripts/gpu_session.sh prefill_headline prefill_control  (~7.5 min)
#   2. source scripts/device_setup.sh && scripts/gpu_session.sh fair_fp8_interleave               (~7 min)
#   3. source scripts/device_setup.sh && scripts/gpu_session.sh torchao_fwd torchao_fwd_bwd       (~8.5 min)
#   4. source scripts/device_setup.sh && scripts/gpu_session.sh gen_autotune                      (~3 min)
#   later sessions: gen_paged (~5), gen_prompts (~5.5), gen_dynamic (~4)
# If time runs short, drop from the end: gen_dynamic, gen_prompts, gen_paged, gen_autotune, then
# TORCHAO_FWD_BWD_BACKENDS=inductor (no max-autotune fwd_bwd: its compile alone is ~130 s).
one() {   # one PART OVERRIDES...: a sweep through Hydra's basic launcher (one GPU, jobs in turn)
  part=$1; shift
  $H -m "hydra.sweep.dir=$ROOT/$part" $MEM "$@" 2>&1 | grep -v '^  \[worker\]'
}
pairs_of() {   # the pairs table with the ratio's 95% interval (harness/report/pair_ratio.py)
  python3 -c "
import sys
from harness.report.load import load
from harness.report.pairs import pair_table
t = pair_table(load(sys.argv[1:]).summary)
print(t[['pair', 'workload', 'variant', 'inductor', 'xla', 'inductor_ms', 'xla_ms', 'inductor_over_xla', 'ratio',
         'ratio_low', 'ratio_high', 'ratio_method', 'ratio_n', 'inductor_between_cv', 'xla_between_cv', 'clocks']].to_string())
" "$@"
}
PREFILL="workload=qwen_decoder workload.phase=prefill bench.processes=2 bench.interleave=true bench.profile=false"
part_prefill_headline() {   # ~3 min: max-autotune (~70 s) and XLA (~95 s), interleaved, GPU state per sample
  one prefill $PREFILL backend=inductor_max_autotune,xla
  python3 scripts/gpu_state.py "$ROOT/prefill" | tee "$ROOT/prefill/gpu_state_headline.txt" | grep -E '^(==|--)'
  pack prefill
}
part_prefill_control() {    # ~4 min: Inductor default (~120 s: 58 s compile) and XLA no-cmdbuf (~100 s)
  one prefill $PREFILL backend=inductor,xla_no_cmdbuf
  python3 scripts/gpu_state.py "$ROOT/prefill" | tee "$ROOT/prefill/gpu_state.txt" | grep -E '^(==|--)'
  pack prefill
}
FAIR_FP8="+experiment=fair workload=fp8_linear workload.mode=fwd backend=inductor,xla_no_cmdbuf bench.processes=5"
part_fair_fp8_interleave() {   # ~7 min: the control pair, 5 processes a side (~27 s an Inductor process, ~15 s an XLA one),
                               # interleaved (A1 B1 ... A5 B5, ~3.5 min), then the same pair one side after the other (~3.5 min)
  one fair_fp8 $FAIR_FP8
  pack fair_fp8
  one fair_fp8_sequential $FAIR_FP8 bench.interleave=false
  pack fair_fp8_sequential
  pairs_of "$ROOT/fair_fp8"; pairs_of "$ROOT/fair_fp8_sequential"
  python3 scripts/gpu_state.py "$ROOT/fair_fp8" "$ROOT/fair_fp8_sequential" > "$ROOT/fair_fp8/gpu_state.txt"
  pack fair_fp8
}
part_torchao_fwd() {   # ~2.5 min: both recipes on Inductor default (~25 s a run) and max-autotune (~50 s)
  python3 -c "import torchao.float8, torch; print('torchao', __import__('torchao').__version__, 'torch', torch.__version__)"
  one torchao workload=fp8_linear workload.recipe=tensorwise,torchao workload.mode=fwd backend=inductor,inductor_max_autotune
  pack torchao
}
part_torchao_fwd_bwd() {   # ~6 min: Inductor default (~30 s a run), max-autotune (~150 s: 131 s compile)
  one torchao workload=fp8_linear workload.recipe=tensorwise,torchao workload.mode=fwd_bwd \
      backend=${TORCHAO_FWD_BWD_BACKENDS:-inductor,inductor_max_autotune}
  python3 -m harness.report "$ROOT/torchao" > /dev/null && python3 -m harness.report explain "$ROOT/torchao" | head -40
  pack torchao
}
# The generation rows the reference lacks (docs/findings-h200.md's generation table): prompt 512 and
# 256 new tokens as there, into results/h200/generate beside the reference's runs.
GEN1="workload=qwen_decoder workload.phase=generate workload.new_tokens=256 bench.warmup=1"
part_gen_autotune() {   # ~3 min: max-autotune, static cache, batch 16 (prefill + decode autotuned; ~100 s compile)
  one generate $GEN1 bench.repeats=5 workload.prompt_len=512 workload.cache=static workload.batch=16 backend=inductor_max_autotune
  pack generate
}
part_gen_paged() {   # ~5 min: the paged cache at batch 1 (graphs ~100 s, XLA ~65 s); Inductor default paged batch 16 (~120 s)
  one generate $GEN1 bench.repeats=5 workload.prompt_len=512 workload.cache=paged workload.batch=1 backend=inductor_cudagraphs,xla
  one generate $GEN1 bench.repeats=5 workload.prompt_len=512 workload.cache=paged workload.batch=16 backend=inductor
  pack generate
}
part_gen_prompts() {   # ~5.5 min: prompt 128 and 2048, static cache, batch 16, graphs (~95 s) and XLA (~50 s); 3 generations
  one generate $GEN1 bench.repeats=3 workload.prompt_len=128,2048 workload.cache=static workload.batch=16 \
      backend=inductor_cudagraphs,xla
  pack generate
}
part_gen_dynamic() {   # ~4 min: a cache grown per step, 8 tokens: Inductor's symbolic length (~90 s), then XLA
  # (one program per length: 7 decode compiles of ~16 s, ~150 s); 3 generations each
  local dyn="workload=qwen_decoder workload.phase=generate workload.cache=dynamic workload.prompt_len=512 workload.new_tokens=8 workload.batch=1 bench.repeats=3 bench.warmup=1"
  one generate $dyn backend=inductor backend.dynamic=true
  one generate $dyn backend=xla
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
