#!/usr/bin/env bash
# The environment benchmarks/peer_act/act.py runs in: LeRobot 0.6.1 beside this project, CPU torch 2.13.
#   bash benchmarks/peer_act/make_venv.sh [VENV, default .venv-act]
# lerobot 0.6.1 asks for Python >= 3.12 and torch < 2.12; this machine's CPU torch wheel is 2.13 for Python 3.11, so
# lerobot goes in without its pins and patch_py311.py rewrites its five files of 3.12-only syntax.
# Where lerobot's pins clash with the project's, the project's versions win (numpy 2.4, pillow 13).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
V=${1:-$ROOT/.venv-act}
C=$(mktemp); printf 'torch==2.13.0\ntorchvision==0.28.0\n' > "$C"   # never a CUDA torch from the index
python3.11 -m venv "$V"
"$V/bin/pip" install -q --upgrade pip setuptools==79.0.1 -c "$C"
"$V/bin/pip" install -q torch==2.13.0 torchvision==0.28.0
"$V/bin/pip" download -q lerobot==0.6.1 --no-deps --ignore-requires-python -d "$V/wheels"
"$V/bin/pip" install -q --no-deps --ignore-requires-python "$V"/wheels/lerobot-0.6.1-py3-none-any.whl
"$V/bin/pip" install -q --no-deps robosuite==1.5.2   # robot meshes only, as the project installs it
"$V/bin/pip" install -q -c "$C" \
  numpy==2.4.6 pillow==13.0.0 einops==0.8.2 safetensors==0.8.0 hydra-core==1.3.8 omegaconf==2.3.1 tqdm==4.70.1 rich==15.0.0 \
  matplotlib==3.11.2 PyYAML==6.0.4 mujoco==4.0.0 mujoco-menagerie==2026.10.4 gymnasium==1.4.0 scipy==1.17.1 imageio==2.38.1 \
  pyarrow==26.0.1 "av>=15,<16" "draccus>=0.11.6,<0.12" "huggingface-hub>=1.6,<2" "opencv-python-headless>=4.9,<4.14" \
  "requests>=2.32,<3" "packaging>=24.2,<26" "termcolor>=2.4,<4" "datasets>=4.8,<5" "pandas>=2,<3" "jsonlines>=4,<5"
"$V/bin/pip" install -q --no-deps -e "$ROOT"
"$V/bin/python" "$ROOT/benchmarks/peer_act/patch_py311.py"
cd /tmp && HF_HUB_OFFLINE=1 "$V/bin/python" -c "import torch; assert torch.__version__ == '2.13.0+cpu', torch.__version__
from lerobot.policies.act.modeling_act import ACTPolicy
from toto_robot.policies.evaluate import evaluate_policy
print('ready:', '$V', torch.__version__)"
rm -f "$C"
