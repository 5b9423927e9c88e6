"""benchmarks/pretrain_sim.py: a Toto pre-trained like another on every task's footage from every camera, whose random-init
control is the other one's, so compare's random-init rows pair with it unchanged."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from tests.helpers import tiny_toto_run

ROOT = Path(__file__).resolve().parents[1]


def test_pretrain_sim_collects_every_task_and_camera_keeps_the_random_init_control_and_matches_mae_flops(tmp_path):
    from toto_robot.encoders.registry import build_encoder

    like = tiny_toto_run(tmp_path / "like", resolution=32, n_layer=2, tokenizer="patch")
    out = tmp_path / "sim"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "pretrain_sim.py"), "--like", str(like), "--out", str(out), "--tasks", "franka_pick",
           "franka_cabinet", "--cameras", "wrist", "agentview", "--episodes", "1", "--random-episodes", "1", "--image-size", "32",
           "--steps", "8", "--batch-tokens", "520", "--clips-per-video", "1", "--mae", "--mae-batch", "1"]
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, text=True)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["videos"] == 2 * 2 * 2 and summary["steps"] == 8  # tasks x cameras x (expert + random), one episode each
    for task in ("franka_pick", "franka_cabinet"):
        for cam in ("wrist", "agentview"):
            assert len(list((out / "videos" / f"{task}_{cam}" / "videos").glob("*.mp4"))) == 1
            assert len(list((out / "videos" / f"random_{task}_{cam}" / "videos").glob("*.mp4"))) == 1
    sources = {s["source"] for s in json.loads((out / "shards" / "index.json").read_text())["shards"]}
    assert sources == {f"footage_{k}" for k in range(8)} | {"images"}  # every folder reaches the shards

    final = Path(summary["final"])
    old, new = (json.loads((p / "config.json").read_text()) for p in (like, final))
    arch = ("n_layer", "n_embd", "n_head", "mlp_hidden", "tokens_per_frame", "block_size", "input_dim")
    assert {k: new[k] for k in arch} == {k: old[k] for k in arch}
    trained = build_encoder("toto", checkpoint=str(final), layer=1, pooling="average").state_dict()
    before = build_encoder("toto", checkpoint=str(like), layer=1, pooling="average").state_dict()
    assert any(not torch.equal(trained[k], before[k]) for k in trained)  # it trained
    a = build_encoder("random", like=str(like), layer=1, pooling="average", seed=3).state_dict()
    b = build_encoder("random", like=str(final), layer=1, pooling="average", seed=3).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the same random-init control

    # --mae: MAE-tiny on frames of the same clips, for the FLOPs this Toto measured (to within one MAE step)
    mae, toto_flops = summary["mae"], summary["train_flops"]
    per_step = mae["train_flops"] / mae["steps"]
    assert mae["batch_size"] == 1 and mae["steps"] >= 2 and abs(mae["train_flops"] - toto_flops) <= per_step / 2
    enc = build_encoder("mae_tiny", checkpoint=str(Path(mae["dir"]) / "mae_vit.safetensors"), layer=2, pooling="average", img_size=32)
    feats = enc(np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8))
    assert feats.shape[0] == 2 and torch.isfinite(feats).all()
