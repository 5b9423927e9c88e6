"""Roll out scripted experts (or random actions) and write a demonstration dataset plus videos.

    from toto_robot.sim_envs.collect import CollectConfig, collect
    out = collect(CollectConfig(task="franka_pick", episodes=50, out_dir="runs/demos/franka_pick"))

The output is the shared demonstration format (``toto_robot.data.demos``): ``meta.json`` and one
atomic ``episodes/episode_NNNNNN.npz`` per episode. With ``videos=True`` each episode is also
written as ``videos/episode_NNNNNN.mp4`` (H.264), which is what the video tokenizer and
pre-training read, and ``preview.mp4`` tiles the first episodes for a quick look.

Episode ``i`` is always rolled out with seed ``seed + i`` (with ``only_success``, the next untried seed),
so an interrupted collection that is run again continues at the first missing episode and produces
the same dataset. One episode is one unit, written in this order: its video (atomic), then its
``.npz`` (atomic, holding the seed it was rolled out with: the resume marker), then
``collect_state.json`` (only a shortcut past failed ``only_success`` attempts). The ``.npz`` landing
is the commit: a rerun deletes hidden temporary files and any video without its episode, and
resumes after the seed of the newest episode, so a kill at any instant neither repeats nor loses one.
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
from toto_robot.sim_envs import ALL_TASKS, METAWORLD_TASK_IDS, make_env
from toto_robot.sim_envs.base_env import CONTROL_DT
from toto_robot.sim_envs.experts import make_expert
from toto_robot.utils.config import ConfigError, check_bool, check_choice, check_int, check_number
from toto_robot.utils.io import atomic_save_json, remove_partial

log = logging.getLogger(__name__)


DEMO_RANDOMIZATION = {"lighting": True, "colors": True, "camera_jitter": 0.01}  # every demo's scene (configs/collect.yaml says the same)


@dataclass
class CollectConfig:
    task: str = "franka_pick"  # one of ALL_TASKS (the project's tasks and the MetaWorld mw_* tasks)
    episodes: int = 20
    out_dir: str = "runs/demos/franka_pick"
    image_size: int = 64
    camera: str = "agentview"  # agentview | sideview | workspace | wrist | hand: the view stored as `image`
    cameras: list[str] = field(default_factory=list)  # more views stored beside it, each as `<name>_image` (e.g. [wrist])
    mode: str = "expert"  # expert | random
    noise: float = 0.1  # expert exploration noise (in action units), more diverse videos
    noise_all: bool = False  # noise on every step (default: only while the expert travels, not at the object)
    label: str = "executed"  # executed: store the (noisy) action run | expert: DART, store the clean memoryless expert's action
    seed: int = 0
    randomization: dict = field(default_factory=lambda: dict(DEMO_RANDOMIZATION))
    only_success: bool = False  # keep retrying seeds until `episodes` successful episodes are stored
    videos: bool = True
    preview_episodes: int = 4
    max_attempts_factor: int = 3  # only_success: give up after episodes * factor attempts
    max_steps: int | None = None  # episode length (None: the task's own); kept in meta.json so evaluation uses the same

    def __post_init__(self):
        """Checked before any work; errors name the hydra key (collect.* / task.*) and the allowed range."""
        check_choice(self.task, "task.name", ALL_TASKS)
        check_int(self.episodes, "collect.episodes", low=1)
        check_int(self.image_size, "task.image_size", low=8, high=1024)
        check_choice(self.mode, "collect.mode", ("expert", "random"))
        check_choice(self.label, "collect.label", ("executed", "expert"))
        if self.label == "expert" and self.mode != "expert":
            raise ConfigError("collect.label=expert labels an expert's noisy rollout with its clean action: it needs collect.mode=expert")
        self.cameras = list(self.cameras or [])
        if self.camera in self.cameras:
            raise ConfigError(f"collect.cameras lists {self.camera!r}, the view already stored as `image` (task.camera)")
        if self.cameras and self.task in METAWORLD_TASK_IDS:
            raise ConfigError(f"collect.cameras: the MetaWorld task {self.task} renders one view")
        self.noise = check_number(self.noise, "collect.noise", low=0)
        check_int(self.seed, "collect.seed", low=0)
        check_int(self.preview_episodes, "collect.preview_episodes", low=0)
        check_int(self.max_attempts_factor, "collect.max_attempts_factor", low=1)
        if self.max_steps is not None:
            check_int(self.max_steps, "collect.max_steps", low=1)
        for key in ("only_success", "videos", "noise_all"):
            check_bool(getattr(self, key), f"collect.{key}")


def rollout(env, policy, seed: int, label=None, reset=None) -> dict:
    """One episode: ``policy(obs) -> action``. Returns arrays image/state/action/reward and success, and every other
    camera of the observation (``<name>_image``) beside ``image``. ``label(obs) -> action``: the action stored is
    ``label``'s for each state, asked before ``policy`` acts (DAgger's expert), not the one executed. ``reset()`` runs
    after the environment's reset (a stateful policy or label starting its episode)."""
    obs, info = env.reset(seed=seed)
    if reset is not None:
        reset()
    images, states, actions, rewards = [], [], [], []
    views = {k: [] for k in obs if k.endswith("_image")}
    done, success = False, False
    while not done:
        stored = None if label is None else np.asarray(label(obs), dtype=np.float32)
        action = np.asarray(policy(obs), dtype=np.float32)
        images.append(obs["image"])
        for k in views:
            views[k].append(obs[k])
        states.append(obs["state"])
        actions.append(action if stored is None else stored)
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        success = success or bool(info.get("success", False))
        done = terminated or truncated
    images.append(obs["image"])  # the final frame shows the outcome; videos keep it, the demo pairs drop it
    return {"image": np.stack(images), "state": np.stack(states), "action": np.stack(actions),
            "reward": np.asarray(rewards, np.float32), "success": success, "cameras": {k: np.stack(v) for k, v in views.items()}}


