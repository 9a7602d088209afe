#!/usr/bin/env bash
# One GPU session (JAX, no TensorFlow): trains the six presets side by side on
# one GPU for a fixed wall-clock budget and packs the results under $OUT.
#
# Expects, in the ignored folder .gpu/ (made by training/prepare_gpu_bundle.py):
#   .gpu/whl/        keras, namex, optree wheels for cp312 (pillow, numpy, h5py: the image's own)
#   .gpu/data/train  T91 + BSD200 as lossless WebP (same pixels as the PNGs)
#   .gpu/data/val    Set5
# Usage (on the GPU machine): MINUTES=7.5 bash training/gpu_session.sh
# Knobs (environment): PRESETS, MINUTES, BATCH, PATCH, EPOCH_STEPS, WORKERS (patch-cutting threads per
# process; 0 = in the main thread, between steps), INIT=assets (continue from the bundled
# assets/<preset>.keras instead of from scratch), LR_DRN / LR_S (peak learning rates).
# The GPU's throughput is shared by the processes (python training/gpu_throughput.py), so one preset per
# session, continuing the bundled model at a larger batch:
#   PRESETS=drn_x2 MINUTES=9 BATCH=64 WORKERS=6 INIT=assets LR_DRN=4e-4 bash training/gpu_session.sh
set -u
MINUTES=${MINUTES:-7}
OUT=${OUT:-runs/gpu}
PRESETS=${PRESETS:-"drn_x2 drn_x3 drn_x4 drn_s_x2 drn_s_x3 drn_s_x4"}
mkdir -p "$OUT"
BATCH=${BATCH:-32}; PATCH=${PATCH:-48}; EPOCH_STEPS=${EPOCH_STEPS:-250}; WORKERS=${WORKERS:-0}
INIT=${INIT:-}; LR_DRN=${LR_DRN:-6e-4}; LR_S=${LR_S:-1e-3}
if [ -z "${SKIP_PIP:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
fi
# code: the tested snapshot in .gpu/code if present (the working tree may be mid-edit), else the tree
CODE=$PWD; [ -d .gpu/code/drn_tf ] && CODE=$PWD/.gpu/code
export PYTHONPATH=/tmp/site:$CODE KERAS_BACKEND=jax PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "from PIL import features; assert features.check('webp'), 'this pillow cannot read WebP'" || exit 1
python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"
RUN=/tmp/drnrun; mkdir -p $RUN/logs
pids=()
for p in $PRESETS; do
  case $p in drn_s_*) lr=$LR_S;; *) lr=$LR_DRN;; esac
  init=(); [ -n "$INIT" ] && init=(--init "$PWD/$INIT/$p.keras")
  timeout "$(python3 -c "print(int($MINUTES * 60 + 80))")" python3 "$CODE/training/train_gpu.py" --preset "$p" --train .gpu/data/train --val .gpu/data/val/Set5 \
    --minutes "$MINUTES" --batch $BATCH --patch $PATCH --lr $lr --epoch-steps $EPOCH_STEPS --val-every 2 \
    --workers $WORKERS "${init[@]}" --mixed-bfloat16 --cache /tmp/drncache --out $RUN >"$RUN/logs/$p.log" 2>&1 &
  pids+=($!)
done
sleep 90; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
for pid in "${pids[@]}"; do wait "$pid"; done
for p in $PRESETS; do echo "== $p"; grep -E "^\[(data|done)\]" "$RUN/logs/$p.log"; tail -n 3 "$RUN/logs/$p.log" | cut -c1-300; done
# at most 8 files of at most 16 MiB come back: one tar per model family
(cd $RUN && tar cf "$OUT/drn_models.tar" drn_x?.weights.h5 drn_x*.csv drn_x*.json 2>/dev/null)
(cd $RUN && tar cf "$OUT/drn_last.tar" drn_x?.last.weights.h5 2>/dev/null)
(cd $RUN && tar cf "$OUT/drn_s_models.tar" drn_s_x*.h5 drn_s_x*.csv drn_s_x*.json 2>/dev/null)
(cd $RUN && tar czf "$OUT/logs.tar.gz" logs)
ls -la "$OUT"
