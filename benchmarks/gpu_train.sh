#!/usr/bin/env bash
# The GPU training run (the standing rule: a lent GPU's first use), one device call:
#   here:    python benchmarks/gpu_stage.py stage CHECKOUT     (prints the call; restore afterwards)
#   device:  bash benchmarks/gpu_train.sh SECONDS [TRAIN FLAGS...]     (carry [".gpu-carry"])
# SECONDS is what the whole command may take (the call's timeout_s less 25). The script installs the
# carried wheels, unpacks the zoo weights and the data from .gpu-carry, and trains both zoo models at
# once on the one GPU through the zoo's recipe, three phases each:
#   main        from the entry (--init-from NAME, optimiser restarted), the whole model, until SECONDS
#               less the setup, the two stages' seconds and RESERVE;
#   prior-free  the prior stage (STAGE below, then the model's PHASE_OF flags) from the main run's EMA, for STAGE_SECONDS;
#   decoder     the decoder stage (DECODER below, then PHASE_OF's) from the prior stage's EMA, for DECODER_SECONDS.
# A phase given 0 seconds is skipped (the next starts from the phase before it). $OUT gets, per model,
# the weights of the two latest phases that saved (the limit back is 64 MiB, four 16.3 MB files):
# ema.safetensors (main), prior-free-ema.safetensors, decoder-ema.safetensors (each phase's EMA; their
# metadata hold the train config and provenance: --init-from takes them), model.safetensors (the main
# run's raw weights, with both stages at 0 s), and log.txt (exit statuses, the runs' output but their
# progress bars, log.csv, evals.csv), plus gpu_train.txt (this output): 7 files at most.
# Weights are copied to $OUT every minute as the runs save them (epoch ends), so a call cut short
# still brings back the last epoch's. TRAIN FLAGS reach the main runs after RECIPE (the last flag wins);
# --eval-samples 0 (the AE Frechet autoencoders stay behind: choose weights afterwards on the CPU)
# and --limit-test (only that many test images travel) come last. On a warm machine a second call
# resumes the main runs in $WORK/runs (give the same flags) and starts their stages afresh.
# Environment: PYTHON (python3), DEVICE (cuda), CARRY (.gpu-carry), WORK (/tmp/fsvae-gpu), RESERVE (60 s
# for the runs' own start, the last save and the copy), STAGE_SECONDS (120), DECODER_SECONDS (90),
# STAGE_FLAGS (more flags for both stages' runs, after their own), OMP_NUM_THREADS (4 per run).
# Measured on the H200 (2026-12-04, benchmarks/RESULTS.md, "The first GPU run"): about 140 s of compiling the
# fused kernels before the main runs' first fast step, then about 9 steps/s per model at batch 250 with the two
# side by side (27 s an epoch: the paper's 150 epochs are about 70 minutes a model, not one call); the stages
# 9-16 steps/s. `bash benchmarks/gpu_train.sh 575` took 532 s and 575 s of device time with the machine's start.
# CPU rehearsal (benchmarks/RESULTS.md, "GPU training run"), in a staged throwaway clone (an epoch's
# end is slow on a CPU, hence the larger RESERVE):
#   OUT=/tmp/gpu-out DEVICE=cpu RESERVE=120 STAGE_SECONDS=100 DECODER_SECONDS=100 \
#     STAGE_FLAGS="--fused-lif false --limit-train 256" PYTHON=/path/to/venv/python \
#     bash benchmarks/gpu_train.sh 420 --fused-lif false --batch-size 16 --limit-train 256
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
STAGE_SECONDS=${STAGE_SECONDS:-120}
DECODER_SECONDS=${DECODER_SECONDS:-90}
read -ra STAGE_EXTRA <<<"${STAGE_FLAGS:-}"
# The paper's recipe where a warm start lets it be (batch 250, AdamW 1e-3); the entries' own surrogate,
# scheduled sampling and EMA 0.999 come with --init-from. The warm-up: a restarted AdamW's first steps
# at 1e-3 knocked trained weights back (benchmarks/RESULTS.md, quality study).
# The entries' own schedule (a stage's cosine) would come with them too: the main runs take a constant rate.
RECIPE=(--batch-size 250 --lr 1e-3 --lr-warmup-steps 100 --lr-schedule constant --ema-decay 0.999 --save-every 0
        --eval-every 0 --calibrate-decoder 0)
# The prior stage the fashion-mnist entry was published from (its card, step 12; benchmarks/RESULTS.md, "What
# the samples lack now"): the prior alone, on its own samples, against the posterior's firing probabilities,
# at batch 256.
STAGE=(--stage prior-free --prior-free-on probabilities --batch-size 256 --lr 2.56e-4 --lr-warmup-steps 30
       --lr-schedule cosine --lr-decay-steps 600 --lr-min-ratio 0.1 --max-steps 700 --ema-decay 0.999
       --save-every 0 --eval-every 0 --calibrate-decoder 0)
