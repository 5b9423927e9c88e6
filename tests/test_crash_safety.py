"""Hostile but realistic inputs and interruptions, one test per case of the crash-safety issue:
a damaged or changed folder is repaired on rerun, resume only continues what is complete and safe
to load, and nonsense values stop a job before any work with an error that names the key.
(Kills of collect/tokenize/pretrain at many points: tests/test_fault_injection.py.)"""
from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_toto_run
from test_pretrain_trainer import cfg_for, make_shards

from toto_robot.data.demos import DemoMeta, DemoWriter
from toto_robot.data.mixture import MixtureSampler
from toto_robot.data.shards import ShardDataset
from toto_robot.data.synthetic import moving_shapes
from toto_robot.data.tokenize import DatasetSpec, ShardJobConfig, write_shards
from toto_robot.data.video import VideoDecodeError, read_image, write_video
from toto_robot.pretrain.trainer import CHECKPOINT_FILES, PretrainConfig, pretrain
from toto_robot.utils.config import ConfigError
from toto_robot.utils.io import CheckpointError, atomic_save_json, atomic_save_tensors, find_checkpoint, staged_dir, write_manifest


def _shard_job(tmp_path: Path, videos: Path, out: Path) -> ShardJobConfig:
    from toto_robot.tokenizers import DVAETokenizer

    if not (tmp_path / "tok").is_dir():
        DVAETokenizer(vocab_size=32, n_hid=8, n_blk_per_group=1, n_init=8).save_pretrained(tmp_path / "tok")
    return ShardJobConfig(tokenizer_dir=str(tmp_path / "tok"), out_dir=str(out), resolution=32, num_frames=4, stride=2, workers=1,
                          datasets=[DatasetSpec("sim", "video", str(videos), clips_per_video=2)])


def _video(path: Path, seed: int) -> None:
    write_video(path, moving_shapes(20, 32, 2, np.random.default_rng(seed))[0])


def _bins(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(folder).glob("*.bin"))}


# case 4: shards are keyed by content, not by a video's position in the folder listing
def test_adding_and_removing_videos_between_tokenize_runs_matches_a_fresh_run(tmp_path):
    videos = tmp_path / "videos"
    for name, seed in (("b", 0), ("c", 1), ("d", 2)):
        _video(videos / f"{name}.mp4", seed)
    write_shards(_shard_job(tmp_path, videos, tmp_path / "shards"))
    _video(videos / "a.mp4", 3)  # sorts first: every later video moves one place down the listing
    (videos / "c.mp4").unlink()
    write_shards(_shard_job(tmp_path, videos, tmp_path / "shards"))
    write_shards(_shard_job(tmp_path, videos, tmp_path / "fresh"))
    assert _bins(tmp_path / "shards") == _bins(tmp_path / "fresh")
    assert len(_bins(tmp_path / "fresh")) == 3 and len(ShardDataset(tmp_path / "shards")) == 3 * 2


# case 5: a truncated shard is rewritten by the rerun, not just reported by pretraining
def test_rerunning_tokenize_repairs_a_truncated_shard(tmp_path, caplog):
    videos = tmp_path / "videos"
    for i in range(2):
        _video(videos / f"v{i}.mp4", i)
    cfg = _shard_job(tmp_path, videos, tmp_path / "shards")
    write_shards(cfg)
    good = _bins(cfg.out_dir)
    bad = Path(cfg.out_dir) / sorted(good)[0]
    bad.write_bytes(bad.read_bytes()[:-7])
    with pytest.raises(Exception, match="corrupt shard"):
        ShardDataset(cfg.out_dir)
    with caplog.at_level(logging.WARNING):
        write_shards(cfg)
    assert "corrupt shard" in caplog.text
    assert _bins(cfg.out_dir) == good
    assert len(ShardDataset(cfg.out_dir)) == 2 * 2


