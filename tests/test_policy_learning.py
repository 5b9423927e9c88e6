"""The policy learner: ACT's temporal ensembling of action chunks, actions learnt relative to the state, robust state and
action scales, and the transformer head over frozen tokens (toto_robot/policies/{policy,heads,bc}.py)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

from toto_robot.data.demos import DemoMeta, DemoWriter
from toto_robot.encoders import build_encoder
from toto_robot.policies import load_policy
from toto_robot.policies.bc import BCConfig, relative_dims, robust_scale, train_bc
from toto_robot.policies.heads import ChunkTransformerHead
from toto_robot.policies.policy import EpisodeMemory, Policy
from toto_robot.utils.config import ConfigError

SIZE = 32


class StepHead(nn.Module):
    """A head whose chunk predicted at step t (the state's first value) reads 10 t + j for its j-th action: which chunk and
    which of its steps an executed action came from can be read off the number."""

    def __init__(self, chunk: int):
        super().__init__()
        self.chunk = chunk

    def forward(self, feats, state):
        return state[:, :1] * 10 + torch.arange(self.chunk, dtype=torch.float32)[None]  # (B, chunk), action_dim 1


def step_policy(chunk: int, m: float | None, action_steps: int = 1) -> Policy:
    policy = Policy(build_encoder("random", pooling="average"), state_dim=1, action_dim=1, chunk=chunk, action_steps=action_steps,
                    temporal_ensemble=m)
    policy.head = StepHead(chunk)
    return policy


def obs(t: int) -> dict:
    return {"image": np.zeros((SIZE, SIZE, 3), np.uint8), "state": np.array([t], np.float32)}


def test_temporal_ensembling_averages_every_chunk_that_covers_the_step_with_acts_weights():
    chunk, m = 3, 0.5
    policy = step_policy(chunk, m)
    got = [float(policy.act(obs(t))[0]) for t in range(6)]
    for t, value in enumerate(got):
        starts = list(range(max(0, t - chunk + 1), t + 1))  # the chunks predicted at these steps cover step t, oldest first
        w = np.exp(-m * np.arange(len(starts)))
        want = sum(wi * (10 * s + (t - s)) for wi, s in zip(w, starts)) / w.sum()
        assert value == pytest.approx(want, rel=1e-6), (t, got)
    assert got[0] == 0.0 and got[1] == pytest.approx((1 + math.exp(-0.5) * 10) / (1 + math.exp(-0.5)))
    policy.reset()  # a new episode forgets the chunks planned before
    assert float(policy.act(obs(7))[0]) == 70.0
    # m = 0 is the plain mean; without ensembling the first action_steps of each chunk run open loop
    assert float(step_policy(chunk, 0.0).act(obs(0))[0]) == 0.0
    plain = step_policy(chunk, None, action_steps=2)
    assert [float(plain.act(obs(t))[0]) for t in range(4)] == [0.0, 1.0, 20.0, 21.0]


def test_temporal_ensembling_gives_the_same_actions_one_rollout_at_a_time_and_in_lockstep():
    policy = step_policy(4, 0.1)
    single = [policy.act(obs(t)) for t in range(5)]
    memories = [policy.new_episode(), policy.new_episode()]
    lockstep = [policy.act_batch([obs(t), obs(t)], memories)[0] for t in range(5)]
    for a, b in zip(single, lockstep):
        np.testing.assert_array_equal(b[0], a)
        np.testing.assert_array_equal(b[1], a)
    mem = EpisodeMemory(history=1, chunk=2)
    mem.plans.append((0, np.array([[1.0], [2.0]], np.float32)))
    mem.step = 1
    assert mem.ensembled(0.0) == pytest.approx([2.0])
    with pytest.raises(ConfigError, match="action_steps"):
        step_policy(4, 0.1, action_steps=2)
    with pytest.raises(ConfigError, match="action_steps"):
        BCConfig(demos="x", out_dir="y", chunk=4, action_steps=2, temporal_ensemble=0.01)


def meta(action_space: str = "joint_position", state_dim: int = 4, action_dim: int = 4):
    return SimpleNamespace(state_dim=state_dim, action_dim=action_dim, action_space=action_space)


def test_auto_learns_relative_actions_where_the_state_predicts_them_and_keeps_a_commanded_gripper_absolute():
    rng = np.random.default_rng(0)
    joints = rng.uniform(-2, 2, (500, 3))
    width = rng.uniform(0, 0.04, (500, 1))
    state = torch.tensor(np.hstack([joints, width]), dtype=torch.float32)
    action = torch.tensor(np.hstack([joints + rng.normal(0, 0.05, (500, 3)), np.sign(rng.normal(size=(500, 1)))]), dtype=torch.float32)
    assert relative_dims("auto", meta(), action, state) == [0, 1, 2]  # joint targets track their joints; the +-1 gripper command does not
    assert relative_dims("relative", meta(), action, state) == [0, 1, 2, 3]
    assert relative_dims("absolute", meta(), action, state) == []
    assert relative_dims("auto", meta("ee_delta"), action, state) == []  # a simulator's delta actions are relative already
    assert relative_dims("auto", meta(state_dim=5), action, state) == []
    with pytest.raises(ConfigError, match="state's space"):
        relative_dims("relative", meta(state_dim=5), action, state)


def test_relative_targets_round_trip_to_the_actions():
    enc = build_encoder("random", pooling="average")
    policy = Policy(enc, 3, 2, chunk=2, action_mean=torch.tensor([0.1, 0.2]), action_std=torch.tensor([0.5, 2.0]), relative=[0])
    state = torch.randn(5, 3)
    chunks = torch.randn(5, 4)
    targets = policy.targets(chunks, state)
    want0 = (chunks.reshape(5, 2, 2)[..., 0] - state[:, :1] - 0.1) / 0.5  # dim 0: action - state, standardised
    torch.testing.assert_close(targets.reshape(5, 2, 2)[..., 0], want0)
    torch.testing.assert_close(policy.actions_from_outputs(targets, state), chunks)
    with pytest.raises(ConfigError, match="relative"):
        Policy(enc, 3, 2, relative=[0])  # tanh actions cannot be relative


def drift_demos(root, episodes: int = 8, T: int = 20, seed: int = 0, per_episode: bool = False):
    """A 2-joint arm whose joint targets are always the joint position plus a step set by the frame's colour (red: +0.2,
    blue: -0.2); every training episode stays within [0, 1], a third dim never moves (a resting joint). ``per_episode``: one
    colour for a whole episode and the joints moving steadily its way, so the coming steps of a chunk follow from the frame too."""
    rng = np.random.default_rng(seed)
    writer = DemoWriter(root, DemoMeta(source="ros", task="drift", image_size=(SIZE, SIZE), state_dim=3, action_dim=3, action_space="joint_position"))
    for _ in range(episodes):
        sign = np.full(T, rng.choice([-1.0, 1.0])) if per_episode else rng.choice([-1.0, 1.0], size=T)
        frames = np.zeros((T, SIZE, SIZE, 3), np.uint8)
        frames[sign > 0, ..., 0] = 255
        frames[sign < 0, ..., 2] = 255
        q = rng.uniform(0, 1, (T, 2)) if not per_episode else rng.uniform(0.3, 0.6, (1, 2)) + 0.01 * sign[:, None] * np.arange(T)[:, None]
        state = np.hstack([q, np.full((T, 1), 0.3)]).astype(np.float32)
        action = np.hstack([q + 0.2 * sign[:, None], np.full((T, 1), 0.3)]).astype(np.float32)
        writer.write_episode(frames, state, action)
    return root


def test_relative_actions_follow_the_joint_outside_the_training_range_and_a_resting_joint_cannot_blow_up(tmp_path, head="mlp"):
    demos = drift_demos(tmp_path / "demos")
    common = dict(demos=str(demos), encoder={"name": "random", "pooling": "average"}, epochs=60, lr=3e-3, val_fraction=0, ood=False, head=head,
                  d_model=32, layers=1)
    rel = load_policy(train_bc(BCConfig(out_dir=str(tmp_path / "rel"), **common)))
    ab = load_policy(train_bc(BCConfig(out_dir=str(tmp_path / "abs"), action_repr="absolute", **common)))
    assert rel.relative == [0, 1] and ab.relative == []  # the resting joint's target never moves: nothing to learn relative to
    red = np.zeros((SIZE, SIZE, 3), np.uint8)
    red[..., 0] = 255
    far = np.array([3.0, -2.0, 0.3], np.float32)  # joints far outside [0, 1]
    a_rel = rel.act({"image": red, "state": far})
    a_abs = ab.act({"image": red, "state": far})
    np.testing.assert_allclose(a_rel[:2], far[:2] + 0.2, atol=0.1)  # the step, added to wherever the joint is
    assert np.abs(a_abs[:2] - (far[:2] + 0.2)).max() > 1.0  # absolute targets stay near the training range
    # the resting joint moved 1e4 training stds in a held-out episode: the clipped input keeps every action finite and near
    rest = rel.act({"image": red, "state": np.array([0.5, 0.5, 50.0], np.float32)})
    assert np.isfinite(rest).all() and np.abs(rest[:2] - 0.7).max() < 0.5
    x = rel.state_input(torch.tensor([[0.5, 0.5, 50.0]]))
    assert float(x.abs().max()) == pytest.approx(rel.state_clip)


def test_robust_scale_floors_a_dim_that_does_not_move():
    x = torch.tensor(np.stack([np.linspace(0, 1, 50), np.linspace(0, 2, 50), np.full(50, 7.0)], 1), dtype=torch.float32)
    s = robust_scale(x, 0.1)
    std = x.double().std(0)
    assert s[0] == pytest.approx(float(std[0])) and s[1] == pytest.approx(float(std[1]))
    assert s[2] == pytest.approx(0.1 * float(std[0]), rel=1e-5)  # a tenth of the median moving dim's std (torch's lower median)
    assert float(robust_scale(torch.zeros(10, 2), 0.1)[0]) == 1.0  # nothing moves: unit scale


def test_transformer_head_reads_each_camera_and_cell_and_predicts_one_action_per_query():
    torch.manual_seed(0)
    head = ChunkTransformerHead(token_dim=8, n_tokens=4, state_dim=3, action_dim=2, chunk=5, d_model=16, layers=1, heads=2, dropout=0.0,
                                cameras=2, squash=False).eval()
    tokens = torch.randn(2, 8, 8)
    out = head(tokens, torch.randn(2, 3))
    assert out.shape == (2, 10)
    swapped = tokens.clone()
    swapped[:, [0, 4]] = tokens[:, [4, 0]]  # the same token content, from the other camera: the head tells them apart
    assert not torch.allclose(head(swapped, torch.zeros(2, 3)), head(tokens, torch.zeros(2, 3)))
    with pytest.raises(ValueError, match="2 camera"):
        head(torch.randn(2, 4, 8), torch.randn(2, 3))
    with pytest.raises(ConfigError, match="d_model"):
        ChunkTransformerHead(8, 4, 3, 2, 5, d_model=10, heads=4)


def test_transformer_head_policy_trains_with_ensembled_chunks_reloads_and_acts_alike(tmp_path):
    demos = drift_demos(tmp_path / "demos", episodes=6, per_episode=True)
    out = tmp_path / "bc"
    policy_dir = train_bc(BCConfig(demos=str(demos), out_dir=str(out), encoder={"name": "random", "pooling": "average"}, epochs=15, lr=3e-3,
                                   head="transformer", d_model=32, layers=1, chunk=4, temporal_ensemble=0.1, val_fraction=0.2))
    rows = (out / "metrics.csv").read_text().splitlines()[1:]
    first, last = (float(r.split(",")[1]) for r in (rows[0], rows[-1]))
    assert last < 0.5 * first
    policy, again = load_policy(policy_dir), load_policy(policy_dir)
    assert policy.head_kind == "transformer" and policy.temporal_ensemble == 0.1 and policy.chunk == 4 and policy.n_tokens == 64  # 8 x 8 tokens of the random encoder's 64 px input
    states = np.random.default_rng(1).uniform(0, 1, (6, 3)).astype(np.float32)
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    for s in states:  # the same actions after a reload, step by step through the ensemble
        np.testing.assert_array_equal(policy.act({"image": image, "state": s}), again.act({"image": image, "state": s}))
    assert (policy_dir.parent.parent / "bc" / "result.json").is_file()
    with pytest.raises(ConfigError, match="history"):
        BCConfig(demos="x", out_dir="y", head="transformer", history=3)


@pytest.mark.parametrize("head", ["mlp", "transformer"])
def test_a_two_camera_policy_learns_from_both_views_and_evaluates_with_both(tmp_path, head):
    from toto_robot.policies.evaluate import evaluate_policy
    from toto_robot.sim_envs.collect import CollectConfig, collect

    demos = collect(CollectConfig(task="franka_pick", episodes=2, out_dir=str(tmp_path / "demos"), image_size=32, cameras=["wrist"],
                                  videos=False, preview_episodes=0, max_steps=12))
    from toto_robot.data.demos import DemoDataset

    ep = DemoDataset(demos)[0]
    assert ep["wrist_image"].shape == ep["image"].shape and not np.array_equal(ep["wrist_image"], ep["image"])
    cfg = dict(demos=str(demos), encoder={"name": "random", "pooling": "average"}, epochs=2, val_fraction=0, ood=True, head=head, d_model=32, layers=1,
               cameras=["image", "wrist_image"], chunk=3, temporal_ensemble=0.01)
    policy = load_policy(train_bc(BCConfig(out_dir=str(tmp_path / "bc"), **cfg)))
    assert policy.cameras == ["image", "wrist_image"]
    obs = {"image": ep["image"][0], "wrist_image": ep["wrist_image"][0], "state": ep["state"][0]}
    action, feats = policy.act_with_features(obs)
    assert action.shape == (4,) and feats.shape == (2 * policy.encoder.feature_dim,)  # each camera pooled alone
    policy.reset()
    swapped = policy.act({**obs, "wrist_image": ep["wrist_image"][5]})
    assert not np.allclose(swapped, action)  # the wrist view reaches the action
    with pytest.raises(Exception, match="wrist_image"):
        policy.act({"image": obs["image"], "state": obs["state"]})
    result = evaluate_policy(policy, "franka_pick", episodes=1, progress=False)  # the env renders both views for it
    assert result["episodes"] == 1
    with pytest.raises(Exception, match="left_image"):
        train_bc(BCConfig(out_dir=str(tmp_path / "bad"), **{**cfg, "cameras": ["image", "left_image"]}))


def test_shifted_copies_move_each_frame_within_the_shift_and_training_reads_them(tmp_path):
    from toto_robot.policies.bc import augmented_tokens, demo_tokens, shift_frames

    frame = np.zeros((1, 16, 16, 3), np.uint8)
    frame[0, 8, 8] = 255  # one bright pixel
    moved = shift_frames(np.repeat(frame, 50, 0), 2, np.random.default_rng(0))
    where = np.array([np.argwhere(m[..., 0] == 255)[0] for m in moved])  # (50, 2) row, col
    assert np.abs(where - 8).max() == 2 and len({tuple(w) for w in where}) > 10  # every shift within 2 px, many of them
    assert (moved.astype(int).sum(axis=(1, 2, 3)) == 3 * 255).all()  # nothing else enters: edge pixels repeat the black border
    rng = np.random.default_rng(0)
    demos = tmp_path / "demos"
    writer = DemoWriter(demos, DemoMeta(source="ros", task="noise", image_size=(SIZE, SIZE), state_dim=2, action_dim=2, action_space="joint_position"))
    for _ in range(3):  # frames of noise: any shift changes them
        writer.write_episode(rng.integers(0, 256, (5, SIZE, SIZE, 3), dtype=np.uint8), rng.normal(size=(5, 2)).astype(np.float32),
                             rng.normal(size=(5, 2)).astype(np.float32))
    cfg = BCConfig(demos=str(demos), out_dir=str(tmp_path / "bc"), encoder={"name": "random", "pooling": "average"}, augment=2, epochs=2,
                   token_cache=str(tmp_path / "cache"), val_fraction=0, ood=False)
    enc = build_encoder("random", pooling="average")
    from toto_robot.data.formats import open_demos

    ds = open_demos(demos)
    eps = [ds[i] for i in range(len(ds))]
    copies = augmented_tokens(enc, eps, cfg)
    clean = demo_tokens(enc, eps, cfg)
    assert len(copies) == 2 and all(c[0].shape == clean[0].shape for c in copies)
    assert not torch.equal(copies[0][0], clean[0]) and not torch.equal(copies[0][0], copies[1][0])
    again = augmented_tokens(enc, eps, cfg)  # from the cache, and the same shifts: seeded by the copy alone
    assert torch.equal(again[1][2], copies[1][2])
    load_policy(train_bc(cfg))  # trains on [3, F, N, C] tokens


def velocity_demos(root, episodes: int = 12, T: int = 20, seed: int = 0):
    """Joints moving at a steady speed set per episode (frames all alike: the picture says nothing); each joint target leads
    its joint by 3 steps of that speed, as a position controller's target leads a moving arm."""
    rng = np.random.default_rng(seed)
    writer = DemoWriter(root, DemoMeta(source="ros", task="lead", image_size=(SIZE, SIZE), state_dim=2, action_dim=2, action_space="joint_position"))
    for _ in range(episodes):
        v = rng.uniform(-0.05, 0.05, 2)
        q = rng.uniform(0, 1, 2) + v * np.arange(T)[:, None]
        writer.write_episode(np.zeros((T, SIZE, SIZE, 3), np.uint8), q.astype(np.float32), (q + 3 * v).astype(np.float32))
    return root


