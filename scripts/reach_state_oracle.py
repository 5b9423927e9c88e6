"""PPO on Franka reach with the target's position handed over in the state (no image): is PPO, at
compare-ppo's settings, able to learn reach in the budget at all? Prints the training success (last 100
episodes) every 5120 env steps.

    MUJOCO_GL=egl python scripts/reach_state_oracle.py [--steps 40000] [--seed 0]

Same PPO settings as ``configs/compare_ppo.yaml`` (8 envs, 64 steps per env per update, 10 epochs, batch
128, lr 3e-4, gamma 0.95, GAE 0.95, initial log std -1, MLP (256, 256)); the observation is the
proprioception and the env's ``privileged`` state (the target's xyz), normalised by running statistics.
"""
from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np


class StateAndTarget(gym.ObservationWrapper):
    """{"state", "privileged", ...} -> float32 [state, privileged]."""

    def __init__(self, env):
        super().__init__(env)
        n = env.observation_space["state"].shape[0] + env.observation_space["privileged"].shape[0]
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (n,), np.float32)

    def observation(self, obs):
        return np.concatenate([obs["state"], obs["privileged"]]).astype(np.float32)


def main() -> None:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from toto_robot.sim_envs import TASK_IDS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=40_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    env = make_vec_env(f"toto_robot.sim_envs:{TASK_IDS['franka_reach'][0]}", n_envs=8, seed=args.seed, wrapper_class=StateAndTarget,
                       env_kwargs={"image_size": 8, "privileged": True}, monitor_kwargs={"info_keywords": ("success",)})
    env = VecNormalize(env, norm_obs=True, norm_reward=True, gamma=0.95)
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=128, n_epochs=10, learning_rate=3e-4, gamma=0.95, gae_lambda=0.95, seed=args.seed,
                policy_kwargs={"net_arch": [256, 256], "log_std_init": -1.0}, verbose=0)
    successes, start = [], time.time()

    class Report(BaseCallback):
        def _on_step(self) -> bool:
            successes.extend(info["success"] for info in self.locals["infos"] if "episode" in info)
            if self.num_timesteps % 5120 < 8:
                print(f"{self.num_timesteps:6d} env steps  {time.time() - start:5.0f} s  training success {np.mean(successes[-100:]) if successes else 0:.2f}", flush=True)
            return True

    model.learn(args.steps, callback=Report())


if __name__ == "__main__":
    main()
