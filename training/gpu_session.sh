#!/usr/bin/env bash
# One timed training run on a GPU host (JAX, no TensorFlow, no internet access needed): `drn train` continues
# the bundled model of PRESET for MINUTES of wall clock (--minutes: the step count is fitted to the budget
# after 3 epochs, warm-up + cosine over it), validates on Set5 (and Set14 where .gpu/ has it), and copies the
# run's files to RESULTS_DIR, the folder the results are written to (7 files: model/best/last.keras,
# history.csv, run.json with steps, patches, device and training TFLOP/s, config.yaml, session.log).
#
# Needs the offline bundle .gpu/ (an ignored folder; python training/prepare_gpu_bundle.py): wheels of keras
# and its pure-Python deps for cp312, the training set and Set5 as lossless WebP, a snapshot of the code.
# Usage (on the GPU host, in a copy of this checkout with .gpu/):
#   bash training/gpu_session.sh drn_x2 [MINUTES, default 8.5]
# Knobs (environment): BATCH (64), PATCH (48), EPOCH_STEPS (250), WORKERS (6, patch-cutting threads),
#   LR (4e-4), MP (mixed precision policy, default mixed_bfloat16; false for float32), SPE (train steps
#   per jitted call, 1; same weights as 1 step per call, measured on CPU), PIPELINE (numpy: patches cut by
#   WORKERS host threads; device: the training set on the GPU as uint8, patches cut there, no host work per step),
#   INIT (default assets/PRESET.keras), DATA (.gpu/data), TRAIN (train), VAL ("val/Set5"; "val/Set5 val/Set14" when prepared with Set14),
#   EXTRA (more `drn train` options), SKIP_PIP=1 (use the installed packages),
#   RESULTS_DIR (the folder the results are written to, default runs/gpu).
#   SWEEP=1: first time training steps for BATCHES x PATCHES (default "64,128,256" x "48,64", at most
#   SWEEP_SECONDS, default 90; training/gpu_sweep.py), then at the fastest (TFLOP/s) the input PIPELINES
#   (default "numpy,device", empty: none; PIPELINE_STEPS timed steps each, 200) on the training set, and train with the fastest of each; writes sweep.json
#   to RESULTS_DIR.
#   BUDGET_SECONDS (570): the time budget of the whole script in seconds, install, sweep, training and copy
#   included (for a host that stops a job after a fixed time: set it a little under that limit): the
#   training budget is MINUTES or what is left after the install and the sweep minus RESERVE_SECONDS (90:
#   start-up, final validation and saving, the matmul, the copy), whichever is less (one log line says so).
# On CPU, end to end with a 1-minute budget and a tiny batch (what the tests cannot afford to repeat):
#   SKIP_PIP=1 DATA=../shared/data TRAIN=benchmark/Set14 VAL=benchmark/Set5 BATCH=4 PATCH=24 EPOCH_STEPS=10 \
#     WORKERS=0 MP=false RESULTS_DIR=/tmp/gpu_out bash training/gpu_session.sh drn_s_x2 1
set -u
T_START=$(date +%s)
PRESET=${1:?usage: bash training/gpu_session.sh PRESET [MINUTES]}
MINUTES=${2:-8.5}
BUDGET_SECONDS=${BUDGET_SECONDS:-570}; RESERVE_SECONDS=${RESERVE_SECONDS:-90}
RESULTS_DIR=${RESULTS_DIR:-runs/gpu}
BATCH=${BATCH:-64}; PATCH=${PATCH:-48}; EPOCH_STEPS=${EPOCH_STEPS:-250}; WORKERS=${WORKERS:-6}
LR=${LR:-4e-4}; MP=${MP:-mixed_bfloat16}; SPE=${SPE:-1}; PIPELINE=${PIPELINE:-numpy}; INIT=${INIT:-$PWD/assets/$PRESET.keras}
DATA=${DATA:-.gpu/data}; TRAIN=${TRAIN:-train}; VAL=${VAL:-val/Set5}; EXTRA=${EXTRA:-}
mkdir -p "$RESULTS_DIR"
if [ -z "${SKIP_PIP:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
# code: the tested snapshot in .gpu/code if present (the working tree may be mid-edit), else the tree
if [ -z "${CODE:-}" ]; then CODE=$PWD; [ -d .gpu/code/drn_tf ] && CODE=$PWD/.gpu/code; fi  # CODE=DIR: that tree
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$CODE KERAS_BACKEND=jax PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
python3 -c "from PIL import features; assert features.check('webp'), 'this pillow cannot read WebP'" || exit 1
python3 -c "import jax, keras, yaml; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)" || exit 1
if [ -n "${SWEEP:-}" ]; then
  # the policy `drn train --mixed-precision $MP` will use: true = mixed_float16 on a GPU (mixed_bfloat16 here
  # otherwise: the sweep is for GPU runs)
  case "$MP" in false) POLICY=float32 ;; true) POLICY=mixed_bfloat16; nvidia-smi -L >/dev/null 2>&1 && POLICY=mixed_float16 ;; *) POLICY=$MP ;; esac
  # shellcheck disable=SC2086  # TRAIN is a word list
  python3 "$CODE/training/gpu_sweep.py" --preset "$PRESET" --batches "${BATCHES:-64,128,256}" --patches "${PATCHES:-48,64}" \
    --policy "$POLICY" --steps-per-execution "$SPE" --seconds "${SWEEP_SECONDS:-90}" --json "$RESULTS_DIR/sweep.json" \
    --pipelines "${PIPELINES-numpy,device}" --data "$DATA" --train $TRAIN --workers "$WORKERS" \
    --pipeline-steps "${PIPELINE_STEPS:-200}" --cache-dir /tmp/drncache 2>&1 | grep -v -E "^(W|I)0000" | tee /tmp/drn_sweep.log
  best=$(grep -E "^BATCH=[0-9]+ PATCH=[0-9]+$" /tmp/drn_sweep.log | tail -n 1)
  if [ -n "$best" ]; then eval "$best"; echo "sweep: training with batch $BATCH, patch $PATCH"; fi
  best=$(grep -E "^PIPELINE=(numpy|device)$" /tmp/drn_sweep.log | tail -n 1)
  if [ -n "$best" ]; then eval "$best"; echo "sweep: input pipeline $PIPELINE"; fi