def test_state_history_lets_the_head_read_the_joints_velocity_in_training_and_when_acting(tmp_path):
    from toto_robot.policies.policy import with_motion

    s = torch.tensor([[[0.0, 1.0], [0.5, 1.0], [2.0, 4.0]]])  # one row, 3 states oldest first
    torch.testing.assert_close(with_motion(s), torch.tensor([[2.0, 4.0, 1.5, 3.0, 2.0, 3.0]]))  # s_t, s_t - s_t-1, s_t - s_t-2
    demos = velocity_demos(tmp_path / "demos")
    common = dict(demos=str(demos), encoder={"name": "random", "pooling": "average"}, epochs=150, lr=3e-3, val_fraction=0, ood=False,
                  action_repr="relative")
    one = load_policy(train_bc(BCConfig(out_dir=str(tmp_path / "one"), **common)))
    two = load_policy(train_bc(BCConfig(out_dir=str(tmp_path / "two"), state_history=2, **common)))
    assert two.state_history == 2 and two.state_mean.shape == (4,) and one.state_history == 1
    v = np.array([0.04, -0.03], np.float32)  # an episode it never saw, stepped through act() as evaluate and the ROS node do
    q = np.array([0.4, 0.6], np.float32) + v * np.arange(10, dtype=np.float32)[:, None]
    err = {}
    for name, pol in (("one", one), ("two", two)):
        pol.reset()
        acts = np.stack([pol.act({"image": np.zeros((SIZE, SIZE, 3), np.uint8), "state": q[t]}) for t in range(10)])
        err[name] = np.abs(acts[1:] - (q[1:] + 3 * v)).mean()  # from the second step on, two states show the speed
    assert err["two"] < 0.02 < err["one"], err
