"""Policies on frozen encoders: BC learns the expert's drawer-opening from pixels, PPO runs and reloads,
the comparison harness gives every encoder the same budget, and evaluation intervals are right."""
import json
from dataclasses import replace

import numpy as np
import pytest

from toto_robot.encoders.base import FrameFormatError
from toto_robot.policies import load_policy, wilson_interval
from toto_robot.policies.bc import BCConfig, train_bc
from toto_robot.policies.compare import CompareConfig, compare
from toto_robot.policies.evaluate import close_envs, evaluate_policy
from toto_robot.policies.policy import Policy
from toto_robot.sim_envs.collect import CollectConfig, collect
from toto_robot.utils.config import ConfigError

pytestmark = pytest.mark.xdist_group("policies")  # one worker collects the shared demonstrations once


@pytest.fixture(scope="module")
def cabinet_demos(tmp_path_factory):
    out = tmp_path_factory.mktemp("demos") / "franka_cabinet"
    collect(CollectConfig(task="franka_cabinet", episodes=30, out_dir=str(out), image_size=64, noise=0.1, videos=False))
    return out


def test_wilson_interval_matches_reference_values():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27754), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-4)
    assert wilson_interval(20, 20) == pytest.approx((0.83887, 1.0), abs=1e-4)
    assert wilson_interval(90, 90)[1] == 1.0 and wilson_interval(0, 90)[0] == 0.0  # exact: 1 - 1e-16 broke the success plot


def test_bc_on_frozen_encoder_opens_the_drawer_and_reloads(cabinet_demos, tmp_path):
    policy_dir = train_bc(BCConfig(demos=str(cabinet_demos), out_dir=str(tmp_path / "bc"), encoder={"name": "random", "pooling": "average"},
                                   epochs=25, lr=3e-3))
    result = json.loads((tmp_path / "bc" / "result.json").read_text())
    assert 1 <= result["best_epoch"] <= 25
    rows = (tmp_path / "bc" / "metrics.csv").read_text().splitlines()[1:]
    first, last = (float(r.split(",")[1]) for r in (rows[0], rows[-1]))
    assert last < 0.5 * first
    assert (tmp_path / "bc" / "loss_curve.png").is_file()
    policy = load_policy(policy_dir)
    result = evaluate_policy(policy, "franka_cabinet", episodes=6, progress=False)
    assert result["successes"] >= 4, result  # measured 9/10 with 60 demos; random actions never open it
    lockstep = evaluate_policy(policy, "franka_cabinet", episodes=6, progress=False, batch=4)  # groups of 4 and 2 envs
    assert lockstep["per_episode"] == result["per_episode"]  # the same seeded episodes, one batched encoder pass per step
    assert lockstep["mean_return"] == pytest.approx(result["mean_return"], rel=0.02)
    pool: list = []  # environments kept between evaluations (BC's eval_every): the same seeded episodes every time
    reused = [evaluate_policy(policy, "franka_cabinet", episodes=3, progress=False, batch=2, env_pool=pool) for _ in range(2)]
    assert len(pool) == 2 and reused[0]["per_episode"] == reused[1]["per_episode"] == lockstep["per_episode"][:3]
    assert reused[1]["mean_return"] == pytest.approx(reused[0]["mean_return"], rel=0.02)
    with pytest.raises(ValueError, match="env_pool holds"):
        evaluate_policy(policy, "franka_pick", episodes=1, progress=False, env_pool=pool)
    close_envs(pool)
    assert pool == []
    obs = {"image": np.zeros((64, 64, 3), np.uint8), "state": np.zeros(19, np.float32)}
    again = load_policy(policy_dir)
    np.testing.assert_array_equal(policy.act(obs), again.act(obs))
    with pytest.raises(FrameFormatError, match="state"):
        policy.act({"image": obs["image"], "state": np.zeros(7, np.float32)})
    with pytest.raises(FrameFormatError, match="uint8"):
        policy.act({"image": obs["image"].astype(np.float32), "state": obs["state"]})