# Per model and stage ("MODEL-STAGE"), flags after the stage's own (the last flag wins): mnist's entry came
# from the stage on the decoder's images with the prior's tdBN in eval mode at a quarter of the rate (its
# card, step 7; benchmarks/RESULTS.md, "The prior stage on the statistics it samples with").
declare -A PHASE_OF=([mnist-prior-free]="--prior-free-on images --prior-statistics running --lr 6.4e-5")
# The decoder stage in the fashion-mnist entry's making (its card, step 11; benchmarks/RESULTS.md, "The
# decoder alone, the latent distribution kept"): the decoder alone on the posterior's z, the prior kept;
# on the absolute error, which took both entries' samples from 26.1 and 34.1 to 19.2 and 15.3 where the
# same stage on MSE made them worse (benchmarks/RESULTS.md, "The decoder on the absolute error"). The main
# runs keep the paper's MSE (the whole model on L1 is not measured).
DECODER=(--stage decoder --recon-loss l1 --batch-size 64 --lr 2.56e-4 --lr-warmup-steps 30 --lr-schedule cosine
         --lr-decay-steps 1500 --lr-min-ratio 0.1 --max-steps 1800 --ema-decay 0.999
         --save-every 0 --eval-every 0 --calibrate-decoder 0)
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

budget=$((allow - SECONDS - RESERVE - STAGE_SECONDS - DECODER_SECONDS))
if ((budget < 30)); then say "error: $budget s left for training; give more SECONDS"; exit 1; fi
declare -A pid rc
BAR='^epoch [0-9]+: '   # the runs' progress bars (a line per step, in their logs)
lines() { tr '\r' '\n' <"$1" 2>/dev/null | grep -v '^ *$'; }
copy_new() {   # copy_new SRC DST: the file if newer (saves are atomic: whole files), atomically
  if [ -f "$1" ] && [ "$1" -nt "$2" ]; then cp "$1" "$(dirname "$2")/.part" && mv "$(dirname "$2")/.part" "$2"; fi
}
weights_back() {   # weights_back MODEL: "SRC NAME" lines, the phases' saved weights, oldest first
  local m=$1 run="$WORK/runs/$1"
  [ -f "$run/ema.safetensors" ] && echo "$run/ema.safetensors ema.safetensors"
  ((STAGE_SECONDS + DECODER_SECONDS == 0)) && [ -f "$run/model.safetensors" ] &&
    echo "$run/model.safetensors model.safetensors"
  [ -f "$run-prior-free/ema.safetensors" ] && echo "$run-prior-free/ema.safetensors prior-free-ema.safetensors"
  [ -f "$run-decoder/ema.safetensors" ] && echo "$run-decoder/ema.safetensors decoder-ema.safetensors"
}
sync_back() {   # the two latest phases' weights and the logs, into $OUT/MODEL/
  local m r src name keep
  for m in $MODELS; do
    mkdir -p "$OUT/$m"
    keep=" "
    while read -r src name; do
      copy_new "$src" "$OUT/$m/$name"
      keep+="$name "
    done < <(weights_back "$m" | tail -n 2)
    for name in ema model prior-free-ema decoder-ema; do   # an older phase's file makes room
      [[ $keep == *" $name.safetensors "* ]] || rm -f "$OUT/$m/$name.safetensors"
    done
    {
      echo "model $m; main run: exit status ${rc[$m]:-running}, ${budget} s on $DEVICE, flags: ${RECIPE[*]} $flags"
      echo "prior stage: exit status ${rc[$m-prior-free]:-not run}, ${STAGE_SECONDS} s, flags: ${STAGE[*]} ${PHASE_OF[$m-prior-free]:-} ${STAGE_EXTRA[*]}"
      echo "decoder stage: exit status ${rc[$m-decoder]:-not run}, ${DECODER_SECONDS} s, flags: ${DECODER[*]} ${PHASE_OF[$m-decoder]:-} ${STAGE_EXTRA[*]}"
      echo "weights back:$keep"
      for r in "$WORK/runs/$m" "$WORK/runs/$m-prior-free" "$WORK/runs/$m-decoder"; do
        [ -e "$r.log" ] || continue
        echo "==== $(basename "$r")"
        echo "== output but the progress bar (last 20 kB)"; lines "$r.log" | grep -Ev "$BAR" | tail -c 20000
        echo "== the progress bar's last line"; lines "$r.log" | grep -E "$BAR" | tail -n 1
        echo "== log.csv"; cat "$r/log.csv" 2>/dev/null
        echo "== evals.csv (last 20 kB)"; tail -c 20000 "$r/evals.csv" 2>/dev/null
      done
    } >"$OUT/$m/log.txt"
  done
}
supervise() {   # supervise END RUN...: wait for the runs, SIGTERM them near END, sync every minute
  local end=$1 r alive term_sent=0 last_print=0 last_sync=0
  shift
  while :; do
    alive=0
    for r in "$@"; do kill -0 "${pid[$r]}" 2>/dev/null && alive=1; done
    ((alive)) || break
    # A run checks its budget before each step, so an epoch's end (evaluation, grids, save) can overrun it.
    # SIGTERM makes a run save and stop; one that arrives in its last save ends it (status 143) with the
    # save before kept (atomic writes).
    if ((term_sent == 0 && SECONDS > end - 30)); then
      say "runs past their budget: SIGTERM (each saves and stops)"
      for r in "$@"; do kill -TERM "${pid[$r]}" 2>/dev/null; done
      term_sent=1
    elif ((term_sent == 1 && SECONDS > end - 10)); then
      say "runs still going: SIGKILL (their last saves stay)"
      for r in "$@"; do kill -KILL "${pid[$r]}" 2>/dev/null; done
      term_sent=2
    fi
    if ((SECONDS - last_print >= 30)); then
      last_print=$SECONDS
      for r in "$@"; do say "$r: $(lines "$WORK/runs/$r.log" | tail -n 1 | cut -c 1-160)"; done
      command -v nvidia-smi >/dev/null && say "gpu: $(nvidia-smi --query-gpu=utilization.gpu,memory.used \
        --format=csv,noheader 2>/dev/null | head -n 1)"
    fi
    if ((SECONDS - last_sync >= 60)); then last_sync=$SECONDS; sync_back; fi
    sleep 5
  done
  for r in "$@"; do
    wait "${pid[$r]}"
    rc[$r]=$?
    case ${rc[$r]} in 0 | 75) ;; *) status=1 ;; esac
    say "$r: exit status ${rc[$r]} (0 finished, 75 stopped at its budget or step limit)"
    lines "$WORK/runs/$r.log" | grep -Ev "$BAR" | tail -n 3
  done
}
run_stage() {   # run_stage NAME SECONDS END FLAGS...: the stage from each model's latest EMA, until END
  local name=$1 seconds=$2 end=$3 m from stage_budget
  shift 3
  ((seconds > 0)) || return 0
  stage_budget=$((end - SECONDS - RESERVE))
  say "$name stage from each model's latest EMA, $stage_budget s each, flags: $* ${STAGE_EXTRA[*]}"
  local runs=()
  for m in $MODELS; do
    from=$(weights_back "$m" | grep -v ' model.safetensors$' | tail -n 1 | cut -d' ' -f1)
    if [ -z "$from" ]; then say "$m: no EMA saved; no $name stage"; continue; fi
    local own=()
    read -ra own <<<"${PHASE_OF[$m-$name]:-}"
    $PY -m fsvae_sj.train --out "$WORK/runs/$m-$name" --init-from "$from" --device "$DEVICE" \
      --time-budget "$stage_budget" "$@" "${own[@]}" "${STAGE_EXTRA[@]}" --eval-samples 0 --limit-test "$TEST_IMAGES" \
      >"$WORK/runs/$m-$name.log" 2>&1 &
    pid[$m-$name]=$!
    runs+=("$m-$name")
    say "$m-$name: from $from${own[*]:+, its own flags: ${own[*]}}"
  done
  ((${#runs[@]})) && supervise "$end" "${runs[@]}"
  sync_back
}

status=0
# A warm machine's stage folders are an earlier call's: the stages of this one start from this call's weights.
for m in $MODELS; do rm -rf "$WORK/runs/$m-prior-free" "$WORK/runs/$m-decoder"; done
say "training $MODELS, $budget s each, flags: ${RECIPE[*]} $*"
for m in $MODELS; do
  $PY -m fsvae_sj.train --out "$WORK/runs/$m" --init-from "$m" --device "$DEVICE" --time-budget "$budget" \
    "${RECIPE[@]}" "$@" --eval-samples 0 --limit-test "$TEST_IMAGES" >"$WORK/runs/$m.log" 2>&1 &
  pid[$m]=$!
done
supervise $((allow - STAGE_SECONDS - DECODER_SECONDS)) $MODELS
sync_back
run_stage prior-free "$STAGE_SECONDS" $((allow - DECODER_SECONDS)) "${STAGE[@]}"
run_stage decoder "$DECODER_SECONDS" "$allow" "${DECODER[@]}"
if ! $PY benchmarks/gpu_stage.py check-out "$OUT"; then
  say "over the limits of files back"
  status=1
fi
say "done (status $status)"
exec >&- 2>&-
wait "$tee_pid"
exit $status
