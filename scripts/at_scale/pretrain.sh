#!/usr/bin/env bash
# Step 2 of 3 at the paper's scale: toto_base pre-trained on the shards of step 1 (configs/pretrain_paper.yaml:
# the paper's mixture weights, 1M-token batches, FSDP2, compiled blocks), into $RUN/pretrain; final weights in
# $RUN/pretrain/final. Rerun the same command after a crash: it resumes from $RUN/pretrain/checkpoint.
#
#   RUN=/shared/runs/toto_base bash scripts/at_scale/pretrain.sh [hydra overrides, e.g. trainer.max_steps=200000]
#
# Several nodes: NNODES and MASTER_ADDR on every node (launch.sh), or sbatch scripts/at_scale/slurm.sbatch pretrain.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/at_scale/launch.sh
RUN=${RUN:-runs/at_scale}
[ -f "$RUN/tokenize/shards/index.json" ] || { echo "no shards in $RUN/tokenize/shards: run scripts/at_scale/tokenize.sh first" >&2; exit 2; }
RESUME=false
if [ -d "$RUN/pretrain/checkpoint" ] || [ -d "$RUN/pretrain/checkpoint.old" ]; then RESUME=true; fi
"${TORCHRUN[@]}" -m toto_robot.train.pretrain --config-name pretrain_paper "shards=$RUN/tokenize/shards" "out_dir=$RUN/pretrain" \
  "hydra.run.dir=$RUN/pretrain/hydra" "resume=$RESUME" "$@"