@pytest.mark.parametrize("vec_env,cache_tokens,train_pool", [("dummy", True, True), ("subproc", True, True), ("dummy", False, False)])
def test_ppo_trains_on_frozen_features_and_reloads(tmp_path, vec_env, cache_tokens, train_pool):
    from toto_robot.policies.ppo import PPOConfig, train_ppo

    policy_dir = train_ppo(PPOConfig(task="franka_cabinet", out_dir=str(tmp_path / "ppo"), image_size=32, total_timesteps=256, n_envs=2, n_steps=64,
                                     batch_size=64, n_epochs=1, eval_episodes=1, net_arch=(32, 32), vec_env=vec_env, cache_tokens=cache_tokens,
                                     train_pool=train_pool, ood_episodes=0))  # the OOD reference's rollouts: tests/test_ood.py
    result = json.loads((tmp_path / "ppo" / "result.json").read_text())
    assert result["eval"]["episodes"] == 1 and result["timesteps"] == 256
    # two envs of 128 steps each: one 70-step episode ended in each, both in the learning curve
    assert len(list((tmp_path / "ppo" / "monitor").glob("*.monitor.csv"))) == 2 and result["episodes"] == 2
    assert (tmp_path / "ppo" / "learning_curve.png").is_file() and not (policy_dir / "ood.safetensors").exists()  # ood_episodes=0: none
    policy = load_policy(policy_dir)
    a = policy.act({"image": np.zeros((32, 32, 3), np.uint8), "state": np.zeros(19, np.float32)})
    # frozen means frozen: the backbone after PPO equals the untrained random encoder it started from
    import torch

    from toto_robot.encoders import build_encoder, load_encoder

    before, after = build_encoder("random"), load_encoder(policy_dir / "encoder")
    after_sd = after.state_dict()
    for k, v in before.state_dict().items():
        if not k.startswith("pool."):
            torch.testing.assert_close(after_sd[k], v, rtol=0, atol=0)
    pool_moved = any(not torch.equal(after_sd[k], v) for k, v in before.state_dict().items() if k.startswith("pool."))
    assert pool_moved == train_pool  # the pool trains with the actor-critic, unless train_pool=False
    assert a.shape == (4,) and np.all(np.abs(a) <= 1)


def test_frozen_tokens_wrapper_feeds_ppo_the_same_features_as_encoding_inside_the_extractor(tmp_path):
    import torch
    from stable_baselines3.common.env_util import make_vec_env

    from toto_robot.encoders import build_encoder, load_encoder
    from toto_robot.policies.ppo import TOKENS, FrozenEncoderExtractor, FrozenTokenExtractor, FrozenTokens

    build_encoder("random", pooling="spatial_attention").save_pretrained(tmp_path / "enc")
    venv = make_vec_env("toto_robot.sim_envs:TotoRobot/FrankaReach-v0", n_envs=2, seed=0, env_kwargs={"image_size": 32, "max_steps": 3})
    wrapped = FrozenTokens(venv, load_encoder(tmp_path / "enc"))
    raw = {k: np.stack([e.reset(seed=i)[0][k] for i, e in enumerate(venv.envs)]) for k in ("image", "state")}
    inside = FrozenEncoderExtractor(venv.observation_space, str(tmp_path / "enc"))
    cached = FrozenTokenExtractor(wrapped.observation_space, str(tmp_path / "enc"))
    with torch.no_grad():
        a = inside({k: torch.from_numpy(v) for k, v in raw.items()})
        b = cached({k: torch.from_numpy(v) for k, v in wrapped._convert(raw).items()})
    assert a.shape == b.shape == (2, inside.features_dim)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    obs = wrapped.reset()
    assert set(obs) == {TOKENS, "state"} and obs[TOKENS].shape == (2, *wrapped.observation_space[TOKENS].shape)
    for _ in range(3):  # 3-step episodes: the last step hands back terminal observations, as tokens too
        obs, _, dones, infos = wrapped.step(np.zeros((2, 4), np.float32))
    assert dones.all() and all(info["terminal_observation"][TOKENS].shape == obs[TOKENS].shape[1:] for info in infos)
    wrapped.close()