# case 2: a kill between the two renames of a checkpoint swap leaves only checkpoint.old
def test_resume_continues_from_checkpoint_old_when_a_swap_was_interrupted(tmp_path, caplog):
    out = pretrain(cfg_for(tmp_path, max_steps=4, checkpoint_every=2, model_overrides={"n_layer": 1}))
    ref = (out / "metrics.csv").read_text()
    ckpt = out / "checkpoint"
    ckpt.rename(ckpt.with_name("checkpoint.old"))  # the state the kill leaves
    assert find_checkpoint(ckpt) == ckpt.with_name("checkpoint.old")
    with caplog.at_level(logging.INFO, logger="toto_robot.pretrain.trainer"):
        pretrain(cfg_for(tmp_path, max_steps=4, checkpoint_every=2, model_overrides={"n_layer": 1}, resume=True))
    assert "checkpoint.old at step 4" in caplog.text  # not a fresh start that deletes checkpoint.old
    assert (out / "metrics.csv").read_text() == ref  # the history of the checkpointed run, step for step
    assert torch.load(find_checkpoint(ckpt) / "trainer_state.pt", weights_only=True)["step"] == 4
    found = find_checkpoint(ckpt)
    (found / "MANIFEST.json").unlink()  # as written before checkpoints had manifests: still resumable
    assert find_checkpoint(ckpt, CHECKPOINT_FILES) == found and find_checkpoint(ckpt) is None
    (found / "trainer_state.pt").unlink()
    assert find_checkpoint(ckpt, CHECKPOINT_FILES) is None


