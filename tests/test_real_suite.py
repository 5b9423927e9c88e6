"""The real-frame suite (``toto-robot real-frames``, toto_robot/probes/real_suite.py) on folders written here:
DAVIS 2016 0/255 masks read as they are, DINO's propagation protocol (search window, per-label rescaling), the
raw-pixel encoder, intervals and paired tests, and the whole run's page on a DAVIS folder and a demo folder."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from test_real_frames import BLUE, RED, square_clip, write_davis
from toto_robot.data.demos import DemoMeta, DemoWriter
from toto_robot.encoders import build_encoder, load_encoder
from toto_robot.probes.davis import davis_videos
from toto_robot.probes.label_propagation import norm_labels, propagate, segment
from toto_robot.probes.real_suite import (RealFramesConfig, bootstrap_mean, constant_predictions, r2_resampled, run_real_frames,
                                          wilcoxon_paired)
from toto_robot.utils.config import ConfigError


def write_davis2016(root: Path, clips: dict) -> Path:
    """DAVIS 2016 layout: grayscale masks, 0 background and 255 the one object; a 2016-style split file."""
    lines = []
    for name, (frames, masks) in clips.items():
        (root / "JPEGImages" / "480p" / name).mkdir(parents=True)
        (root / "Annotations" / "480p" / name).mkdir(parents=True)
        for t, (f, m) in enumerate(zip(frames, masks)):
            Image.fromarray(f).save(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", quality=95)
            Image.fromarray(((m == 1) * 255).astype(np.uint8), mode="L").save(root / "Annotations" / "480p" / name / f"{t:05d}.png")
            lines.append(f"/JPEGImages/480p/{name}/{t:05d}.jpg /Annotations/480p/{name}/{t:05d}.png")
    return root, lines


def test_davis2016_masks_and_split_file_are_read_as_they_are(tmp_path):
    root, lines = write_davis2016(tmp_path, {"a": square_clip(T=4), "b": square_clip(T=3, step=2), "c": square_clip(T=3)})
    (root / "ImageSets" / "480p").mkdir(parents=True)
    (root / "ImageSets" / "480p" / "val.txt").write_text("\n".join(l for l in lines if "/b/" in l or "/a/" in l) + "\n")
    videos = davis_videos(root, size=32)
    assert [len(f) for f, _ in videos] == [4, 3]  # the 2016 split file lists a and b (path pairs), in file order
    frames, masks = videos[0]
    assert set(np.unique(masks).tolist()) == {0, 1}  # 255 is the object in a 0/255 mask, not void
    assert frames[masks == 1][:, 0].mean() > 180  # and it sits on the red square
    # a 2017 palette mask keeps 255 as void
    frames17, masks17 = square_clip(T=3)
    masks17[:, :4] = 255
    write_davis(tmp_path / "d17", {"v": (frames17, masks17)})
    (_, got), = davis_videos(tmp_path / "d17", size=48)
    assert set(np.unique(got).tolist()) == {0, 1, 2} and (got[:, :3] == 0).all()


def test_search_window_keeps_labels_from_a_look_alike_far_away():
    """Two identical tokens, the object's at cell 0 and a background look-alike at the far corner: without a window the
    corner token steals the object's label; a window of 0.2 of the grid keeps each token to its neighbourhood."""
    g = 8
    feats = torch.randn(2, g * g, 16) * 0.01 + torch.randn(1, 1, 16)  # near-identical tokens everywhere ...
    anchor = torch.randn(16) * 10
    feats[:, 0] = anchor  # ... except the object (cell 0) ...
    feats[1, g * g - 1] = anchor  # ... whose twin sits in the far corner of frame 1
    first = torch.zeros(2, g * g)
    first[0] = 1
    first[1, 0], first[0, 0] = 1, 0  # label 1 on cell 0 only
    free = propagate(feats, first, topk=1, radius=None)
    windowed = propagate(feats, first, topk=1, radius=0.2)
    assert free[1, 1, g * g - 1] > 0.99  # the far twin took the object's label
    assert windowed[1, 1, g * g - 1] < 0.01 and windowed[1, 1, 0] > 0.99


