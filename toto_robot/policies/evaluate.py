"""Roll a policy out in a MuJoCo task: success rate with a Wilson 95% interval, returns, optional video.

Evaluation seeds start at 10_000 so they never overlap the collector's demonstration seeds (0, 1, ...).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from toto_robot.utils.stats import wilson_interval  # noqa: F401  (re-exported: policies.wilson_interval)

EVAL_SEED_OFFSET = 10_000


def evaluate_policy(policy, task: str, episodes: int = 20, seed: int = 0, image_size: int | None = None,
                    video_path: str | Path | None = None, randomization: dict | None = None, progress: bool = True) -> dict:
    """``policy.act(obs) -> action`` (or any callable) on ``episodes`` seeded episodes of ``task``."""
    from toto_robot.data.video import write_video
    from toto_robot.sim_envs import make_env

    act = policy.act if hasattr(policy, "act") else policy
    if image_size is None:
        image_size = int(getattr(policy, "meta", {}).get("image_size", 64))
    camera = getattr(policy, "meta", {}).get("camera", "agentview")  # the view the policy was trained on
    length = getattr(policy, "meta", {}).get("max_steps")  # the episode length its demonstrations were collected with
    env = make_env(task, image_size=image_size, camera=camera, randomization=randomization, **({"max_steps": length} if length else {}))
    successes, returns, lengths, frames, per_episode = 0, [], [], [], []
    for ep in tqdm(range(episodes), desc=f"eval {task}", unit="ep", leave=False, disable=not progress):
        obs, _ = env.reset(seed=EVAL_SEED_OFFSET + seed * 1000 + ep)
        if hasattr(policy, "reset"):  # a chunking policy must not carry actions over from the last episode
            policy.reset()
        done, total, steps, success = False, 0.0, 0, False
        while not done:
            if video_path is not None and ep < 2:
                frames.append(obs["image"])
            obs, reward, terminated, truncated, info = env.step(act(obs))
            total += reward
            steps += 1
            success = success or bool(info.get("success"))
            done = terminated or truncated
        successes += success
        per_episode.append(int(success))
        returns.append(total)
        lengths.append(steps)
    env.close()
    if video_path is not None and frames:
        write_video(video_path, np.stack(frames), fps=20)
    lo, hi = wilson_interval(successes, episodes)
    return {"task": task, "episodes": episodes, "successes": int(successes), "success_rate": successes / max(1, episodes),
            "ci_low": lo, "ci_high": hi, "mean_return": float(np.mean(returns)), "mean_length": float(np.mean(lengths)),
            "per_episode": per_episode}  # success of each seeded episode (the same seeds for every policy: paired tests)