def test_compare_gives_every_encoder_the_same_budget_and_resumes(cabinet_demos, tmp_path):
    cfg = CompareConfig(tasks=["franka_cabinet"], encoders={"avg": {"name": "random", "pooling": "average"},
                                                            "attn": {"name": "random", "pooling": "attention"}},
                        demos={"franka_cabinet": str(cabinet_demos)}, out_dir=str(tmp_path / "cmp"), seeds=[0], eval_episodes=2,
                        bc={"epochs": 2, "max_episodes": 6})
    out = compare(cfg)
    table = (out / "summary.md").read_text()
    assert "| avg |" in table and "| attn |" in table
    for label in ("avg", "attn"):
        bc = json.loads((out / "runs/franka_cabinet" / label / "seed0/bc_config.json").read_text())
        assert bc["epochs"] == 2 and bc["max_episodes"] == 6
    assert (out / "success.png").is_file() and (out / "learning_curves.png").is_file()
    assert len(list((out / "token_cache").glob("tokens-*.safetensors"))) == 1  # two poolings of one frozen backbone: one feature pass
    ev = json.loads((out / "runs/franka_cabinet/avg/seed0/eval.json").read_text())
    assert len(ev["per_episode"]) == 2 and sum(ev["per_episode"]) == ev["successes"]  # seeded episodes, paired across encoders
    stamp = (out / "runs/franka_cabinet/avg/seed0/eval.json").stat().st_mtime_ns
    compare(cfg)
    assert (out / "runs/franka_cabinet/avg/seed0/eval.json").stat().st_mtime_ns == stamp
    # finished runs were scored in the plain scene: a shifted evaluation must not be mixed into this folder
    with pytest.raises(ConfigError, match=r"eval_randomization=\{\}.*eval_shift.py"):
        compare(CompareConfig(**{**cfg.__dict__, "eval_randomization": {"distractors": 3}}))
    with pytest.raises(ConfigError, match="eval_randomization has no field 'colours'"):
        compare(CompareConfig(**{**cfg.__dict__, "eval_randomization": {"colours": True}}))
    assert (out / "runs/franka_cabinet/avg/seed0/eval.json").stat().st_mtime_ns == stamp


def test_evaluate_shows_the_policy_the_randomized_scene_it_is_asked_for():
    seen = {}

    def looker(name):
        def act(obs):
            seen.setdefault(name, obs["image"].copy())
            return np.zeros(4, np.float32)
        return act

    for name, rnd in (("plain", None), ("again", {}), ("colours", {"colors": True}), ("boxes", {"distractors": 3})):
        evaluate_policy(looker(name), "franka_reach", episodes=1, seed=0, image_size=32, randomization=rnd, progress=False)
    assert np.array_equal(seen["plain"], seen["again"])  # the same seeded episode, the same frame
    assert not np.array_equal(seen["plain"], seen["colours"]) and not np.array_equal(seen["plain"], seen["boxes"])


