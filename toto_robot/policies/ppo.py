"""PPO (stable-baselines3) on frozen encoder features plus proprioception.

The backbone never trains; its pool trains with the actor-critic. With ``cache_tokens`` (the
default) a vectorised-env wrapper (``FrozenTokens``) runs the backbone once per env step, over all
envs' frames in one pass, and the rollout buffer keeps the tokens: PPO's update epochs then read
them instead of re-encoding every frame ``n_epochs`` times. Without it the backbone sits inside SB3's
feature extractor (SB3 hands the image over channels-first in [0, 1], turned back into the uint8
channels-last frames every encoder takes) and runs on every forward.

    from toto_robot.policies.ppo import PPOConfig, train_ppo
    train_ppo(PPOConfig(task="franka_cabinet", encoder={"name": "random"}, total_timesteps=50_000, out_dir="runs/ppo/x"))

Writes ``policy/`` (``model.zip`` + ``encoder/`` + ``policy.json``, loadable with ``load_policy``),
``monitor.csv`` (per-episode return/success), ``learning_curve.png`` and ``result.json``.
"""
from __future__ import annotations

import csv
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
from stable_baselines3.common.policies import MultiInputActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, MlpExtractor
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from toto_robot.constants import OBS_IMAGE, OBS_STATE
from toto_robot.encoders import encoder_from_spec, load_encoder
from toto_robot.encoders.base import RunningStandardize
from toto_robot.utils.config import ConfigError
from toto_robot.utils.plots import pyplot, save_figure
from toto_robot.utils.io import atomic_save_json


