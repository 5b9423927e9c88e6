"""Offline behaviour cloning (toto_robot/policies/offline.py): held-out-episode action error beside a constant and a
raw-pixel baseline, on a generated demo folder whose actions follow from the image (its colour), in servo-tick-like
units so the policy has to learn standardised actions."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from toto_robot.data.demos import DemoFormatError, DemoMeta, DemoWriter
from toto_robot.policies import load_policy
from toto_robot.policies import bc as bc_module
from toto_robot.policies.bc import BCConfig, train_bc
from toto_robot.policies.offline import CONSTANT, PIXELS, STATE, STATE_ONLY, episode_stats, scores_from, summarise
from toto_robot.utils.config import ConfigError

SIZE = 32


def colour_demos(root: Path, episodes: int, T: int = 12, seed: int = 0, state_dim: int = 3) -> Path:
    """Frames of one random colour each; the action is (red, blue) as servo ticks around 2000, the state is noise unique to
    each frame (it says nothing about the action, and tells which frames a model trained on); ``state_dim=2``: the action
    plus one tick of noise (a joint read one step before its target)."""
    rng = np.random.default_rng(seed)
    writer = DemoWriter(root, DemoMeta(source="lerobot", task="colour", image_size=(SIZE, SIZE), state_dim=state_dim, action_dim=2,
                                       action_space="lerobot"))
    for _ in range(episodes):
        rgb = rng.integers(0, 256, (T, 3))
        frames = np.broadcast_to(rgb[:, None, None, :], (T, SIZE, SIZE, 3)).astype(np.uint8)
        actions = (2000 + 4 * rgb[:, [0, 2]]).astype(np.float32)  # (T, 2) ticks
        state = rng.normal(size=(T, state_dim)) + (actions if state_dim == 2 else 0)
        writer.write_episode(frames, state.astype(np.float32), actions)
    return root


def test_offline_bc_beats_the_constant_on_held_out_episodes_it_never_trained_on(tmp_path, monkeypatch):
    demos = colour_demos(tmp_path / "demos", episodes=6)
    trained_on = []  # the state rows of every model's training split, in call order
    real_fit = bc_module.fit_policy
    monkeypatch.setattr(bc_module, "fit_policy", lambda policy, train, *a, **k: trained_on.append(train[1].numpy()) or real_fit(policy, train, *a, **k))
    out = tmp_path / "bc"
    cfg = BCConfig(demos=str(demos), out_dir=str(out), encoder={"name": "random", "pooling": "average"}, epochs=30, lr=3e-3,
                   val_fraction=0.2, offline_eval=True, offline_folds=3, bootstrap=300)
    policy_dir = train_bc(cfg)

    report = json.loads((out / "offline_eval.json").read_text())
    by = {r["method"]: r for r in report["methods"]}
    bc = by["BC random"]
    assert set(by) == {"BC random", STATE_ONLY, CONSTANT, PIXELS} and report["episodes"] == report["held_out_episodes"] == 6 and report["frames"] == 72
    assert bc["nmse"] < 0.6 * by[CONSTANT]["nmse"] and bc["r2"] > 0.3 and by[CONSTANT]["r2"] <= 0.05
    for r in report["methods"]:
        assert r["nmse_ci"][0] <= r["nmse"] <= r["nmse_ci"][1] and r["r2_ci"][0] <= r["r2_ci"][1]
    assert {p["difference"] for p in report["paired"]} == {f"BC random - {m}" for m in (CONSTANT, PIXELS, STATE_ONLY)}
    assert by[STATE_ONLY]["nmse"] > 2 * bc["nmse"]  # the action follows from the colour: the state (noise) alone cannot give it

    # whole episodes held out: the folds partition the episodes, and no model of a fold saw a held-out frame
    folds = report["folds"]
    assert len(folds) == 3 and sorted(e for f in folds for e in f["held_out"]) == list(range(6))
    eps = [bc_module.open_demos(demos)[i] for i in range(6)]
    row_episode = {tuple(np.round(s, 5)): i for i, ep in enumerate(eps) for s in ep["state"]}
    assert len(trained_on) == 1 + 3 * len(folds)  # the deployable policy, then BC, BC state only and raw pixels per fold
    for f, fold in enumerate(folds):
        for states in trained_on[1 + 3 * f: 4 + 3 * f]:
            seen = {row_episode[tuple(np.round(s, 5))] for s in states}
            assert seen == set(fold["train"]) and not seen & set(fold["held_out"])

    with open(out / "offline_eval.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["method"] for r in table] == [r["method"] for r in report["methods"]] and {"nmse_lo", "nmse_hi", "r2_lo", "r2_hi"} <= set(table[0])
    with open(out / "offline_episodes.csv") as f:
        assert len(list(csv.DictReader(f))) == 6 * 4
    assert (out / "offline_eval.png").stat().st_size > 1000
    assert json.loads((out / "result.json").read_text())["offline_eval"]["held_out_episodes"] == 6

    # the deployable policy learnt standardised actions and answers in ticks
    policy = load_policy(policy_dir)
    assert policy.action_norm == "standard" and json.loads((policy_dir / "policy.json").read_text())["action_norm"] == "standard"
    action = policy.act({"image": eps[0]["image"][0], "state": eps[0]["state"][0]})
    assert 1900 < action.min() and action.max() < 3100


def test_offline_bc_refuses_a_single_episode(tmp_path):
    demos = colour_demos(tmp_path / "demos", episodes=1)
    with pytest.raises(DemoFormatError, match=r"offline_eval holds whole episodes out and needs at least 2 episodes; .* gives 1"):
        train_bc(BCConfig(demos=str(demos), out_dir=str(tmp_path / "bc"), epochs=1, offline_eval=True))
    colour_demos(tmp_path / "three", episodes=3)
    with pytest.raises(DemoFormatError, match=r"gives 1 \(policy.max_episodes=1\)"):
        train_bc(BCConfig(demos=str(tmp_path / "three"), out_dir=str(tmp_path / "bc"), epochs=1, offline_eval=True, max_episodes=1))
    with pytest.raises(ConfigError, match="policy.offline_folds"):
        BCConfig(demos="x", out_dir="y", offline_folds=1)
    with pytest.raises(ConfigError, match="policy.action_norm"):
        BCConfig(demos="x", out_dir="y", action_norm="minmax")


def test_scores_and_bootstrap_intervals_over_episodes():
    rng = np.random.default_rng(0)
    ys = [rng.normal(size=(20, 3)) * [1, 100, 0.01] + [0, 2000, 5] for _ in range(5)]
    scale = [np.array([1, 100, 0.01])] * 5
    exact = episode_stats(ys, ys, scale)
    mean = np.concatenate(ys).mean(0)
    held_out_mean = episode_stats(ys, [np.broadcast_to(mean, y.shape) for y in ys], scale)
    half = episode_stats(ys, [mean + 0.5 * (y - mean) for y in ys], scale)  # explains 3/4 of the variance of every dim
    nmse, r2, per_dim = scores_from(exact, np.ones((1, 5)))
    assert nmse[0] == 0 and r2[0] == 1
    nmse, r2, per_dim = scores_from(held_out_mean, np.ones((1, 5)))
    assert abs(r2[0]) < 1e-9 and abs(nmse[0] - 1) < 0.1  # the held-out mean: R^2 0, about one training variance of error
    nmse, r2, per_dim = scores_from(half, np.ones((1, 5)))
    assert np.allclose(per_dim, 0.75) and abs(r2[0] - 0.75) < 1e-9  # dims in ticks and in hundredths weigh the same
    report = summarise({"BC": half, "mean": held_out_mean}, n_boot=500, seed=0, baseline_of="BC")
    bc, base = report["methods"]
    assert bc["nmse_ci"][0] <= bc["nmse"] <= bc["nmse_ci"][1] and bc["nmse_ci"][1] < base["nmse_ci"][0]
    (diff,) = report["paired"]
    assert diff["difference"] == "BC - mean" and diff["nmse_ci"][1] < 0 < diff["r2_ci"][0]
    assert report["held_out_episodes"] == 5 and "500 resamples" in report["interval"]


def test_train_policy_command_runs_offline_eval_on_any_encoder_with_a_frame_stride(tmp_path):
    """The documented command's config path (configs/train_policy.yaml + policy=bc + encoder=pixels), every 2nd frame."""
    from hydra import compose, initialize_config_module

    from toto_robot.train.train_policy import run

    demos = colour_demos(tmp_path / "demos", episodes=3, state_dim=2)  # state and action of one size: "state as action" joins, and wins
    with initialize_config_module(config_module="toto_robot.configs", version_base="1.3"):
        cfg = compose(config_name="train_policy", overrides=[
            "policy=bc", f"demos={demos}", "encoder=pixels", "encoder.input_size=32", "policy.eval_episodes=0", "policy.offline_eval=true",
            "policy.frame_stride=2", "policy.epochs=3", "policy.bootstrap=100", f"out_dir={tmp_path / 'run'}"])
    policy_dir = run(cfg)
    report = json.loads((tmp_path / "run" / "offline_eval.json").read_text())
    assert report["encoder"] == "pixels" and report["frame_stride"] == 2 and report["frames"] == 3 * 6
    state = {r["method"]: r for r in report["methods"]}[STATE]
    assert state["nmse"] < 1e-3 and state["r2"] > 0.999 and state["nmse_ci"][1] < 1e-3
    assert len(report["folds"]) == 3 and all(len(f["held_out"]) == 1 for f in report["folds"])  # 5 folds asked, one per episode
    assert json.loads((policy_dir / "policy.json").read_text())["encoder"] == "pixels"