def test_compare_with_demo_counts_trains_on_the_first_n_demos_and_plots_success_against_them(cabinet_demos, tmp_path):
    cfg = CompareConfig(tasks=["franka_cabinet"], encoders={"rand": {"name": "random", "pooling": "attention"}},
                        demos={"franka_cabinet": str(cabinet_demos)}, out_dir=str(tmp_path / "cmp"), seeds=[0], eval_episodes=2,
                        bc={"epochs": 1}, demo_counts=[3, 5])
    out = compare(cfg)
    for n in (3, 5):
        assert json.loads((out / f"runs/franka_cabinet/rand/demos{n}/seed0/result.json").read_text())["episodes"] == n
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0].startswith("task,encoder,demos") and [r.split(",")[2] for r in rows[1:]] == ["3", "5"]
    table = (out / "summary.md").read_text()
    assert "| rand @ 3 demos |" in table and "| rand @ 5 demos |" in table
    assert (out / "data_efficiency.png").is_file() and (out / "learning_curves.png").is_file()
    with pytest.raises(ValueError, match="demo_counts or as bc.max_episodes"):
        compare(CompareConfig(**{**cfg.__dict__, "bc": {"max_episodes": 4}}))
    with pytest.raises(ValueError, match="asks for 500 demos of franka_cabinet, but .* holds 30"):
        compare(CompareConfig(**{**cfg.__dict__, "demo_counts": [5, 500]}))


def test_bc_reuses_cached_frozen_tokens_only_for_the_same_backbone(cabinet_demos, tmp_path, monkeypatch):
    import toto_robot.encoders.features as features

    cache = tmp_path / "tokens"

    def run(name, **encoder):
        train_bc(BCConfig(demos=str(cabinet_demos), out_dir=str(tmp_path / name), encoder={"name": "random", **encoder}, epochs=2,
                          max_episodes=4, token_cache=str(cache)))
        return json.loads((tmp_path / name / "result.json").read_text())["final"]

    first = run("a", pooling="average")
    assert len(list(cache.glob("*.safetensors"))) == 1

    def no_encoder(*args, **kwargs):
        raise AssertionError("cached tokens should have been reused")

    real = features.extract_encoder_tokens
    monkeypatch.setattr(features, "extract_encoder_tokens", no_encoder)
    assert run("b", pooling="average") == first  # same backbone and seed: identical run from the cache
    run("c", pooling="attention")  # another pooling of the same frozen backbone: still no feature pass
    monkeypatch.setattr(features, "extract_encoder_tokens", real)
    run("d", pooling="average", seed=1)  # another random init is another backbone
    assert len(list(cache.glob("*.safetensors"))) == 2
    run("e", pooling="cls")  # a ViT read-out caches its class tokens, not the patch tokens
    assert len(list(cache.glob("*.safetensors"))) == 3


def test_action_chunking_predicts_k_actions_and_executes_the_first_steps(cabinet_demos, tmp_path):
    from toto_robot.policies.bc import chunk_actions

    acts = np.arange(8, dtype=np.float32).reshape(4, 2)
    np.testing.assert_array_equal(chunk_actions(acts, 3)[2], [4, 5, 6, 7, 6, 7])  # past the end: the last action repeats
    policy_dir = train_bc(BCConfig(demos=str(cabinet_demos), out_dir=str(tmp_path / "bc"), encoder={"name": "random", "pooling": "average"},
                                   epochs=2, max_episodes=4, chunk=3, action_steps=2))
    policy = load_policy(policy_dir)
    assert policy.chunk == 3 and policy.action_steps == 2 and policy.head.net[-1].out_features == 3 * 4
    calls = []
    real = policy.act_from_features
    policy.act_from_features = lambda *a: calls.append(1) or real(*a)
    obs = [{"image": np.full((64, 64, 3), v, np.uint8), "state": np.full(19, v / 255, np.float32)} for v in (0, 120, 240)]
    actions = [policy.act(o) for o in obs]
    assert len(calls) == 2 and all(a.shape == (4,) for a in actions)  # frames 0 and 2 predict; frame 1 executes chunk step 2
    policy.reset()
    policy.act(obs[1])
    assert len(calls) == 3  # a new episode starts with a new chunk
    with pytest.raises(ValueError, match="action_steps"):
        Policy(policy.encoder, 19, 4, chunk=2, action_steps=3)


