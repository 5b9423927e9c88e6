"""DAgger (Ross, Gordon & Bagnell 2011) with a simulated task's scripted expert: the policy drives, the expert labels.

    toto-robot train-policy policy=bc demos=runs/demos/franka_pick encoder=... policy.dagger_rounds=2 policy.dagger_episodes=100

Behaviour cloning learns from the expert's states only. A policy that drifts a few centimetres off the cube is in a
state no demonstration shows, and nothing there tells it the way back. Each round here rolls the current policy out in
the simulator, its own actions executed (beta = 0; Ross et al.'s first round, beta = 1, is the demonstrations
themselves), and records every frame with the action the scripted expert (``sim_envs.experts``, which reads the
object poses) would take in that state: its memoryless form where the task has one (``PickCorrector``), since the
phase expert labels a state by the phase its own history left it in, and the policy reached the state another way. The episodes go into a demo folder of their own, ``dagger/round_<r>/demos``,
and a fresh policy trains on the demonstrations plus every round so far (``policy.demos`` as a list of folders, each
folder's frozen tokens cached on its own, so a round encodes only its own frames).

Layout of ``out_dir``: ``dagger/round_0/`` (BC on the demonstrations), ``dagger/round_<r>/demos`` and, for every round
but the last, ``dagger/round_<r>/`` (its policy); the last round's policy is ``out_dir/policy`` as for BC, and
``dagger.csv`` / ``dagger.json`` hold each round's frames and how often the policy that drove it succeeded. A stopped
run resumes: finished rounds are kept (``result.json``), a round's rollouts continue from the last whole episode.

Rollout seeds start at ``DAGGER_SEED_OFFSET`` (demonstrations use 0.., evaluation 10_000..), so no evaluation episode is
ever a training episode.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from tqdm.auto import tqdm

from toto_robot.constants import OBS_STATE
from toto_robot.data.demos import DemoMeta, DemoWriter
from toto_robot.data.formats import open_demos
from toto_robot.policies.bc import BCConfig, demo_folders, train_bc
from toto_robot.policies.evaluate import policy_env_spec
from toto_robot.utils.config import ConfigError
from toto_robot.utils.io import atomic_save_json, atomic_write_csv

log = logging.getLogger(__name__)

DAGGER_SEED_OFFSET = 50_000


def train_policy_bc(cfg: BCConfig) -> Path:
    """Behaviour cloning (``bc.train_bc``), with ``cfg.dagger_rounds`` > 0 DAgger rounds on top (``train_dagger``)."""
    return train_dagger(cfg) if cfg.dagger_rounds else train_bc(cfg)


def train_dagger(cfg: BCConfig) -> Path:
    """BC on ``cfg.demos``, then ``cfg.dagger_rounds`` rounds of ``cfg.dagger_episodes`` expert-labelled rollouts of the latest
    policy, each followed by BC from scratch on everything so far -> the last policy's folder (``out_dir/policy``)."""
    from toto_robot.policies import load_policy
    from toto_robot.sim_envs import TASK_IDS

    out = Path(cfg.out_dir)
    folders = demo_folders(cfg.demos)
    meta = open_demos(folders[0]).meta
    if meta.task not in TASK_IDS:
        raise ConfigError(f"policy.dagger_rounds needs demonstrations of a simulated task with a scripted expert ({', '.join(TASK_IDS)}); "
                          f"{folders[0]} is of task {meta.task!r}")
    if cfg.dagger_episodes > 1000:
        raise ConfigError(f"policy.dagger_episodes must be <= 1000 (each round's rollout seeds are a block of 1000), got {cfg.dagger_episodes}")
    policy_dir = _round_bc(replace(cfg, dagger_rounds=0, eval_episodes=0, out_dir=str(out / "dagger" / "round_0")))
    rows = []
    for r in range(1, cfg.dagger_rounds + 1):
        data = out / "dagger" / f"round_{r}" / "demos"
        seed = DAGGER_SEED_OFFSET + cfg.seed * 10_000 + r * 1000
        rollouts = expert_labelled_rollouts(load_policy(policy_dir, device=cfg.device), meta.task, cfg.dagger_episodes, seed, data,
                                            replace(meta, extra={**meta.extra, "dagger_round": r, "driven_by": str(policy_dir),
                                                                 "dagger_expert": cfg.dagger_expert}),
                                            memoryless=cfg.dagger_expert == "memoryless")
        folders.append(str(data))
        last = r == cfg.dagger_rounds
        rows.append({"round": r, "episodes": rollouts["episodes"], "frames": rollouts["frames"],
                     "driving_policy_success": rollouts["success_rate"], "demo_folders": len(folders)})
        log.info("DAgger round %d/%d: the round-%d policy succeeded in %d/%d rollouts; %d expert-labelled frames added",
                 r, cfg.dagger_rounds, r - 1, rollouts["successes"], rollouts["episodes"], rollouts["frames"])
        round_cfg = replace(cfg, demos=list(folders), dagger_rounds=0)
        policy_dir = train_bc(round_cfg) if last else _round_bc(replace(round_cfg, eval_episodes=0, out_dir=str(out / "dagger" / f"round_{r}")))
    atomic_write_csv(rows, out / "dagger.csv", list(rows[0]))
    atomic_save_json({"rounds": rows, "seed_offset": DAGGER_SEED_OFFSET, "demos": folders}, out / "dagger.json")
    return policy_dir


def _round_bc(cfg: BCConfig) -> Path:
    """One round's BC, or the policy a finished earlier run of the same round left (its ``result.json`` written last)."""
    out = Path(cfg.out_dir)
    if (out / "result.json").is_file() and (out / "policy").is_dir():
        log.info("DAgger: %s is done already, kept", out)
        return out / "policy"
    return train_bc(cfg)


def expert_labelled_rollouts(policy, task: str, episodes: int, seed: int, out: str | Path, meta: DemoMeta, memoryless: bool = True) -> dict:
    """``episodes`` rollouts of ``policy`` in ``task`` (seeds ``seed``, ``seed + 1``, ...), the policy's actions executed, written
    to the demo folder ``out`` with the scripted expert's action for every recorded state as the action (every camera the
    environment renders is kept; ``memoryless``: the task's memoryless expert where it has one). Resumes after the last
    whole episode in ``out``. Returns the episodes, frames and the driving policy's successes."""
    from toto_robot.sim_envs import make_env
    from toto_robot.sim_envs.collect import rollout
    from toto_robot.sim_envs.experts import make_expert

    env = make_env(**policy_env_spec(policy, task))
    writer = DemoWriter(out, meta)
    start = writer.next_index()
    earlier = open_demos(out)  # episodes a stopped run wrote: read for their counts only
    outcomes = [(len(ep[OBS_STATE]), bool(ep["success"])) for ep in (earlier[i] for i in range(start))]  # (frames, success)
    try:
        for i in tqdm(range(start, episodes), desc=f"dagger {task}", unit="ep", initial=start, total=episodes):
            expert = make_expert(env, noise=0.0, memoryless=memoryless)  # memoryless: the same state always gets the same label
            ep = rollout(env, policy.act, seed + i, label=expert.act, reset=policy.reset)
            writer.write_episode(ep["image"][:-1], ep["state"], ep["action"], ep["reward"], ep["success"], seed=seed + i, cameras=ep["cameras"])
            outcomes.append((len(ep["state"]), bool(ep["success"])))
    finally:
        env.close()
    successes = sum(ok for _, ok in outcomes)
    return {"episodes": len(outcomes), "frames": int(sum(n for n, _ in outcomes)), "successes": int(successes),
            "success_rate": successes / max(1, len(outcomes))}
