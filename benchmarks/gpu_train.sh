#!/usr/bin/env bash
# The GPU training run (the standing rule: a lent GPU's first use), one device call:
#   here:    python benchmarks/gpu_stage.py stage CHECKOUT     (prints the call; restore afterwards)
#   device:  bash benchmarks/gpu_train.sh SECONDS [TRAIN FLAGS...]     (carry [".gpu-carry"])
# SECONDS is what the whole command may take (the call's timeout_s less 25). The script installs the
# carried wheels, unpacks the zoo weights and the data from .gpu-carry, trains both zoo models at
# once on the one GPU from their entries (--init-from NAME, optimiser restarted) until SECONDS less
# the setup and RESERVE, and leaves in $OUT, per model, model.safetensors, ema.safetensors (their
# metadata hold the train config and provenance: --init-from takes them) and log.txt (exit status,
# the run's output but its progress bar, log.csv, evals.csv), plus gpu_train.txt (this output):
# 7 files, 65.2 MB in the CPU rehearsal (the limit: 8 files, 16 MiB each, 64 MiB = 67.1 MB in all).
# Weights are copied to $OUT every minute as the runs save them (epoch ends), so a call cut short
# still brings back the last epoch's. TRAIN FLAGS reach both runs after RECIPE (the last flag wins);
# --eval-samples 0 (the AE Frechet autoencoders stay behind: choose weights afterwards on the CPU)
# and --limit-test (only that many test images travel) come last. On a warm machine a second call
# resumes the runs in $WORK/runs (give the same flags).
# Environment: PYTHON (python3), DEVICE (cuda), CARRY (.gpu-carry), WORK (/tmp/fsvae-gpu), RESERVE (60 s
# for the runs' own start, the last save and the copy), OMP_NUM_THREADS (4 per run).
# CPU rehearsal (benchmarks/RESULTS.md, "GPU training run"), in a staged throwaway clone (an epoch's
# end is slow on a CPU, hence the larger RESERVE):
#   OUT=/tmp/gpu-out DEVICE=cpu RESERVE=120 PYTHON=/path/to/venv/python bash benchmarks/gpu_train.sh 200 \
#     --fused-lif false --batch-size 16 --limit-train 256
set -uo pipefail
cd "$(dirname "$0")/.."
allow=${1:?usage: bash benchmarks/gpu_train.sh SECONDS [TRAIN FLAGS...]}
shift
flags="$*"
: "${OUT:?OUT must name the folder whose files come back}"
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
CARRY=${CARRY:-.gpu-carry}
WORK=${WORK:-/tmp/fsvae-gpu}
RESERVE=${RESERVE:-60}
# The paper's recipe where a warm start lets it be (batch 250, AdamW 1e-3); the entries' own surrogate,
# scheduled sampling and EMA 0.999 come with --init-from. The warm-up: a restarted AdamW's first steps
# at 1e-3 knocked trained weights back (benchmarks/RESULTS.md, quality study).
RECIPE=(--batch-size 250 --lr 1e-3 --lr-warmup-steps 100 --ema-decay 0.999 --save-every 0 --eval-every 0
        --calibrate-decoder 0)
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
mkdir -p "$OUT" "$WORK/runs"
exec > >(tee "$OUT/gpu_train.txt") 2>&1
tee_pid=$!
say() { printf '[%4ds] %s\n' "$SECONDS" "$*"; }

