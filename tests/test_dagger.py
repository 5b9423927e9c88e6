"""DAgger (toto_robot/policies/dagger.py): the policy's own rollouts labelled by the scripted expert, BC again on the union."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from toto_robot.data.formats import open_demos
from toto_robot.policies import load_policy
from toto_robot.policies import bc as bc_module
from toto_robot.policies.bc import BCConfig, load_demo_arrays
from toto_robot.policies.dagger import DAGGER_SEED_OFFSET, expert_labelled_rollouts, train_policy_bc
from toto_robot.sim_envs import make_env
from toto_robot.sim_envs.collect import CollectConfig, collect
from toto_robot.sim_envs.experts import make_expert
from toto_robot.utils.config import ConfigError


def test_dagger_rounds_add_expert_labelled_rollouts_and_train_on_every_folder(tmp_path, monkeypatch):
    demos = collect(CollectConfig(task="franka_pick", episodes=3, out_dir=str(tmp_path / "demos"), image_size=32, randomization={},
                                  cameras=["wrist"], videos=False, preview_episodes=0, max_steps=30))
    encoded = []  # frames encoded, per call: the demos once, then only each round's own
    real = bc_module.cached_encoder_tokens
    monkeypatch.setattr(bc_module, "cached_encoder_tokens",
                        lambda enc, frames, cache, identity, desc=None: real(enc, lambda: encoded.append(len(frames())) or frames(), cache, identity, desc))
    out = tmp_path / "run"
    cfg = BCConfig(demos=str(demos), out_dir=str(out), encoder={"name": "random", "pooling": "average", "img_size": 32}, epochs=2,
                   cameras=["image", "wrist_image"], dagger_rounds=2, dagger_episodes=2, token_cache=str(tmp_path / "cache"), ood=False)
    policy_dir = train_policy_bc(cfg)

    assert policy_dir == out / "policy" and (out / "dagger" / "round_0" / "policy").is_dir() and (out / "dagger" / "round_1" / "policy").is_dir()
    demo_frames = 3 * 30
    assert encoded[:2] == [demo_frames, demo_frames]  # round 0: both cameras of the demonstrations
    assert all(n == 2 * 30 for n in encoded[2:]) and len(encoded) == 2 + 2 * 2  # rounds 1 and 2: their own two rollouts, two cameras
    with open(out / "dagger.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["round"]) for r in rows] == [1, 2] and all(int(r["episodes"]) == 2 and int(r["frames"]) == 60 for r in rows)
    record = json.loads((out / "dagger.json").read_text())
    assert record["demos"] == [str(demos), str(out / "dagger" / "round_1" / "demos"), str(out / "dagger" / "round_2" / "demos")]
    assert json.loads((out / "result.json").read_text())["episodes"] == 3 + 2 + 2  # the last policy read every folder

    # every recorded action is what the scripted expert does in that state: replay one rollout's seed with the policy that drove it
    round1 = open_demos(out / "dagger" / "round_1" / "demos")
    ep = round1[0]
    assert set(ep) >= {"image", "wrist_image", "state", "action"} and int(ep["seed"]) == DAGGER_SEED_OFFSET + 0 * 10_000 + 1000
    policy = load_policy(out / "dagger" / "round_0" / "policy")
    env = make_env("franka_pick", image_size=32, camera="agentview", extra_cameras=["wrist"], max_steps=30)
    obs, _ = env.reset(seed=int(ep["seed"]))
    expert = make_expert(env, noise=0.0, memoryless=True)
    policy.reset()
    for t in range(len(ep["action"])):
        assert np.allclose(obs["state"], ep["state"][t]) and np.array_equal(obs["wrist_image"], ep["wrist_image"][t])
        assert np.allclose(expert.act(obs), ep["action"][t])
        obs, *_ = env.step(policy.act(obs))
    env.close()

    # a second call resumes: nothing is rolled out or trained again for the finished rounds
    before = len(encoded)
    monkeypatch.setattr("toto_robot.policies.dagger.expert_labelled_rollouts",
                        lambda policy, task, episodes, seed, out, meta, memoryless: pytest.fail("round rolled out again")
                        if len(open_demos(out)) < episodes else expert_labelled_rollouts(policy, task, episodes, seed, out, meta, memoryless))
    train_policy_bc(cfg)
    assert len(encoded) == before  # every folder's tokens came from the cache


def test_demos_as_a_list_of_folders_must_share_one_space(tmp_path):
    from toto_robot.data.demos import DemoMeta, DemoWriter

    a = collect(CollectConfig(task="franka_pick", episodes=2, out_dir=str(tmp_path / "a"), image_size=32, randomization={}, videos=False,
                              preview_episodes=0, max_steps=10))
    meta, eps = load_demo_arrays([str(a), str(a)], max_episodes=3)
    assert len(eps) == 3 and meta.task == "franka_pick" and np.array_equal(eps[2]["action"], eps[0]["action"])
    other = DemoWriter(tmp_path / "b", DemoMeta(source="ros", task="franka_pick", image_size=(32, 32), state_dim=meta.state_dim + 1,
                                                action_dim=meta.action_dim, action_space=meta.action_space))
    other.write_episode(np.zeros((4, 32, 32, 3), np.uint8), np.zeros((4, meta.state_dim + 1), np.float32), np.zeros((4, meta.action_dim), np.float32))
    with pytest.raises(Exception, match=r"state_dim=.*must share one space"):
        load_demo_arrays([str(a), str(tmp_path / "b")])
    with pytest.raises(ConfigError, match="policy.dagger_rounds"):
        BCConfig(demos="x", out_dir="y", dagger_rounds=-1)
    with pytest.raises(ConfigError, match="policy.dagger_expert"):
        BCConfig(demos="x", out_dir="y", dagger_expert="oracle")


@pytest.mark.parametrize("task", ["franka_pick", "kuka_cabinet"])
def test_dart_collection_stores_the_clean_expert_action_at_every_state_the_noisy_expert_reached(tmp_path, task):
    """collect.label=expert (DART, Laskey et al. 2017): the noisy expert drives, and each stored action is the clean memoryless
    expert's in that state. Replaying an episode's seed with the noise it was driven by passes through every stored state, and
    at each one the stored action is the clean expert's, which the executed (noisy) action is not; with collect.noise_all the
    noise also reaches the steps at the object."""
    cfg = dict(task=task, episodes=2, image_size=32, randomization={}, videos=False, preview_episodes=0, max_steps=40, noise=0.3)
    dart = open_demos(collect(CollectConfig(**cfg, out_dir=str(tmp_path / "dart"), label="expert", noise_all=True)))
    assert dart.meta.extra["label"] == "expert" and dart.meta.extra["noise_all"] is True
    env = make_env(task, image_size=32, camera="agentview", randomization={}, max_steps=40)
    differs = 0
    for i in range(len(dart)):
        ep = dart[i]
        seed = int(ep["seed"])
        obs, _ = env.reset(seed=seed)
        driver = make_expert(env, noise=0.3, rng=np.random.default_rng(seed), memoryless=True, noise_all=True)
        clean = make_expert(env, memoryless=True)
        for t in range(len(ep["action"])):
            assert np.allclose(obs["state"], ep["state"][t]) and np.array_equal(obs["image"], ep["image"][t])
            label = clean.act(obs)
            assert np.allclose(label, ep["action"][t])
            executed = driver.act(obs)
            differs += not np.allclose(executed, label)
            obs, *_ = env.step(executed)
    env.close()
    assert differs > 0.8 * sum(len(dart[i]["action"]) for i in range(len(dart)))  # noise on (nearly) every step
    # the default stores what was executed: the noisy actions themselves
    plain = open_demos(collect(CollectConfig(**cfg, out_dir=str(tmp_path / "plain"))))
    n = min(len(plain[0]["action"]), len(dart[0]["action"]))
    assert "label" not in plain.meta.extra and not np.allclose(plain[0]["action"][:n], dart[0]["action"][:n])
    with pytest.raises(ConfigError, match="collect.label"):
        CollectConfig(label="oracle")
    with pytest.raises(ConfigError, match="collect.mode=expert"):
        CollectConfig(label="expert", mode="random")
