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


def test_simplified_render_meshes_keep_the_physics_and_the_picture():
    """The camera's coarse meshes (render_lod.py) change what is drawn, never what is simulated: the same
    expert episode gives bit-identical states, and the frames stay close to the full-mesh frames."""
    fine, coarse = make_env("mw_hammer", image_size=48, mesh_cell=0), make_env("mw_hammer", image_size=48)
    assert fine.unwrapped.lod is None
    lod = coarse.unwrapped.lod
    assert lod.meshes >= 5 and lod.faces_after < 0.4 * lod.faces_before
    obs_f, _ = fine.reset(seed=7)
    obs_c, _ = coarse.reset(seed=7)
    ex_f, ex_c = fine.unwrapped.make_expert(), coarse.unwrapped.make_expert()
    diffs = []
    for _ in range(40):
        a_f, a_c = ex_f.act(), ex_c.act()
        np.testing.assert_array_equal(a_f, a_c)
        obs_f, *_ = fine.step(a_f)
        obs_c, *_ = coarse.step(a_c)
        np.testing.assert_array_equal(fine.unwrapped.data.qpos, coarse.unwrapped.data.qpos)
        np.testing.assert_array_equal(obs_f["state"], obs_c["state"])
        diffs.append(np.abs(obs_f["image"].astype(float) - obs_c["image"]).mean())
    assert 0 < np.mean(diffs) < 2.0  # drawn differently, by less than 2/255 on average
    fine.close()
    coarse.close()


def test_vertex_clustering_keeps_vertices_and_drops_collapsed_faces():
    from toto_robot.sim_envs.render_lod import cluster_faces

    # a 2 x 2 square of 8 triangles over a 3 x 3 vertex grid 1 cm apart
    g = np.array([[x, y, 0.0] for y in range(3) for x in range(3)]) * 0.01
    quads = [(0, 1, 4, 3), (1, 2, 5, 4), (3, 4, 7, 6), (4, 5, 8, 7)]
    faces = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
    same, idx = cluster_faces(g, faces, cell=0.001)  # finer than the grid: nothing changes
    np.testing.assert_array_equal(same, faces)
    np.testing.assert_array_equal(idx, np.arange(8))
    coarse, idx = cluster_faces(g, faces, cell=0.015)  # cells {0,1,3,4}, {2,5}, {6,7}, {8}: 4 vertices left
    assert set(coarse.ravel()) <= set(range(9)) and len(set(coarse.ravel())) == 4
    assert all(len(set(f)) == 3 for f in coarse) and len({tuple(sorted(f)) for f in coarse}) == len(coarse) == 2
    with pytest.raises(ValueError, match="cell"):
        cluster_faces(g, faces, cell=0)