def test_offline_eval_scores_the_chunk_at_each_horizon_against_holding_the_state(tmp_path):
    """Joints that drift steadily: the recorded action h - 1 frames ahead is further from the current state the larger h, and a
    chunked relative policy that sees the drift's direction in the image keeps ahead of holding the state at every horizon."""
    from toto_robot.data.demos import DemoMeta, DemoWriter

    rng = np.random.default_rng(0)
    writer = DemoWriter(tmp_path / "demos", DemoMeta(source="ros", task="drift", image_size=(SIZE, SIZE), state_dim=2, action_dim=2,
                                                     action_space="joint_position"))
    T = 24
    for e in range(8):
        sign = 1.0 if e % 2 else -1.0
        frames = np.zeros((T, SIZE, SIZE, 3), np.uint8)
        frames[..., 0 if sign > 0 else 2] = 255
        q = rng.uniform(-1, 1, (1, 2)) + 0.05 * sign * np.arange(T)[:, None]
        writer.write_episode(frames, q.astype(np.float32), (q + 0.05 * sign).astype(np.float32))  # the target: one step on
    out = tmp_path / "bc"
    train_bc(BCConfig(demos=str(tmp_path / "demos"), out_dir=str(out), encoder={"name": "random", "pooling": "average"}, epochs=40, lr=3e-3,
                      chunk=8, offline_eval=True, offline_folds=4, offline_horizons=[1, 4, 30], bootstrap=200, val_fraction=0, ood=False))
    report = json.loads((out / "offline_eval.json").read_text())
    assert list(report["horizons"]) == ["1", "4", "8"]  # 30 is capped at the chunk
    hold = {h: {r["method"]: r for r in rep["methods"]}[STATE]["nmse"] for h, rep in report["horizons"].items()}
    assert hold["1"] < hold["4"] < hold["8"]  # holding the state falls behind as the arm moves on
    for h, rep in report["horizons"].items():
        by = {r["method"]: r for r in rep["methods"]}
        assert by["BC random"]["nmse"] < 0.5 * by[STATE]["nmse"], (h, by)
        diff = {d["difference"]: d for d in rep["paired"]}[f"BC random - {STATE}"]
        assert diff["nmse_ci"][1] < 0  # paired over episodes, the interval excludes 0
    with open(out / "offline_eval.csv") as f:
        assert {r["horizon"] for r in csv.DictReader(f)} == {"1", "4", "8"}
    assert (out / "offline_horizons.png").stat().st_size > 1000