fi
# the training gets what the budget has left, at most MINUTES
LEFT=$((BUDGET_SECONDS - ($(date +%s) - T_START) - RESERVE_SECONDS))
FIT=$(python3 -c "print(f'{max(0.5, min($MINUTES, $LEFT / 60)):.2f}')")
if python3 -c "import sys; sys.exit(0 if $FIT < $MINUTES else 1)"; then
  echo "budget: training for $FIT minutes, not $MINUTES ($LEFT s left of the budget of $BUDGET_SECONDS s after install and sweep)"
  MINUTES=$FIT
fi
RUN=/tmp/drnrun/$PRESET
rm -rf "$RUN"; mkdir -p "$RUN"
# shellcheck disable=SC2086  # VAL and EXTRA are word lists
# cut at the budget's deadline at the latest (what is saved by then is still copied to RESULTS_DIR)
timeout "$(python3 -c "print(max(60, min(int($MINUTES * 60 + 120), $BUDGET_SECONDS - ($(date +%s) - $T_START) - 20)))")" python3 -c \
  "import sys; from drn_tf.cli.main import main; sys.exit(main(sys.argv[1:]))" train --preset "$PRESET" \
  --init-from "$INIT" --data "$DATA" --train $TRAIN --val $VAL --minutes "$MINUTES" --batch-size "$BATCH" \
  --patch-size "$PATCH" --epoch-steps "$EPOCH_STEPS" --lr "$LR" --mixed-precision "$MP" \
  --set data.workers="$WORKERS" --set data.cache_dir=/tmp/drncache --set train.val_every=2 \
  --set train.steps_per_execution="$SPE" --set data.pipeline="$PIPELINE" \
  --set schedule.warmup_steps=500 --out "$RUN" --verbose 2 $EXTRA >"$RUN.log" 2>&1
rc=$?
grep -E "^\[(data|train|done)\]" "$RUN.log"; tail -n 3 "$RUN.log" | cut -c1-300
# the matmul rate of this device in the training's precision, beside the training rate in run.json
[ -f "$RUN/run.json" ] && python3 - "$RUN/run.json" "$MP" <<'EOF'
import json, sys
from drn_tf.train.summary import jax_matmul_peak_tflops
from drn_tf.train.state import write_file
path = sys.argv[1]
run = json.load(open(path))
mp = str(run.get("dtype_policy") or sys.argv[2])  # the policy the run used (MP=true: chosen by drn train)
peak = jax_matmul_peak_tflops("bfloat16" if "bfloat16" in mp else "float16" if "float16" in mp else "float32")
run["matmul_peak"] = peak
run["train_percent_of_peak"] = round(100 * (run.get("train_tflops") or 0) / peak["tflops"], 1)
write_file(path, json.dumps(run, indent=2, default=str))
print(f"training {run.get('train_tflops')} TFLOP/s = {run['train_percent_of_peak']} % of a {peak['dtype']} "
      f"{peak['n']}x{peak['n']} matmul at {peak['tflops']:.2f} TFLOP/s on {peak['device']}")
EOF
for f in model.keras best.keras last.keras history.csv run.json config.yaml; do
  [ -f "$RUN/$f" ] && cp "$RUN/$f" "$RESULTS_DIR/$f"
done
cp "$RUN.log" "$RESULTS_DIR/session.log"
ls -la "$RESULTS_DIR"
exit $rc