def _dart_extra(cfg: CollectConfig) -> dict:
    """meta.json's record of how actions were labelled; the default (the executed action, noise while travelling) adds
    nothing, so earlier datasets' metadata is unchanged."""
    return {**({"label": cfg.label} if cfg.label != "executed" else {}), **({"noise_all": True} if cfg.noise_all else {})}


def _tile(clips: list[np.ndarray]) -> np.ndarray:
    """Up to 4 clips [T_i,H,W,3] -> one [T,2H,2W,3] grid (shorter clips hold their last frame)."""
    clips = clips[:4] + [np.zeros_like(clips[0][:1])] * (4 - len(clips[:4]))
    T = max(len(c) for c in clips)
    pad = [np.concatenate([c, np.repeat(c[-1:], T - len(c), 0)]) for c in clips]
    top, bottom = np.concatenate(pad[:2], axis=2), np.concatenate(pad[2:], axis=2)
    return np.concatenate([top, bottom], axis=1)


def collect(cfg: CollectConfig) -> Path:
    out = Path(cfg.out_dir)
    length = {} if cfg.max_steps is None else {"max_steps": cfg.max_steps}
    if cfg.task in METAWORLD_TASK_IDS:  # its own camera names, no visual randomization
        env = make_env(cfg.task, image_size=cfg.image_size, **({} if cfg.camera == "agentview" else {"camera": cfg.camera}), **length)
    else:
        env = make_env(cfg.task, image_size=cfg.image_size, camera=cfg.camera, randomization=cfg.randomization, extra_cameras=cfg.cameras, **length)
    base = env.unwrapped
    meta = DemoMeta(source="sim", task=cfg.task, image_size=(cfg.image_size, cfg.image_size),
                    state_dim=env.observation_space["state"].shape[0], action_dim=env.action_space.shape[0],
                    fps=float(env.metadata.get("render_fps", 1.0 / CONTROL_DT)), action_space=base.control,
                    extra={"mode": cfg.mode, "noise": cfg.noise, **_dart_extra(cfg), **length, **({"cameras": cfg.cameras} if cfg.cameras else {}),
                                                               "camera": base.camera if cfg.task in METAWORLD_TASK_IDS else cfg.camera})
    writer = DemoWriter(out, meta)  # deletes partial episodes
    done = writer.next_index()
    _remove_orphan_videos(out, done)
    remove_partial(out)
    atomic_save_json(asdict(cfg), out / "collect_config.json")
    state_path = out / "collect_state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {"next_seed_offset": 0}
    last_seed = writer.last_seed()
    attempt = max(state["next_seed_offset"], 0 if last_seed is None else last_seed - cfg.seed + 1)
    max_attempts = cfg.episodes * (cfg.max_attempts_factor if cfg.only_success else 1)
    start, successes = done, 0
    bar = tqdm(total=cfg.episodes, initial=done, desc=f"collect {cfg.task}", unit="ep")
    while done < cfg.episodes:
        if attempt >= max_attempts:
            raise RuntimeError(f"{cfg.task}: only {done}/{cfg.episodes} successful episodes after {attempt} attempts")
        seed = cfg.seed + attempt
        if cfg.mode == "expert":
            dart = cfg.label == "expert"  # DART: the noisy memoryless expert drives, the clean one labels each state it reaches
            expert = make_expert(env, noise=cfg.noise, rng=np.random.default_rng(seed), memoryless=dart, noise_all=cfg.noise_all)
            ep = rollout(env, expert.act, seed, label=make_expert(env, memoryless=True).act if dart else None)
        else:
            rng = np.random.default_rng(seed)
            ep = rollout(env, lambda obs: rng.uniform(-1, 1, env.action_space.shape), seed)
        attempt += 1
        if cfg.only_success and not ep["success"]:
            atomic_save_json({"next_seed_offset": attempt}, state_path)
            continue
        name = f"episode_{done:06d}"
        if cfg.videos:  # before the episode: an episode on disk always has its video
            write_video(out / "videos" / f"{name}.mp4", ep["image"], fps=int(round(meta.fps)))
        writer.write_episode(ep["image"][:-1], ep["state"], ep["action"], ep["reward"], ep["success"], seed=seed,
                             cameras=ep["cameras"])  # the commit
        atomic_save_json({"next_seed_offset": attempt}, state_path)
        done += 1
        successes += bool(ep["success"])
        bar.update(1)
        bar.set_postfix(success=f"{successes}/{done - start}")
    bar.close()
    env.close()
    ds = DemoDataset(out)
    if cfg.preview_episodes and not (out / "preview.mp4").exists():
        write_video(out / "preview.mp4", _tile([ds[i]["image"] for i in range(min(cfg.preview_episodes, len(ds)))]), fps=int(round(meta.fps)))
    summary = {"task": cfg.task, "episodes": len(ds), "success_rate": ds.success_rate(), "attempts": attempt}
    atomic_save_json(summary, out / "summary.json")
    log.info("collected %s", summary)
    return out


def _remove_orphan_videos(out: Path, episodes: int) -> None:
    """Videos whose episode never landed (a crash between the two writes), and temporary files."""
    videos = out / "videos"
    remove_partial(videos)
    for p in videos.glob("episode_*.mp4") if videos.is_dir() else []:
        if int(p.stem.split("_")[1]) >= episodes:
            p.unlink()
