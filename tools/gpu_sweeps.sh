#!/bin/bash
# Issue 13's toy-world sweeps on a lent CUDA machine (16 CPU cores, one GPU), where the 2-core CPU machine
# needs about an hour per sweep. Trains the toy CLIP on the GPU (toy_clip.device=cuda, its own cache key),
# runs the sweeps with four trials at a time on GPU fractions, and copies each sweep's tables and report
# (never checkpoints) to OUTDIR/<sweep>/. Interrupted sweeps resume on the next call while the machine is warm.
#
#   bash tools/gpu_sweeps.sh OUTDIR PART [--set KEY=VALUE ...]
#     PART a: toy CLIP 0, sweeps/toy_live_vs_cached.yaml, then sweeps/ablation_modules.yaml (3 seeds each)
#     PART b: toy CLIP 1 (toy_clip.seed=1), then sweeps/ablation_modules.yaml on it
#   Extra --set options go to every sweep (e.g. --set overrides.data.dataset=toy_stuff).
set -u
OUTDIR=${1:?usage: bash tools/gpu_sweeps.sh OUTDIR PART [--set KEY=VALUE ...]}
PART=${2:?PART is a or b}
shift 2
mkdir -p "$OUTDIR"
source tools/gpu_env.sh || exit 1
C2S="$PY -m c2s.cli"
SW=/tmp/c2s-gpu-sweeps
T0=$(date +%s)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUTDIR/env.log"
nproc | tee -a "$OUTDIR/env.log"
# Per trial: 0.25 driver + 2 worker + 1 teacher CPUs, 0.15 + 0.08 of the GPU: four trials fit 16 cores, one GPU.
GPU_SETS=(--set resources.cpus_per_worker=2 --set resources.gpus_per_worker=0.15 --set resources.teacher_cpus=1
          --set resources.teacher_gpus=0.08 --set max_concurrent=4 --set 'seeds=[0,1,2]'
          --set overrides.toy_clip.device=cuda --set overrides.toy_clip.threads=4)
run_sweep() {  # run_sweep NAME SPEC SECONDS [--set ...]: resume when its folder exists, then copy tables + report
    local name=$1 spec=$2 limit=$3 resume=()
    shift 3
    [ -d "$SW/$name" ] && resume=(--resume)
    local start=$(date +%s)
    timeout "$limit" $C2S sweep "$spec" --out "$SW/$name" "${resume[@]}" "${GPU_SETS[@]}" "$@" > "$OUTDIR/$name.log" 2>&1
    echo "=== sweep $name rc=$? $(( $(date +%s) - start ))s (at $(( $(date +%s) - T0 ))s)"
    mkdir -p "$OUTDIR/$name"
    find "$SW/$name" -maxdepth 1 -type f \( -name '*.parquet' -o -name '*.json' -o -name '*.yaml' \) \
        -exec cp {} "$OUTDIR/$name/" \;
    $C2S report "$SW/$name" > "$OUTDIR/$name/report.txt" 2>&1
    tail -n 12 "$OUTDIR/$name/report.txt"
}
clip() {  # clip SEED: pretrain (or find cached) the toy CLIP of that seed on the GPU
    local start=$(date +%s)
    $C2S world pretrain-teacher --config toy_c2s toy_clip.device=cuda toy_clip.threads=4 toy_clip.seed="$1" \
        > "$OUTDIR/toy_clip_$1.log" 2>&1
    echo "=== toy CLIP $1 rc=$? $(( $(date +%s) - start ))s"; tail -n 1 "$OUTDIR/toy_clip_$1.log" | cut -c1-400
}
case "$PART" in
    a)
        clip 0
        $C2S world pretrain-student --config toy_c2s toy_backbone.threads=8 > "$OUTDIR/toy_backbone.log" 2>&1
        echo "=== toy backbone rc=$? (at $(( $(date +%s) - T0 ))s)"
        run_sweep toy_live_vs_cached sweeps/toy_live_vs_cached.yaml 240 "$@"
        run_sweep ablation_modules sweeps/ablation_modules.yaml 280 "$@" ;;
    b)
        clip 1
        run_sweep ablation_modules_clip1 sweeps/ablation_modules.yaml 480 --set overrides.toy_clip.seed=1 "$@" ;;
    *) echo "PART must be a or b"; exit 2 ;;
esac
echo "=== done at $(( $(date +%s) - T0 ))s"