class _Payload:
    """Pickles to a call of Path.touch: what a crafted trainer_state.pt could run on resume."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


# case 3: trainer_state.pt is loaded with weights_only=True
def test_a_crafted_trainer_state_is_refused_and_runs_nothing(tmp_path):
    out = pretrain(cfg_for(tmp_path, max_steps=2, checkpoint_every=2, model_overrides={"n_layer": 1}))
    marker = tmp_path / "pwned"
    torch.save({"step": 2, "payload": _Payload(marker)}, out / "checkpoint" / "trainer_state.pt")
    write_manifest(out / "checkpoint")  # a consistent, complete-looking checkpoint
    with pytest.raises(CheckpointError, match="refusing to load"):
        pretrain(cfg_for(tmp_path, max_steps=2, checkpoint_every=2, model_overrides={"n_layer": 1}, resume=True))
    assert not marker.exists()


# case 6: resume=true with nothing to resume is an error, not a fresh start
def test_resume_without_a_checkpoint_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="resume=true but .* holds no complete checkpoint"):
        pretrain(cfg_for(tmp_path, resume=True))
    assert not (tmp_path / "run" / "final").exists()


# cases 7 and 8: nonsense numbers are refused before any work, naming the key and the range
@pytest.mark.parametrize("make, match", [
    (lambda: PretrainConfig(shards="s", out_dir="o", max_steps=0), r"trainer\.max_steps must be an integer >= 1, got 0"),
    (lambda: PretrainConfig(shards="s", out_dir="o", max_steps=-5), r"trainer\.max_steps must be an integer >= 1, got -5"),
    (lambda: PretrainConfig(shards="s", out_dir="o", checkpoint_every=0), r"trainer\.checkpoint_every must be an integer >= 1"),
    (lambda: PretrainConfig(shards="s", out_dir="o", log_every=0), r"trainer\.log_every must be an integer >= 1"),
    (lambda: PretrainConfig(shards="s", out_dir="o", micro_batch=0), r"trainer\.micro_batch must be an integer >= 1"),
    (lambda: PretrainConfig(shards="s", out_dir="o", lr="fast"), r"trainer\.lr must be a finite number > 0, got 'fast'"),
    (lambda: PretrainConfig(shards="s", out_dir="o", model="toto_huge"), r"model must be one of toto_tiny"),
    (lambda: ShardJobConfig(tokenizer_dir="t", out_dir="o", datasets=[DatasetSpec("x", "synthetic", count=2)], num_frames=0),
     r"shards\.num_frames must be an integer >= 1, got 0"),
    (lambda: ShardJobConfig(tokenizer_dir="t", out_dir="o", datasets=[DatasetSpec("x", "synthetic", count=2, clips_per_video=0)]),
     r"data\.datasets\.0\.clips_per_video must be an integer >= 1"),
])
def test_bad_numbers_name_the_key_and_the_allowed_range(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_collect_and_tokenizer_training_refuse_bad_counts():
    from toto_robot.sim_envs.collect import CollectConfig
    from toto_robot.tokenizers.training import TokenizerTrainConfig

    with pytest.raises(ConfigError, match=r"collect\.episodes must be an integer >= 1, got -3"):
        CollectConfig(episodes=-3)
    with pytest.raises(ConfigError, match=r"train\.steps must be an integer >= 1, got 0"):
        TokenizerTrainConfig(steps=0)


def test_pretrain_cli_with_negative_steps_exits_nonzero_before_writing_anything(tmp_path):
    shards = make_shards(tmp_path / "shards")
    exe = Path(sys.executable).parent / "toto-robot"
    res = subprocess.run([str(exe), "pretrain", f"shards={shards}", f"out_dir={tmp_path / 'run'}", "trainer.max_steps=-5"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert "trainer.max_steps must be an integer >= 1, got -5" in res.stdout + res.stderr
    assert not (tmp_path / "run").exists()


# case 9: a negative mixture weight is an error, not a silently dropped source
def test_negative_mixture_weight_is_refused():
    with pytest.raises(ConfigError, match=r"mixture\.images must be a finite number >= 0, got -0.2"):
        PretrainConfig(shards="s", out_dir="o", mixture={"images": -0.2, "video": 1.0})
    with pytest.raises(ValueError, match="must be finite numbers >= 0"):
        MixtureSampler({"images": np.arange(4), "video": np.arange(4, 8)}, {"images": -0.2, "video": 1.0})


# case 10: a 16-bit PNG is not squeezed into a white frame
def test_16_bit_png_is_refused_not_turned_white(tmp_path):
    from PIL import Image

    depth = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
    Image.fromarray(depth).save(tmp_path / "depth.png")
    assert Image.open(tmp_path / "depth.png").mode.startswith("I")
    with pytest.raises(VideoDecodeError, match="more than 8 bits"):
        read_image(tmp_path / "depth.png")
    Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(tmp_path / "rgb.png")
    assert read_image(tmp_path / "rgb.png").max() == 7


# case 11: an absurd demo action stops behaviour cloning with an error that points at it
def test_bc_with_an_overflowing_action_fails_naming_the_episode(tmp_path):
    from toto_robot.policies.bc import BCConfig, train_bc

    rng = np.random.default_rng(0)
    writer = DemoWriter(tmp_path / "demos", DemoMeta(source="sim", task="franka_pick", image_size=(32, 32), state_dim=3, action_dim=4))
    for i in range(3):
        action = rng.uniform(-1, 1, (6, 4)).astype(np.float32)
        if i == 1:
            action[2, 0] = 1e30
        writer.write_episode(rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8), rng.normal(size=(6, 3)), action)
    with pytest.raises(FloatingPointError, match=r"largest \|action\| is 1e\+30 in episode 1"):
        train_bc(BCConfig(demos=str(tmp_path / "demos"), out_dir=str(tmp_path / "bc"), epochs=2, val_fraction=0.0, eval_episodes=0))


# case 12: init_from must hold the architecture that model= names
def test_init_from_a_different_size_is_refused(tmp_path):
    base = tiny_toto_run(tmp_path / "base", n_layer=2)
    with pytest.raises(CheckpointError, match="differs from model=toto_small"):
        pretrain(cfg_for(tmp_path, model="toto_small", model_overrides={}, init_from=str(base)))
    assert not (tmp_path / "run" / "pretrain_config.json").exists()


# case 13: an empty batch into an encoder
def test_empty_batch_into_an_encoder_is_named(tmp_path):
    from toto_robot.encoders import build_encoder
    from toto_robot.encoders.base import FrameFormatError

    enc = build_encoder("toto", checkpoint=str(tiny_toto_run(tmp_path)))
    with pytest.raises(FrameFormatError, match=r"frames hold no images: shape \(0, 32, 32, 3\)"):
        enc(np.zeros((0, 32, 32, 3), np.uint8))
    with pytest.raises(FrameFormatError, match="no images"):
        enc.encode_tokens(torch.zeros(2, 0, 32, 32, 3, dtype=torch.uint8))


# case 14: artifacts get the permissions the umask allows, not mkstemp's 0600
def test_artifacts_are_readable_by_others_under_umask_022(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_save_json({"a": 1}, tmp_path / "x.json")
        atomic_save_tensors({"w": torch.zeros(2)}, tmp_path / "w.safetensors")
        write_video(tmp_path / "v.mp4", np.zeros((2, 16, 16, 3), np.uint8))
        with staged_dir(tmp_path / "unit") as d:
            (d / "f").write_text("x")
        writer = DemoWriter(tmp_path / "demos", DemoMeta(source="sim", task="t", image_size=(8, 8), state_dim=1, action_dim=1))
        ep = writer.write_episode(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 1)), np.zeros((2, 1)))
    finally:
        os.umask(old)
    for f in (tmp_path / "x.json", tmp_path / "w.safetensors", tmp_path / "v.mp4", ep, tmp_path / "unit" / "f"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f
    assert stat.S_IMODE((tmp_path / "unit").stat().st_mode) == 0o755