say "gpu_train.sh $allow $*; device $DEVICE"
$PY -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__,
torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')"
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
  "$CARRY"/wheels/*.whl || { say "error: the carried wheels did not install"; exit 1; }
export PYTHONPATH="$PWD:$WORK/site" FSVAE_SJ_DATA="$WORK/data"
$PY benchmarks/gpu_stage.py unpack "$CARRY" --repo . --data "$WORK/data" --env "$WORK/staged.env" || exit 1
. "$WORK/staged.env"
$PY -c "import spikingjelly, fsvae_sj.train; print('spikingjelly from', spikingjelly.__path__[0])" || exit 1

budget=$((allow - SECONDS - RESERVE))
if ((budget < 30)); then say "error: $budget s left for training; give more SECONDS"; exit 1; fi
say "training $MODELS, $budget s each, flags: ${RECIPE[*]} $*"
declare -A pid rc
for m in $MODELS; do
  $PY -m fsvae_sj.train --out "$WORK/runs/$m" --init-from "$m" --device "$DEVICE" --time-budget "$budget" \
    "${RECIPE[@]}" "$@" --eval-samples 0 --limit-test "$TEST_IMAGES" >"$WORK/runs/$m.log" 2>&1 &
  pid[$m]=$!
done

BAR='^epoch [0-9]+: '   # the runs' progress bars (a line per step, in their logs)
lines() { tr '\r' '\n' <"$1" 2>/dev/null | grep -v '^ *$'; }
sync_back() {   # the last saved weights (saves are atomic: whole files) and the logs, into $OUT/MODEL/
  local m f src run
  for m in $MODELS; do
    run="$WORK/runs/$m"
    mkdir -p "$OUT/$m"
    for f in ema.safetensors model.safetensors; do
      src="$run/$f"
      if [ -f "$src" ] && [ "$src" -nt "$OUT/$m/$f" ]; then
        cp "$src" "$OUT/$m/.$f.part" && mv "$OUT/$m/.$f.part" "$OUT/$m/$f"
      fi
    done
    {
      echo "model $m; exit status ${rc[$m]:-running}; ${budget} s budget on $DEVICE; flags: ${RECIPE[*]} $flags"
      echo "== output but the progress bar (last 60 kB)"; lines "$run.log" | grep -Ev "$BAR" | tail -c 60000
      echo "== the progress bar's last line"; lines "$run.log" | grep -E "$BAR" | tail -n 1
      echo "== log.csv"; cat "$run/log.csv" 2>/dev/null
      echo "== evals.csv (last 60 kB)"; tail -c 60000 "$run/evals.csv" 2>/dev/null
    } >"$OUT/$m/log.txt"
  done
}

term_sent=0
last_print=0
last_sync=0
while :; do
  alive=0
  for m in $MODELS; do kill -0 "${pid[$m]}" 2>/dev/null && alive=1; done
  ((alive)) || break
  # A run checks its budget before each step, so an epoch's end (evaluation, grids, save) can overrun it.
  # SIGTERM makes a run save and stop; one that arrives in its last save ends it (status 143) with the
  # save before kept (atomic writes).
  if ((term_sent == 0 && SECONDS > allow - 30)); then
    say "runs past their budget: SIGTERM (each saves and stops)"
    for m in $MODELS; do kill -TERM "${pid[$m]}" 2>/dev/null; done
    term_sent=1
  elif ((term_sent == 1 && SECONDS > allow - 10)); then
    say "runs still going: SIGKILL (their last saves stay)"
    for m in $MODELS; do kill -KILL "${pid[$m]}" 2>/dev/null; done
    term_sent=2
  fi
  if ((SECONDS - last_print >= 30)); then
    last_print=$SECONDS
    for m in $MODELS; do say "$m: $(lines "$WORK/runs/$m.log" | tail -n 1 | cut -c 1-160)"; done
    command -v nvidia-smi >/dev/null && say "gpu: $(nvidia-smi --query-gpu=utilization.gpu,memory.used \
      --format=csv,noheader 2>/dev/null | head -n 1)"
  fi
  if ((SECONDS - last_sync >= 60)); then last_sync=$SECONDS; sync_back; fi
  sleep 5
done
status=0
for m in $MODELS; do
  wait "${pid[$m]}"
  rc[$m]=$?
  case ${rc[$m]} in 0 | 75) ;; *) status=1 ;; esac
  say "$m: exit status ${rc[$m]} (0 finished, 75 stopped at the budget)"
  lines "$WORK/runs/$m.log" | grep -Ev "$BAR" | tail -n 3
done
sync_back
if ! $PY benchmarks/gpu_stage.py check-out "$OUT"; then
  say "over the limits of files back: the raw weights stay behind, the EMA comes back"
  rm -f "$OUT"/*/model.safetensors
  $PY benchmarks/gpu_stage.py check-out "$OUT" || status=1
fi
say "done (status $status)"
exec >&- 2>&-
wait "$tee_pid"
exit $status
