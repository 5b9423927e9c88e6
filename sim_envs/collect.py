"""Roll out scripted experts (or random actions) and write a demonstration dataset plus videos.

    from toto_robot.sim_envs.collect import CollectConfig, collect
    out = collect(CollectConfig(task="franka_pick", episodes=50, out_dir="runs/demos/franka_pick"))

The output is the shared demonstration format (``toto_robot.data.demos``): ``meta.json`` and one
atomic ``episodes/episode_NNNNNN.npz`` per episode. With ``videos=True`` each episode is also
written as ``videos/episode_NNNNNN.mp4`` (H.264), which is what the video tokenizer and
pre-training read, and ``preview.mp4`` tiles the first episodes for a quick look.

Episode ``i`` is always rolled out with seed ``seed + i``, so an interrupted collection that is
run again continues at the first missing episode and produces the same dataset.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from toto_robot.data.demos import DemoDataset, DemoMeta, DemoWriter
from toto_robot.data.video import write_video
from toto_robot.sim_envs import TASK_IDS, make_env
from toto_robot.sim_envs.base_env import CONTROL_DT
from toto_robot.sim_envs.experts import make_expert
from toto_robot.utils.io import atomic_save_json

log = logging.getLogger(__name__)


@dataclass
class CollectConfig:
    task: str = "franka_pick"  # one of TASK_IDS
    episodes: int = 20
    out_dir: str = "runs/demos/franka_pick"
    image_size: int = 64
    camera: str = "agentview"  # agentview | sideview | workspace | wrist
    mode: str = "expert"  # expert | random
    noise: float = 0.1  # expert exploration noise (in action units), more diverse videos
    seed: int = 0
    randomization: dict = field(default_factory=lambda: {"lighting": True, "colors": True, "camera_jitter": 0.01})
    only_success: bool = False  # keep retrying seeds until `episodes` successful episodes are stored
    videos: bool = True
    preview_episodes: int = 4
    max_attempts_factor: int = 3  # only_success: give up after episodes * factor attempts


def rollout(env, policy, seed: int) -> dict:
    """One episode: ``policy(obs) -> action``. Returns arrays image/state/action/reward and success."""
    obs, info = env.reset(seed=seed)
    images, states, actions, rewards = [], [], [], []
    done, success = False, False
    while not done:
        action = np.asarray(policy(obs), dtype=np.float32)
        images.append(obs["image"])
        states.append(obs["state"])
        actions.append(action)
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        success = success or bool(info.get("success", False))
        done = terminated or truncated
    images.append(obs["image"])  # the final frame shows the outcome; videos keep it, the demo pairs drop it
    return {"image": np.stack(images), "state": np.stack(states), "action": np.stack(actions),
            "reward": np.asarray(rewards, np.float32), "success": success}


def _tile(clips: list[np.ndarray]) -> np.ndarray:
    """Up to 4 clips [T_i,H,W,3] -> one [T,2H,2W,3] grid (shorter clips hold their last frame)."""
    clips = clips[:4] + [np.zeros_like(clips[0][:1])] * (4 - len(clips[:4]))
    T = max(len(c) for c in clips)
    pad = [np.concatenate([c, np.repeat(c[-1:], T - len(c), 0)]) for c in clips]
    top, bottom = np.concatenate(pad[:2], axis=2), np.concatenate(pad[2:], axis=2)
    return np.concatenate([top, bottom], axis=1)


def collect(cfg: CollectConfig) -> Path:
    if cfg.task not in TASK_IDS:
        raise ValueError(f"unknown task {cfg.task!r}; known: {sorted(TASK_IDS)}")
    if cfg.mode not in ("expert", "random"):
        raise ValueError(f"collect mode must be 'expert' or 'random', got {cfg.mode!r}")
    out = Path(cfg.out_dir)
    env = make_env(cfg.task, image_size=cfg.image_size, camera=cfg.camera, randomization=cfg.randomization)
    base = env.unwrapped
    meta = DemoMeta(source="sim", task=cfg.task, image_size=(cfg.image_size, cfg.image_size),
                    state_dim=env.observation_space["state"].shape[0], action_dim=env.action_space.shape[0],
                    fps=1.0 / CONTROL_DT, action_space=base.control, extra={"mode": cfg.mode, "noise": cfg.noise, "camera": cfg.camera})
    writer = DemoWriter(out, meta)
    atomic_save_json(asdict(cfg), out / "collect_config.json")
    state_path = out / "collect_state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {"next_seed_offset": 0}
    done = writer.next_index()
    attempt = state["next_seed_offset"]
    max_attempts = cfg.episodes * (cfg.max_attempts_factor if cfg.only_success else 1)
    preview, start, successes = [], done, 0
    bar = tqdm(total=cfg.episodes, initial=done, desc=f"collect {cfg.task}", unit="ep")
    while done < cfg.episodes:
        if attempt >= max_attempts:
            raise RuntimeError(f"{cfg.task}: only {done}/{cfg.episodes} successful episodes after {attempt} attempts")
        seed = cfg.seed + attempt
        if cfg.mode == "expert":
            expert = make_expert(env, noise=cfg.noise, rng=np.random.default_rng(seed))
            ep = rollout(env, expert.act, seed)
        else:
            rng = np.random.default_rng(seed)
            ep = rollout(env, lambda obs: rng.uniform(-1, 1, env.action_space.shape), seed)
        attempt += 1
        if cfg.only_success and not ep["success"]:
            atomic_save_json({"next_seed_offset": attempt}, state_path)
            continue
        path = writer.write_episode(ep["image"][:-1], ep["state"], ep["action"], ep["reward"], ep["success"])
        if cfg.videos:
            write_video(out / "videos" / path.with_suffix(".mp4").name, ep["image"], fps=int(round(meta.fps)))
        if len(preview) < cfg.preview_episodes:
            preview.append(ep["image"])
        atomic_save_json({"next_seed_offset": attempt}, state_path)
        done += 1
        successes += bool(ep["success"])
        bar.update(1)
        bar.set_postfix(success=f"{successes}/{done - start}")
    bar.close()
    env.close()
    if preview and not (out / "preview.mp4").exists():
        write_video(out / "preview.mp4", _tile(preview), fps=int(round(meta.fps)))
    ds = DemoDataset(out)
    summary = {"task": cfg.task, "episodes": len(ds), "success_rate": ds.success_rate(), "attempts": attempt}
    atomic_save_json(summary, out / "summary.json")
    log.info("collected %s", summary)
    return out
