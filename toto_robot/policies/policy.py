"""A visuomotor policy on a frozen encoder: ``act(obs) -> action``; one folder holds everything.

    policy = load_policy("runs/bc/<run>/policy")
    action = policy.act({"image": uint8 [H, W, 3], "state": float32 [S]})   # float32 [A] in [-1, 1]

Actions: a simulator's lie in [-1, 1] and the head ends in tanh; a real robot's (joint angles, servo
ticks) are learnt standardised by the training episodes' mean and std (``action_mean``/``action_std``,
saved with the head), the head is linear and ``act`` returns them in the robot's own units.

Folder layout: ``policy.json`` (kind, dims, state normalisation), ``encoder/`` (the frozen encoder
with its trained pool, see ``Encoder.save_pretrained``), ``head.safetensors`` (the head: an MLP or ACT's
transformer decoder, ``heads.py``), or for
PPO ``model.zip`` (a stable-baselines3 PPO whose feature extractor reads ``encoder/``).
"""
from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from toto_robot.constants import OBS_IMAGE, OBS_STATE
from toto_robot.encoders import Encoder, load_encoder
from toto_robot.encoders.base import FrameFormatError
from toto_robot.policies.heads import HEADS, POOLED_HEADS, ChunkTransformerHead, MLPHead
from toto_robot.utils.config import ConfigError
from toto_robot.utils.io import CheckpointError, atomic_save_json, atomic_save_tensors

POLICY_CONFIG = "policy.json"
HEAD_WEIGHTS = "head.safetensors"


