"""Probes: attention pooling finds a localized signal that average pooling dilutes; sweeps write their table and plot."""
import csv
import json

import numpy as np
import pytest
import torch

from helpers import tiny_toto_run
from toto_robot.encoders import build_encoder
from toto_robot.probes import layer_sweep, shapes_motion_data, train_probe


def localized_tokens(n, classes=4, tokens=16, dim=16, seed=0):
    """Each sample: noise tokens plus one 'object' token (marked by feature 0) whose direction gives the class."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, tokens, dim, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    where = torch.randint(0, tokens, (n,), generator=g)
    x[torch.arange(n), where, 0] = 6.0  # the marker a query can attend to
    x[torch.arange(n), where, 1 + y] += 4.0
    return x, y


def test_attention_probe_beats_average_on_a_localized_signal():
    xtr, ytr = localized_tokens(512)
    xva, yva = localized_tokens(256, seed=1)
    att = train_probe(xtr, ytr, xva, yva, 4, pooling="attention", epochs=40)
    avg = train_probe(xtr, ytr, xva, yva, 4, pooling="average", epochs=40)
    assert att.val_acc > 0.9
    assert att.val_acc > avg.val_acc + 0.1
    assert att.history[-1]["loss"] < 0.5 * att.history[0]["loss"]
    assert len(att.val_correct) == 256 and np.mean(att.val_correct) == att.val_acc  # per-image outcomes for paired tests


def test_probe_is_near_chance_on_shuffled_labels():
    xtr, ytr = localized_tokens(256)
    xva, yva = localized_tokens(256, seed=1)
    res = train_probe(xtr, ytr[torch.randperm(256)], xva, yva, 4, pooling="average", epochs=20)
    assert res.val_acc < 0.45


def test_layer_sweep_over_a_toto_encoder_writes_csv_png_and_best_layer(tmp_path):
    enc = build_encoder("toto", checkpoint=str(tiny_toto_run(tmp_path, n_layer=3)))
    data = shapes_motion_data(n_train=48, n_val=24, num_frames=2, size=32)
    assert data.x_train.shape == (48, 2, 32, 32, 3) and set(np.unique(data.y_train)) <= {0, 1, 2, 3}
    rows = layer_sweep(enc, data, epochs=3, out_dir=tmp_path / "sweep")
    assert [(r["layer"], r["pooling"]) for r in rows] == [(l, p) for p in ("attention", "average") for l in (1, 2, 3)]
    with open(tmp_path / "sweep" / "layer_sweep.csv") as f:
        assert len(list(csv.DictReader(f))) == 6
    best = json.loads((tmp_path / "sweep" / "result.json").read_text())["best"]
    assert set(best) == {"attention", "average"} and 1 <= best["attention"]["layer"] <= 3
    assert (tmp_path / "sweep" / "layer_sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_label_propagation_with_perfect_features_recovers_the_masks_and_random_features_do_not():
    from toto_robot.probes.label_propagation import jaccard, segment, shapes_videos, soft_labels

    frames, masks = shapes_videos(n=1, num_frames=6, size=32, seed=3)[0]
    k = int(masks.max())
    # "perfect" tokens: each token's feature is its true label distribution (plus noise)
    g = torch.Generator().manual_seed(0)
    perfect = torch.stack([soft_labels(m, k + 1, 16).T for m in masks]) + 0.01 * torch.randn(6, 256, k + 1, generator=g)
    pred = segment(perfect, masks[0], k, 32)
    j_good = np.mean([jaccard(pred[t], masks[t], k) for t in range(1, 6)])
    noise = torch.randn(6, 256, 16, generator=g)
    pred = segment(noise, masks[0], k, 32)
    j_bad = np.mean([jaccard(pred[t], masks[t], k) for t in range(1, 6)])
    assert j_good > 0.8 and j_good > j_bad + 0.3


def test_label_propagation_sweep_over_an_encoder(tmp_path):
    from toto_robot.probes.label_propagation import propagation_sweep, shapes_videos

    enc = build_encoder("toto", checkpoint=str(tiny_toto_run(tmp_path, n_layer=2)))
    rows = propagation_sweep(enc, shapes_videos(n=2, num_frames=3, size=32), out_dir=tmp_path / "lp")
    assert [r["layer"] for r in rows] == [1, 2] and all(0 <= r["J"] <= 1 for r in rows)
    assert (tmp_path / "lp" / "label_propagation.png").is_file()


def test_image_folder_dataset_splits_per_class_and_skips_broken_files(tmp_path):
    from PIL import Image

    from toto_robot.probes import image_folder_data

    for c, colour in enumerate([(200, 30, 30), (30, 30, 200)]):
        d = tmp_path / f"class{c}"
        d.mkdir()
        for i in range(5):
            Image.fromarray(np.full((40, 50, 3), colour, np.uint8)).save(d / f"{i}.png")
    (tmp_path / "class0" / "broken.jpg").write_bytes(b"not an image")
    data = image_folder_data(str(tmp_path), image_size=32, val_fraction=0.2)
    assert data.classes == ["class0", "class1"]
    assert data.x_train.shape == (8, 32, 32, 3) and data.x_val.shape == (2, 32, 32, 3)
    assert sorted(data.y_val.tolist()) == [0, 1]
    assert data.x_train[data.y_train == 1][..., 2].mean() > 150  # the blue class is blue


def test_sim_position_labels_cover_the_grid_for_pick_and_cabinet():
    from toto_robot.probes import sim_probe_data

    for task in ("kuka_pick", "franka_cabinet"):
        data = sim_probe_data(task, "position", n_train=30, n_val=10, image_size=32, seed=1)
        assert data.x_train.shape == (30, 32, 32, 3) and data.num_classes == 9
        assert len(np.unique(np.concatenate([data.y_train, data.y_val]))) >= 4  # spread over the grid, not one bin


def test_offset_probe_labels_where_the_cube_sits_relative_to_the_gripper():
    from toto_robot.probes import sim_probe_data
    from toto_robot.probes.datasets import OFFSET_EDGE
    from toto_robot.sim_envs import make_env
    from toto_robot.sim_envs.experts import _toward

    data = sim_probe_data("franka_pick", "offset", n_train=24, n_val=8, image_size=32, seed=2, camera="wrist")
    assert data.x_train.shape == (24, 32, 32, 3) and data.classes[4] == "dx0dy0"
    assert len(np.unique(np.concatenate([data.y_train, data.y_val]))) >= 5
    # the label of the first image, recomputed from the same seeded episode: the cube's offset from the gripper, binned
    env = make_env("franka_pick", image_size=32, camera="wrist", randomization={"lighting": True, "colors": False, "camera_jitter": 0.005})
    base, rng = env.unwrapped, np.random.default_rng(2)
    env.reset(seed=2 * 100_003)
    goal = base.task.cube_pos(base) + [rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03), rng.uniform(0.04, 0.12)]
    for _ in range(40):
        env.step(_toward(base, goal, -1))
        if np.linalg.norm(base.grip_pos() - goal) < 0.003:
            break
    dx, dy = (base.task.cube_pos(base) - base.grip_pos())[:2]
    env.close()
    assert data.y_train[0] == 3 * (int(dx > -OFFSET_EDGE) + int(dx > OFFSET_EDGE)) + int(dy > -OFFSET_EDGE) + int(dy > OFFSET_EDGE)
    with pytest.raises(ValueError, match="needs a pick task"):
        sim_probe_data("franka_cabinet", "offset", n_train=2, n_val=1, image_size=32)


def test_mcnemar_exact_matches_the_binomial_reference():
    from toto_robot.utils.stats import mcnemar_exact

    a = [1] * 10 + [0] * 2 + [1] * 30 + [0] * 8   # 10 only A, 2 only B, 30 both, 8 neither
    b = [0] * 10 + [1] * 2 + [1] * 30 + [0] * 8
    res = mcnemar_exact(a, b)
    assert (res["a_only"], res["b_only"], res["a"], res["b"], res["n"]) == (10, 2, 40, 32, 50)
    assert res["p"] == pytest.approx(2 * (1 + 12 + 66) / 2 ** 12)  # 2 * P(X <= 2), X ~ Bin(12, 1/2)
    assert mcnemar_exact(b, a)["p"] == res["p"] and mcnemar_exact(a, a)["p"] == 1.0
    with pytest.raises(ValueError, match="same items"):
        mcnemar_exact(a, b[:-1])