def test_steps_to_threshold_reads_the_moving_training_success():
    from toto_robot.policies.compare_ppo import moving_success, steps_to

    # 50-step episodes: 4 failures, then successes; window 4
    curve = [{"timesteps": 50 * (i + 1), "success": float(i >= 4), "r": 0.0} for i in range(10)]
    steps, avg = moving_success(curve, 4)
    np.testing.assert_allclose(avg[:8], [0, 0, 0, 0, 0.25, 0.5, 0.75, 1.0])
    assert steps_to(curve, 0.5, 4) == 300 and steps_to(curve, 1.0, 4) == 400
    assert steps_to(curve, 0.5, 20) is None  # never a full window
    assert steps_to(curve[:4], 0.1, 4) is None


def test_compare_ppo_gives_every_encoder_the_same_budget_and_resumes(tmp_path):
    from toto_robot.policies.compare_ppo import PAIRED_FIELDS, PPOCompareConfig, compare_ppo
    from toto_robot.policies.ppo import read_monitor

    with pytest.raises(ValueError, match="seed"):
        PPOCompareConfig(tasks=["franka_reach"], encoders={"r": {"name": "random"}}, out_dir=str(tmp_path), ppo={"seed": 3})
    cfg = PPOCompareConfig(tasks=["franka_reach"], encoders={"avg": {"name": "random", "pooling": "average"}, "attn": {"name": "random"}},
                           out_dir=str(tmp_path / "cmp"), seeds=[0], window=2,
                           ppo={"image_size": 32, "total_timesteps": 128, "n_envs": 2, "n_steps": 64, "batch_size": 64, "n_epochs": 1,
                                "eval_episodes": 2, "net_arch": (16,), "log_std_init": -1.0, "normalize_reward": True, "ood_episodes": 0})
    out = compare_ppo(cfg)
    table = (out / "summary.md").read_text()
    assert "| franka_reach | avg |" in table and "| franka_reach | attn |" in table and "128 env steps" in table
    assert "| franka_reach | avg vs attn |" in table and (out / "paired.csv").is_file()
    for label in ("avg", "attn"):
        run = out / "runs/franka_reach" / label / "seed0"
        ppo = json.loads((run / "ppo_config.json").read_text())
        assert ppo["total_timesteps"] == 128 and ppo["log_std_init"] == -1.0 and ppo["seed"] == 0
        rows = read_monitor(run / "monitor")
        # rewards are normalised for PPO only: the curve keeps the task's own returns (-10 x distance per step, 50 steps)
        assert len(rows) == 2 and all(r["r"] < -10 for r in rows if not r["success"])
    assert (out / "learning_curves.png").is_file() and (out / "success.png").is_file()
    results = (out / "results.csv").read_text()
    assert results.count("franka_reach") == 2 and "steps_to_0.8" in results
    stamp = (out / "runs/franka_reach/avg/seed0/result.json").stat().st_mtime_ns
    compare_ppo(cfg)  # finished runs are kept, not retrained
    assert (out / "runs/franka_reach/avg/seed0/result.json").stat().st_mtime_ns == stamp
    compare_ppo(replace(cfg, encoders={"avg": cfg.encoders["avg"]}))  # one encoder: its table, nothing to pair
    assert "avg vs" not in (out / "summary.md").read_text() and "| franka_reach | avg |" in (out / "summary.md").read_text()
    assert (out / "paired.csv").read_text().splitlines() == [",".join(PAIRED_FIELDS)]