def test_fit_ridge_recovers_a_linear_map_and_drops_a_block_that_is_noise():
    """Y follows the last 2 columns (the 'state'); 40 'image' columns are noise unique to each frame. Grouped cross-validation
    keeps the state's weights, leaves the image out (weight 0) and predicts held-out frames about as well as the true map."""
    import torch

    from toto_robot.policies.heads import IMAGE_WEIGHTS, fit_ridge

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(6), 50)
    X = np.concatenate([rng.normal(size=(300, 40)), rng.normal(size=(300, 2)) * [3.0, 0.1] + [5.0, -2.0]], axis=1)
    true_w = np.array([[0.5, 0.0], [-2.0, 20.0]])  # (2 state cols, 2 outputs)
    Y = X[:, 40:] @ true_w + [1.0, -1.0] + 0.05 * rng.normal(size=(300, 2))
    weight, bias, info = fit_ridge(torch.tensor(X), torch.tensor(Y), groups, blocks=[(40, IMAGE_WEIGHTS)])
    assert weight.shape == (2, 42) and bias.shape == (2,) and info["folds"] == 5
    assert info["weights"] == [0.0] and torch.all(weight[:, :40] == 0)  # the noise block left out
    assert np.allclose(weight[:, 40:].T.numpy(), true_w, rtol=0.05, atol=0.05)
    X_new = np.concatenate([rng.normal(size=(100, 40)), rng.normal(size=(100, 2)) * [3.0, 0.1] + [5.0, -2.0]], axis=1)
    pred = X_new @ weight.double().numpy().T + bias.double().numpy()
    assert np.abs(pred - (X_new[:, 40:] @ true_w + [1.0, -1.0])).max() < 0.1

    # nothing predicts Y: the largest penalty wins and the fit is the training mean
    Y_noise = rng.normal(size=(300, 2)) + [3.0, 4.0]
    weight, bias, info = fit_ridge(torch.tensor(X), torch.tensor(Y_noise), groups, blocks=[(40, IMAGE_WEIGHTS)])
    assert info["lambda"] >= 100 and np.allclose(bias.numpy(), Y_noise.mean(0), atol=0.05) and float(weight.abs().max()) < 0.01


