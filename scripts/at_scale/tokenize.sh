#!/usr/bin/env bash
# Step 1 of 3 at the paper's scale: local copies of the paper's datasets -> token shards in $RUN/tokenize/shards
# (docs/usage.md "At scale"). One torchrun rank per GPU, each tokenizing its share; rerun the same command
# after a crash or with more or fewer GPUs/nodes: whatever is done is skipped.
#
#   IMAGENET=/data/imagenet/train KINETICS=/data/kinetics600/train EGO4D=/data/ego4d/v2/full_scale \
#   HOWTO100M=/data/howto100m/videos DALLE_ENCODER=/weights/encoder.pkl DALLE_DECODER=/weights/decoder.pkl \
#   RUN=/shared/runs/toto_base bash scripts/at_scale/tokenize.sh [hydra overrides ...]
#
# Folders as the datasets ship (searched recursively): ImageNet's train/<wnid>/*.JPEG, Kinetics-600's
# train/<class>/*.mp4, Ego4D's v2/full_scale/*.mp4, HowTo100M's videos (*.mp4, *.webm, *.mkv).
# TOKENIZER_DIR=<a tokenizer folder> skips the DALL-E conversion and uses that tokenizer.
# Several nodes: NNODES and MASTER_ADDR on every node (launch.sh), or sbatch scripts/at_scale/slurm.sbatch tokenize.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/at_scale/launch.sh
: "${IMAGENET:?set IMAGENET to ImageNet train/ (class folders of JPEGs)}" "${KINETICS:?set KINETICS to Kinetics-600 videos}"
: "${EGO4D:?set EGO4D to Ego4D videos}" "${HOWTO100M:?set HOWTO100M to HowTo100M videos}"
RUN=${RUN:-runs/at_scale}
DATA=(data=paper_mixture "data.datasets.0.path=$IMAGENET" "data.datasets.1.path=$KINETICS" "data.datasets.2.path=$EGO4D" "data.datasets.3.path=$HOWTO100M")
TOKENIZER_DIR=${TOKENIZER_DIR:-$RUN/tokenize/tokenizer}
if [ ! -f "$TOKENIZER_DIR/config.json" ]; then  # the official DALL-E dVAE, converted once by one process
  if [ "$NODE_RANK" = 0 ]; then
    : "${DALLE_ENCODER:?set DALLE_ENCODER and DALLE_DECODER to the DALL-E dVAE files (docs/usage.md, Pretrained weights)}"
    "$PYTHON" -m toto_robot.train.tokenize stage=train tokenizer=dvae_8k "dalle_encoder=$DALLE_ENCODER" "dalle_decoder=${DALLE_DECODER:-}" \
      "out_dir=$RUN/tokenize" "hydra.run.dir=$RUN/tokenize/hydra" "${DATA[@]}"
  else
    for _ in $(seq 600); do [ -f "$TOKENIZER_DIR/config.json" ] && break; sleep 1; done
  fi
fi
"${TORCHRUN[@]}" -m toto_robot.train.tokenize --config-name tokenize_paper "tokenizer_dir=$TOKENIZER_DIR" "out_dir=$RUN/tokenize" \
  "hydra.run.dir=$RUN/tokenize/hydra" "${DATA[@]}" "$@"