def test_asymmetric_critic_values_the_simulator_state_and_the_actor_never_reads_it(tmp_path):
    """With ``asymmetric_critic`` the critic sees the proprioception and the task's object state (the reach
    target's position), not the image; the actor sees the frozen features and the proprioception, and the
    saved policy acts from image and state alone."""
    import torch

    from toto_robot.policies.ppo import PRIVILEGED, TOKENS, AsymmetricActorCriticPolicy, PPOConfig, train_ppo

    policy_dir = train_ppo(PPOConfig(task="franka_reach", out_dir=str(tmp_path / "ppo"), image_size=32, total_timesteps=128, n_envs=2, n_steps=64,
                                     batch_size=64, n_epochs=1, eval_episodes=1, net_arch=(32, 32), asymmetric_critic=True,
                                     encoder={"name": "random", "pooling": "keypoints"}, ood_episodes=0))
    policy = load_policy(policy_dir)
    net = policy.model.policy
    assert isinstance(net, AsymmetricActorCriticPolicy) and policy.meta["privileged_dim"] == 3  # the target's xyz
    n = 4
    obs = {TOKENS: torch.randn(n, *net.observation_space[TOKENS].shape), "state": torch.randn(n, 19), PRIVILEGED: torch.randn(n, 3)}
    moved_target = {**obs, PRIVILEGED: obs[PRIVILEGED] + 0.5}
    other_frame = {**obs, TOKENS: torch.randn_like(obs[TOKENS])}
    with torch.no_grad():
        mean = lambda o: net.get_distribution(o).distribution.mean  # noqa: E731
        torch.testing.assert_close(mean(obs), mean(moved_target), rtol=0, atol=0)  # the actor never reads the simulator
        assert not torch.allclose(mean(obs), mean(other_frame))  # it reads the image
        torch.testing.assert_close(net.predict_values(obs), net.predict_values(other_frame), rtol=0, atol=0)  # the critic never reads the image
        assert not torch.allclose(net.predict_values(obs), net.predict_values(moved_target))  # it reads the simulator
    a = policy.act({"image": np.zeros((32, 32, 3), np.uint8), "state": np.zeros(19, np.float32)})
    assert a.shape == (4,) and np.all(np.abs(a) <= 1)
    assert json.loads((tmp_path / "ppo" / "result.json").read_text())["eval"]["episodes"] == 1


def test_attached_loss_adds_exactly_its_gradient():
    """_AttachLoss passes x through unchanged and adds d(loss) to the backward of whatever x feeds."""
    import torch

    from toto_robot.policies.ppo import _AttachLoss

    w = torch.tensor([1.0, 2.0], requires_grad=True)
    x = torch.tensor([3.0, -1.0], requires_grad=True)
    y = _AttachLoss.apply(x, (w ** 2).sum())
    torch.testing.assert_close(y, x, rtol=0, atol=0)
    (5 * y).sum().backward()
    torch.testing.assert_close(x.grad, torch.full((2,), 5.0))  # x's own gradient, untouched
    torch.testing.assert_close(w.grad, 2 * w.detach())  # plus the attached loss's, with weight 1