def test_fit_ridge_output_weight_decides_whose_held_out_error_picks_the_penalty():
    """Output 0 follows X exactly (a light penalty serves it); output 1 is loud noise X cannot predict (the heaviest penalty
    serves it). Counted equally, the noise decides the shared penalty; weighted to the clean output, the clean fit does."""
    import torch

    from toto_robot.policies.heads import fit_ridge

    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(6), 40)
    X = rng.normal(size=(240, 30))
    Y = np.stack([X[:, :5].sum(1), 10 * rng.normal(size=240)], axis=1)
    _, _, equal = fit_ridge(torch.tensor(X), torch.tensor(Y), groups)
    w, _, clean = fit_ridge(torch.tensor(X), torch.tensor(Y), groups, output_weight=torch.tensor([1.0, 1e-4]))
    assert clean["lambda"] < 0.01 <= 1 <= equal["lambda"]
    assert np.allclose(w[0, :5].numpy(), 1.0, atol=0.02)  # the clean output's map, hardly shrunk
    # the weights only rescale the choice: doubling both changes nothing
    assert fit_ridge(torch.tensor(X), torch.tensor(Y), groups, output_weight=torch.tensor([2.0, 2.0]))[2]["lambda"] == equal["lambda"]


def drifting_joint_demos(root: Path, episodes: int, T: int = 40, seed: int = 0) -> Path:
    """A real arm's joint-position teleoperation in miniature: each episode's 3 joints start at their own offsets (far apart
    between episodes) and move at a speed that changes slowly; the recorded target leads the joint by 3 steps of its motion.
    The image is noise: only the state's motion says where the target is."""
    rng = np.random.default_rng(seed)
    writer = DemoWriter(root, DemoMeta(source="lerobot", task="lead", image_size=(SIZE, SIZE), state_dim=3, action_dim=3,
                                       action_space="lerobot"))
    for _ in range(episodes):
        speed = np.cumsum(rng.normal(0, 0.01, (T, 3)), axis=0) + rng.normal(0, 0.05, (1, 3))
        q = rng.uniform(-2, 2, (1, 3)) + np.cumsum(speed, axis=0)  # (T, 3)
        frames = rng.integers(0, 256, (T, SIZE, SIZE, 3), dtype=np.uint8)
        writer.write_episode(frames, q.astype(np.float32), (q + 3 * speed).astype(np.float32))
    return root


