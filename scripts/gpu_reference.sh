#!/usr/bin/env bash
# The H100 reference sweep, in parts that each fit inside one 10-minute device call.
#   scripts/gpu_reference.sh fp8|conv|qwen|prefill|fidelity   [extra hydra overrides]
# Results land in results/reference-raw/<part>.
set -uo pipefail
cd "$(dirname "$0")/.."
part=$1; shift
out=results/reference-raw
mkdir -p $out
sweep() { python3 -m harness -m "hydra.sweep.dir=$out/$part" "$@" 2>&1 | grep -v '\[worker\]'; }
case $part in
  fp8)
    sweep workload=fp8_linear workload.mode=fwd,fwd_bwd backend=eager,inductor,xla "$@" ;;
  bf16)
    sweep workload=fp8_linear workload.recipe=bf16 workload.mode=fwd_bwd backend=inductor,xla "$@" ;;
  conv)
    sweep workload=conv workload.mode=fwd,fwd_bwd backend=eager,inductor,xla "$@" ;;
  qwen)
    sweep workload=qwen_decoder workload.phase=decode workload.cache=static,paged backend=eager,inductor,xla "$@" ;;
  paged)
    sweep workload=qwen_decoder workload.phase=decode workload.cache=paged backend=inductor,xla "$@" ;;
  convxla)
    sweep workload=conv workload.mode=fwd_bwd backend=xla "$@" ;;
  compile)
    sweep workload=fp8_linear workload.mode=fwd_bwd backend=inductor,xla bench.compile_cache=cold,warm \
      bench.compile_cache_dir=$out/compile_cache "$@" ;;
  prefill)
    sweep workload=qwen_decoder workload.phase=prefill workload.cache=static backend=eager,inductor,xla "$@" ;;
  fidelity)
    for args in ${FIDELITY:-"workload=fp8_linear%backend=inductor" "workload=fp8_linear%backend=xla"}; do
      args=${args//%/ }
      python3 scripts/fidelity.py $args "$@" 2>&1 | grep -v '\[worker\]' | tee -a $out/fidelity.txt
    done ;;
esac
