"""Probes: attention pooling finds a localized signal that average pooling dilutes; sweeps write their table and plot."""
import csv
import json

import numpy as np
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
