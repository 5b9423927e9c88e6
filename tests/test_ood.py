"""The out-of-distribution monitor (toto_robot/policies/ood.py): the reference stored with a policy, its score and calibrated
thresholds, BC writing it, old policies without it, the policy node's score topics, /diagnostics and gate over real rclpy, and
the ``toto-robot ood`` command on a generated demo folder."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pytest

from toto_robot.data.demos import DemoMeta, DemoWriter
from toto_robot.policies import load_policy
from toto_robot.policies.ood import (REFERENCE_FILE, OODMonitor, OODReference, auroc, fit_reference, frame_features, ledoit_wolf,
                                     load_reference, moving_average)

SIZE = 32


def gaussian_episodes(rng, n_eps: int, T: int, cov_root: np.ndarray, shift: np.ndarray | None = None) -> list[np.ndarray]:
    F = cov_root.shape[0]
    return [rng.normal(size=(T, F)) @ cov_root.T + (0 if shift is None else shift) for _ in range(n_eps)]


def scene_frames(rng, T: int, bright: float = 1.0) -> np.ndarray:
    """A grey table with a dark square at a random place per frame; ``bright`` > 1 is another lighting."""
    frames = np.full((T, SIZE, SIZE, 3), 110, np.float64) + rng.normal(0, 6, (T, SIZE, SIZE, 3))
    for t in range(T):
        y, x = rng.integers(0, SIZE - 8, 2)
        frames[t, y:y + 8, x:x + 8] = 40
    return np.clip(frames * bright, 0, 255).astype(np.uint8)


def scene_demos(root: Path, episodes: int, T: int = 16, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    writer = DemoWriter(root, DemoMeta(source="lerobot", task="scene", image_size=(SIZE, SIZE), state_dim=2, action_dim=2,
                                       action_space="lerobot"))
    for _ in range(episodes):
        frames = scene_frames(rng, T)
        state = rng.normal(size=(T, 2)).astype(np.float32)
        writer.write_episode(frames, state, np.tanh(state).astype(np.float32) * 0.5)
    return root


def train_scene_policy(tmp_path: Path, **kw) -> Path:
    from toto_robot.policies.bc import BCConfig, train_bc

    demos = scene_demos(tmp_path / "demos", episodes=8)
    return train_bc(BCConfig(demos=str(demos), out_dir=str(tmp_path / "bc"), encoder={"name": "pixels", "input_size": SIZE, "pooling": "average"},
                             epochs=2, val_fraction=0.0, eval_episodes=0, **kw))


# ---- the reference ----
def test_ledoit_wolf_shrinks_towards_a_scaled_identity_and_stays_invertible_with_few_frames():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 40))  # fewer frames than dims: the empirical covariance is singular
    cov, s = ledoit_wolf(x)
    assert 0 < s <= 1 and np.linalg.eigvalsh(cov).min() > 0
    many = rng.normal(size=(20000, 4)) @ np.diag([1.0, 2.0, 3.0, 4.0])
    cov, s = ledoit_wolf(many)
    assert s < 0.05 and np.allclose(np.diag(cov), [1, 4, 9, 16], rtol=0.05)


def test_reference_round_trip_and_scores(tmp_path):
    rng = np.random.default_rng(1)
    root = rng.normal(size=(16, 16)) / 4
    ref = fit_reference(gaussian_episodes(rng, 10, 50, root), seed=3, feature="test")
    assert ref.info["episodes_fit"] + ref.info["episodes_calib"] == 10 and ref.info["n_fit"] + ref.info["n_calib"] == 500
    t = ref.thresholds
    assert t["frame_warn"] < t["frame_error"] and t["average_warn"] < t["average_error"] and t["average_warn"] < t["frame_warn"]
    path = ref.save(tmp_path)
    assert path == tmp_path / REFERENCE_FILE
    back = OODReference.load(path)
    x = rng.normal(size=(7, 16))
    np.testing.assert_allclose(back.score(x), ref.score(x), rtol=1e-12)
    assert back.thresholds == ref.thresholds and back.info == ref.info and back.average_frames == ref.average_frames
    assert isinstance(back.score(x[0]), float) and back.level(1e9, "frame") == "error" and back.level(0.0) == "ok"
    assert 0.7 < float(np.mean(ref.score(np.concatenate(gaussian_episodes(rng, 4, 50, root))))) < 1.5  # about 1 in distribution
    with pytest.raises(ValueError, match="16-d"):
        back.score(np.zeros(5))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / REFERENCE_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(RuntimeError, match="not a readable OOD reference"):
        load_reference(tmp_path / "bad")


def test_score_separates_shifted_features_auroc_above_0_9():
    rng = np.random.default_rng(2)
    F = 32
    root = np.diag(np.linspace(0.2, 3.0, F))  # most variance in a few directions, as pooled features have
    ref = fit_reference(gaussian_episodes(rng, 12, 60, root), seed=0)
    inside = ref.score(np.concatenate(gaussian_episodes(rng, 4, 60, root)))
    shift = np.zeros(F)
    shift[0] = 1.0  # one standard deviation of... the total spread: 1/0.2 = 5 sd along the narrowest direction
    outside = ref.score(np.concatenate(gaussian_episodes(rng, 4, 60, root, shift)))
    assert auroc(inside, outside) > 0.9
    same = ref.score(np.concatenate(gaussian_episodes(rng, 4, 60, root)))
    assert 0.4 < auroc(inside, same) < 0.6  # no shift: chance
    assert auroc([0, 1], [2, 3]) == 1.0 and auroc([2, 3], [0, 1]) == 0.0 and auroc([1, 1], [1, 1]) == 0.5


def test_thresholds_give_about_the_requested_false_alarm_rate_on_held_out_in_distribution_frames():
    rng = np.random.default_rng(4)
    F = 8
    root = rng.normal(size=(F, F)) / 3 + np.eye(F)
    ref = fit_reference(gaussian_episodes(rng, 40, 100, root), warn_rate=0.05, error_rate=0.01, calib_fraction=0.5, seed=0)
    fresh = gaussian_episodes(rng, 40, 100, root)
    frame = np.concatenate([ref.score(e) for e in fresh])
    average = np.concatenate([moving_average(ref.score(e), ref.average_frames) for e in fresh])
    assert 0.03 < np.mean(frame > ref.thresholds["frame_warn"]) < 0.075
    assert 0.002 < np.mean(frame > ref.thresholds["frame_error"]) < 0.025
    assert 0.03 < np.mean(average > ref.thresholds["average_warn"]) < 0.075


def test_moving_average_and_monitor_agree_and_reset():
    rng = np.random.default_rng(5)
    ref = fit_reference(gaussian_episodes(rng, 4, 30, np.eye(4)), seed=0)
    x = rng.normal(size=(12, 4)) * 2
    mon = OODMonitor(ref)
    averages = [mon.update(f)[1] for f in x]
    np.testing.assert_allclose(averages, moving_average(ref.score(x), ref.average_frames))
    mon.reset()
    assert mon.level == "ok" and mon.update(x[0])[1] == pytest.approx(ref.score(x[0]))
    with pytest.raises(ValueError, match="error_rate < warn_rate"):
        fit_reference([x, x], warn_rate=0.01, error_rate=0.05)


# ---- with a policy ----
def test_bc_stores_a_reference_that_flags_another_lighting_and_an_old_policy_loads_without_one(tmp_path, caplog):
    policy_dir = train_scene_policy(tmp_path)
    ref = load_reference(policy_dir)
    assert ref is not None and ref.info["episodes_fit"] == 6 and ref.info["episodes_calib"] == 2
    policy = load_policy(policy_dir)
    rng = np.random.default_rng(9)
    inside = ref.score(frame_features(policy.encoder, scene_frames(rng, 40)))
    outside = ref.score(frame_features(policy.encoder, scene_frames(rng, 40, bright=1.6)))
    assert auroc(inside, outside) > 0.9
    frame = scene_frames(rng, 1)
    _, feats = policy.act_with_features({"image": frame[0], "state": np.zeros(2, np.float32)})
    np.testing.assert_allclose(feats, frame_features(policy.encoder, frame)[0], rtol=1e-4, atol=1e-5)  # the node's features

    (policy_dir / REFERENCE_FILE).unlink()  # a policy saved before the monitor existed
    with caplog.at_level(logging.INFO, logger="toto_robot.policies.ood"):
        assert load_reference(policy_dir) is None
    assert "the OOD monitor is off" in caplog.text
    old = load_policy(policy_dir)
    assert old.act({"image": scene_frames(rng, 1)[0], "state": np.zeros(2, np.float32)}).shape == (2,)


def test_bc_without_a_reference_when_asked(tmp_path):
    policy_dir = train_scene_policy(tmp_path, ood=False)
    assert not (policy_dir / REFERENCE_FILE).exists() and load_policy(policy_dir) is not None


def scene_policy_without_training(tmp_path: Path) -> Path:
    """An untrained BC policy on the raw-pixel encoder (output array) with a reference fit on the scene's frames: the node's
    wiring needs a reference, not a good policy."""
    from toto_robot.encoders import build_encoder
    from toto_robot.policies.policy import Policy

    policy = Policy(build_encoder("pixels", input_size=SIZE, pooling="average"), state_dim=2, action_dim=3, hidden=16,
                    meta={"task": "scene", "action_space": "lerobot"})
    policy_dir = policy.save_pretrained(tmp_path / "policy")
    rng = np.random.default_rng(0)
    feats = [frame_features(policy.encoder, scene_frames(rng, 40)) for _ in range(8)]
    fit_reference(feats, seed=0).save(policy_dir)
    return policy_dir


@pytest.mark.ros
@pytest.mark.xdist_group("ros")
@pytest.mark.flaky(reruns=2)  # through DDS on a loaded 2-core machine
def test_policy_node_publishes_the_score_and_diagnostics_and_its_gate_holds_commands_on_another_lighting(ros, tmp_path):
    rclpy = pytest.importorskip("rclpy")
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rclpy.parameter import Parameter as P
    from sensor_msgs.msg import Image
    from std_msgs.msg import Float32, Float32MultiArray

    from helpers import quiet_for
    from toto_robot.ros.convert import array_to_image_msg, array_to_multiarray
    from toto_robot.ros_nodes.policy_node import PolicyNode

    ctx, add, spin_until = ros
    policy_dir = scene_policy_without_training(tmp_path)
    node = add(PolicyNode(context=ctx, parameter_overrides=[P("policy_dir", value=str(policy_dir)), P("output", value="array"),
                                                            P("rate_hz", value=20.0), P("ood_gate", value=True),
                                                            P("diagnostics_period_s", value=0.2)]))
    ref = node.ood.ref
    peer = add(rclpy.create_node("ood_peer", context=ctx))
    actions, scores, averages, diag = [], [], [], []
    peer.create_subscription(Float32MultiArray, "toto/action", lambda m: actions.append(m.data), 10)
    peer.create_subscription(Float32, "toto/ood_score", lambda m: scores.append(m.data), 10)
    peer.create_subscription(Float32, "toto/ood_score_average", lambda m: averages.append(m.data), 10)
    peer.create_subscription(DiagnosticArray, "/diagnostics",
                             lambda m: diag.extend(s for s in m.status if s.name.endswith(": ood")), 10)
    state_pub, image_pub = peer.create_publisher(Float32MultiArray, "robot/state", 10), peer.create_publisher(Image, "camera/image_raw", 10)
    rng = np.random.default_rng(7)
    last = [0.0]

    def send(bright: float):
        def step():
            if time.monotonic() - last[0] >= 0.05:  # a 20 Hz camera
                last[0] = time.monotonic()
                state_pub.publish(array_to_multiarray(np.zeros(2, np.float32)))
                image_pub.publish(array_to_image_msg(scene_frames(rng, 1, bright)[0]))
        return step

    ok = send(1.0)
    assert spin_until(lambda: (ok(), min(len(actions), len(scores), len(averages)) >= 15 and len(diag) >= 1)[1], timeout=60), \
        (len(actions), len(scores), len(diag))
    assert np.mean(np.asarray(scores) > ref.thresholds["frame_error"]) < 0.2  # the training scene: few alarms
    assert not node.ood_held and diag[-1].level == DiagnosticStatus.OK
    assert {kv.key for kv in diag[-1].values} >= {"score", "average", "average_warn", "average_error", "held"}

    bright = send(1.7)  # another lighting: the average passes the ERROR threshold and the gate holds the commands
    assert spin_until(lambda: (bright(), node.ood_held and averages[-1] > ref.thresholds["average_error"])[1], timeout=30)
    held = quiet_for(actions, 1.0)  # commands already on the wire arrive, then none while frames keep coming
    assert spin_until(lambda: (bright(), held())[1], timeout=30) and node.ood_holds > 0
    n_diag = len(diag)
    assert spin_until(lambda: (bright(), len(diag) > n_diag and diag[-1].level == DiagnosticStatus.ERROR)[1], timeout=10)
    assert "held" in diag[-1].message

    n = len(actions)  # the training scene again: the average falls back and commands resume
    assert spin_until(lambda: (ok(), len(actions) > n + 3)[1], timeout=60) and not node.ood_held


@pytest.mark.ros
@pytest.mark.xdist_group("ros")
def test_policy_node_runs_a_policy_without_a_reference_with_the_monitor_off(ros, tmp_path, monkeypatch):
    pytest.importorskip("rclpy")
    from rclpy.parameter import Parameter as P

    import toto_robot.ros_nodes.policy_node as policy_node

    ctx, add, _ = ros
    policy_dir = scene_policy_without_training(tmp_path)
    (policy_dir / REFERENCE_FILE).unlink()
    logged = []

    class Logger:  # the node's logger, seen by the test
        def __init__(self, inner):
            self.inner = inner

        def info(self, message):
            logged.append(message)
            self.inner.info(message)

    monkeypatch.setattr(policy_node, "load_reference", lambda d, logger, real=policy_node.load_reference: real(d, Logger(logger)))
    node = add(policy_node.PolicyNode(context=ctx, parameter_overrides=[P("policy_dir", value=str(policy_dir)), P("output", value="array"),
                                                                        P("ood_gate", value=True)]))
    assert node.ood is None and any("the OOD monitor is off" in m for m in logged)
    node.act({"image": scene_frames(np.random.default_rng(0), 1)[0], "state": np.zeros(2, np.float32)})  # acts as before
    assert node.actions == 1 and node.diagnostics.more() == []


# ---- toto-robot ood ----
def test_ood_command_scores_a_demo_folder_and_an_image_folder_and_refuses_a_policy_without_a_reference(tmp_path, monkeypatch, capsys):
    import csv
    import sys

    from PIL import Image

    from toto_robot import cli

    monkeypatch.setattr(sys, "argv", list(sys.argv))  # cli.main sets it for hydra
    policy_dir = scene_policy_without_training(tmp_path)
    ref = load_reference(policy_dir)
    scene_demos(tmp_path / "demos", episodes=2, T=12, seed=5)
    assert cli.main(["ood", f"policy_dir={policy_dir}", f"frames={tmp_path / 'demos'}", f"out_dir={tmp_path / 'out'}"]) == 0
    summary = json.loads((tmp_path / "out" / "ood.json").read_text())
    assert [r["recording"] for r in summary["recordings"]] == ["episode_0000", "episode_0001"]
    assert all(r["frames"] == 12 and r["error_share"] < 0.5 for r in summary["recordings"])
    rows = list(csv.DictReader(open(tmp_path / "out" / "scores.csv")))
    assert len(rows) == 24 and {r["level"] for r in rows} <= {"ok", "warn", "error"} and (tmp_path / "out" / "ood_scores.png").stat().st_size > 1000

    images = tmp_path / "bright"  # another lighting, as a folder of images: every averaged frame above ERROR
    images.mkdir()
    for i, f in enumerate(scene_frames(np.random.default_rng(3), 6, bright=1.7)):
        Image.fromarray(f).save(images / f"{i:03d}.png")
    assert cli.main(["ood", f"policy_dir={policy_dir}", f"frames={images}", "stride=2", f"out_dir={tmp_path / 'out2'}"]) == 0
    (bright,) = json.loads((tmp_path / "out2" / "ood.json").read_text())["recordings"]
    assert bright["frames"] == 3 and bright["error_share"] == 1.0 and bright["mean_score"] > 10 * ref.thresholds["frame_error"]

    from toto_robot.data.video import write_video  # a folder of videos, read sparsely: every 2nd frame, at most 2 per video

    videos = tmp_path / "clips"
    write_video(videos / "bright.mp4", scene_frames(np.random.default_rng(4), 7, bright=1.7))
    assert cli.main(["ood", f"policy_dir={policy_dir}", f"frames={videos}", "stride=2", "max_frames=2", f"out_dir={tmp_path / 'out4'}"]) == 0
    (clip,) = json.loads((tmp_path / "out4" / "ood.json").read_text())["recordings"]
    assert clip["recording"] == "bright" and clip["frames"] == 2
    assert [(r["recording"], r["frame"]) for r in csv.DictReader(open(tmp_path / "out4" / "scores.csv"))] == [("bright", "0"), ("bright", "2")]

    (policy_dir / REFERENCE_FILE).unlink()
    capsys.readouterr()
    assert cli.main(["ood", f"policy_dir={policy_dir}", f"frames={images}", f"out_dir={tmp_path / 'out3'}"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error:") and "has no OOD reference" in last
    (tmp_path / "not_a_policy").mkdir()  # a folder that is not a policy is named as that, as evaluate names it
    assert cli.main(["ood", f"policy_dir={tmp_path / 'not_a_policy'}", f"frames={images}", f"out_dir={tmp_path / 'out5'}"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error:") and "is not a policy folder" in last


def test_ppo_stores_a_reference_from_rollouts_of_the_trained_policy(tmp_path):
    from toto_robot.policies.ppo import PPOConfig, train_ppo

    policy_dir = train_ppo(PPOConfig(task="franka_cabinet", out_dir=str(tmp_path / "ppo"), image_size=32, total_timesteps=128, n_envs=2, n_steps=64,
                                     batch_size=64, n_epochs=1, eval_episodes=0, net_arch=(32, 32), ood_episodes=2))
    ref = load_reference(policy_dir)
    assert ref is not None and ref.info["episodes_fit"] == 1 and ref.info["episodes_calib"] == 1 and ref.info["n_calib"] > 10
    policy = load_policy(policy_dir)
    obs = {"image": np.zeros((32, 32, 3), np.uint8), "state": np.zeros(19, np.float32)}
    action, feats = policy.act_with_features(obs)
    np.testing.assert_allclose(action, policy.act(obs), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats, frame_features(policy.encoder, obs["image"][None])[0], rtol=1e-4, atol=1e-5)
