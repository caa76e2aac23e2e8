#!/bin/bash
# Issue 13's toy-world sweeps on a lent CUDA machine (16 CPU cores, one GPU), where the 2-core CPU machine
# needs about an hour per sweep. Trains the toy CLIP on the GPU (toy_clip.device=cuda, its own cache key),
# runs the sweeps with five trials at a time on GPU fractions, and copies each sweep's tables and report
# (never checkpoints) to OUTDIR/<sweep>/. Interrupted sweeps resume on the next call while the machine is warm.
#
#   bash tools/gpu_sweeps.sh OUTDIR PART [--set KEY=VALUE ...]
#     PART a: toy CLIP 0; Table 3 (sweeps/ablation_modules.yaml); full C2S from the token cache
#             (sweeps/toy_live_vs_cached.yaml, its "token cache" variant: the live rows are Table 3's)
#     PART b: toy CLIP 1 (toy_clip.seed=1): Table 3's baseline and full C2S on it; then Table 4's other rows
#             (sweeps/ablation_distill.yaml without "Our distillation", which is Table 3's full C2S)
#   Extra --set options go to every sweep (e.g. --set overrides.data.dataset=toy_stuff); three seeds each.
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
# Per trial: 0.25 driver + 1.5 worker + 1 teacher CPUs (+ data tasks), 0.12 + 0.06 of the GPU: five at a time.
GPU_SETS=(--set resources.cpus_per_worker=1.5 --set resources.gpus_per_worker=0.12 --set resources.teacher_cpus=1
          --set resources.teacher_gpus=0.06 --set max_concurrent=5 --set 'seeds=[0,1,2]'
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
clip() {  # clip SEED [KEY=VALUE ...]: pretrain (or find cached) the toy CLIP of that seed on the GPU
    local seed=$1 start=$(date +%s)
    shift
    $C2S world pretrain-teacher --config toy_c2s toy_clip.device=cuda toy_clip.threads=4 toy_clip.seed="$seed" "$@" \
        > "$OUTDIR/toy_clip_$seed.log" 2>&1
    echo "=== toy CLIP $seed rc=$? $(( $(date +%s) - start ))s"; tail -n 1 "$OUTDIR/toy_clip_$seed.log" | cut -c1-600
}
# The config overrides among the extra --set options, for the toy CLIP's pretraining (same cache key as the sweeps)
CLIP_OVERRIDES=()
for arg in "$@"; do case "$arg" in overrides.*) CLIP_OVERRIDES+=("${arg#overrides.}") ;; esac; done
case "$PART" in
    a)
        clip 0 "${CLIP_OVERRIDES[@]}"
        $C2S world pretrain-student --config toy_c2s toy_backbone.threads=8 > "$OUTDIR/toy_backbone.log" 2>&1
        echo "=== toy backbone rc=$? (at $(( $(date +%s) - T0 ))s)"
        run_sweep ablation_modules sweeps/ablation_modules.yaml 300 "$@"
        run_sweep toy_cached sweeps/toy_live_vs_cached.yaml 200 \
            --set 'variants={token cache: {teacher.cache: true, teacher.cache_epochs: 3}}' "$@" ;;
    b)
        clip 1 "${CLIP_OVERRIDES[@]}"
        run_sweep ablation_modules_clip1 sweeps/ablation_modules.yaml 250 --set overrides.toy_clip.seed=1 \
            --set 'variants={baseline: {distill.enabled: false, latent.enabled: false}, baseline + distillation + latent embedding: {distill.enabled: true, latent.enabled: true}}' "$@"
        run_sweep ablation_distill sweeps/ablation_distill.yaml 250 \
            --set 'variants={Cosine Similarity: {distill.kind: cosine}, L2 Loss: {distill.kind: l2}, Froster: {distill.kind: froster}}' "$@" ;;
    *) echo "PART must be a or b"; exit 2 ;;
esac
echo "=== done at $(( $(date +%s) - T0 ))s"