def test_ridge_head_is_chosen_for_joint_targets_and_beats_holding_still_on_few_episodes(tmp_path):
    """policy.head=auto: joint targets of a real arm (relative dims) get the ridge head, fit in closed form; on 6 episodes its
    relative action, read from the state's motion, beats holding the state on held-out episodes; saved and reloaded it acts alike."""
    demos = drifting_joint_demos(tmp_path / "demos", episodes=6)
    out = tmp_path / "bc"
    policy_dir = train_bc(BCConfig(demos=str(demos), out_dir=str(out), encoder={"name": "random", "pooling": "average"}, epochs=5,
                                   state_history=2, chunk=4, offline_eval=True, offline_folds=6, offline_horizons=[1, 4], bootstrap=300,
                                   val_fraction=0, ood=False))
    result = json.loads((out / "result.json").read_text())
    assert result["head"] == "ridge" and result["relative_dims"] == [0, 1, 2]
    with open(out / "metrics.csv") as f:
        (row,) = list(csv.DictReader(f))  # one closed-form fit, not epochs
    assert float(row["ridge_image_weight"]) == 0.0  # the image is noise: cross-validation leaves it out
    report = json.loads((out / "offline_eval.json").read_text())
    assert report["head"] == "ridge"
    for h, rep in report["horizons"].items():
        diff = {d["difference"]: d for d in rep["paired"]}[f"BC random - {STATE}"]
        assert diff["nmse_ci"][1] < 0, (h, diff)  # ahead of holding still, paired over episodes
    policy = load_policy(policy_dir)
    assert policy.head_kind == "ridge" and len(policy.head.net) == 1  # one linear map
    ep = bc_module.open_demos(demos)[0]
    policy.reset()
    first = [policy.act({"image": ep["image"][t], "state": ep["state"][t]}) for t in range(3)]
    target = ep["action"][2]
    assert np.abs(first[2] - target).mean() < np.abs(ep["state"][2] - target).mean()  # the third step knows the motion


def test_head_auto_keeps_the_mlp_for_a_simulators_actions():
    from toto_robot.policies.bc import choose_head

    assert choose_head("auto", []) == "mlp" and choose_head("auto", [0, 1]) == "ridge"
    assert choose_head("transformer", [0]) == "transformer" and choose_head("mlp", [0]) == "mlp"
    with pytest.raises(ConfigError, match="policy.head"):
        BCConfig(demos="x", out_dir="y", head="linear")
    with pytest.raises(ConfigError, match="policy.ridge_cv_units"):
        BCConfig(demos="x", out_dir="y", ridge_cv_units="joints")


