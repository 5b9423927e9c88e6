#!/usr/bin/env bash
# Step 3 of 3 at the paper's scale: the pre-trained toto_base, frozen, probed layer by layer on ImageNet
# (attention and average pooling, a linear head per layer; $PER_CLASS images of each class, 20% held out)
# on one GPU; layer_sweep.csv/.png and result.json in $RUN/probe.
#
#   IMAGENET=/data/imagenet/train RUN=/shared/runs/toto_base bash scripts/at_scale/probe.sh [hydra overrides]
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python}
RUN=${RUN:-runs/at_scale}
: "${IMAGENET:?set IMAGENET to ImageNet train/ (class folders of JPEGs)}"
[ -f "$RUN/pretrain/final/config.json" ] || { echo "no model in $RUN/pretrain/final: run scripts/at_scale/pretrain.sh first" >&2; exit 2; }
"$PYTHON" -m toto_robot.train.probe encoder=toto_base "encoder.checkpoint=$RUN/pretrain/final" probe=image_folder \
  "probe.kwargs.root=$IMAGENET" "+probe.kwargs.max_per_class=${PER_CLASS:-50}" probe.kwargs.image_size=128 device=cuda \
  "out_dir=$RUN/probe" "hydra.run.dir=$RUN/probe/hydra" "$@"