def test_auxiliary_head_learns_the_object_state_and_the_actor_never_reads_it(tmp_path):
    """With ``aux_coef`` the extractor's estimator (linear, on the pooled tokens) regresses the reach target's
    position during PPO's updates: on one fixed batch of real frames its loss falls under PPO's own
    optimiser and the pool's weights move with it; the actor reads the estimate, and neither the actor
    nor the critic reads the simulator's state."""
    import torch

    from toto_robot.policies.ppo import PRIVILEGED, TOKENS, AuxiliaryStatePolicy, PPOConfig, frozen_tokens, train_ppo

    policy_dir = train_ppo(PPOConfig(task="franka_reach", out_dir=str(tmp_path / "ppo"), image_size=32, total_timesteps=128, n_envs=2, n_steps=64,
                                     batch_size=64, n_epochs=1, eval_episodes=1, net_arch=(32, 32), aux_coef=1.0,
                                     encoder={"name": "random", "pooling": "keypoints"}, ood_episodes=0))
    result = json.loads((tmp_path / "ppo" / "result.json").read_text())
    assert np.isfinite(result["final_aux_loss"]) and result["eval"]["episodes"] == 1
    policy = load_policy(policy_dir)
    net = policy.model.policy
    assert isinstance(net, AuxiliaryStatePolicy) and policy.meta["privileged_dim"] == 3  # the target's xyz
    from toto_robot.sim_envs import make_env

    env = make_env("franka_reach", image_size=32, privileged=True)
    frames, targets = [], []
    for seed in range(16):
        obs, _ = env.reset(seed=seed)
        frames.append(obs["image"])
        targets.append(obs[PRIVILEGED])
    env.close()
    encoder = net.features_extractor.encoder
    batch = {TOKENS: torch.as_tensor(frozen_tokens(encoder, np.stack(frames))), "state": torch.zeros(16, 19), PRIVILEGED: torch.as_tensor(np.stack(targets))}
    actions = torch.zeros(16, 4)
    with torch.no_grad():
        mean = lambda o: net.get_distribution(o).distribution.mean  # noqa: E731
        moved = {**batch, PRIVILEGED: batch[PRIVILEGED] + 0.5}
        torch.testing.assert_close(mean(batch), mean(moved), rtol=0, atol=0)
        torch.testing.assert_close(net.predict_values(batch), net.predict_values(moved), rtol=0, atol=0)
    pool_before = [p.detach().clone() for p in encoder.pool.parameters()]
    net.set_training_mode(True)
    losses = []
    for _ in range(60):
        values, _, _ = net.evaluate_actions(batch, actions)
        net.optimizer.zero_grad()
        (0 * values.sum()).backward()  # PPO's loss with weight 0: the only gradient left is the attached auxiliary loss
        net.optimizer.step()
        losses.append(net.aux_loss)
    assert losses[-1] < 0.5 * losses[0]
    assert any(not torch.equal(a, b) for a, b in zip(pool_before, encoder.pool.parameters()))
    net.set_training_mode(False)
    with torch.no_grad():
        before = mean(batch)
        net.features_extractor.estimator.weight.mul_(2)
        assert not torch.allclose(mean(batch), before)  # the actor reads the estimate


def test_compare_ppo_pairs_encoders_on_the_same_held_out_episodes(tmp_path):
    """The first encoder against each other one: outcomes of every seed's seeded episodes, joined in seed order,
    in an exact McNemar test (reference: 3 episodes only the first solves, none only the second -> p = 2 / 2**3)."""
    from toto_robot.policies.compare_ppo import paired_table, paired_tests, read_result, run_dir

    outcomes = {("toto", 0): [1, 1, 0], ("toto", 1): [1, 1, 1], ("random", 0): [0, 0, 0], ("random", 1): [1, 0, 1],
                ("mae", 0): [1, 1, 0], ("mae", 1): [1, 1, 1]}
    for (label, seed), per_episode in outcomes.items():
        run = run_dir(tmp_path, "franka_reach", label, seed)
        run.mkdir(parents=True)
        (run / "result.json").write_text(json.dumps({"eval": {"per_episode": per_episode}}))
    runs = [("franka_reach", label, s) for label in ("toto", "random", "mae") for s in (0, 1)]
    rows = paired_tests({key: read_result(run_dir(tmp_path, *key)) for key in runs})
    assert [(r["encoder"], r["versus"]) for r in rows] == [("toto", "random"), ("toto", "mae")]
    assert rows[0] == {"task": "franka_reach", "encoder": "toto", "versus": "random", "n": 6, "a": 5, "b": 2, "a_only": 3, "b_only": 0, "p": 0.25}
    assert rows[1]["a_only"] == rows[1]["b_only"] == 0 and rows[1]["p"] == 1.0
    assert "| franka_reach | toto vs random | 5 vs 2 of 6 | 3 / 0 | 0.25 |" in paired_table(rows)


def test_success_plot_draws_a_perfect_row_whose_interval_rounds_below_it(tmp_path):
    from toto_robot.policies.compare import plot_success

    rows = [{"task": "franka_pick", "label": "toto", "success_rate": 1.0, "ci_low": 0.959, "ci_high": 0.9999999999999999},
            {"task": "franka_pick", "label": "mae", "success_rate": 0.5, "ci_low": 0.4, "ci_high": 0.6}]
    plot_success(rows, tmp_path / "success.png")
    assert (tmp_path / "success.png").stat().st_size > 1000