def test_own_footage_pretrains_one_toto_per_fold_on_its_training_episodes_only(tmp_path):
    """policy.offline_own_footage: each fold's Toto is pre-trained like the run's checkpoint on the videos of that fold's training
    episodes, every camera the policy reads, and never on a held-out one; its BC row joins the report, paired like the others."""
    from tests.helpers import tiny_toto_run
    from toto_robot.data.video import read_video
    from toto_robot.policies.offline import OWN_FOOTAGE
    from toto_robot.utils.io import load_pretrained

    demos = colour_demos(tmp_path / "demos", episodes=4, T=16)  # one stride-4 clip of 4 frames spans 13
    final = tiny_toto_run(tmp_path / "natural", resolution=SIZE, n_layer=2, tokenizer="patch")
    out = tmp_path / "bc"
    cfg = BCConfig(demos=str(demos), out_dir=str(out), encoder={"name": "toto", "checkpoint": str(final), "layer": 1, "pooling": "average"},
                   epochs=2, offline_eval=True, offline_folds=2, offline_own_footage=True, own_footage_steps=2, bootstrap=100, val_fraction=0,
                   ood=False)
    train_bc(cfg)
    report = json.loads((out / "offline_eval.json").read_text())
    by = {r["method"]: r for r in report["methods"]}
    assert OWN_FOOTAGE in by and np.isfinite(by[OWN_FOOTAGE]["nmse"])
    pairs = {d["difference"] for d in report["paired"]}
    assert {f"BC toto - {OWN_FOOTAGE}", f"{OWN_FOOTAGE} - {CONSTANT}", f"{OWN_FOOTAGE} - {STATE_ONLY}", f"{OWN_FOOTAGE} - {PIXELS}"} <= pairs
    assert f"{OWN_FOOTAGE} - BC toto" not in pairs  # each pair once
    saved = json.loads((final / "config.json").read_text())
    for k, fold in enumerate(report["folds"]):
        run, = (out / "own_footage").glob(f"fold{k}-*")
        names = sorted(p.name for p in (run / "videos").glob("*.mp4"))
        assert names == [f"episode_{i:06d}_image.mp4" for i in sorted(fold["train"])]  # the held-out episodes never reach it
        assert read_video(run / "videos" / names[0]).shape == (16, SIZE, SIZE, 3)
        own = json.loads((run / "run" / "final" / "config.json").read_text())
        assert {k: own[k] for k in ("n_layer", "n_embd", "tokens_per_frame", "block_size", "input_dim")} == \
            {k: saved[k] for k in ("n_layer", "n_embd", "tokens_per_frame", "block_size", "input_dim")}
        trained, base = load_pretrained(run / "run" / "final")[0], load_pretrained(final)[0]
        assert trained.keys() == base.keys() and any(not torch.equal(trained[k], base[k]) for k in base)  # trained, not copied
        shards = json.loads((run / "shards" / "index.json").read_text())["shards"]
        assert sum(s["num_sequences"] for s in shards if s["source"] == "footage_0") > 0  # clips of its own footage ...
        assert {s["source"] for s in shards} == {"footage_0", "images"}  # ... and the recipe's bundled images

    finals = sorted((out / "own_footage").glob("fold*-*/run/final/model.safetensors"))
    stamps = [f.stat().st_mtime_ns for f in finals]
    train_bc(cfg)  # the same folds, cameras and steps again: every fold's run is reused, none trained anew
    assert sorted((out / "own_footage").glob("fold*-*/run/final/model.safetensors")) == finals and [f.stat().st_mtime_ns for f in finals] == stamps
    assert json.loads((out / "offline_eval.json").read_text())["horizons"] == report["horizons"]

    with pytest.raises(ConfigError, match="offline_own_footage"):
        train_bc(BCConfig(demos=str(demos), out_dir=str(tmp_path / "x"), encoder={"name": "random", "pooling": "average"}, epochs=1,
                          offline_eval=True, offline_folds=2, offline_own_footage=True, ood=False))
