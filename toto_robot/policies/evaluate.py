"""Roll a policy out in a MuJoCo task: success rate with a Wilson 95% interval, returns, optional video.

Evaluation seeds start at 10_000 so they never overlap the collector's demonstration seeds (0, 1, ...).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from toto_robot.utils.config import check_int
from toto_robot.utils.stats import wilson_interval  # noqa: F401  (re-exported: policies.wilson_interval)

EVAL_SEED_OFFSET = 10_000


def evaluate_policy(policy, task: str, episodes: int = 20, seed: int = 0, image_size: int | None = None,
                    video_path: str | Path | None = None, randomization: dict | None = None, progress: bool = True,
                    batch: int = 1, env_pool: list | None = None) -> dict:
    """``policy.act(obs) -> action`` (or any callable) on ``episodes`` seeded episodes of ``task``.

    ``batch`` > 1 with a policy that has ``act_batch`` (BC): that many episodes run in lockstep, one
    environment each, and every step encodes their frames in one pass. The episodes and seeds are the
    same as one at a time; a batched forward may round differently in the last float bits.

    ``env_pool``: a list the caller keeps between evaluations of the same task and view (BC evaluating
    every few epochs). The environments are built into it once and left open, and the caller closes
    them (``close_envs``): a MuJoCo renderer takes about half a second to build, more than a short
    rollout. Every episode is still seeded by ``reset``, so reuse changes no result."""
    from toto_robot.data.video import write_video
    from toto_robot.sim_envs import make_env

    check_int(batch, "batch", low=1)
    batched = batch > 1 and hasattr(policy, "act_batch")
    width = min(batch, episodes) if batched else 1
    act = policy.act if hasattr(policy, "act") else policy
    spec = policy_env_spec(policy, task, image_size, randomization)
    envs = env_pool if env_pool is not None else []
    if envs and getattr(envs[0], "_toto_spec", None) != spec:
        raise ValueError(f"env_pool holds environments for {envs[0]._toto_spec}, not {spec}")
    while len(envs) < max(1, width):
        envs.append(make_env(**spec))
        envs[-1]._toto_spec = spec
    envs = envs[: max(1, width)]
    success, returns, lengths = [False] * episodes, [0.0] * episodes, [0] * episodes
    frames: dict[int, list] = {0: [], 1: []}  # the first two episodes, for the video
    bar = tqdm(total=episodes, desc=f"eval {task}", unit="ep", leave=False, disable=not progress)
    for first in range(0, episodes, len(envs)):
        group = list(range(first, min(first + len(envs), episodes)))  # episode ids; group[j] runs in envs[j]
        obs = [envs[j].reset(seed=EVAL_SEED_OFFSET + seed * 1000 + ep)[0] for j, ep in enumerate(group)]
        memories = [policy.new_episode() for _ in group] if batched else None
        if not batched and hasattr(policy, "reset"):  # a chunking policy must not carry actions over from the last episode
            policy.reset()
        live = list(range(len(group)))
        while live:
            if video_path is not None:
                for j in live:
                    if group[j] in frames:
                        frames[group[j]].append(obs[j]["image"])
            if batched:
                actions = policy.act_batch([obs[j] for j in live], [memories[j] for j in live])[0]  # (len(live), A)
            else:
                actions = [act(obs[live[0]])]
            still = []
            for j, action in zip(live, actions):
                ep = group[j]
                obs[j], reward, terminated, truncated, info = envs[j].step(action)
                returns[ep] += reward
                lengths[ep] += 1
                success[ep] = success[ep] or bool(info.get("success"))
                if terminated or truncated:
                    bar.update(1)
                else:
                    still.append(j)
            live = still
    bar.close()
    if env_pool is None:
        close_envs(envs)
    if video_path is not None and frames[0]:
        write_video(video_path, np.stack(frames[0] + frames[1]), fps=20)
    successes = sum(success)
    lo, hi = wilson_interval(successes, episodes)
    return {"task": task, "episodes": episodes, "successes": int(successes), "success_rate": successes / max(1, episodes),
            "ci_low": lo, "ci_high": hi, "mean_return": float(np.mean(returns)), "mean_length": float(np.mean(lengths)),
            "per_episode": [int(s) for s in success]}  # success of each seeded episode (the same seeds for every policy: paired tests)


def policy_env_spec(policy, task: str, image_size: int | None = None, randomization: dict | None = None) -> dict:
    """``make_env`` kwargs that show ``policy`` what it was trained on: its image size, its view as ``image`` and its other
    views (``policy.cameras``) as ``<name>_image``, and its demonstrations' episode length."""
    meta = getattr(policy, "meta", {})
    if image_size is None:
        image_size = int(meta.get("image_size", 64))
    extra = [k[: -len("_image")] for k in getattr(policy, "cameras", []) if k != "image"]  # its other views: obs["<name>_image"]
    length = meta.get("max_steps")  # the episode length its demonstrations were collected with
    return {"task": task, "image_size": image_size, "camera": meta.get("camera", "agentview"), "randomization": randomization,
            **({"max_steps": length} if length else {}), **({"extra_cameras": extra} if extra else {})}


def close_envs(envs: list) -> None:
    """Close the environments of an ``env_pool`` and empty it."""
    for env in envs:
        env.close()
    envs.clear()
