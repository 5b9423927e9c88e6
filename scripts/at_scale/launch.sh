# Sourced by the step scripts: the torchrun command for one node or several, in TORCHRUN.
#   one node (default):  torchrun --standalone --nproc_per_node=$GPUS
#   several nodes:       NNODES=4 MASTER_ADDR=<node 0's address> [MASTER_PORT=29500] [RDZV_ID=<job id>] on every node
#                        -> torchrun --nnodes=4 --nproc_per_node=$GPUS --rdzv_backend=c10d --rdzv_endpoint=$MASTER_ADDR:$MASTER_PORT
# RUN must then be a folder every node shares (the ranks write into one shard folder and one checkpoint).
PYTHON=${PYTHON:-python}
GPUS=${GPUS:-$(nvidia-smi -L 2>/dev/null | wc -l)}
[ "$GPUS" -ge 1 ] 2>/dev/null || { echo "no GPU found: set GPUS=<processes per node>" >&2; exit 2; }
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-${SLURM_NODEID:-0}}
if [ "$NNODES" -gt 1 ]; then
  : "${MASTER_ADDR:?several nodes: set MASTER_ADDR to the address of node 0 (and the same NNODES on every node)}"
  TORCHRUN=("$PYTHON" -m torch.distributed.run --nnodes="$NNODES" --nproc_per_node="$GPUS" --rdzv_backend=c10d
            --rdzv_endpoint="$MASTER_ADDR:${MASTER_PORT:-29500}" --rdzv_id="${RDZV_ID:-toto}")
else
  TORCHRUN=("$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$GPUS")
fi
