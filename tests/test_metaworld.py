"""CortexBench's MetaWorld tasks under the project's MuJoCo 4: the weld compatibility fix, the observation
contract, reproducible placements, and metaworld's scripted experts solving every task through our env."""
import numpy as np
import pytest

pytest.importorskip("metaworld", reason="metaworld (requirements/nodeps.txt)")

from toto_robot.data.demos import DemoDataset  # noqa: E402
from toto_robot.sim_envs import METAWORLD_TASK_IDS, make_env  # noqa: E402
from toto_robot.sim_envs.experts import make_expert  # noqa: E402
from toto_robot.sim_envs.metaworld_compat import WELD_ROW, needs_patch, patch_metaworld, reset_mocap_welds  # noqa: E402


def test_metaworld_weld_row_breaks_unpatched_under_mujoco4_and_the_fix_writes_its_11_numbers(monkeypatch):
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE
    from metaworld.sawyer_xyz_env import SawyerMocapBase

    import mujoco

    assert needs_patch() == (int(mujoco.__version__.split(".")[0]) >= 4)
    cls = ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE["drawer-open-v3-goal-observable"]
    original = getattr(SawyerMocapBase, "metaworld_reset_mocap_welds", SawyerMocapBase.reset_mocap_welds)  # metaworld's own
    assert original is not reset_mocap_welds
    monkeypatch.setattr(SawyerMocapBase, "reset_mocap_welds", original)
    if needs_patch():
        with pytest.raises(ValueError, match="broadcast"):
            cls()
    assert patch_metaworld() is needs_patch()
    env = cls()
    welds = env.model.eq_data[env.model.eq_type == mujoco.mjtEq.mjEQ_WELD]
    assert len(welds) and np.array_equal(welds[:, :11], np.tile(WELD_ROW, (len(welds), 1)))


def test_observation_contract_and_placements_follow_the_reset_seed():
    env = make_env("mw_hammer", image_size=24)
    obs, info = env.reset(seed=3)
    assert obs["image"].dtype == np.uint8 and obs["image"].shape == (24, 24, 3)
    assert obs["state"].dtype == np.float32 and obs["state"].shape == (4,) and info == {"success": False}
    assert env.observation_space.contains(obs) and env.action_space.shape == (4,)
    again, _ = env.reset(seed=3)
    np.testing.assert_array_equal(again["image"], obs["image"])
    np.testing.assert_array_equal(again["state"], obs["state"])
    first = env.unwrapped.mw_obs.copy()
    env.reset(seed=4)
    assert not np.allclose(env.unwrapped.mw_obs[4:7], first[4:7])  # the hammer lies elsewhere
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3))
    with pytest.raises(ValueError, match="unknown camera"):
        make_env("mw_hammer", camera="agentview")
    env.close()


@pytest.mark.parametrize("task", sorted(METAWORLD_TASK_IDS))
def test_scripted_expert_solves_each_cortexbench_task(task):
    env = make_env(task, image_size=8)
    expert = make_expert(env)
    obs, _ = env.reset(seed=0)
    done, steps, success = False, 0, False
    while not done:
        obs, _, terminated, truncated, info = env.step(expert.act(obs))
        success, steps, done = info["success"], steps + 1, terminated or truncated
    assert success and terminated and steps < 250  # the episode ends at the first success
    env.close()


def test_collector_writes_metaworld_demonstrations(tmp_path):
    from toto_robot.sim_envs.collect import CollectConfig, collect

    out = collect(CollectConfig(task="mw_button_press_topdown", episodes=2, out_dir=str(tmp_path / "demos"), image_size=16, noise=0.0,
                                videos=False, preview_episodes=0))
    ds = DemoDataset(out)
    assert len(ds) == 2 and ds.success_rate() == 1.0
    ep = ds[0]
    assert ep["image"].shape[1:] == (16, 16, 3) and ep["state"].shape[1] == 4 and ep["action"].shape[1] == 4
    assert np.abs(ep["action"]).max() <= 1.0
    assert ds.meta.action_space == "mocap_delta" and ds.meta.extra["camera"] == "corner2"
