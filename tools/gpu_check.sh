#!/usr/bin/env bash
# GPU checks of the `paper` recipe as one script with a time limit on every step (about 9 minutes
# in all):
#
#   1. paper_train: a shortened `paper` training run on procedural data (12 epochs of 20,000
#      samples; the full recipe, 200,000 samples x 30 epochs, takes hours), interrupted with
#      SIGINT (Ctrl-C's signal) if it outlasts 300 s: training then saves a checkpoint, which
#      step 2 evaluates all the same;
#   2. paper_eval: `handpose eval` of that run on the procedural test set (2,000 samples);
#   3. throughput: CUDA + AMP training throughput of the tiny and paper recipes
#      (benchmarks/train.py: img/s, memory, roofline; the procedural engine rendering on the GPU
#      and feeding `paper` training).
#
# It writes into $OUT (default /tmp/gpu-check): env.txt (GPU, driver, torch), one log per step
# (paper_train.log, paper_eval.log, throughput.log), paper_eval.json (the evaluation report),
# train_bench.json (the benchmark's rows), paper_metrics.jsonl (the training run's metrics) and
# steps.txt (each step's command, exit code and seconds). The training run's folder is $RUN
# (default /tmp/gpu-check-run), the rendered-set cache $HANDPOSE_CACHE (default here
# /tmp/handpose-cache).
#
# Usage, from the repository root of a machine with a GPU and python3 with torch, torchvision,
# opencv, safetensors, tqdm and pyyaml (scikit-image may be missing: see PHOTOS below):
#
#   OUT=/tmp/gpu-check bash tools/gpu_check.sh
#
# PHOTOS: the procedural engine's background photographs come from scikit-image; where it is not
# installed, copy them next to the repository first (on a machine that has it) and point the
# engine at the copy:
#
#   mkdir -p .gpu/photos && cp "$(python -c 'import skimage.data, os; print(os.path.dirname(skimage.data.__file__))')"/*.{png,jpg} .gpu/photos/
#
# (copy .gpu/ to the GPU machine with the repository; this script uses it when it exists.)
# SMOKE=1 runs every step on the CPU with tiny sizes, to check the script itself (about 2 minutes).
# Every step runs even if an earlier one failed; each one's exit code is in $OUT/steps.txt.

set -u
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
rm -f "$OUT/steps.txt"
export PYTHONUNBUFFERED=1
export HANDPOSE_CACHE=${HANDPOSE_CACHE:-/tmp/handpose-cache}
PY=${PY:-python3}
if [ -d .gpu/photos ] && [ -z "${HANDPOSE_BACKGROUND_PHOTOS:-}" ]; then
    export HANDPOSE_BACKGROUND_PHOTOS="$PWD/.gpu/photos"
fi
RUN=${RUN:-/tmp/gpu-check-run}
rm -rf "$RUN"

if [ "${SMOKE:-0}" = 1 ]; then
    TRAIN_BOX=120
    BENCH_ARGS=(--quick --devices cpu)
    TRAIN_ARGS=(--recipe tiny --device cpu --n-train 64 --n-val 16 --batch-size 16 --epochs 1 --workers 1)
    EVAL_ARGS=(--n 32 --device cpu)
else
    TRAIN_BOX=300
    BENCH_ARGS=(--devices cuda --configs tiny paper --steps 20)  # training rows print first
    # 12 epochs of 20,000 samples (3,744 steps of batch 64): the paper recipe's schedule, shortened
    TRAIN_ARGS=(--recipe paper --n-train 20000 --n-val 512 --epochs 12 --workers 12)
    EVAL_ARGS=()
fi

step() {  # step NAME TIMEOUT_S COMMAND...: run it with a time limit, log its exit code
    local name=$1 box=$2
    shift 2
    echo ">> $name (at most ${box} s): $*" | tee -a "$OUT/steps.txt"
    local t0=$SECONDS
    timeout -s INT -k 30 "$box" "$@" > >(tee "$OUT/$name.log") 2>&1
    local rc=$?
    echo "   $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$OUT/steps.txt"
}

{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
    echo "background photos: ${HANDPOSE_BACKGROUND_PHOTOS:-scikit-image}"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

step paper_train "$TRAIN_BOX" "$PY" -m handpose_lib.cli train "${TRAIN_ARGS[@]}" --data synthetic \
    --out "$RUN" --no-progress
step paper_eval 90 "$PY" -m handpose_lib.cli eval --checkpoint "$RUN" "${EVAL_ARGS[@]}" \
    --json "$OUT/paper_eval.json"
step throughput 150 "$PY" benchmarks/train.py "${BENCH_ARGS[@]}" --out "$OUT/train_bench.json"
cp "$RUN/metrics.jsonl" "$OUT/paper_metrics.jsonl" 2>/dev/null || echo "no metrics.jsonl" >> "$OUT/steps.txt"
cat "$OUT/steps.txt"
echo "written to $OUT: env.txt, steps.txt, one .log per step, paper_eval.json (the evaluation report),"
echo "train_bench.json (the throughput rows), paper_metrics.jsonl (the training run's metrics)"
