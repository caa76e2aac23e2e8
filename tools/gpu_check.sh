#!/bin/bash
# The GPU checks in one go, for a CUDA machine lent for a few minutes: GPU unit tests (tests/test_gpu.py),
# the teacher cost table (c2s bench teacher: ViT-B/16 at the teacher's sizes next to a SegFormer-B4 bf16
# step), the objective's overhead (eager and loss.compile) and Table 2's inference speed on the GPU, and a short Ray job with the
# teacher actors and the Train worker on GPU fractions. One log per step under OUTDIR (at most 8 files).
#
#   bash tools/gpu_check.sh OUTDIR
#
# Where the machine lacks c2s's dependencies (ray, mmsegmentation, open_clip, ...), put their wheels under
# .whl/ in the repository (any python3 whose torch sees the GPU): they are installed to /tmp/site first.
# The 2026-11-26 run (H200 image: Python 3.12, torch 2.11, no ray/mm*/open_clip) carried, fetched with
# `pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d .whl`:
# ray==2.60.0 (repacked without ray/jars, rllib, serve, llm and *.js.map: 41 MB), open_clip_torch==3.3.0, ftfy,
# wcwidth, mmengine==0.10.7, mmsegmentation==1.2.2, mmcv-lite==2.1.0, addict, yapf, platformdirs, termcolor,
# prettytable, jsonschema, jsonschema-specifications, referencing, rpds-py, tensorboardX, pydantic,
# pydantic-core (the version pydantic pins), annotated-types, typing-inspection, typing_extensions.
set -u
OUTDIR=${1:?usage: bash tools/gpu_check.sh OUTDIR}
mkdir -p "$OUTDIR"
source tools/gpu_env.sh || exit 1
T0=$(date +%s)
step() {  # step NAME SECONDS CMD...: the command's output to OUTDIR/NAME.log, a status line and its last lines here
    local name=$1 limit=$2 start rc
    shift 2
    start=$(date +%s)
    timeout "$limit" "$@" > "$OUTDIR/$name.log" 2>&1
    rc=$?
    echo "=== $name rc=$rc $(( $(date +%s) - start ))s (at $(( $(date +%s) - T0 ))s)"
    tail -n 4 "$OUTDIR/$name.log" | cut -c1-600
}
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    $PY -c "import torch, ray, mmseg, open_clip, sys; print(sys.version.split()[0], 'torch', torch.__version__, \
torch.cuda.get_device_name(0), 'ray', ray.__version__, 'mmseg', mmseg.__version__, 'open_clip', open_clip.__version__)"
    nproc
} > "$OUTDIR/env.log" 2>&1
cat "$OUTDIR/env.log"
C2S="$PY -m c2s.cli"
step pytest_gpu 180 $PY -m pytest -q -p no:cacheprovider -m gpu -rs tests/test_gpu.py
# issue 15's open target first: the objective <= 10% of a SegFormer-B4 step, eager and with loss.compile
step bench_objective 120 $C2S bench objective --device cuda
step bench_objective_compile 240 $C2S bench objective --device cuda --compile
step bench_teacher 150 $C2S bench teacher --device cuda
step train_ray_gpu 200 $C2S train toy_tiny train.iters=12 train.gpus_per_worker=0.5 teacher.num_gpus=0.25 \
    'teacher.actors=[2,2]' --run-dir /tmp/c2s-gpu-runs/toy_tiny
step bench_inference_fp32 120 $C2S bench inference --device cuda
step bench_inference_bf16 120 $C2S bench inference --device cuda --dtype bf16
echo "=== all done at $(( $(date +%s) - T0 ))s"
