"""The hydra jobs as users run them: tokenize, collect -> train-policy -> evaluate from the command line."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TOTO_ROBOT = Path(sys.executable).parent / "toto-robot"


def cli(*args, timeout=300):
    out = subprocess.run([str(TOTO_ROBOT), *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, "HYDRA_FULL_ERROR": "1"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


@pytest.mark.slow
def test_tokenize_job_trains_a_tokenizer_and_writes_shards(tmp_path):
    cli("tokenize", "tokenizer=vq_1k", "tokenizer.params.vocab_size=32", "tokenizer.params.width=16", "train.steps=3", "train.batch_size=4",
        "data=synthetic", "data.datasets.0.count=2", "data.datasets.1.count=16", "shards.num_frames=2", "shards.resolution=32",
        "shards.workers=1", f"out_dir={tmp_path}")
    index = json.loads((tmp_path / "shards" / "index.json").read_text())
    assert index["tokenizer"]["name"] == "vq" and index["tokenizer"]["tokens_per_frame"] == 16
    assert json.loads((tmp_path / "tokenizer" / "metrics.json").read_text())["psnr_heldout_db"] > 0
    assert "tokenizer:" in (tmp_path / "config.yaml").read_text()


@pytest.mark.slow
def test_collect_train_policy_evaluate_from_the_command_line(tmp_path):
    cli("collect", "task=kuka_cabinet", "task.image_size=32", "collect.episodes=2", "collect.videos=false", f"out_dir={tmp_path / 'demos'}")
    cli("train-policy", "policy=bc", "task=kuka_cabinet", f"demos={tmp_path / 'demos'}", "encoder=random", "policy.epochs=2",
        "policy.eval_episodes=0", f"out_dir={tmp_path / 'bc'}")
    assert (tmp_path / "bc" / "policy" / "encoder" / "model.safetensors").is_file()
    cli("evaluate", f"policy_dir={tmp_path / 'bc' / 'policy'}", "episodes=1", f"out_dir={tmp_path / 'eval'}")
    result = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert result["task"] == "kuka_cabinet" and result["episodes"] == 1
    assert (tmp_path / "eval" / "rollouts.mp4").is_file() and result["randomization"]["distractors"] == 0
    cli("evaluate", f"policy_dir={tmp_path / 'bc' / 'policy'}", "episodes=1", "video=false", "randomization.lighting=true",
        "randomization.distractors=2", f"out_dir={tmp_path / 'shifted'}")
    shifted = json.loads((tmp_path / "shifted" / "eval.json").read_text())
    assert shifted["randomization"]["lighting"] is True and shifted["randomization"]["distractors"] == 2
    bad = subprocess.run([str(TOTO_ROBOT), "evaluate", f"policy_dir={tmp_path / 'bc' / 'policy'}", "randomization.camera_jitter=-0.1",
                          f"out_dir={tmp_path / 'bad'}"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "randomization.camera_jitter must be" in bad.stderr + bad.stdout


def test_train_policy_without_demos_names_the_missing_parameter(tmp_path):
    out = subprocess.run([str(TOTO_ROBOT), "train-policy", "policy=bc", f"out_dir={tmp_path}"], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "demos=" in out.stderr + out.stdout
