"""`toto-robot benchmark` (CortexBench's MetaWorld protocol): frame history and MLP shape of the BC policy,
and a fast=true run end to end that resumes without retraining."""
import csv
import json

import numpy as np
import pytest
import torch

from toto_robot.encoders import build_encoder
from toto_robot.policies.bc import history_index
from toto_robot.policies.policy import Policy, load_policy


def test_history_index_repeats_each_episodes_first_frame():
    idx = history_index([2, 3], 3)
    assert idx.tolist() == [[0, 0, 0], [0, 0, 1], [2, 2, 2], [2, 2, 3], [2, 3, 4]]
    assert history_index([4], 1).tolist() == [[0], [1], [2], [3]]


def test_policy_reads_the_last_three_frames_oldest_first_and_round_trips(tmp_path):
    torch.manual_seed(0)
    enc = build_encoder("random", pooling="average")
    policy = Policy(enc, state_dim=4, action_dim=4, history=3, hidden_sizes=[256, 256, 256], activation="relu").eval()
    linears = [m for m in policy.head.net if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [256, 256, 256, 4] and linears[0].in_features == 3 * 192 + 4
    assert isinstance(policy.head.net[1], torch.nn.ReLU)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    state = np.zeros(4, np.float32)
    with torch.no_grad():
        f = enc(frames)  # (4, F)
        want = [policy.act_from_features(torch.cat([f[a], f[b], f[c]])[None], torch.zeros(1, 4))[0].numpy()
                for a, b, c in ((0, 0, 0), (0, 0, 1), (0, 1, 2), (1, 2, 3))]
    policy.reset()
    got = [policy.act({"image": frames[i], "state": state}) for i in range(4)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-5)
    policy.reset()  # a new episode starts its history again
    np.testing.assert_allclose(policy.act({"image": frames[0], "state": state}), want[0], atol=1e-5)
    policy.save_pretrained(tmp_path / "p")
    again = load_policy(tmp_path / "p")
    assert again.history == 3 and again.hidden_sizes == [256, 256, 256] and again.activation == "relu"
    again.reset()
    np.testing.assert_allclose(again.act({"image": frames[0], "state": state}), want[0], atol=1e-5)


def test_act_batch_keeps_each_rollouts_history_and_action_chunk():
    torch.manual_seed(0)
    policy = Policy(build_encoder("random", pooling="average"), state_dim=4, action_dim=4, history=2, chunk=3, action_steps=2).eval()
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (2, 5, 64, 64, 3), dtype=np.uint8)  # two rollouts x five steps
    states = rng.normal(size=(2, 5, 4)).astype(np.float32)
    want = []
    for r in range(2):  # each rollout alone through act()
        policy.reset()
        want.append([policy.act({"image": frames[r, t], "state": states[r, t]}) for t in range(5)])
    memories = [policy.new_episode(), policy.new_episode()]
    for t in range(5):
        live = [0, 1] if t < 3 else [1]  # rollout 0 ends after three steps; rollout 1 goes on alone
        actions, feats = policy.act_batch([{"image": frames[r, t], "state": states[r, t]} for r in live], [memories[r] for r in live])
        assert actions.shape == (len(live), 4) and feats.shape == (len(live), 192)
        for r, a in zip(live, actions):
            np.testing.assert_allclose(a, want[r][t], atol=1e-5)
    with pytest.raises(ValueError, match="2 observations for 1"):
        policy.act_batch([{"image": frames[0, 0], "state": states[0, 0]}] * 2, [memories[0]])


@pytest.mark.slow
def test_fast_benchmark_writes_table_plots_protocol_and_resumes(tmp_path, monkeypatch):
    pytest.importorskip("metaworld", reason="metaworld (requirements/nodeps.txt)")
    from toto_robot.cli import main

    out = tmp_path / "bench"
    args = ["benchmark", "fast=true", f"out_dir={out}", f"demos_dir={tmp_path / 'demos'}", "encoders=[random]", "+protocol.eval_episodes=1",
            "+protocol.seeds=[100,200]", "workers=2", "eval_batch=2"]  # two runs in two spawned worker processes
    assert main(list(args)) == 0
    proto = json.loads((out / "protocol.json").read_text())["protocol"]
    assert proto["fast"] and proto["eval_episodes"] == 1 and proto["history"] == 3 and proto["hidden_sizes"] == [256, 256, 256] and proto["tasks"] == ["mw_button_press_topdown"]
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["encoder"], r["seed"], int(r["last_epoch"])) for r in rows] == [("random", "100", 2), ("random", "200", 2)]
    assert all(float(r["best_success"]) >= float(r["last_success"]) for r in rows)
    with open(out / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert {r["task"] for r in summary} == {"mw_button_press_topdown", "mean"}
    for r in summary:
        assert 0.0 <= float(r["best_ci_low"]) <= float(r["best_success"]) <= float(r["best_ci_high"]) <= 1.0
    for name in ("summary.md", "success.png", "curves.png", "protocol.md"):
        assert (out / name).stat().st_size > 0
    assert "best epoch" in (out / "summary.md").read_text()
    assert "eval_episodes 1 (CortexBench: 25)" in (out / "protocol.md").read_text()  # every cut from the protocol is named
    demos = json.loads(next((tmp_path / "demos").glob("*/summary.json")).read_text())
    assert demos["episodes"] == 2 and demos["success_rate"] == 1.0  # the scripted expert's successful episodes

    import toto_robot.policies.benchmark as bench

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(bench, "train_bc", no_training)
    assert main(list(args)) == 0  # resumes: every run is on disk
    from toto_robot.train.benchmark import encoder_specs
    from toto_robot.utils.config import ConfigError

    specs = {"toto": {"name": "toto", "checkpoint": "???"}, "random": {"name": "random"}}
    with pytest.raises(ConfigError, match="encoder_specs.toto.checkpoint"):
        encoder_specs({"encoders": ["toto"], "encoder_specs": specs})
    with pytest.raises(ConfigError, match="no entry in encoder_specs"):
        encoder_specs({"encoders": ["vc1"], "encoder_specs": specs})
