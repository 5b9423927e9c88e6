"""Fault injection: collect, tokenize and pretrain are SIGKILLed at chosen points, inside and between the
writes of every unit, rerun after each kill like a user would, and must end with exactly what an
uninterrupted run writes: nothing lost, nothing duplicated, nothing half-written, no leftovers.

The kill points are the ``crash_point`` labels of ``toto_robot.utils.io`` (``TOTO_CRASH_AT=<label>``
kills a run at the first point with that label; ``TOTO_CRASH_TRACE`` records the labels a run passes).
The kills are chained: each rerun is itself killed at the next point, then a last rerun completes.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from toto_robot.utils.io import find_checkpoint, is_partial

pytestmark = pytest.mark.slow

COLLECT = ("import json, sys; from toto_robot.sim_envs.collect import CollectConfig, collect; "
           "collect(CollectConfig(**json.loads(sys.argv[1])))")
TOKENIZE = ("import json, sys; from toto_robot.data.tokenize import DatasetSpec, ShardJobConfig, write_shards; c = json.loads(sys.argv[1]); "
            "write_shards(ShardJobConfig(**{**c, 'datasets': [DatasetSpec(**d) for d in c['datasets']]}))")
MAE = ("import json, sys; import numpy as np; from toto_robot.data.synthetic import moving_shapes; "
       "from toto_robot.mae import MAEPretrainConfig, pretrain_mae; "
       "frames = np.concatenate([moving_shapes(16, 32, 2, np.random.default_rng(i))[0] for i in range(4)]); "
       "pretrain_mae(MAEPretrainConfig(**json.loads(sys.argv[1])), frames, img_size=32)")
PRETRAIN = ("import json, sys; from toto_robot.pretrain.trainer import PretrainConfig, pretrain; "
            "pretrain(PretrainConfig(**json.loads(sys.argv[1])))")


def run_job(code: str, cfg: dict, crash_at: str | None = None, trace: Path | None = None) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOTO_CRASH")}
    env.update(OMP_NUM_THREADS="1", **({"TOTO_CRASH_AT": crash_at} if crash_at else {}), **({"TOTO_CRASH_TRACE": str(trace)} if trace else {}))
    res = subprocess.run([sys.executable, "-c", code, json.dumps(cfg)], env=env, capture_output=True, text=True, timeout=300)
    if res.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(res.stderr[-3000:])
    return res.returncode


def reference(code: str, cfg: dict, tmp_path: Path) -> list[str]:
    """Run uninterrupted and return the labels of the crash points it passed. It runs in a fresh process
    like the killed runs: a test process carries state from earlier tests (renderers, threads) that
    an uninterrupted user run would not."""
    trace = tmp_path / "trace.txt"
    assert run_job(code, cfg, trace=trace) == 0
    return trace.read_text().splitlines()


def kill_and_rerun(code: str, cfg: dict, labels: list[str], rerun_cfg=lambda cfg: cfg) -> None:
    """Kill a run at each label in turn (each rerun is the next one killed), then rerun to completion."""
    for label in labels:
        assert run_job(code, rerun_cfg(cfg), crash_at=label) == -signal.SIGKILL, f"never reached {label!r}"
    assert run_job(code, rerun_cfg(cfg)) == 0


def resume_if_checkpointed(out: Path):
    """What a user does before a rerun: resume when ``out`` holds a complete checkpoint, else start again."""
    return lambda cfg: {**cfg, "resume": find_checkpoint(out / "checkpoint") is not None}


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if is_partial(p) or p.name.endswith((".old", ".new")))


def test_collect_killed_at_every_write_keeps_each_episode_once_with_its_video(tmp_path):
    from toto_robot.data.demos import DemoDataset

    cfg = dict(task="franka_pick", episodes=2, image_size=32, noise=0.05, preview_episodes=2)
    ref = reference(COLLECT, {**cfg, "out_dir": str(tmp_path / "ref")}, tmp_path)
    kills = ["wrote episode_000000.mp4",  # video landed, episode not
             "write episode_000000.npz",  # inside the episode write (a temporary file is left)
             "wrote episode_000000.npz",  # episode landed, its seed not yet in collect_state.json (issue case 1)
             "write preview.mp4"]  # inside a video write
    assert set(kills) <= set(ref), sorted(set(ref))
    out = tmp_path / "killed"
    kill_and_rerun(COLLECT, {**cfg, "out_dir": str(out)}, kills)
    a, b = DemoDataset(tmp_path / "ref"), DemoDataset(out)
    assert [p.name for p in b.paths] == [p.name for p in a.paths] == ["episode_000000.npz", "episode_000001.npz"]
    for ea, eb in zip(a, b):
        assert sorted(ea) == sorted(eb)
        for k in ea:
            np.testing.assert_array_equal(ea[k], eb[k], err_msg=k)
    assert not np.array_equal(b[0]["action"], b[1]["action"])  # two different seeds, not one episode twice
    for name in ("videos/episode_000000.mp4", "videos/episode_000001.mp4", "preview.mp4"):
        assert (out / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["episode_000000.mp4", "episode_000001.mp4"]
    assert json.loads((out / "summary.json").read_text()) == json.loads((tmp_path / "ref" / "summary.json").read_text())
    assert leftovers(out) == []


def _tokenize_cfg(tmp_path: Path) -> dict:
    from toto_robot.data.synthetic import moving_shapes
    from toto_robot.data.video import write_video
    from toto_robot.tokenizers import DVAETokenizer

    DVAETokenizer(vocab_size=32, n_hid=8, n_blk_per_group=1, n_init=8).save_pretrained(tmp_path / "tok")
    for i in range(2):
        write_video(tmp_path / "videos" / f"v{i}.mp4", moving_shapes(30, 32, 2, np.random.default_rng(i))[0])
    return dict(tokenizer_dir=str(tmp_path / "tok"), resolution=32, num_frames=4, stride=2, workers=1,
                datasets=[dict(name="sim", kind="video", path=str(tmp_path / "videos"), clips_per_video=2),
                          dict(name="shapes", kind="synthetic", count=20, clips_per_video=1),
                          dict(name="images", kind="bundled_images", count=8)])


def test_tokenize_killed_inside_and_between_shard_and_index_writes_gives_identical_shards(tmp_path):
    from toto_robot.data.shards import ShardDataset

    cfg = _tokenize_cfg(tmp_path)
    ref = reference(TOKENIZE, {**cfg, "out_dir": str(tmp_path / "ref")}, tmp_path)
    bins = [label.split()[1] for label in ref if label.startswith("write ") and label.endswith(".bin")]
    assert len(bins) == 2 + 2 + 1  # 2 videos, 20 synthetic videos in 2 batches, 1 bundle of images
    kills = [f"wrote {bins[0]}",  # shard landed, index not
             "write index.json",  # inside the index write (the commit)
             f"write {bins[2]}"]  # inside a shard write (a temporary file is left)
    out = tmp_path / "killed"
    kill_and_rerun(TOKENIZE, {**cfg, "out_dir": str(out)}, kills)
    ref_files = sorted(p.name for p in (tmp_path / "ref").iterdir())
    assert sorted(p.name for p in out.iterdir()) == ref_files
    for name in ref_files:
        if name.endswith(".bin"):
            assert (out / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name
    index = {p: sorted(json.loads((p / "index.json").read_text())["shards"], key=lambda s: s["file"]) for p in (tmp_path / "ref", out)}
    assert index[out] == index[tmp_path / "ref"]
    assert len(ShardDataset(out)) == len(ShardDataset(tmp_path / "ref")) == 2 * 2 + 20 + 8 // 4


def test_pretrain_killed_inside_checkpoint_writes_and_swaps_resumes_bit_exact(tmp_path):
    from test_pretrain_trainer import make_shards

    shards = make_shards(tmp_path / "shards", n=32)
    cfg = dict(shards=str(shards), model="toto_tiny", model_overrides={"n_layer": 1}, lr=3e-3, min_lr=3e-4, warmup_steps=2, max_steps=6,
               batch_tokens=4 * 65, micro_batch=4, checkpoint_every=2, log_every=2, eval_sequences=4, seed=0)
    ref = reference(PRETRAIN, {**cfg, "out_dir": str(tmp_path / "ref")}, tmp_path)
    kills = ["write trainer_state.pt",  # inside the first checkpoint, staged in checkpoint.new: the rerun starts from scratch
             "moved checkpoint.new to checkpoint",  # first checkpoint complete
             "moved checkpoint to checkpoint.old",  # between the two renames of the next swap (issue case 2)
             "removed checkpoint.old",  # checkpoint complete, checkpoint.old deleted, checkpoint.new complete
             "publish final"]  # final/ staged, not yet published
    assert set(kills) <= set(ref), sorted(set(ref))
    out = tmp_path / "killed"

    kill_and_rerun(PRETRAIN, {**cfg, "out_dir": str(out)}, kills, resume_if_checkpointed(out))
    ref_out = tmp_path / "ref"
    assert (out / "final" / "model.safetensors").read_bytes() == (ref_out / "final" / "model.safetensors").read_bytes()
    losses = [[r.split(",")[1] for r in (d / "metrics.csv").read_text().splitlines()[1:]] for d in (out, ref_out)]
    assert losses[0] == losses[1] and len(losses[0]) == 6
    m = [json.loads((d / "metrics.json").read_text()) for d in (out, ref_out)]
    assert m[0]["eval_loss"] == m[1]["eval_loss"] and m[0]["steps"] == 6
    assert find_checkpoint(out / "checkpoint") == out / "checkpoint"
    assert leftovers(out) == []


def test_mae_killed_inside_checkpoint_writes_and_swaps_resumes_bit_exact(tmp_path):
    cfg = dict(steps=8, batch_size=4, warmup_steps=2, holdout=8, checkpoint_every=2, seed=0)
    ref = reference(MAE, {**cfg, "out_dir": str(tmp_path / "ref")}, tmp_path)
    kills = ["write trainer_state.pt",  # inside the first checkpoint: the rerun starts from scratch
             "moved checkpoint.new to checkpoint",  # first checkpoint complete
             "moved checkpoint to checkpoint.old",  # between the two renames of the next swap
             "removed checkpoint.old",
             "write mae_vit.safetensors"]  # inside the final weights' write: the rerun resumes from step 6
    assert set(kills) <= set(ref), sorted(set(ref))
    out = tmp_path / "killed"

    kill_and_rerun(MAE, {**cfg, "out_dir": str(out)}, kills, resume_if_checkpointed(out))
    ref_out = tmp_path / "ref"
    assert (out / "mae_vit.safetensors").read_bytes() == (ref_out / "mae_vit.safetensors").read_bytes()
    rows = [(d / "metrics.csv").read_text() for d in (out, ref_out)]
    assert rows[0] == rows[1] and len(rows[0].splitlines()) == 9
    m = [json.loads((d / "metrics.json").read_text()) for d in (out, ref_out)]
    assert m[0] == m[1]
    assert leftovers(out) == []


def test_mae_resume_refuses_another_config_or_other_frames(tmp_path):
    from toto_robot.data.synthetic import moving_shapes
    from toto_robot.mae import MAEPretrainConfig, pretrain_mae
    from toto_robot.utils.io import CheckpointError

    frames = np.concatenate([moving_shapes(16, 32, 2, np.random.default_rng(i))[0] for i in range(4)])
    cfg = dict(out_dir=str(tmp_path), steps=4, batch_size=4, warmup_steps=1, holdout=8, checkpoint_every=2)
    pretrain_mae(MAEPretrainConfig(**cfg), frames, img_size=32)  # leaves checkpoint/ at step 2
    with pytest.raises(CheckpointError, match="resume=True to continue"):
        pretrain_mae(MAEPretrainConfig(**cfg), frames, img_size=32)
    with pytest.raises(CheckpointError, match="lr=0.0015 there, lr=0.001 now"):
        pretrain_mae(MAEPretrainConfig(**cfg, lr=1e-3, resume=True), frames, img_size=32)
    with pytest.raises(CheckpointError, match="other frames"):
        pretrain_mae(MAEPretrainConfig(**cfg, resume=True), frames[::-1].copy(), img_size=32)
