#!/usr/bin/env bash
# The chosen mini configuration (hparams/spectron_mini_long.yaml) on one GPU, for the training-time curve
# beside the CPU one (issue 22; recipes/LibriLight/README.md, "The mini setup on one GPU").
#
#   MINUTES=6.5 SNAPSHOTS=[2,4] bash tools/gpu_mini_long.sh
#
# The run is spectron_mini_long.yaml unchanged except for its clock: the learning-rate anneal, the
# self-feeding start (half way) and the snapshots follow MINUTES of training on this machine instead of
# 94 minutes of a 2-core laptop. It makes the corpus with one espeak-ng process per core (WORKERS), uses
# the pre-trained parts in PRETRAINED when given (else makes them), writes to RUN, and leaves the run's
# logs, snapshot bundles and final bundle in PACK (split in 15 MB parts: tools/gpu_mini_long.sh unpack
# reads them back). Evaluate the result with tools/training_curve.py like any other run.
#
# Wheels in WHEELS (a folder of .whl files, optional) are installed into /tmp/site first: a machine with
# PyTorch and no package index (the lent GPU machine of this project's sessions) gets speechbrain,
# hyperpyyaml, soundfile and espeakng-loader that way.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "unpack" ]; then  # bash tools/gpu_mini_long.sh unpack PARTS_FOLDER DEST
    mkdir -p "$3" && cat "$2"/run.tar.part-* | tar -x -C "$3" && echo "unpacked into $3" && exit 0
fi

MINUTES=${MINUTES:-6.5}
SNAPSHOTS=${SNAPSHOTS:-[2,4]}
WORKERS=${WORKERS:-$(nproc)}
RUN=${RUN:-results/gpu_mini_long/1234}
PACK=${PACK:-${OUT:-results/gpu_mini_long_pack}}
DEADLINE=${DEADLINE:-570}  # seconds from start after which training is interrupted (checkpointed) and packed
DEVICE=${DEVICE:-cuda:0}
START=$(date +%s)

if [ -n "${WHEELS:-}" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
mkdir -p "$RUN" "$PACK"

args=(recipes/LibriLight/hparams/spectron_mini_long.yaml --device="$DEVICE" --output_folder="$RUN"
      --max_training_minutes="$MINUTES" --snapshot_minutes="$SNAPSHOTS"
      --self_feeding_from_minutes="$(python3 -c "print($MINUTES / 2)")"
      --ckpt_interval_steps=1000000 --mini_corpus_workers="$WORKERS")
[ -n "${PRETRAINED:-}" ] && args+=(--pretrained_folder="$PRETRAINED")

left=$((DEADLINE - ($(date +%s) - START)))
set +e
timeout --signal=INT --kill-after=30 "$left" python3 recipes/LibriLight/train.py "${args[@]}" 2>&1 \
    | tee "$RUN/gpu_console.log"
status=${PIPESTATUS[0]}
set -e
echo "train.py exit status $status after $(( $(date +%s) - START )) s"
grep -h "stopping after epoch\|self-feeding\|snapshot" "$RUN/gpu_console.log" | tail -5 || true
tail -2 "$RUN/train_log.txt" 2>/dev/null || true
nvidia-smi --query-gpu=name,memory.used --format=csv 2>/dev/null || true

# everything but the checkpoints (the bundles hold the weights), in parts under the 16 MB a file
tar -c --exclude=save -C "$(dirname "$RUN")" "$(basename "$RUN")" | split -b 15M - "$PACK/run.tar.part-"
ls -la "$PACK"
exit "$status"
