"""What the OOD monitor adds per frame in the policy node (issue 33: at most 2 ms at 64 px): one BC step at 64 px
(``Policy.act_with_features``, the node's encoder pass) without and with ``OODMonitor.update`` on its features.

    python benchmarks/bench_ood.py [--checkpoint runs/demo-cache/pretrain-34621cb467/run/final] [--repeat 200]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import timeit  # noqa: E402

from toto_robot.encoders import build_encoder  # noqa: E402
from toto_robot.policies.ood import OODMonitor, fit_reference  # noqa: E402
from toto_robot.policies.policy import Policy  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=None, help="a Toto pre-training final/ (default: the random-init Toto-tiny)")
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(1)  # the node's default (torch_threads: 1)
    enc = build_encoder("toto", checkpoint=args.checkpoint) if args.checkpoint else build_encoder("random")
    policy = Policy(enc, state_dim=19, action_dim=4).eval()
    rng = np.random.default_rng(0)
    ref = fit_reference([rng.normal(size=(100, enc.feature_dim)) for _ in range(8)])
    monitor = OODMonitor(ref)
    obs = {"image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "state": np.zeros(19, np.float32)}
    feats = policy.act_with_features(obs)[1]
    step = timeit(lambda: policy.act_with_features(obs), repeat=args.repeat // 4, warmup=3)
    score = timeit(lambda: monitor.update(feats), repeat=args.repeat, warmup=10)
    both = timeit(lambda: monitor.update(policy.act_with_features(obs)[1]), repeat=args.repeat // 4, warmup=3)
    print(f"encoder {enc.name} ({enc.feature_dim}-d features), 64 px, 1 thread: policy step {1e3 * step:.2f} ms, "
          f"OOD score {1e3 * score:.3f} ms, step + score {1e3 * both:.2f} ms (median)")


if __name__ == "__main__":
    main()
