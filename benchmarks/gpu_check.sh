#!/usr/bin/env bash
# Issue 23's GPU check: whole sfnet epochs vs the bare step at batch 64 and 256, fp32 and bf16,
# without and with CUDA graphs (train.cuda_graphs), and multi-GPU scaling when several GPUs are
# listed. One run, about 6 minutes on one H200 (BUDGET_S caps it: a step that would start with
# less than 30 s left is skipped and says so).
#
#   bash benchmarks/gpu_check.sh              # on the lent GPU machine, from anywhere
#
# The log goes to $OUT/gpu-<UTC date>.log (OUT defaults to /tmp/gpu_check); commit it as
# docs/results/gpu-<date>.log and fill in docs/results/gpu-h200.md from it.
#
# Dry run of every Python command on a CPU, at toy size (cuda-graph steps print one line each
# and measure nothing; NPROC=2 runs the torchrun path with gloo):
#
#   DEVICE=cpu N=320 SIZE=36 CROP=32 EPOCHS=2 REPS=3 NPROC=2 SLOW=10 BUDGET_S=3600 \
#       bash benchmarks/gpu_check.sh
#
# (SLOW multiplies every step's time limit: a CPU is ~100x slower than the GPU per image.)
#
# The packed set is built by bench_train_epoch.py itself: N galaxies tiled from the real SDSS
# sample in examples/ (flipped and rolled so that no two rows are identical).
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
# 5120 galaxies: 4096 trained per epoch = 64 x 64 = 16 x 256, no short last batch (one graph)
N=${N:-5120}
SIZE=${SIZE:-160}
CROP=${CROP:-144}
EPOCHS=${EPOCHS:-3}
REPS=${REPS:-30}
BUDGET_S=${BUDGET_S:-360}
SLOW=${SLOW:-1}
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
LOG="$OUT/gpu-$(date -u +%Y-%m-%d).log"
: >"$LOG"
DEADLINE=$((SECONDS + BUDGET_S))

say() { echo "$*" | tee -a "$LOG"; }

# step LIMIT_S NAME COMMAND...: run with a time limit (never past the budget), log everything
step() {
    local limit=$(($1 * SLOW)) name=$2
    shift 2
    local left=$((DEADLINE - SECONDS))
    if ((left < 30)); then
        say "== $name: not measured (time budget of ${BUDGET_S} s spent)"
        return 0
    fi
    ((limit > left)) && limit=$left
    say "== $name (limit ${limit} s): $*"
    local t0=$SECONDS rc
    timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    say "== $name: exit $rc after $((SECONDS - t0)) s$( ((rc == 124)) && echo ' (timed out: not measured)')"
}

say "# sfnet GPU check (issue 23), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
say "settings: DEVICE=$DEVICE N=$N SIZE=$SIZE CROP=$CROP EPOCHS=$EPOCHS REPS=$REPS BUDGET_S=$BUDGET_S SLOW=$SLOW"
GPUS=0
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L 2>&1 | tee -a "$LOG"
    GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
else
    say "no nvidia-smi on this machine"
fi
NPROC=${NPROC:-$GPUS}
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "devices", torch.cuda.device_count())' 2>&1 | tee -a "$LOG"

BENCH=("$PY" benchmarks/bench_train_epoch.py --device "$DEVICE" --n "$N" --size "$SIZE"
    --crop "$CROP" --epochs "$EPOCHS" --reps "$REPS" --batch 64 256)

# 1-2: the epoch / bare-step ratio the issue asks for, fp32 and bf16 (+ channels-last: auto)
step 90 "fp32, no CUDA graphs" "${BENCH[@]}" --amp off
step 90 "bf16, no CUDA graphs" "${BENCH[@]}" --amp on
# 3-4: the same through torch.compile(mode=reduce-overhead) (train.cuda_graphs); the first
# epoch pays for compiling and is left out of the median, as in 1-2
step 120 "fp32, CUDA graphs" "${BENCH[@]}" --amp off --cuda-graphs
step 120 "bf16, CUDA graphs" "${BENCH[@]}" --amp on --cuda-graphs
# 5: several processes (DDP), at sfnet train's own precision
if ((NPROC > 1)); then
    step 90 "$NPROC processes (torchrun), batch 256 per step" \
        "$PY" benchmarks/bench_train_epoch.py --device "$DEVICE" --n "$N" --size "$SIZE" \
        --crop "$CROP" --epochs "$EPOCHS" --reps "$REPS" --batch 256 --nproc "$NPROC"
else
    say "== one GPU: multi-GPU not measured"
fi

say "== summary (epoch images/s over bare-step images/s; issue 23 asks >= 0.9 at batch 64 and 256)"
grep -E 'epoch_over_bare|bare_images_per_s|skipped' "$LOG" | grep -v '^==' | tee -a "$LOG.summary"
cat "$LOG.summary" >>"$LOG"
rm -f "$LOG.summary"
say "log: $LOG (commit it as docs/results/$(basename "$LOG"))"
