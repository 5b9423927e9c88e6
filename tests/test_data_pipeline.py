"""Video decode, clips, sequences, shards (kill-and-resume bit-identical), mixture ratios."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from toto_robot.constants import END_TOKEN, IMAGE_START_TOKEN, VIDEO_START_TOKEN
from toto_robot.data.clips import pack_images, sample_clip
from toto_robot.data.mixture import MixtureSampler
from toto_robot.data.sequence import codes_to_sequence, frames_to_ids, sequence_to_codes
from toto_robot.data.shards import ShardDataset, ShardError, ShardWriter
from toto_robot.data.synthetic import moving_shapes
from toto_robot.data.tokenize import DatasetSpec, ShardJobConfig, write_shards
from toto_robot.data.video import VideoDecodeError, iter_videos, read_video, write_video
from toto_robot.tokenizers import DVAETokenizer


def test_video_round_trip_and_corrupt_files_are_skipped(tmp_path, caplog):
    frames, _, _ = moving_shapes(12, 32, 2, np.random.default_rng(0))
    good = write_video(tmp_path / "good.mp4", frames, fps=10)
    back = read_video(good)
    assert back.shape == (12, 32, 32, 3)
    assert np.abs(back.astype(int) - frames.astype(int)).mean() < 12  # lossy codec, same content
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    truncated = tmp_path / "trunc.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(VideoDecodeError, match="corrupt.mp4"):
        read_video(tmp_path / "corrupt.mp4")
    got = [p.name for p, _ in iter_videos([tmp_path / "corrupt.mp4", good, tmp_path / "missing.mp4"])]
    assert got == ["good.mp4"]
    assert "skipping video" in caplog.text


def test_clip_sampling_stride_crop_and_image_packing():
    video = np.zeros((100, 48, 80, 3), np.uint8)
    video[:, :, :, 0] = np.arange(100)[:, None, None]  # frame index in the red channel
    clip = sample_clip(video, 32, num_frames=16, stride=4, rng=np.random.default_rng(0))
    assert clip.shape == (16, 32, 32, 3)
    idx = clip[:, 0, 0, 0].astype(int)
    assert (np.diff(idx) == 4).all()
    packed = pack_images([np.zeros((40, 60, 3), np.uint8)] * 16, 32)
    assert packed.shape == (16, 32, 32, 3)


def test_sequence_layout_markers_and_offsets():
    codes = np.arange(2 * 2 * 2).reshape(2, 2, 2)
    seq = codes_to_sequence(codes, "video", vocab_size=16)
    assert seq[0] == VIDEO_START_TOKEN and seq[-1] == END_TOKEN and len(seq) == 2 * 2 * 2 + 2
    assert list(seq[1:5]) == [4, 5, 6, 7]  # raster order, codes offset past the special ids
    assert codes_to_sequence(codes, "image", 16)[0] == IMAGE_START_TOKEN
    np.testing.assert_array_equal(sequence_to_codes(seq, 2, 2, 2), codes)
    with pytest.raises(ValueError, match="outside the tokenizer vocabulary"):
        codes_to_sequence(codes, "video", vocab_size=4)
    tok = DVAETokenizer(vocab_size=32, n_hid=8, n_blk_per_group=1, n_init=8)
    ids = frames_to_ids(tok, torch.zeros(3, 16, 16, 3, dtype=torch.uint8))
    assert ids.shape == (1, 3 * 4 + 1) and ids[0, 0] == VIDEO_START_TOKEN


def _job(tmp_path, out, workers=1):
    tok = DVAETokenizer(vocab_size=32, n_hid=8, n_blk_per_group=1, n_init=8)
    tok.save_pretrained(tmp_path / "tok")
    vids = tmp_path / "videos"
    for i in range(3):
        write_video(vids / f"v{i}.mp4", moving_shapes(40, 32, 2, np.random.default_rng(i))[0])
    return ShardJobConfig(tokenizer_dir=str(tmp_path / "tok"), out_dir=str(out), resolution=32, num_frames=4, stride=2, workers=workers,
                          datasets=[DatasetSpec("sim", "video", str(vids), clips_per_video=2), DatasetSpec("shapes", "synthetic", count=20, clips_per_video=1),
                                    DatasetSpec("images", "bundled_images", count=8)])


def test_shards_are_bit_identical_after_kill_and_resume(tmp_path):
    cfg = _job(tmp_path, tmp_path / "ref")
    write_shards(cfg)
    ref = ShardDataset(cfg.out_dir)
    assert len(ref) == 3 * 2 + 20 + 2 and ref.seq_len == 4 * 16 + 2
    assert set(ref.indices_by_source()) == {"sim", "shapes", "images"}
    # the same job in a subprocess, killed as soon as its first shard lands, then resumed with 2 workers
    out = tmp_path / "resumed"
    code = ("import sys, pickle; from toto_robot.data.tokenize import write_shards; "
            "write_shards(pickle.loads(bytes.fromhex(sys.argv[1])))")
    import pickle

    cfg2 = ShardJobConfig(**{**cfg.__dict__, "out_dir": str(out)})
    proc = subprocess.Popen([sys.executable, "-c", code, pickle.dumps(cfg2).hex()])
    deadline = time.time() + 60
    while time.time() < deadline and not list(out.glob("*.bin")):
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    cfg2.workers = 2
    write_shards(cfg2)
    for f in sorted(Path(cfg.out_dir).glob("*.bin")):
        assert (out / f.name).read_bytes() == f.read_bytes(), f.name
    with pytest.raises(ShardError, match="vocab mismatch"):
        ShardDataset(out, expect_vocab_size=999)


def test_sequence_order_does_not_depend_on_which_shard_landed_first(tmp_path):
    """Parallel tokenize workers finish in any order; the dataset (and so a seeded training run) must not care."""
    seqs = {name: np.full((3, 6), k + 4) for k, name in enumerate(["a_0", "a_1", "b_0"])}
    for order, root in ((["a_0", "a_1", "b_0"], tmp_path / "x"), (["b_0", "a_1", "a_0"], tmp_path / "y")):
        w = ShardWriter(root, 6, 16, {"name": "t", "hash": "h"})
        for name in order:
            w.write(name, seqs[name], name[0], "video")
    x, y = ShardDataset(tmp_path / "x"), ShardDataset(tmp_path / "y")
    assert [x[i].tolist() for i in range(len(x))] == [y[i].tolist() for i in range(len(y))]
    assert (tmp_path / "x" / "index.json").read_bytes() == (tmp_path / "y" / "index.json").read_bytes()
    assert {k: v.tolist() for k, v in x.indices_by_source().items()} == {"a": [0, 1, 2, 3, 4, 5], "b": [6, 7, 8]}


def test_tokenizing_in_this_process_leaves_torch_threads_alone(tmp_path):
    torch.set_num_threads(2)
    write_shards(_job(tmp_path, tmp_path / "serial"))  # workers=1: the worker setup runs here
    assert torch.get_num_threads() == 2


def test_mixture_sampler_matches_weights_and_resumes():
    idx = {"images": np.arange(0, 100), "kinetics": np.arange(100, 150), "ego4d": np.arange(150, 160), "howto": np.arange(160, 400)}
    weights = {"images": 0.2, "kinetics": 0.1, "ego4d": 0.1, "howto": 0.6}
    s = MixtureSampler(idx, weights, seed=0)
    draws = s.sample(40_000)
    for name, w in weights.items():
        frac = np.isin(draws, idx[name]).mean()
        assert abs(frac - w) < 0.01, (name, frac)
    state = s.state_dict()
    a = s.sample(100)
    s2 = MixtureSampler(idx, weights, seed=0)
    s2.load_state_dict(state)
    np.testing.assert_array_equal(s2.sample(100), a)
    with pytest.raises(ValueError, match="lacks"):
        MixtureSampler(idx, {"nope": 1.0})