class Policy(nn.Module):
    """Frozen encoder + a trainable head (``heads.py``) that predicts a chunk of ``chunk`` actions per frame.

    ``head="mlp"``: the encoder's trainable pool squeezes each frame to a vector; ``history`` > 1 reads the
    pooled features of the last ``history`` frames, oldest first (CortexBench's frame history; at an
    episode's start the first frame stands in for the frames before it). ``head="transformer"``: ACT's
    decoder reads every frozen token of the frame (``n_tokens`` per camera). ``head="ridge"``: the pool as built (not
    trained) and one linear map, fit in closed form by ``bc.fit_policy`` (needs standardised actions). ``state_history`` k > 1: the head also reads how far
    the state moved over the last k - 1 steps (``with_motion``); an episode's first state stands in for the states before it.

    Actions: ``action_mean``/``action_std`` [A] given: the head predicts targets standardised by them
    (linear output) and ``act`` maps them back; None: tanh actions in [-1, 1]. ``relative``: the action dims
    learnt as the action minus the same-index state dim at the frame the chunk was predicted from, added
    back when acting (joint-position targets of a real arm). State: standardised by ``state_mean``/
    ``state_std`` and clipped to +-``state_clip``, so a dim that hardly moved in training cannot blow up.

    Executing chunks: ``temporal_ensemble`` None: the first ``action_steps`` actions of each chunk run open
    loop, then a new chunk. A float m: ACT's temporal ensembling, a chunk every step and the executed action
    the mean of every chunk's prediction for this step weighted exp(-m * i), i = 0 for the oldest."""

    kind = "bc"

    def __init__(self, encoder: Encoder, state_dim: int, action_dim: int, hidden: int = 256, use_state: bool = True,
                 state_mean=None, state_std=None, meta: dict | None = None, chunk: int = 1, action_steps: int = 1,
                 history: int = 1, hidden_sizes: list[int] | None = None, activation: str = "gelu", action_mean=None, action_std=None,
                 head: str = "mlp", head_config: dict | None = None, n_tokens: int | None = None, temporal_ensemble: float | None = None,
                 relative: list[int] | None = None, state_clip: float | None = None, cameras: list[str] | None = None,
                 state_history: int = 1):
        super().__init__()
        if (action_mean is None) != (action_std is None):
            raise ConfigError("action_mean and action_std go together: give both (standardised actions) or neither (tanh actions)")
        if not 1 <= action_steps <= chunk:
            raise ConfigError(f"action_steps must be in 1..chunk ({chunk}), got {action_steps}")
        if history < 1 or state_history < 1:
            raise ConfigError(f"history and state_history must be >= 1, got {history} and {state_history}")
        if head not in HEADS:
            raise ConfigError(f"unknown policy head {head!r}: expected one of {', '.join(HEADS)}")
        if head == "ridge" and action_mean is None:
            raise ConfigError("the ridge head learns standardised actions: it needs action_mean and action_std (policy.action_norm=standard)")
        if head == "transformer" and (history != 1 or not n_tokens):
            raise ConfigError(f"the transformer head reads one frame's tokens: it needs history=1 (got {history}) and n_tokens (got {n_tokens})")
        if temporal_ensemble is not None and (temporal_ensemble < 0 or action_steps != 1):
            raise ConfigError(f"temporal ensembling predicts a chunk every step: it needs a weight >= 0 (got {temporal_ensemble}) "
                              f"and action_steps=1 (got {action_steps})")
        self.relative = sorted(int(d) for d in (relative or []))
        if self.relative and (action_mean is None or max(self.relative) >= min(state_dim, action_dim) or min(self.relative) < 0):
            raise ConfigError(f"relative action dims {self.relative} need standardised actions and a state dim of the same index "
                              f"(state {state_dim}, action {action_dim} dims)")
        self.encoder = encoder
        self.use_state, self.state_dim, self.action_dim, self.hidden = use_state, state_dim, action_dim, hidden
        self.chunk, self.action_steps = chunk, action_steps  # predict `chunk` actions, execute the first `action_steps`
        self.history, self.hidden_sizes, self.activation = history, None if hidden_sizes is None else list(hidden_sizes), activation
        self.head_kind, self.head_config, self.n_tokens = head, dict(head_config or {}), n_tokens
        self.temporal_ensemble, self.state_clip, self.state_history = temporal_ensemble, state_clip, state_history
        state_in = state_dim * state_history  # the state, then its change over each of the last state_history - 1 steps
        self.cameras = list(cameras or [OBS_IMAGE])  # the observation keys of the views it reads, each through the same encoder
        if len(set(self.cameras)) != len(self.cameras):
            raise ConfigError(f"policy cameras must be distinct, got {self.cameras}")
        squash = action_mean is None
        if head in POOLED_HEADS:
            self.head = MLPHead(encoder.feature_dim * history * len(self.cameras), state_in if use_state else 0, action_dim * chunk, hidden,
                                [] if head == "ridge" else self.hidden_sizes, activation, squash=squash)
        else:
            self.head = ChunkTransformerHead(encoder.token_dim, n_tokens, state_in if use_state else 0, action_dim, chunk,
                                             cameras=len(self.cameras), squash=squash, **self.head_config)
        self.action_norm = "none" if action_mean is None else "standard"
        self._episode = self.new_episode()  # what ``act`` remembers between calls
        self.register_buffer("state_mean", torch.as_tensor(np.zeros(state_in) if state_mean is None else state_mean, dtype=torch.float32))
        self.register_buffer("state_std", torch.as_tensor(np.ones(state_in) if state_std is None else state_std, dtype=torch.float32))
        if self.state_mean.shape != (state_in,) or self.state_std.shape != (state_in,):
            raise ConfigError(f"state_mean/state_std must have {state_in} values (state {state_dim} x state_history {state_history}), "
                              f"got {tuple(self.state_mean.shape)} and {tuple(self.state_std.shape)}")
        self.meta = dict(meta or {})
        if action_mean is not None:
            self.register_buffer("action_mean", torch.as_tensor(action_mean, dtype=torch.float32).reshape(action_dim))
            self.register_buffer("action_std", torch.as_tensor(action_std, dtype=torch.float32).reshape(action_dim))

    def state_input(self, state: torch.Tensor) -> torch.Tensor | None:
        """State [B, S * state_history] (``with_motion``; the raw state when state_history is 1) -> what the head reads:
        standardised, clipped to +-``state_clip`` (None without ``use_state``)."""
        if not self.use_state:
            return None
        x = (state - self.state_mean) / self.state_std
        return x.clamp(-self.state_clip, self.state_clip) if self.state_clip else x

    def _base(self, state: torch.Tensor) -> torch.Tensor:
        return relative_base(state, self.relative, self.action_dim)

    def targets(self, chunks: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Action chunks [B, chunk * A] in the robot's units + raw state [B, S] -> the head's output space: relative dims
        minus the state, then standardised (identity for tanh actions)."""
        if self.action_norm == "none":
            return chunks
        x = chunks.reshape(len(chunks), -1, self.action_dim) - self._base(state)  # (B, chunk, A)
        return ((x - self.action_mean) / self.action_std).reshape(chunks.shape)

    def actions_from_outputs(self, outputs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """The head's outputs [B, chunk * A] + the raw state they were predicted from [B, S] -> actions in the robot's units."""
        if self.action_norm == "none":
            return outputs
        x = outputs.reshape(len(outputs), -1, self.action_dim) * self.action_std + self.action_mean  # (B, chunk, A)
        return (x + self._base(state)).reshape(outputs.shape)

    def act_from_features(self, feats: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """MLP head: pooled features [B, history * F] + raw state [B, S] -> the head's outputs [B, chunk * A]
        (``actions_from_outputs`` maps them to actions)."""
        return self.head(feats, self.state_input(state))

    def frame_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """One frame's tokens of every camera [B, K * N, C] (camera by camera) -> each camera pooled alone, [B, K * F]."""
        B, K = tokens.shape[0], len(self.cameras)
        return self.encoder.pool(tokens.reshape(B * K, -1, tokens.shape[-1]).float()).reshape(B, -1)

    def pool_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Frozen tokens [B, K * N, C] (one frame) or [B, history, K * N, C] (oldest first) -> features [B, history * K * F]."""
        if tokens.ndim == 3:
            tokens = tokens[:, None]
        if tokens.shape[1] != self.history:
            raise ValueError(f"policy reads {self.history} frame(s) of tokens, got {tokens.shape[1]}")
        B = tokens.shape[0]
        return self.frame_features(tokens.flatten(0, 1)).reshape(B, -1)

    def forward_tokens(self, tokens: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Cached frozen tokens [B, N, C] or [B, history, N, C] + raw state [B, S] -> the head's outputs [B, chunk * A] (the BC
        training path; compare with ``targets(chunks, state)``)."""
        if self.head_kind in POOLED_HEADS:
            return self.act_from_features(self.pool_tokens(tokens), state)
        if tokens.ndim == 4:
            tokens = tokens[:, -1]  # (B, N, C): the transformer head reads the current frame
        return self.head(tokens.float(), self.state_input(state))

    def forward(self, frames, state: torch.Tensor) -> torch.Tensor:
        return self.forward_tokens(self.encoder.encode_tokens(frames), state)

    def new_episode(self) -> "EpisodeMemory":
        """Empty memory for one rollout (``act_batch`` keeps one per environment)."""
        return EpisodeMemory(self.history, self.chunk, self.state_history)

    def reset(self) -> None:
        """Forget the rest of the current action chunk and the frame history (call at the start of every episode)."""
        self._episode = self.new_episode()

    @torch.no_grad()
    def act_batch(self, observations: list[dict], episodes: list["EpisodeMemory"]) -> tuple[np.ndarray, np.ndarray]:
        """One encoder pass over B rollouts' frames -> (actions float32 [B, A], pooled features float32 [B, F]).

        ``episodes[i]`` is rollout i's memory (``new_episode()``): its last frames' features, its planned chunks and
        the rest of its action chunk. Without temporal ensembling a rollout predicts a new chunk only once the last
        one's ``action_steps`` actions have been executed; with it, every step. The features are always this frame's."""
        if len(observations) != len(episodes):
            raise ValueError(f"act_batch: {len(observations)} observations for {len(episodes)} episode memories")
        checked = [_check_obs(obs, self.state_dim, self.cameras) for obs in observations]
        self.eval()
        tokens = torch.cat([self.encoder.encode_tokens(np.stack([images[k] for images, _ in checked])).float()
                            for k in range(len(self.cameras))], dim=1)  # (B, K * N, C): one batched pass per camera
        feats = self.frame_features(tokens)  # (B, K * F): the MLP's input, and what the OOD monitor and the feature topic read
        if self.head_kind in POOLED_HEADS:
            tokens = None
        for i, ep in enumerate(episodes):
            while len(ep.frames) < self.history - 1:  # an episode's first frame stands in for the frames before it
                ep.frames.append(feats[i : i + 1])
            ep.frames.append(feats[i : i + 1])
            state = torch.from_numpy(checked[i][1])
            while len(ep.states) < self.state_history - 1:  # ... and its first state for the states before it (no motion yet)
                ep.states.append(state)
            ep.states.append(state)
        due = [i for i, ep in enumerate(episodes) if self.temporal_ensemble is not None or not ep.queue]
        if due:
            states = with_motion(torch.stack([torch.stack(list(episodes[i].states)) for i in due])).to(self.state_mean.device)  # (n, S * k)
            if tokens is None:
                stacked = torch.cat([torch.cat(list(episodes[i].frames), dim=-1) for i in due])  # (n, history * F), oldest first
                outputs = self.act_from_features(stacked, states)
            else:
                outputs = self.head(tokens[due], self.state_input(states))
            chunks = self.actions_from_outputs(outputs, states).cpu().numpy().reshape(len(due), self.chunk, self.action_dim).astype(np.float32)
            for i, chunk in zip(due, chunks):
                if self.temporal_ensemble is None:
                    episodes[i].queue.extend(self._commit_gripper(chunk[: self.action_steps]))
                else:
                    episodes[i].plans.append((episodes[i].step, chunk))
        actions = []
        for ep in episodes:
            if self.temporal_ensemble is None:
                actions.append(ep.queue.popleft())
            else:
                actions.append(self._commit_gripper(ep.ensembled(self.temporal_ensemble)[None])[0])
            ep.step += 1
        return np.stack(actions), feats.cpu().numpy().astype(np.float32)

    def _commit_gripper(self, actions: np.ndarray) -> np.ndarray:
        """[n, A] -> the same with a simulator's binary gripper (last dim) snapped to +-1: regression averages open and close
        near the switch; commit to one."""
        if self.meta.get("binary_gripper"):
            actions = actions.copy()
            actions[..., -1] = np.where(actions[..., -1] > 0, 1.0, -1.0)
        return actions

    def act_with_features(self, obs: dict) -> tuple[np.ndarray, np.ndarray]:
        """-> (action float32 [A], pooled encoder features float32 [F]) from one encoder pass."""
        actions, feats = self.act_batch([obs], [self._episode])
        return actions[0], feats[0]

    def act(self, obs: dict) -> np.ndarray:
        return self.act_with_features(obs)[0]

    def save_pretrained(self, directory: str | Path) -> Path:
        d = Path(directory)
        self.encoder.save_pretrained(d / "encoder")
        norm = {"action_mean": self.action_mean, "action_std": self.action_std} if self.action_norm == "standard" else {}
        atomic_save_tensors({k: v.detach().contiguous() for k, v in self.head.state_dict().items()}
                            | {"state_mean": self.state_mean, "state_std": self.state_std} | norm, d / HEAD_WEIGHTS)
        atomic_save_json({"kind": self.kind, "state_dim": self.state_dim, "action_dim": self.action_dim, "hidden": self.hidden,
                          "use_state": self.use_state, "encoder": self.encoder.name, "chunk": self.chunk, "action_steps": self.action_steps,
                          "history": self.history, "hidden_sizes": self.hidden_sizes, "activation": self.activation,
                          "action_norm": self.action_norm, "head": self.head_kind, "head_config": self.head_config, "n_tokens": self.n_tokens,
                          "temporal_ensemble": self.temporal_ensemble, "relative": self.relative, "state_clip": self.state_clip,
                          "cameras": self.cameras, "state_history": self.state_history, **self.meta},
                         d / POLICY_CONFIG)
        return d


def with_motion(states: torch.Tensor) -> torch.Tensor:
    """The last k states of each row, oldest first, [B, k, S] -> [B, S * k]: the current state, then how far it moved over
    the last 1, ..., k - 1 steps, s_t - s_(t-j). A joint target leads its joint by about the joint's velocity times the
    controller's lag; one frame cannot show a velocity, the states of two can (Diffusion Policy's two observation steps)."""
    current = states[:, -1]
    return torch.cat([current, *(current - states[:, -1 - j] for j in range(1, states.shape[1]))], dim=-1)


def relative_base(state: torch.Tensor, relative: list[int], action_dim: int) -> torch.Tensor:
    """[B, S] (or ``with_motion``'s [B, S * k], the state first) -> [B, 1, A]: what the ``relative`` action dims are measured
    from (the state's same-index dims; 0 elsewhere)."""
    base = torch.zeros(state.shape[0], 1, action_dim, dtype=state.dtype, device=state.device)
    if relative:
        base[:, 0, relative] = state[:, relative]
    return base


class EpisodeMemory:
    """One rollout's memory: the pooled features of its last ``history`` frames, its last ``state_history`` states, its unexecuted actions, and (temporal
    ensembling) the chunks still covering the coming steps with the step each was predicted at."""

    def __init__(self, history: int, chunk: int = 1, state_history: int = 1):
        self.frames: deque[torch.Tensor] = deque(maxlen=history)  # (1, F) each, oldest first
        self.states: deque[torch.Tensor] = deque(maxlen=state_history)  # (S,) each, oldest first
        self.queue: deque[np.ndarray] = deque()  # (A,) each
        self.plans: deque[tuple[int, np.ndarray]] = deque(maxlen=chunk)  # (step predicted at, [chunk, A]), oldest first
        self.step = 0  # steps acted so far

    def ensembled(self, m: float) -> np.ndarray:
        """ACT's temporal ensemble for this step: every plan's action for it, weighted exp(-m * i), i = 0 for the oldest -> [A]."""
        acts = np.stack([plan[self.step - start] for start, plan in self.plans if start <= self.step < start + len(plan)])  # (n, A)
        w = np.exp(-m * np.arange(len(acts)))
        return ((w[:, None] * acts).sum(0) / w.sum()).astype(np.float32)


def _check_obs(obs: dict, state_dim: int, cameras: list[str] = (OBS_IMAGE,)) -> tuple[list[np.ndarray], np.ndarray]:
    """-> (each camera's uint8 [H, W, 3] image in ``cameras`` order, float32 state [S]); errors name the bad key."""
    if not isinstance(obs, dict) or OBS_STATE not in obs or any(k not in obs for k in cameras):
        raise FrameFormatError(f"policy observation must be a dict with {', '.join(repr(k) for k in cameras)} and {OBS_STATE!r}, got "
                               f"{type(obs).__name__}" + (f" with keys {sorted(obs)}" if isinstance(obs, dict) else ""))
    images = []
    for key in cameras:
        image = np.asarray(obs[key])
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise FrameFormatError(f"observation {key} must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
        images.append(image)
    state = np.asarray(obs[OBS_STATE], dtype=np.float32).reshape(-1)
    if state.shape[0] != state_dim:
        raise FrameFormatError(f"observation state has {state.shape[0]} values, the policy was trained with {state_dim}")
    return images, state


class PPOPolicy:
    """A stable-baselines3 PPO saved by ``toto_robot.policies.ppo``, behind the same ``act``."""

    kind = "ppo"

    def __init__(self, directory: Path, meta: dict, device: str = "cpu"):
        from stable_baselines3 import PPO

        self.meta, self.state_dim, self.action_dim = meta, meta["state_dim"], meta["action_dim"]
        self.model = PPO.load(directory / "model.zip", device=device, custom_objects={"policy_kwargs": _ppo_policy_kwargs(directory, meta)})

    def reset(self) -> None:
        """Nothing carries over between PPO steps (same interface as ``Policy.reset``)."""

    @property
    def encoder(self) -> Encoder:
        """The frozen encoder with its trained pool (inside SB3's feature extractor)."""
        return self.model.policy.features_extractor.encoder

    def act_with_features(self, obs: dict) -> tuple[np.ndarray, np.ndarray]:
        """-> (action float32 [A], the encoder's pooled features float32 [F] of this frame). Trained on cached tokens
        (``cache_tokens``) the backbone runs once for both; otherwise the features cost a second encoder pass."""
        (image,), state = _check_obs(obs, self.state_dim)
        with torch.no_grad():
            if self.meta.get("cache_tokens"):  # trained on FrozenTokens: the policy reads the backbone's tokens
                from toto_robot.policies.ppo import frozen_tokens

                tokens = frozen_tokens(self.encoder, image[None])  # (1, N, C)
                feats = self.encoder.pool(torch.from_numpy(tokens).to(self.encoder.device))
                observation = self._observation(tokens[0], state)
            else:
                feats = self.encoder(image[None])
                observation = self._observation(None, state, image)
        action, _ = self.model.predict(observation, deterministic=True)
        return np.asarray(action, np.float32), feats[0].float().cpu().numpy()

    def act(self, obs: dict) -> np.ndarray:
        (image,), state = _check_obs(obs, self.state_dim)
        if self.meta.get("cache_tokens"):  # trained on FrozenTokens: the policy reads the backbone's tokens
            from toto_robot.policies.ppo import frozen_tokens

            observation = self._observation(frozen_tokens(self.encoder, image[None])[0], state)
        else:
            observation = self._observation(None, state, image)
        action, _ = self.model.predict(observation, deterministic=True)
        return np.asarray(action, np.float32)

    def _observation(self, tokens: np.ndarray | None, state: np.ndarray, image: np.ndarray | None = None) -> dict:
        from toto_robot.policies.ppo import PRIVILEGED, TOKENS

        observation = {TOKENS: tokens, OBS_STATE: state} if tokens is not None else {OBS_IMAGE: image, OBS_STATE: state}
        if self.meta.get("privileged_dim"):  # the asymmetric critic's or the auxiliary regression's input: acting never reads it, SB3 wants the key
            observation[PRIVILEGED] = np.zeros(self.meta["privileged_dim"], np.float32)
        return observation


def _ppo_policy_kwargs(directory: Path, meta: dict) -> dict:
    """Point the saved extractor at this folder's encoder (the run may have been moved or copied)."""
    from toto_robot.policies.ppo import FrozenEncoderExtractor, FrozenTokenExtractor

    arch = list(meta.get("net_arch", [256, 256]))
    return {"features_extractor_class": FrozenTokenExtractor if meta.get("cache_tokens") else FrozenEncoderExtractor, "features_extractor_kwargs": {"encoder_dir": str(directory / "encoder"), "estimate_dim": meta.get("estimate_dim", 0)},
            "net_arch": {"pi": arch, "vf": arch}}


def load_policy(directory: str | Path, device: str = "cpu"):
    d = Path(directory)
    if not (d / POLICY_CONFIG).is_file():
        raise CheckpointError(f"{d} is not a policy folder: no {POLICY_CONFIG}")
    meta = json.loads((d / POLICY_CONFIG).read_text())
    if meta.get("kind") == "ppo":
        return PPOPolicy(d, meta, device)
    if meta.get("kind") != "bc":
        raise CheckpointError(f"{d}: unknown policy kind {meta.get('kind')!r}")
    from safetensors.torch import load_file

    if not (d / HEAD_WEIGHTS).is_file():
        raise CheckpointError(f"{d} is missing {HEAD_WEIGHTS}")
    encoder = load_encoder(d / "encoder", map_location=device)
    sd = load_file(str(d / HEAD_WEIGHTS), device=device)
    own = ("kind", "state_dim", "action_dim", "hidden", "use_state", "encoder", "chunk", "action_steps", "history", "hidden_sizes", "activation",
           "action_norm", "head", "head_config", "n_tokens", "temporal_ensemble", "relative", "state_clip", "cameras", "state_history")
    if meta.get("action_norm", "none") == "standard" and not {"action_mean", "action_std"} <= set(sd):
        raise CheckpointError(f"{d}: policy.json says standardised actions but {HEAD_WEIGHTS} has no action_mean/action_std")
    extra = {k: v for k, v in meta.items() if k not in own}
    policy = Policy(encoder, meta["state_dim"], meta["action_dim"], meta["hidden"], meta["use_state"],
                    sd.pop("state_mean"), sd.pop("state_std"), meta=extra, chunk=meta.get("chunk", 1), action_steps=meta.get("action_steps", 1),
                    history=meta.get("history", 1), hidden_sizes=meta.get("hidden_sizes"), activation=meta.get("activation", "gelu"),
                    action_mean=sd.pop("action_mean", None), action_std=sd.pop("action_std", None), head=meta.get("head", "mlp"),
                    head_config=meta.get("head_config"), n_tokens=meta.get("n_tokens"), temporal_ensemble=meta.get("temporal_ensemble"),
                    relative=meta.get("relative"), state_clip=meta.get("state_clip"), cameras=meta.get("cameras"),
                    state_history=meta.get("state_history", 1))
    policy.head.load_state_dict(sd)
    return policy.to(device).eval()
