"""Real-frame scoring: the DAVIS-layout reader, the copy-first-mask baseline, ridge R^2 with episode-grouped
folds, the robot-frame readers, ``real_frame_scores`` and the two probe commands, on tiny folders written here."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from toto_robot.data.demos import DemoFormatError, DemoMeta, DemoWriter
from toto_robot.encoders import build_encoder
from toto_robot.encoders.base import Encoder, to_model_input
from toto_robot.probes import (DavisFormatError, copy_first_j, davis_videos, group_folds, propagation_j, real_frame_scores,
                               regression_sweep, ridge_cv, robot_frames)
from toto_robot.probes.regression import raw_pixels

BLUE, RED, GREEN = (20, 20, 220), (230, 20, 20), (20, 210, 20)
PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0, 0, 0] * 252 + [224, 224, 192]  # DAVIS-like: 0 black, 1 red, 2 green, 255 void


def square_clip(T=6, H=48, W=64, side=12, step=4):
    """A red square moving right by ``step`` px a frame and a static green one on blue: frames [T,H,W,3], ids [T,H,W]."""
    frames = np.empty((T, H, W, 3), np.uint8)
    frames[:] = BLUE
    masks = np.zeros((T, H, W), np.uint8)
    for t in range(T):
        x = 8 + step * t
        frames[t, 16:16 + side, x:x + side] = RED
        masks[t, 16:16 + side, x:x + side] = 1
        frames[t, 32:44, 40:52] = GREEN
        masks[t, 32:44, 40:52] = 2
    return frames, masks


def write_davis(root: Path, clips: dict, res="480p", listed=None):
    """``clips`` {name: (frames, masks)} -> DAVIS layout under ``root``: JPEG frames, palette PNG masks."""
    for name, (frames, masks) in clips.items():
        (root / "JPEGImages" / res / name).mkdir(parents=True)
        (root / "Annotations" / res / name).mkdir(parents=True)
        for t, (f, m) in enumerate(zip(frames, masks)):
            Image.fromarray(f).save(root / "JPEGImages" / res / name / f"{t:05d}.jpg", quality=95)
            png = Image.fromarray(m, mode="P")
            png.putpalette(PALETTE)
            png.save(root / "Annotations" / res / name / f"{t:05d}.png")
    if listed is not None:
        (root / "ImageSets" / "2017").mkdir(parents=True)
        (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(listed) + "\n")
    return root


class ColourEncoder(Encoder):
    """Tokens = mean colour of each cell of a 16 x 16 grid: perfect features for clips of flat-coloured objects."""

    kind = "colour"

    def __init__(self, name="colour", pooling="average"):
        super().__init__(name, pooling)
        self.token_grid, self.token_dim, self.num_layers, self.layer = 16, 3, 1, 1
        self._init_pool()

    def layer_tokens(self, frames, layers):
        B = frames.shape[0]
        flat = frames.flatten(0, 1) if frames.ndim == 5 else frames
        cells = F.adaptive_avg_pool2d(to_model_input(flat, 64), 16)  # (B*T, 3, 16, 16)
        tokens = cells.flatten(2).transpose(1, 2).reshape(B, -1, 3)  # (B, T*256, 3)
        return {l: tokens for l in layers}

    def spec(self):
        return {}

    @classmethod
    def from_spec(cls, name, spec, pooling):
        return cls(name, pooling)


def test_davis_reader_crops_frames_and_masks_alike_and_keeps_object_ids(tmp_path):
    write_davis(tmp_path, {"square": square_clip(T=6), "other": square_clip(T=4, step=2), "unlisted": square_clip(T=3)},
                listed=["square", "other"])
    videos = davis_videos(tmp_path, max_frames=3, stride=2, size=32, fit="crop")
    assert len(videos) == 2  # val.txt chooses the sequences, in its order
    frames, masks = videos[0]
    assert frames.shape == (3, 32, 32, 3) and frames.dtype == np.uint8
    assert masks.shape == (3, 32, 32) and np.issubdtype(masks.dtype, np.integer)
    assert set(np.unique(masks).tolist()) == {0, 1, 2}
    # the same centre crop for both: red where the mask says 1, green where it says 2 (interior pixels)
    assert frames[masks == 1][:, 0].mean() > 180 and frames[masks == 2][:, 1].mean() > 160
    # stride 2: the square has moved 2 * 4 px (of 48 px cropped to 32) between kept frames
    cx = [np.argwhere(m == 1)[:, 1].mean() for m in masks]
    assert np.allclose(np.diff(cx), 8 * 32 / 48, atol=1.0)
    # fit="squash" (the default) keeps the whole 64 px width: 8 px of 64 -> 4 px of 32
    (frames, masks), _ = davis_videos(tmp_path, max_frames=3, stride=2, size=32)
    assert np.allclose(np.diff([np.argwhere(m == 1)[:, 1].mean() for m in masks]), 8 * 32 / 64, atol=0.5)
    assert frames[masks == 1][:, 0].mean() > 180
    assert len(davis_videos(tmp_path, split=None, size=32)) == 3  # no split: every sequence folder
    assert [len(f) for f, _ in davis_videos(tmp_path, sequences=["unlisted"], size=32)] == [3]


def test_davis_reader_takes_the_one_resolution_folder_there_is_and_maps_void_to_background(tmp_path):
    frames, masks = square_clip(T=3)
    masks[:, :4, :] = 255  # a void band along the top
    write_davis(tmp_path, {"void": (frames, masks)}, res="Full-Resolution")
    (_, got), = davis_videos(tmp_path, size=48, fit="crop")  # res="480p" is absent: the single folder present is used
    assert set(np.unique(got).tolist()) == {0, 1, 2}
    assert (got[:, :4, 8:56] == 0).all()  # 64 x 48 centre-cropped to 48 x 48: columns 8..56 of the original


def test_davis_reader_names_what_is_wrong(tmp_path):
    write_davis(tmp_path, {"square": square_clip(T=4)})
    with pytest.raises(DavisFormatError, match="not found"):
        davis_videos(tmp_path / "nowhere")
    (tmp_path / "Annotations" / "480p" / "square" / "00003.png").unlink()
    with pytest.raises(DavisFormatError, match="'square': 4 frames but 3 annotations.*00003"):
        davis_videos(tmp_path)
    (tmp_path / "JPEGImages" / "480p" / "square" / "00003.jpg").unlink()
    (tmp_path / "JPEGImages" / "480p" / "square" / "00002.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DavisFormatError, match="00002.jpg: unreadable image"):
        davis_videos(tmp_path)
    for p in (tmp_path / "Annotations" / "480p" / "square").iterdir():
        p.unlink()
    with pytest.raises(DavisFormatError, match="'square': no annotation PNGs"):
        davis_videos(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "Annotations")
    with pytest.raises(DavisFormatError, match="no Annotations/ folder"):
        davis_videos(tmp_path)


def test_perfect_features_track_a_moving_object_that_copying_the_first_mask_loses(tmp_path):
    write_davis(tmp_path, {"square": square_clip(T=6, step=4)})
    videos = davis_videos(tmp_path, size=64)
    good = propagation_j(ColourEncoder(), videos)["J"]
    floor = copy_first_j(videos)["J"]
    assert good > 0.85, good
    assert floor < 0.75 and good > floor + 0.2, (good, floor)
    # the baseline is the same jaccard of frame 0's mask against every later frame
    _, masks = videos[0]
    unmoved = [(f, np.repeat(masks[:1], len(masks), 0)) for f, _ in videos]
    assert copy_first_j(unmoved)["J"] == 1.0


class ShortContextColourEncoder(ColourEncoder):
    """The colour encoder with a context of ``max_frames`` frames (like a Toto model); it records every clip length it reads."""

    max_frames = 3

    def __init__(self):
        super().__init__("short")
        self.calls, self.passes = [], 0

    def layer_tokens(self, frames, layers):
        assert frames.ndim == 5 and frames.shape[1] <= self.max_frames, f"a clip of {frames.shape[1]} frames exceeds the context"
        self.calls.extend(clip[0].clone() for clip in frames)  # the first frame of every window in the batch
        self.passes += 1
        return super().layer_tokens(frames, layers)


def test_clips_longer_than_the_context_are_read_in_windows_that_start_with_frame_zero(tmp_path):
    from toto_robot.probes.label_propagation import clip_windows

    assert clip_windows(5, None) == [[0, 1, 2, 3, 4]] and clip_windows(3, 3) == [[0, 1, 2]]
    assert clip_windows(7, 3) == [[0, 1, 2], [0, 3, 4], [0, 5, 6]]
    assert clip_windows(8, 3) == [[0, 1, 2], [0, 3, 4], [0, 5, 6], [0, 7]]
    assert clip_windows(3, 1) == [[0], [1], [2]]  # each frame alone
    with pytest.raises(ValueError, match="at least 1"):
        clip_windows(4, 0)
    write_davis(tmp_path, {"square": square_clip(T=10, step=3)})
    videos = davis_videos(tmp_path, size=64)
    enc = ShortContextColourEncoder()
    long = propagation_j(enc, videos)
    assert len(enc.calls) == 5  # windows [0,1,2], [0,3,4], [0,5,6], [0,7,8], [0,9]
    assert enc.passes == 2  # the four windows of 3 frames in one batch, the last window of 2 in another
    frames = torch.from_numpy(videos[0][0])
    for call in enc.calls:
        assert torch.equal(call, frames[0])  # every window starts with the annotated frame
    whole = propagation_j(ColourEncoder(), videos)  # per-frame features: windows change nothing
    assert long["J"] == pytest.approx(whole["J"]) and long["F"] == pytest.approx(whole["F"])
    floor = copy_first_j(videos)
    assert long["J"] > 0.85 and long["J"] > floor["J"] + 0.2 and long["F"] > floor["F"] + 0.2, (long, floor)
    from helpers import tiny_toto_run

    toto = build_encoder("toto", checkpoint=str(tiny_toto_run(tmp_path / "toto")), pooling="average")  # a causal model, 4 frames of context
    assert toto.max_frames == 4
    write_davis(tmp_path / "long", {"square": square_clip(T=12, step=2)})
    scores = propagation_j(toto, davis_videos(tmp_path / "long", size=64))
    assert 0.0 <= scores["J"] <= 1.0 and 0.0 <= scores["F"] <= 1.0 and len(scores["per_video_F"]) == 1


def test_boundary_f_matches_hand_computed_cases():
    from toto_robot.probes.label_propagation import boundary, boundary_f

    gt = np.zeros((64, 64), np.int64)
    gt[5, 5] = 1  # a one-pixel object: its boundary is itself; the tolerance at 64 x 64 is ceil(0.008 * 90.5) = 1 px
    near, far = np.zeros_like(gt), np.zeros_like(gt)
    near[5, 6], far[5, 8] = 1, 1  # one pixel over: matched; three over: not (a diagonal neighbour is sqrt(2) > 1 away)
    assert boundary_f(gt, gt, 1) == 1.0 and boundary_f(near, gt, 1) == 1.0 and boundary_f(far, gt, 1) == 0.0
    assert boundary_f(np.zeros_like(gt), np.zeros_like(gt), 1) == 1.0 and boundary_f(np.zeros_like(gt), gt, 1) == 0.0
    square = np.zeros((64, 64), bool)
    square[10:20, 10:20] = True
    assert boundary(square).sum() == 36  # the ring of a 10 x 10 square
    shifted = np.roll(square, 4, axis=1)
    pb, gb = boundary(shifted), boundary(square)
    from toto_robot.probes.label_propagation import dilate

    p = (pb & dilate(gb, 1)).sum() / pb.sum()
    r = (gb & dilate(pb, 1)).sum() / gb.sum()
    assert boundary_f(shifted.astype(int), square.astype(int), 1) == pytest.approx(2 * p * r / (p + r))
    assert 0.3 < boundary_f(shifted.astype(int), square.astype(int), 1) < 0.9


def test_group_folds_never_put_an_episode_on_both_sides():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(11), rng.integers(1, 30, 11))
    splits = group_folds(groups, 5)
    assert len(splits) == 5 and len(group_folds(groups[groups < 3], 5)) == 3
    tested = np.concatenate([te for _, te in splits])
    assert np.array_equal(np.sort(tested), np.arange(len(groups)))  # every frame tested exactly once
    for train, test in splits:
        assert not set(groups[train]) & set(groups[test])
        assert len(train) + len(test) == len(groups)


def test_ridge_recovers_a_linear_function_of_pixels_and_not_noise():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (400, 8, 8, 3), dtype=np.uint8)
    groups = np.repeat(np.arange(20), 20)
    x = raw_pixels(frames)  # (400, 192)
    y = x @ rng.normal(size=(192, 3))  # (400, 3), exactly linear in the pixels
    assert ridge_cv(x, y, groups)["r2"] > 0.95
    noise = ridge_cv(x, rng.normal(size=(400, 2)), groups)
    assert noise["r2"] < 0.05 and len(noise["r2_per_target"]) == 2


def test_ridge_folds_are_grouped_so_memorising_an_episode_does_not_score():
    """Features that only identify the episode, a target constant within each episode: any fold that
    shared an episode between train and test would score R^2 near 1."""
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(12), 10)
    x = np.eye(12)[groups] + 0.01 * rng.normal(size=(120, 12))
    y = rng.normal(size=12)[groups]
    assert ridge_cv(x, y, groups)["r2"] < 0.2
    with pytest.raises(ValueError, match="at least 3 episodes"):
        ridge_cv(x[:20], y[:20], groups[:20])
    with pytest.raises(ValueError, match="constant"):
        ridge_cv(x, np.ones(120), groups)


def moving_square_episode(T, rng, size=32):
    """Frames of a red square wandering on blue, and its centre (x, y) in [0, 1] as the target [T, 2]."""
    frames = np.empty((T, size, size, 3), np.uint8)
    frames[:] = BLUE
    pos = rng.uniform(0, size - 8, (T, 2)).astype(int)
    for t, (x, y) in enumerate(pos):
        frames[t, y:y + 8, x:x + 8] = RED
    return frames, (pos + 4) / size


def write_demos(root: Path, episodes=6, T=12, seed=0) -> Path:
    """A demonstration dataset whose state columns 16-18 hold (x, y, x + y): the square's position, like the sim's gripper xyz."""
    rng = np.random.default_rng(seed)
    writer = DemoWriter(root, DemoMeta(source="sim", task="squares", image_size=(32, 32), state_dim=19, action_dim=4))
    for _ in range(episodes):
        frames, xy = moving_square_episode(T, rng)
        state = np.concatenate([rng.normal(size=(T, 16)), xy, xy.sum(1, keepdims=True)], axis=1)
        writer.write_episode(frames, state, np.zeros((T, 4)))
    return root


def test_robot_frames_reads_demos_and_plain_npz_folders(tmp_path):
    data = robot_frames(write_demos(tmp_path / "demos", episodes=4, T=12), stride=2, max_frames=5)
    assert data.frames.shape == (20, 32, 32, 3) and data.targets.shape == (20, 3)
    assert data.groups.tolist() == [g for g in range(4) for _ in range(5)]
    assert data.target_names == ["state[16]", "state[17]", "state[18]"] and np.allclose(data.targets[:, 2], data.targets[:, :2].sum(1))
    assert robot_frames(tmp_path / "demos", max_episodes=2).groups.max() == 1
    rng = np.random.default_rng(0)
    (tmp_path / "npz").mkdir()
    for i in range(3):
        frames, xy = moving_square_episode(7, rng, size=40)
        np.savez(tmp_path / "npz" / f"ep{i}.npz", rgb=frames, ee_pos=xy)
    data = robot_frames(tmp_path / "npz", target=None, target_key="ee_pos", image_key="rgb", size=16)
    assert data.frames.shape == (21, 16, 16, 3) and data.targets.shape == (21, 2) and data.groups.max() == 2
    with pytest.raises(DemoFormatError, match="needs arrays 'image' and 'ee_pos'"):
        robot_frames(tmp_path / "npz", target_key="ee_pos")
    with pytest.raises(ValueError, match="outside the 2 columns"):
        robot_frames(tmp_path / "npz", target=[2], target_key="ee_pos", image_key="rgb")


def test_regression_sweep_writes_r2_per_layer_beside_raw_pixels(tmp_path):
    data = robot_frames(write_demos(tmp_path / "demos", episodes=6, T=12), target=[16, 17])
    enc = build_encoder("random")
    rows = regression_sweep(enc, data, layers=[1, 3], poolings=("average", "spatial2"), folds=3, out_dir=tmp_path / "out")
    assert [(r["pooling"], r["layer"]) for r in rows] == [(p, l) for p in ("average", "spatial2") for l in (1, 3)]
    assert all(np.isfinite(r["r2"]) and r["r2"] <= 1 for r in rows)
    raw = rows[0]["raw_pixels_r2"]
    assert raw > 0.3  # 8x8 pixels of a square on a flat background say roughly where it is
    with open(tmp_path / "out" / "regression.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 and {"r2 state[16]", "r2 state[17]", "raw_pixels_r2"} <= set(table[0])
    assert set(json.loads((tmp_path / "out" / "result.json").read_text())["best"]) == {"average", "spatial2"}
    assert (tmp_path / "out" / "regression.png").read_bytes()[:4] == b"\x89PNG"


def test_real_frame_scores_gives_each_score_with_its_baseline(tmp_path):
    write_davis(tmp_path / "davis", {"square": square_clip(T=4)})
    demos = write_demos(tmp_path / "demos", episodes=5, T=8)
    enc = build_encoder("random", layer=2)
    scores = real_frame_scores(enc, tmp_path / "davis", demos, folds=3, davis_kwargs={"size": 64})
    assert scores["encoder"] == "random" and scores["layer"] == 2
    videos = davis_videos(tmp_path / "davis", size=64)
    assert scores["davis_J"] == pytest.approx(propagation_j(enc, videos, 2)["J"])
    assert scores["davis_copy_first_J"] == pytest.approx(copy_first_j(videos)["J"])
    assert {"robot_r2_average", "robot_r2_spatial2", "robot_raw_pixels_r2"} <= set(scores)
    assert all(np.isfinite(scores[k]) for k in ("robot_r2_average", "robot_r2_spatial2", "robot_raw_pixels_r2"))
    only_robot = real_frame_scores(enc, robot=robot_frames(demos), folds=3, poolings=("average",))
    assert "davis_J" not in only_robot and only_robot["robot_r2_average"] == pytest.approx(scores["robot_r2_average"])
    with pytest.raises(ValueError, match="needs DAVIS clips"):
        real_frame_scores(enc)


def probe_cli(*args):
    exe = Path(sys.executable).parent / "toto-robot"
    out = subprocess.run([str(exe), "probe", "encoder=random", "layers=[1,2]", *args], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HYDRA_FULL_ERROR": "1"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def test_probe_command_on_a_davis_folder(tmp_path):
    write_davis(tmp_path / "davis", {"square": square_clip(T=4)})
    stdout = probe_cli("probe=davis", f"probe.kwargs.root={tmp_path / 'davis'}", "probe.kwargs.size=64", f"out_dir={tmp_path / 'lp'}")
    assert "copy first mask" in stdout
    with open(tmp_path / "lp" / "label_propagation.csv") as f:
        sweep = list(csv.DictReader(f))
    assert [r["layer"] for r in sweep] == ["1", "2"] and "per_video" not in sweep[0]
    best = max(sweep, key=lambda r: float(r["J&F"]))
    with open(tmp_path / "lp" / "davis_sequences.csv") as f:
        seqs = list(csv.DictReader(f))
    assert [r["sequence"] for r in seqs] == ["square", "mean"]  # one clip: its scores are the mean, the best layer's
    for key in ("J", "F", "copy_first_J", "copy_first_F"):
        assert float(seqs[0][key]) == pytest.approx(float(seqs[1][key])) == pytest.approx(float(best[key]))
    assert "root:" in (tmp_path / "lp" / "config.yaml").read_text()


def test_probe_command_on_demos(tmp_path):
    stdout = probe_cli("probe=ee_regression", f"probe.kwargs.root={write_demos(tmp_path / 'demos', episodes=4, T=6)}",
                       "probe.kwargs.target=[16,17]", "probe.poolings=[average,spatial2]", f"out_dir={tmp_path / 'ee'}")
    assert "raw pixels" in stdout and "spatial2: best layer" in stdout
    assert (tmp_path / "ee" / "regression.png").is_file()


def full_pair_propagation(tokens, first, topk=5, temperature=0.1, context=7, radius=0.2):
    """Label propagation scoring every (token, key) pair and masking outside the neighbourhood: the reference."""
    from toto_robot.probes.label_propagation import neighbourhood

    feats = F.normalize(tokens, dim=-1)
    T, N, _ = feats.shape
    grid = int(round(N ** 0.5))
    allowed = None if radius is None else neighbourhood(grid, max(1, round(radius * grid)))
    labels = [first]
    for t in range(1, T):
        ctx = [0] + list(range(max(1, t - context), t))
        keys, vals = torch.cat([feats[i] for i in ctx]), torch.cat([labels[i] for i in ctx], dim=1)
        sim = feats[t] @ keys.T / temperature
        if allowed is not None:
            sim = sim.masked_fill(~allowed.repeat(1, len(ctx)), float("-inf"))
        top, idx = sim.topk(min(topk, sim.shape[1]), dim=1)
        labels.append((vals[:, idx] * top.softmax(dim=1)[None]).sum(-1))
    return torch.stack(labels)


@pytest.mark.parametrize("grid,radius", [(32, 0.2), (24, 0.1), (16, 0.3), (12, 0.2), (8, None)])
def test_propagation_scores_only_the_neighbourhood_and_gives_the_labels_of_scoring_every_pair(grid, radius):
    from toto_robot.probes.label_propagation import LocalKeys, propagate

    torch.manual_seed(grid)
    tokens, first = torch.randn(10, grid * grid, 24), torch.rand(3, grid * grid)
    got = propagate(tokens, first, radius=radius)
    assert got.shape == (10, 3, grid * grid)
    assert torch.equal(got, full_pair_propagation(tokens, first, radius=radius))
    if radius == 0.2 and grid == 32:  # tiles of 8 x 8 tokens, each scoring a 20 x 20 window: 400 of 1024 key cells
        local = LocalKeys(32, 6)
        assert local.tiled and local.queries.shape == (16, 64) and local.keys.shape == (16, 400)


def test_several_layers_and_windows_come_from_one_batched_pass_with_each_windows_tokens(tmp_path):
    """``clip_layer_tokens`` reads every layer from one pass and batches windows of the same length; each frame's
    tokens are those of the window it was read in, read alone (frame 0 from the first window)."""
    from helpers import tiny_toto_run
    from toto_robot.probes.label_propagation import clip_layer_tokens, clip_tokens, clip_windows, propagation_layers

    toto = build_encoder("toto", checkpoint=str(tiny_toto_run(tmp_path / "toto")), pooling="average")  # 4 frames of context
    frames = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    for window in (1, 3, None):
        got = clip_layer_tokens(toto, frames, [1, 3], window, batch_size=2)
        want = {l: [None] * 8 for l in (1, 3)}
        for w in clip_windows(8, min(window or 4, 4)):
            for l, h in toto.hidden_states(frames[w][None], [1, 3]).items():
                for j, t in enumerate(w):
                    want[l][t] = h[0].reshape(len(w), 16, -1)[j] if want[l][t] is None else want[l][t]
        for l in (1, 3):
            assert got[l].shape == (8, 16, 32)
            assert torch.allclose(got[l], torch.stack(want[l]), atol=1e-6), (window, l)
        assert torch.equal(clip_tokens(toto, frames, 3, window), clip_layer_tokens(toto, frames, [3], window)[3])
    write_davis(tmp_path / "d", {"square": square_clip(T=6, step=3)})
    videos = davis_videos(tmp_path / "d", size=32)
    both = propagation_layers(toto, videos, [1, 2], window=1)
    for l in (1, 2):
        assert both[l] == propagation_j(toto, videos, l, window=1)