class FrozenEncoderExtractor(BaseFeaturesExtractor):
    """{"image", "state"} -> [encoder features (pooled frozen tokens), state]."""

    def __init__(self, observation_space: gym.spaces.Dict, encoder_dir: str, train_pool: bool = True, estimate_dim: int = 0):
        encoder = load_encoder(encoder_dir)
        state_dim = observation_space[OBS_STATE].shape[0]
        super().__init__(observation_space, features_dim=encoder.feature_dim + state_dim + estimate_dim)
        self.encoder = encoder
        self.encoder.pool.requires_grad_(train_pool)  # False: the pool keeps its initial weights (its running statistics still follow)
        self.state_norm = nn.LayerNorm(state_dim)
        # estimate_dim > 0: a linear estimate of the simulator's object state from the pooled tokens, which
        # the actor and critic read (trained by AuxiliaryStatePolicy's regression, not by PPO's loss)
        self.estimator = nn.Linear(encoder.feature_dim, estimate_dim) if estimate_dim else None
        self.estimate: torch.Tensor | None = None  # the last forward's, with its graph

    def apply(self, fn):
        """SB3 re-initialises the whole feature extractor (orthogonal init) when it builds the policy;
        the frozen encoder must keep its pretrained weights, so only the state normaliser is touched."""
        self.state_norm.apply(fn)
        return self

    def forward(self, obs: dict) -> torch.Tensor:
        img = obs[OBS_IMAGE]
        if img.shape[1] == 3 and img.shape[-1] != 3:  # SB3's VecTransposeImage made it channels-first
            img = img.permute(0, 2, 3, 1)
        if img.dtype != torch.uint8:
            scale = 255.0 if float(img.max()) <= 1.0 + 1e-6 else 1.0
            img = (img * scale).round().clamp(0, 255).to(torch.uint8)
        return self.features(self.encoder.encode_tokens(img), obs[OBS_STATE])

    def features(self, tokens: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Frozen tokens [B, N, C] + state [B, S] -> [pooled tokens, normalised state (, estimate)] [B, F + S (+ P)]."""
        pooled = self.encoder.pool(tokens.float())  # (B, F)
        parts = [pooled, self.state_norm(state.float())]
        if self.estimator is not None:
            self.estimate = self.estimator(pooled)  # (B, P), standardised units
            parts.append(self.estimate.detach())
        return torch.cat(parts, dim=-1)


TOKENS = "tokens"  # observation key of the frozen tokens (``cache_tokens``)
PRIVILEGED = "privileged"  # observation key of the simulator's truth that only an asymmetric critic reads


def frozen_tokens(encoder, images: np.ndarray) -> np.ndarray:
    """uint8 frames [B, H, W, 3] -> the frozen backbone's tokens, float32 [B, N, C] (no gradient)."""
    with torch.no_grad():
        return encoder.encode_tokens(images).float().cpu().numpy()


class FrozenTokens(VecEnvWrapper):
    """``{"image", "state"}`` -> ``{"tokens": float32 [N, C], "state"}``: the frozen backbone's tokens of
    every env's frame, computed in one no-grad pass per step (terminal observations too)."""

    def __init__(self, venv: VecEnv, encoder):
        self.encoder = encoder.eval()
        image_space = venv.observation_space[OBS_IMAGE]
        probe = frozen_tokens(self.encoder, np.zeros((1, *image_space.shape), np.uint8))  # (1, N, C)
        self.keep = [k for k in venv.observation_space.spaces if k != OBS_IMAGE]  # state (+ privileged)
        space = gym.spaces.Dict({TOKENS: gym.spaces.Box(-np.inf, np.inf, probe.shape[1:], np.float32),
                                 **{k: venv.observation_space[k] for k in self.keep}})
        super().__init__(venv, observation_space=space)

    def _convert(self, obs: dict) -> dict:
        return {TOKENS: frozen_tokens(self.encoder, obs[OBS_IMAGE]), **{k: obs[k] for k in self.keep}}

    def reset(self):
        return self._convert(self.venv.reset())

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        ended = [i for i, info in enumerate(infos) if "terminal_observation" in info]  # SB3 bootstraps truncated episodes from these
        if ended:
            last = self._convert({k: np.stack([infos[i]["terminal_observation"][k] for i in ended]) for k in (OBS_IMAGE, *self.keep)})
            for j, i in enumerate(ended):
                infos[i]["terminal_observation"] = {k: v[j] for k, v in last.items()}
        return self._convert(obs), rewards, dones, infos


class FrozenTokenExtractor(FrozenEncoderExtractor):
    """{"tokens", "state"} -> [pooled tokens, normalised state]; the backbone in ``encoder_dir`` is kept
    (and saved) but only its pool runs here."""

    def forward(self, obs: dict) -> torch.Tensor:
        return self.features(obs[TOKENS], obs[OBS_STATE])


class PrivilegedExtractor(BaseFeaturesExtractor):
    """The asymmetric critic's input: {"state", "privileged"} -> LayerNorm([state, privileged]); no image."""

    def __init__(self, observation_space: gym.spaces.Dict):
        dim = observation_space[OBS_STATE].shape[0] + observation_space[PRIVILEGED].shape[0]
        super().__init__(observation_space, features_dim=dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, obs: dict) -> torch.Tensor:
        return self.norm(torch.cat([obs[OBS_STATE].float(), obs[PRIVILEGED].float()], dim=-1))


class AsymmetricActorCriticPolicy(MultiInputActorCriticPolicy):
    """Asymmetric actor-critic (Pinto et al. 2018): the actor reads the frozen encoder's features and the
    proprioception, as the deployed policy does; the critic reads the proprioception and the simulator's
    truth about the objects (``PrivilegedExtractor``). The critic exists only in training, so it may see
    what a robot cannot, and its value estimates need not wait for the pool to learn where things are.
    The pool then trains on the actor's loss alone: on Franka reach (one seed, 30k steps) it did worse
    than the shared critic (3% vs 17% held-out), as the README reports."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "share_features_extractor": False})

    def make_features_extractor(self) -> BaseFeaturesExtractor:
        if getattr(self, "features_extractor", None) is None:  # SB3 makes the actor's extractor first
            return super().make_features_extractor()
        return PrivilegedExtractor(self.observation_space)

    def _build_mlp_extractor(self) -> None:
        pi = MlpExtractor(self.features_extractor.features_dim, net_arch=self.net_arch, activation_fn=self.activation_fn, device=self.device)
        vf = MlpExtractor(self.vf_features_extractor.features_dim, net_arch=self.net_arch, activation_fn=self.activation_fn, device=self.device)
        pi.value_net, pi.latent_dim_vf = vf.value_net, vf.latent_dim_vf  # one module: the actor's tower, the critic's tower
        self.mlp_extractor = pi


class _AttachLoss(torch.autograd.Function):
    """Identity on ``x`` whose backward also sends d(loss)/d(loss) = 1 into ``loss``: whatever backward
    pass reaches ``x`` adds the gradient of ``loss`` too. SB3's PPO builds its own loss from the values
    an ``evaluate_actions`` returns; an auxiliary loss rides along on them, exactly, without a copy of
    PPO's training loop."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, torch.ones((), dtype=grad.dtype, device=grad.device)


class AuxiliaryStatePolicy(MultiInputActorCriticPolicy):
    """Actor-critic that estimates the simulator's object state from the image and acts on the estimate
    too (the pattern of RMA's adaptation module and of Pinto et al. 2018's auxiliary task): the extractor's
    ``estimator``, a linear map of the pooled frozen tokens, regresses the env's ``privileged`` observation
    (standardised by running statistics) with weight ``aux_coef`` in every PPO minibatch, and the actor and
    critic read its output beside the pooled tokens and the proprioception. The pool thus learns *where*
    the object is from a supervised signal as well as from the policy gradient; how well it can is the
    frozen backbone's tokens. Nothing reads the privileged observation but the regression's target, so the
    saved policy acts from image and proprioception alone."""

    def __init__(self, *args, aux_coef: float = 1.0, **kwargs):
        self.aux_coef = aux_coef
        super().__init__(*args, **kwargs)
        self.aux_target = RunningStandardize(self.observation_space[PRIVILEGED].shape[0])
        self.aux_loss = float("nan")  # the last minibatch's, for the logs

    def evaluate_actions(self, obs, actions):
        values, log_prob, entropy = super().evaluate_actions(obs, actions)  # (runs the extractor: its estimate is this batch's)
        target = self.aux_target(obs[PRIVILEGED].float())  # (B, P), standardised
        loss = nn.functional.mse_loss(self.features_extractor.estimate, target)
        self.aux_loss = loss.item()
        return _AttachLoss.apply(values, self.aux_coef * loss), log_prob, entropy


@dataclass
class PPOConfig:
    task: str = "franka_cabinet"
    out_dir: str = "runs/ppo"
    encoder: dict = field(default_factory=lambda: {"name": "random"})
    image_size: int = 64
    camera: str = "agentview"
    total_timesteps: int = 60_000
    n_envs: int = 8  # parallel envs: the encoder sees n_envs frames per forward
    vec_env: str = "dummy"  # dummy (one process) | subproc (one process per env)
    n_steps: int = 64  # per env: a rollout holds n_steps * n_envs transitions
    batch_size: int = 128
    n_epochs: int = 10
    learning_rate: float = 3e-4
    gamma: float = 0.95
    ent_coef: float = 0.0
    gae_lambda: float = 0.95
    log_std_init: float = -1.0  # initial log std of the Gaussian policy (actions live in [-1, 1]: -1 explores with std 0.37)
    normalize_reward: bool = True  # scale rewards by a running estimate of the return's std (SB3 VecNormalize, observations untouched)
    seed: int = 0
    device: str = "cpu"
    eval_episodes: int = 30
    net_arch: tuple[int, ...] = (256, 256)
    cache_tokens: bool = True  # backbone once per env step (FrozenTokens); False: inside the extractor, on every forward
    train_pool: bool = True  # False: the pool keeps its initial weights and only the actor-critic MLPs learn
    asymmetric_critic: bool = False  # the critic reads the simulator's object state instead of the image (training only)
    ood_episodes: int = 10  # rollouts of the trained policy in its training env whose frames make its OOD reference (0: none; policies/ood.py)
    ood_warn_rate: float = 0.01  # ... its WARN threshold: this share of held-out rollouts' frames score above it
    ood_error_rate: float = 0.001  # ... its ERROR threshold
    aux_coef: float = 0.0  # > 0: the pool also learns a linear estimate of the simulator's object state (this weight), which the policy reads


def train_ppo(cfg: PPOConfig) -> Path:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

    from toto_robot.policies.evaluate import evaluate_policy
    from toto_robot.policies.policy import POLICY_CONFIG, load_policy
    from toto_robot.sim_envs import TASK_IDS

    if cfg.vec_env not in ("dummy", "subproc"):
        raise ConfigError(f"vec_env must be 'dummy' or 'subproc', got {cfg.vec_env!r}")
    if cfg.task not in TASK_IDS:
        raise ConfigError(f"unknown task {cfg.task!r}; known: {sorted(TASK_IDS)}")
    if not isinstance(cfg.ood_episodes, int) or cfg.ood_episodes < 0 or cfg.ood_episodes == 1:
        raise ConfigError(f"policy.ood_episodes must be 0 (no OOD reference) or >= 2 (fit on some, calibrate on the others), got {cfg.ood_episodes!r}")
    if cfg.aux_coef < 0 or (cfg.aux_coef and cfg.asymmetric_critic):
        raise ConfigError(f"aux_coef must be >= 0 and is not combined with asymmetric_critic, got aux_coef={cfg.aux_coef}")
    privileged = cfg.asymmetric_critic or cfg.aux_coef > 0
    out = Path(cfg.out_dir)
    policy_dir = out / "policy"
    out.mkdir(parents=True, exist_ok=True)
    atomic_save_json(asdict(cfg), out / "ppo_config.json")
    torch.manual_seed(cfg.seed)
    encoder = encoder_from_spec(cfg.encoder)
    encoder.save_pretrained(policy_dir / "encoder")
    monitor_dir = out / "monitor"
    if monitor_dir.exists():  # a fresh run: episodes of an earlier attempt would join the curve
        shutil.rmtree(monitor_dir)
    # "module:id" makes gymnasium import the registering module first, also inside subprocess envs
    env = make_vec_env(f"toto_robot.sim_envs:{TASK_IDS[cfg.task][0]}", n_envs=cfg.n_envs, seed=cfg.seed, monitor_dir=str(monitor_dir),
                       env_kwargs={"image_size": cfg.image_size, "camera": cfg.camera, "privileged": privileged}, monitor_kwargs={"info_keywords": ("success",)},
                       vec_env_cls=SubprocVecEnv if cfg.vec_env == "subproc" else DummyVecEnv,
                       vec_env_kwargs={"start_method": "spawn"} if cfg.vec_env == "subproc" else None)
    if cfg.cache_tokens:
        env = FrozenTokens(env, encoder)
    if cfg.normalize_reward:  # the Monitor underneath still records the task's own returns
        env = VecNormalize(env, norm_obs=False, norm_reward=True, gamma=cfg.gamma)
    kwargs = {"features_extractor_class": FrozenTokenExtractor if cfg.cache_tokens else FrozenEncoderExtractor,
              "features_extractor_kwargs": {"encoder_dir": str(policy_dir / "encoder"), "train_pool": cfg.train_pool}, "net_arch": {"pi": list(cfg.net_arch), "vf": list(cfg.net_arch)},
              "log_std_init": cfg.log_std_init}
    if cfg.aux_coef:
        kwargs["aux_coef"] = cfg.aux_coef
        kwargs["features_extractor_kwargs"]["estimate_dim"] = env.observation_space[PRIVILEGED].shape[0]
    policy = AsymmetricActorCriticPolicy if cfg.asymmetric_critic else AuxiliaryStatePolicy if cfg.aux_coef else "MultiInputPolicy"
    model = PPO(policy, env, n_steps=cfg.n_steps, batch_size=cfg.batch_size, n_epochs=cfg.n_epochs, learning_rate=cfg.learning_rate,
                gamma=cfg.gamma, gae_lambda=cfg.gae_lambda, ent_coef=cfg.ent_coef, seed=cfg.seed, device=cfg.device, policy_kwargs=kwargs, verbose=0)
    model.learn(total_timesteps=cfg.total_timesteps, progress_bar=True)
    model.save(policy_dir / "model.zip")
    model.policy.features_extractor.encoder.save_pretrained(policy_dir / "encoder")  # with the trained pool
    atomic_save_json({"kind": "ppo", "task": cfg.task, "image_size": cfg.image_size, "camera": cfg.camera, "state_dim": env.observation_space[OBS_STATE].shape[0],
                      "action_dim": env.action_space.shape[0], "encoder": encoder.name,
                      "net_arch": list(cfg.net_arch), "cache_tokens": cfg.cache_tokens,
                      "privileged_dim": env.observation_space[PRIVILEGED].shape[0] if privileged else 0,
                      "estimate_dim": kwargs["features_extractor_kwargs"].get("estimate_dim", 0)}, policy_dir / POLICY_CONFIG)
    env.close()
    if cfg.ood_episodes:
        ood_reference(load_policy(policy_dir), cfg).save(policy_dir)
    curve = read_monitor(monitor_dir)
    plot_learning_curve(curve, out / "learning_curve.png", cfg.task, encoder.name)
    result = {"timesteps": cfg.total_timesteps, "episodes": len(curve), "final_train_success": _tail_mean(curve, "success"),
              "final_train_return": _tail_mean(curve, "r")}
    if cfg.aux_coef:
        result["final_aux_loss"] = model.policy.aux_loss  # the auxiliary regression's last minibatch (standardised units: 1 = guessing the mean)
    if cfg.eval_episodes:
        result["eval"] = evaluate_policy(load_policy(policy_dir), cfg.task, cfg.eval_episodes, seed=cfg.seed, image_size=cfg.image_size)
    atomic_save_json(result, out / "result.json")
    return policy_dir


OOD_SEED_OFFSET = 20_000  # the reference's rollouts: seeds apart from training's (0..) and evaluation's (10_000..)


def ood_reference(policy, cfg: PPOConfig):
    """Frames of ``cfg.ood_episodes`` rollouts of the trained policy in its training env -> its OOD reference (PPO keeps no
    training frames; these are the frames the policy meets when it does what it learnt), fit and calibrated by episode."""
    from toto_robot.policies.ood import fit_reference
    from toto_robot.sim_envs import make_env

    env = make_env(cfg.task, image_size=cfg.image_size, camera=cfg.camera)
    feats = []
    try:
        for ep in range(cfg.ood_episodes):
            obs, _ = env.reset(seed=OOD_SEED_OFFSET + cfg.seed * 1000 + ep)
            rows, done = [], False
            while not done:
                action, f = policy.act_with_features(obs)
                rows.append(f)
                obs, _, terminated, truncated, _ = env.step(action)
                done = terminated or truncated
            feats.append(np.stack(rows))  # (T, F)
    finally:
        env.close()
    return fit_reference(feats, cfg.ood_warn_rate, cfg.ood_error_rate, seed=cfg.seed, feature=f"{policy.encoder.name} pooled")


def read_monitor(monitor_dir: Path) -> list[dict]:
    """SB3 Monitor CSVs of all envs (first line of each is a JSON comment), merged in the order the
    episodes ended -> rows with r (return), l (length), t, success, timesteps (all envs together)."""
    rows = []
    for path in sorted(Path(monitor_dir).glob("*.monitor.csv")):
        with open(path) as f:
            f.readline()
            rows += [{"r": float(r["r"]), "l": int(r["l"]), "t": float(r["t"]), "success": float(r.get("success") in ("True", "1", "1.0"))}
                     for r in csv.DictReader(f)]
    rows.sort(key=lambda r: r["t"])
    steps = np.cumsum([r["l"] for r in rows])
    for r, s in zip(rows, steps):
        r["timesteps"] = int(s)
    return rows


def _tail_mean(rows, key, n=20) -> float:
    return float(np.mean([r[key] for r in rows[-n:]])) if rows else float("nan")


def plot_learning_curve(rows: list[dict], path: Path, task: str, encoder: str) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=120)
    if rows:
        t = [r["timesteps"] for r in rows]
        k = max(1, len(rows) // 10)
        smooth = np.convolve([r["r"] for r in rows], np.ones(k) / k, mode="valid")
        ax.plot(t[k - 1:], smooth, label="episode return")
        ax2 = ax.twinx()
        succ = np.convolve([r["success"] for r in rows], np.ones(k) / k, mode="valid")
        ax2.plot(t[k - 1:], succ, color="tab:green", label="success (moving avg)")
        ax2.set_ylim(0, 1.05)
        ax2.set_ylabel("success")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return")
    ax.set_title(f"PPO {task} / {encoder}")
    save_figure(fig, path)