def test_rescaled_label_maps_keep_a_small_object_that_never_tops_the_background():
    maps = torch.zeros(1, 2, 4, 4)
    maps[0, 0] = 0.7  # background everywhere at 0.7
    maps[0, 1] = 0.1
    maps[0, 1, 1, 1] = 0.4  # the object is most likely at one cell, still below the background
    assert not (maps.argmax(1) == 1).any()
    assert (norm_labels(maps).argmax(1) == 1).sum() == 1 and norm_labels(maps).argmax(1)[0, 1, 1] == 1


def test_pixels_encoder_tokens_are_the_normalised_patches_and_it_saves_and_loads(tmp_path):
    enc = build_encoder("pixels", input_size=16, patch=8)
    frames = np.zeros((1, 16, 16, 3), np.uint8)
    frames[0, :8, 8:] = RED
    tok = enc.encode_tokens(frames)
    assert tok.shape == (1, 4, 192) and enc.token_grid == 2 and enc.num_layers == 0
    red = (torch.tensor(RED) / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(tok[0, 1].reshape(64, 3), red.expand(64, 3), atol=1e-5)  # cell (0, 1) in raster order
    assert torch.allclose(enc.encode_tokens(np.zeros((1, 2, 16, 16, 3), np.uint8)).reshape(2, 4, 192)[1], enc.encode_tokens(frames * 0)[0])
    enc.save_pretrained(tmp_path / "px")
    assert torch.equal(load_encoder(tmp_path / "px").encode_tokens(frames), tok)
    with pytest.raises(ValueError, match="multiple of patch"):
        build_encoder("pixels", input_size=20, patch=8)


def test_statistics_against_references():
    from scipy.stats import wilcoxon

    a, b = np.array([0.5, 0.6, 0.7, 0.2, 0.9, 0.4]), np.array([0.4, 0.5, 0.75, 0.1, 0.6, 0.35])
    w = wilcoxon_paired(a, b)
    assert w["p"] == pytest.approx(wilcoxon(a, b).pvalue) and (w["wins"], w["losses"]) == (5, 1)
    assert w["mean_diff"] == pytest.approx((a - b).mean())
    assert wilcoxon_paired(a, a)["p"] == 1.0
    lo, hi = bootstrap_mean(a, 2000, 0)
    assert lo < a.mean() < hi and a.min() <= lo and hi <= a.max()
    y = np.random.default_rng(0).normal(size=(40, 3))
    groups = np.repeat(np.arange(8), 5)
    boot = r2_resampled(y, [y, y + 10, constant_predictions(y, groups, 4)], groups, 50)
    assert np.allclose(boot[:, 0], 1.0) and (boot[:, 1] < -10).all() and (boot[:, 2] < 0.3).all()
    const = constant_predictions(y, groups, 4)
    for g in range(8):  # every frame of an episode is predicted by the mean of the other folds' episodes
        assert np.allclose(const[groups == g], const[groups == g][0])
        assert not np.allclose(const[groups == g][0], y[groups == g].mean(0))


def square_demos(root: Path, episodes=6, T=10, seed=0) -> Path:
    """Episodes of a red square wandering on blue: state = its centre (x, y), action = the next centre."""
    rng = np.random.default_rng(seed)
    writer = DemoWriter(root, DemoMeta(source="real", task="squares", image_size=(32, 32), state_dim=2, action_dim=2))
    for _ in range(episodes):
        pos = rng.uniform(0, 24, (T + 1, 2)).astype(int)
        frames = np.empty((T, 32, 32, 3), np.uint8)
        frames[:] = BLUE
        for t, (x, y) in enumerate(pos[:T]):
            frames[t, y:y + 8, x:x + 8] = RED
        xy = (pos + 4) / 32
        writer.write_episode(frames, xy[:T], xy[1:] * 0.3 + xy[:T] * 0.7)
    return root


def test_run_writes_tables_with_baselines_intervals_and_paired_tests(tmp_path):
    davis, _ = write_davis2016(tmp_path / "davis", {"a": square_clip(T=6), "b": square_clip(T=5, step=3), "c": square_clip(T=4, step=5)})
    demos = square_demos(tmp_path / "demos")
    cfg = RealFramesConfig(encoders={"vit": {"name": "random", "img_size": 32}, "px": {"name": "pixels", "input_size": 32, "patch": 8}},
                           out_dir=str(tmp_path / "out"), davis_root=str(davis), robot_roots=[str(demos)], davis={"size": 32},
                           robot_size=32, folds=3, bootstrap=100, command="toto-robot real-frames (test)")
    page = run_real_frames(cfg)
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    rows = {(t["encoder"], t["own_layer"]): t for t in res["davis"]["table"]}
    assert {"copy first mask", "vit", "px", "pixels 32px/4x4"} <= {k[0] for k in rows}
    for t in rows.values():
        assert t["J&F_low"] <= t["J&F"] <= t["J&F_high"] and t["sequences"] == 3
    assert [(t["a"], t["b"]) for t in res["davis"]["tests"]] == [("vit", b) for b in ("copy first mask", "px", "pixels 32px/4x4")]
    state = res["robot"]["demos"]["targets"]["state"]
    head = state["headline"]
    assert {"constant", "raw 8x8 pixels", "vit", "px"} == set(head)
    assert head["raw 8x8 pixels"]["r2"] > 0.5 > head["constant"]["r2"]  # pixels say where the square is; a constant cannot
    assert head["constant"]["r2"] <= 0.05
    assert "action" in res["robot"]["demos"]["targets"]
    text = page.read_text()
    assert "toto-robot real-frames (test)" in text and "Wilcoxon" in text and "## Robot set demos" in text
    assert (tmp_path / "out" / "davis.png").is_file() and (tmp_path / "out" / "robot.png").is_file()
    with open(tmp_path / "out" / "davis.csv") as f:
        assert len(f.readlines()) == 1 + 3 * 4  # copy-first, vit, px and the pixel baseline, per sequence


def test_study_frame_scores_are_the_suite_scorers_numbers(tmp_path, monkeypatch):
    """``real_frame_scores`` (the recipe study's frame scores) runs the suite's own scorers and gives the numbers its
    tables give for the same encoder on the same frames."""
    from toto_robot.probes import real_frame_scores, real_suite
    from toto_robot.probes.robot_frames import FrameTargets

    calls = []
    for name in ("davis_rows", "robot_predictions"):
        monkeypatch.setattr(real_suite, name, lambda *a, _f=getattr(real_suite, name), _n=name, **k: calls.append(_n) or _f(*a, **k))
    davis, _ = write_davis2016(tmp_path / "davis", {"a": square_clip(T=4), "b": square_clip(T=4, step=3), "c": square_clip(T=3)})
    demos = square_demos(tmp_path / "demos", episodes=4, T=8)
    videos = davis_videos(davis, size=32)
    data = real_suite.read_robot_set(demos, 32, 1000, ["state"])
    enc = build_encoder("random", img_size=32, layer=2)
    scores = real_frame_scores(enc, davis=videos, robot=FrameTargets("demos", data.frames, data.targets["state"], data.groups, ["x", "y"]),
                               poolings=("average",), folds=3)
    assert calls == ["davis_rows", "davis_rows", "robot_predictions"]
    rows = real_suite.davis_rows("random", enc, videos, ["a", "b", "c"], 2, {})
    assert scores["davis_J"] == np.mean([r["J"] for r in rows]) and scores["davis_F"] == np.mean([r["F"] for r in rows])
    cfg = RealFramesConfig(encoders={"random": {"name": "random"}}, robot_roots=[str(demos)], poolings=["average"], folds=3, bootstrap=10)
    head = real_suite.robot_set_results(data, {"random": enc}, cfg, [])["targets"]["state"]["headline"]
    assert scores["robot_r2_average"] == head["random"]["r2"] and scores["robot_raw_pixels_r2"] == head["raw 8x8 pixels"]["r2"]


def suite_results() -> dict:
    """A real-frame run's ``results.json`` by hand: DAVIS with a layer sweep and paired tests, one robot set, two targets."""
    def robot_row(label, layer, r2):
        return {"encoder": label, "layer": layer, "pooling": "average" if layer != "" else "", "own_layer": True, "dims": 2,
                "r2": r2, "r2_low": r2 - 0.1, "r2_high": r2 + 0.1}

    def target(r2s):
        head = {label: robot_row(label, layer, r2) for (label, layer), r2 in zip((("vit", 2), ("raw 8x8 pixels", ""), ("constant", "")), r2s)}
        tests = [{"a": "vit", "b": b, "diff": r2s[0] - head[b]["r2"], "diff_low": -0.2, "diff_high": 0.4, "p_le_0": 0.1} for b in ("raw 8x8 pixels", "constant")]
        return {"table": list(head.values()), "headline": head, "pooling": "average", "tests": tests}

    davis = [{"encoder": e, "layer": l, "own_layer": own, "sequences": 3, "J": j, "F": j + 0.05, "J&F": j + 0.025, "J&F_low": j - 0.1, "J&F_high": j + 0.1}
             for e, l, own, j in (("vit", 2, True, 0.5), ("vit", 1, False, 0.4), ("copy first mask", "", True, 0.3))]
    return {"command": "toto-robot real-frames (test)", "minutes": 0.5,
            "davis": {"table": davis, "sequences": ["a", "b", "c"],
                      "tests": [{"a": "vit", "b": "copy first mask", "n": 3, "mean_diff": 0.2, "wins": 3, "losses": 0, "p": 0.25}]},
            "robot": {"demos": {"frames": 60, "episodes": 6, "stride": 1, "dropped": {"state": [1], "action": []},
                                "targets": {"state": target([0.9, 0.95, -0.1]), "action": target([0.6, 0.5, -0.2])}}}}


def test_demo_report_real_frame_sections_are_the_suite_page_sections(tmp_path):
    """The demo report renders the suite's results through the suite's own ``page_sections``: the same tables, cell
    for cell, and the same paragraphs as the suite's page, under titles that say they are real frames."""
    from types import SimpleNamespace

    from toto_robot.demo.pipeline import real_frames_section
    from toto_robot.demo.report import Report
    from toto_robot.probes.real_suite import write_page
    from toto_robot.utils.io import atomic_save_json

    results, run = suite_results(), tmp_path / "run"
    run.mkdir()
    write_page(results, SimpleNamespace(folds=3, bootstrap=100), run)
    atomic_save_json({"folds": 3, "bootstrap": 100}, run / "real_frames_config.json")
    report = Report("demo", tmp_path / "report")
    real_frames_section(report, SimpleNamespace(dir=run, result=results), lambda path, name: tmp_path / "report" / "figures" / name)
    page, md = (run / "real_frames.md").read_text(), report.to_markdown()
    tables = [[l for l in text.splitlines() if l.startswith("|")] for text in (page, md)]
    assert tables[0] == tables[1] and len(tables[0]) == 4 + 3 + 3 + 5 + 4 + 4  # DAVIS, its tests, its sweep; robot, state and action tests
    robot = tables[0][10:15]  # read-outs sorted by the first target's R^2, one column per target
    assert robot[0] == "| read-out | state R^2 [95% CI] | action R^2 [95% CI] |"
    assert robot[2:4] == ["| raw 8x8 pixels | 0.950 [0.850, 1.050] | 0.500 [0.400, 0.600] |", "| vit (layer 2) | 0.900 [0.800, 1.000] | 0.600 [0.500, 0.700] |"]
    paragraphs = [l for l in page.split("## ", 1)[1].splitlines() if l and not l.startswith(("|", "#", "!"))]
    assert paragraphs and all(p in md for p in paragraphs)
    assert [s.title for s in report.sections] == ["Real frames: DAVIS label propagation", "Real frames: Robot set demos"]
    assert [f.name for s in report.sections for f, _ in s.figures] == ["real_davis.png", "real_robot.png"]


def test_config_names_what_is_missing(tmp_path):
    with pytest.raises(ConfigError, match="davis_root=.*robot_roots"):
        RealFramesConfig(encoders={"px": {"name": "pixels"}})
    with pytest.raises(ConfigError, match="robot_roots\\[0\\]: folder not found"):
        RealFramesConfig(encoders={"px": {"name": "pixels"}}, robot_roots=[str(tmp_path / "nowhere")])


def test_command_runs_on_a_davis_folder_and_refuses_a_missing_one(tmp_path):
    davis, _ = write_davis2016(tmp_path / "davis", {"a": square_clip(T=4), "b": square_clip(T=4, step=2)})
    cmd = [sys.executable, "-m", "toto_robot.cli", "real-frames", "+encoders.px.name=pixels", "+encoders.px.input_size=32",
           f"davis_root={davis}", "davis.size=32", "bootstrap=50", f"out_dir={tmp_path / 'out'}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "DAVIS label propagation" in done.stdout and (tmp_path / "out" / "real_frames.md").is_file()
    bad = subprocess.run(cmd[:-3] + [f"davis_root={tmp_path / 'nowhere'}"], capture_output=True, text=True, timeout=300)
    lines = (bad.stdout + bad.stderr).strip().splitlines()
    assert bad.returncode == 2 and len(lines) <= 3, lines
    assert any(l.startswith("error: davis_root: folder not found") for l in lines), lines


def real_inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A folder of 'real' videos (moving shapes, H.264), a DAVIS 2016 folder and a demo folder of episodes."""
    from toto_robot.data.synthetic import moving_shapes
    from toto_robot.data.video import write_video

    rng = np.random.default_rng(0)
    videos = tmp_path / "my_videos"
    for k in range(3):
        write_video(videos / f"clip{k}.mp4", moving_shapes(16, 48, 2, rng)[0])
    davis, _ = write_davis2016(tmp_path / "davis", {"a": square_clip(T=5), "b": square_clip(T=5, step=3), "c": square_clip(T=4, step=5)})
    return videos, davis, square_demos(tmp_path / "demos", episodes=4, T=8)


def test_real_footage_demo_pretrains_on_your_videos_only_and_ends_in_the_real_frame_report(tmp_path):
    """demo_real's shape at smoke-test sizes: no simulator stage runs, the shards hold only your videos (and the bundled
    images), and the report gains the real-frame sections with Toto, its controls, MAE and the baselines."""
    from toto_robot.demo.pipeline import DemoConfig, pretraining_datasets, run_demo

    videos, davis, demos = real_inputs(tmp_path)
    cfg = DemoConfig(out_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"), fast=True, real_videos=str(videos),
                     sim_videos=False, sim_eval=False, davis_root=str(davis), robot_roots=[str(demos)], clips_per_video=8)
    assert cfg.extra_videos == [str(videos)] and {d["name"] for d in pretraining_datasets(cfg, None)} == {"user_0", "images"}
    run_demo(cfg)
    stages = sorted(p.name.split("-")[0] for p in (tmp_path / "cache").iterdir())
    assert stages == ["mae", "pretrain", "real_frames", "shards", "tokenizer"]  # no videos, probe, demos or compare stage
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    encoders = {t["encoder"] for t in res["real_frames"]["davis"]["table"]}
    assert {"toto", "random-init", "untrained ViT", "mae", "copy first mask"} <= encoders
    assert set(res["real_frames"]["robot"]["demos"]["targets"]["state"]["headline"]) >= {"toto", "mae", "constant", "raw 8x8 pixels"}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Real frames: DAVIS label propagation" in report and "## Real frames: Robot set demos" in report
    assert "5. Probing" not in report and "1. Simulated robot videos" not in report
    assert (tmp_path / "out" / "figures" / "real_davis.png").is_file()


def test_real_footage_demo_refuses_what_it_cannot_run(tmp_path):
    from toto_robot.demo.pipeline import DemoConfig

    videos, davis, _ = real_inputs(tmp_path)
    with pytest.raises(ConfigError, match="sim_videos=false leaves nothing to pre-train on"):
        DemoConfig(cache_dir=str(tmp_path / "c"), sim_videos=False)
    with pytest.raises(ConfigError, match="sim_eval=false scores nothing"):
        DemoConfig(cache_dir=str(tmp_path / "c"), real_videos=str(videos), sim_eval=False)
    with pytest.raises(ConfigError, match="davis_root: folder not found"):
        DemoConfig(cache_dir=str(tmp_path / "c"), real_videos=str(videos), davis_root=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="model"):
        DemoConfig(cache_dir=str(tmp_path / "c"), model="toto_huge")


def test_real_study_page_holds_each_recipe_real_frame_table(tmp_path):
    from toto_robot.demo.study import StudyConfig, real_rows, run_study

    videos, davis, demos = real_inputs(tmp_path)
    base = {"real_videos": str(videos), "sim_videos": False, "sim_eval": False, "davis_root": str(davis), "robot_roots": [str(demos)]}
    page = run_study(StudyConfig(base=base, recipes={"r32": {}, "r32_steps": {"pretrain_steps": 8}}, out_dir=str(tmp_path / "study"),
                                 cache_dir=str(tmp_path / "cache"), fast=True))
    text = page.read_text()
    assert "## Real frames" in text
    rows = real_rows({name: json.loads((tmp_path / "study" / name / "results.json").read_text()) for name in ("r32", "r32_steps")})
    assert {r["recipe"] for r in rows} == {"r32", "r32_steps"} and all("davis_JF" in r for r in rows if r["encoder"] not in ("constant", "raw 8x8 pixels"))
    assert any(r["encoder"] == "mae" and r["pretrain_gflop"] > 0 for r in rows)
    assert (tmp_path / "study" / "study_real.csv").is_file()


def test_centred_propagation_ignores_a_component_every_token_shares():
    """Centring on the clip's mean token makes label propagation blind to an offset all tokens share (a direction a
    network writes into every position); on raw tokens the same offset squeezes every cosine towards 1 and changes
    which labels a token takes."""
    frames, masks = square_clip(T=6, H=64, W=64, step=4)
    tokens = torch.randn(6, 16 * 16, 8, generator=torch.Generator().manual_seed(0))
    offset = torch.full((8,), 3.0)
    kw = dict(first_mask=masks[0], num_objects=int(masks.max()), size=64)
    centred = segment(tokens, **kw)
    assert np.array_equal(segment(tokens + offset, **kw), centred)
    assert np.array_equal(segment(tokens - tokens.mean(dim=(0, 1)), center=False, **kw), centred)
    assert not np.array_equal(segment(tokens + offset, center=False, **kw), segment(tokens, center=False, **kw))


def test_frames_are_read_at_the_largest_encoder_input_unless_a_size_is_given():
    from toto_robot.probes.real_suite import frame_size

    small, big = build_encoder("pixels", input_size=64, patch=8), build_encoder("random", img_size=320)
    assert frame_size([small], 128) == 128 and frame_size([small], 256) == 256
    assert frame_size([small, big], 128) == 320 and frame_size([small, big], 256) == 320
    assert frame_size([], 128) == 128


def test_a_toto_run_reads_frames_at_a_larger_resolution_while_one_frame_fits_its_context(tmp_path):
    from helpers import tiny_toto_run

    from toto_robot.probes.real_suite import standard_encoders

    final = tiny_toto_run(tmp_path, resolution=32)  # 4x4 tokens per frame, a context of 4 frames = 65 positions
    at64 = build_encoder("toto", checkpoint=str(final), resolution=64, layer=1)
    assert (at64.input_size, at64.token_grid, at64.max_frames) == (64, 8, 1)
    tokens = at64.layer_tokens(torch.zeros(2, 96, 80, 3, dtype=torch.uint8), [1])[1]
    assert tokens.shape == (2, 64, 32)  # one 64 px frame = 8 x 8 tokens
    with pytest.raises(ConfigError, match="resolution 128: one frame is 256 tokens but the model's context holds 64"):
        build_encoder("toto", checkpoint=str(final), resolution=128)
    control = build_encoder("random", like=str(final), resolution=64)
    assert control.input_size == 64 and not torch.equal(control.model.tok_emb.weight, at64.model.tok_emb.weight)
    specs = standard_encoders(str(final), None, layer=1, resolution=64)
    assert specs["toto"]["resolution"] == specs["random-init"]["resolution"] == specs["untrained ViT"]["img_size"] == 64
    assert "resolution" not in standard_encoders(str(final), None, layer=1)["toto"]


def test_an_untrained_vit_without_its_position_code_gives_every_patch_of_a_flat_image_the_same_token():
    flat = torch.full((1, 32, 32, 3), 120, dtype=torch.uint8)
    for pos, same in ((True, False), (False, True)):
        torch.manual_seed(0)
        enc = build_encoder("random", img_size=32, pos_embed=pos)
        tokens = enc.layer_tokens(flat, [1])[1][0]  # (16, C): block 1 of each 8 px patch
        assert tokens.shape == (16, 192)
        assert torch.allclose(tokens, tokens[:1].expand_as(tokens), atol=1e-5) == same


def test_mirrored_scans_give_the_first_token_context_from_the_patches_after_it(tmp_path):
    from helpers import tiny_toto_run

    final = tiny_toto_run(tmp_path, resolution=32, tokenizer="patch")
    rng = np.random.default_rng(0)
    frame = torch.from_numpy(rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8))
    moved = frame.clone()
    moved[0, 24:, 24:] = 255 - moved[0, 24:, 24:]  # only the last patch in raster order changes
    raster, both, four = (build_encoder("toto", checkpoint=str(final), layer=1, scan=s) for s in ("raster", "both", "four"))
    first = {name: (e.layer_tokens(frame, [1])[1][0, 0], e.layer_tokens(moved, [1])[1][0, 0])
             for name, e in (("raster", raster), ("both", both), ("four", four))}
    assert torch.equal(*first["raster"])  # causal: the top-left token never reads the bottom-right patch
    assert not torch.allclose(*first["both"]) and not torch.allclose(*first["four"])
    # "both" = the raster read and the read of the frame turned by 180 degrees, token grid turned back
    a = raster.layer_tokens(frame, [1])[1].reshape(1, 4, 4, -1)
    b = raster.layer_tokens(frame.flip(1, 2), [1])[1].reshape(1, 4, 4, -1).flip(1, 2)
    assert torch.allclose(both.layer_tokens(frame, [1])[1], ((a + b) / 2).reshape(1, 16, -1), atol=1e-6)
    with pytest.raises(ConfigError, match="scan must be one of raster, both, four"):
        build_encoder("toto", checkpoint=str(final), scan="spiral")
    both.save_pretrained(tmp_path / "enc")
    saved = load_encoder(tmp_path / "enc")
    assert saved.scan == "both" and torch.allclose(saved.layer_tokens(moved, [1])[1], both.layer_tokens(moved, [1])[1], atol=1e-6)


def test_four_scans_equal_the_mean_of_four_mirrored_raster_reads(tmp_path):
    """Each frame's tokens (in a batch of frames, and of clips) are the mean of the four raster reads of its mirror
    images, token grids flipped back."""
    from helpers import tiny_toto_run

    final = tiny_toto_run(tmp_path, resolution=32, tokenizer="patch")
    raster, four = (build_encoder("toto", checkpoint=str(final), layer=2, scan=s) for s in ("raster", "four"))
    rng = np.random.default_rng(1)
    for shape in ((3, 32, 40, 3), (2, 3, 32, 32, 3)):  # three images; two clips of three frames
        x = torch.from_numpy(rng.integers(0, 256, shape, dtype=np.uint8))
        T = shape[1] if len(shape) == 5 else 1
        reads = []
        for flips in ((), (-2,), (-3,), (-3, -2)):
            mirrored = x[..., 4:36, :] if len(shape) == 4 else x  # the centre square, then mirrored
            t = raster.layer_tokens(mirrored.flip(flips) if flips else mirrored, [1, 2])
            reads.append({l: h.reshape(len(x), T, 4, 4, -1).flip(flips).reshape(h.shape) if flips else h for l, h in t.items()})
        got = four.layer_tokens(x, [1, 2])
        for l in (1, 2):
            want = sum(r[l] for r in reads) / 4
            assert got[l].shape == (len(x), T * 16, 32)
            assert torch.allclose(got[l], want, atol=1e-6)
