"""Behaviour cloning on a frozen encoder: cache the frozen tokens of every demo frame once, then train
the encoder's pool and an MLP head on (tokens, state) -> expert action.

    from toto_robot.policies.bc import BCConfig, train_bc
    policy_dir = train_bc(BCConfig(demos="runs/demos/franka_pick", encoder={"name": "random"}, out_dir="runs/bc/x"))

Works the same on simulator demonstrations and on episodes recorded from ROS (same format).
Writes ``policy/`` (see ``policy.py``), ``metrics.csv`` (per-epoch losses and, with
``eval_every``, success), ``loss_curve.png``, ``bc_config.json`` and ``result.json``; with
``offline_eval`` also the held-out-episode action error beside its baselines (``offline.py``: a real
robot has no simulator to roll out in).
"""
from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from toto_robot.constants import ACTION, OBS_IMAGE, OBS_STATE
from toto_robot.data.demos import DemoFormatError, camera_keys
from toto_robot.data.formats import open_demos
from toto_robot.encoders import encoder_from_spec
from toto_robot.encoders.features import cached_encoder_tokens
from toto_robot.policies.evaluate import close_envs, evaluate_policy
from toto_robot.policies.heads import HEADS, IMAGE_WEIGHTS, STATE_WEIGHTS, fit_ridge
from toto_robot.policies.ood import OODReference, fit_reference
from toto_robot.policies.policy import Policy, relative_base, with_motion
from toto_robot.utils.plots import pyplot, save_figure
from toto_robot.utils.config import ConfigError, check_choice, check_int, check_number
from toto_robot.utils.io import atomic_save_json, atomic_write_csv

log = logging.getLogger(__name__)
SIM_ACTION_SPACES = ("ee_delta", "joint_delta")  # sim_envs' Box(-1, 1) controls; a binary gripper is the last dim


@dataclass
class BCConfig:
    demos: str | list[str]  # a demo folder (or LeRobot / RLDS dataset), or a list of them read as one set (same spaces)
    out_dir: str
    encoder: dict = field(default_factory=lambda: {"name": "random"})  # build_encoder kwargs, or {"dir": saved encoder}
    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float | None = 1.0  # the gradient's norm is clipped to this (None: not clipped); unclipped, a tanh head at lr 3e-3 could
    # saturate for good in a few steps and stay there (the loss flat from then on)
    hidden: int = 256
    hidden_sizes: list[int] | None = None  # MLP layer widths (None: two layers of `hidden`); CortexBench: [256, 256, 256]
    activation: str = "gelu"  # gelu | relu (CortexBench)
    history: int = 1  # frames whose pooled features the head reads, oldest first (CortexBench: 3)
    state_history: int = 1  # > 1: the head also reads how far the state moved over the last state_history - 1 steps (a joint's
    # velocity, which one frame cannot show; Diffusion Policy reads two observation steps)
    use_state: bool = True
    chunk: int = 1  # action chunking: predict this many future actions from each frame
    action_steps: int = 1  # ... and execute this many of them before predicting again (1 = closed loop every step)
    val_fraction: float = 0.1  # whole episodes held out
    max_episodes: int | None = None
    frame_stride: int = 1  # keep every k-th frame of each episode (a 30 fps recording repeats itself: 3 -> 10 fps), actions included
    eval_every: int = 0  # epochs between success evaluations in the sim task (0 = only at the end if eval_episodes)
    eval_episodes: int = 0
    eval_batch: int = 1  # rollouts stepped in lockstep, their frames encoded in one pass (evaluate_policy's batch)
    patience: int = 0  # > 0: stop when the held-out loss has not improved for this many epochs
    keep_best: bool = False  # save the epoch with the lowest held-out loss (needs val_fraction > 0); False: the last epoch, the
    # one-cycle schedule annealed (a few held-out episodes' loss picked early epochs that fail in rollouts: docs/policies.md)
    action_norm: str = "auto"  # none: tanh head, actions in [-1, 1] (a simulator's); standard: the head learns actions standardised
    # by the training episodes' mean/std (joint angles, servo ticks); auto: standard when a training action lies outside [-1, 1]
    # and the demos' action space is not a simulator's (ee_delta, joint_delta)
    offline_eval: bool = False  # held-out-episode action error (nMSE, R^2, bootstrap intervals) beside constant and raw-pixel baselines
    offline_folds: int = 5  # ... from this many episode-grouped folds (at most one per episode), each trained like the policy
    offline_horizons: list[int] = field(default_factory=lambda: [1, 10, 30])  # ... scoring the chunk's h-th action h - 1 frames ahead
    # (capped at policy.chunk)
    offline_random_init: bool = False  # ... also beside the random-init control of an encoder built from a pre-training checkpoint
    offline_own_footage: bool = False  # ... and beside a Toto like it pre-trained per fold on that fold's training episodes only
    own_footage_steps: int = 1000  # ... for this many steps (the real-camera recipe's schedule, pretrain/footage.py)
    bootstrap: int = 2000  # resamples of the held-out episodes behind each interval
    ood: bool = True  # store an out-of-distribution reference of the training frames' features with the policy (policies/ood.py)
    ood_warn_rate: float = 0.01  # ... its WARN threshold: this share of held-out training frames score above it
    ood_error_rate: float = 0.001  # ... its ERROR threshold
    cameras: list[str] = field(default_factory=lambda: [OBS_IMAGE])  # the demos' camera keys the policy reads (image, wrist_image, ...)
    head: str = "auto"  # mlp: the encoder's pool + an MLP; transformer: ACT's decoder over every frozen token with chunk queries; ridge:
    # the pool as built + one linear map in closed form, its penalties chosen on held-out training episodes (heads.py); auto: ridge when
    # some action dims are learnt relative to the state (a real arm's joint targets: few episodes, docs/formats.md), else mlp
    d_model: int = 128  # transformer head: width ...
    layers: int = 2  # ... encoder and decoder layers each ...
    heads: int = 4  # ... attention heads ...
    dropout: float = 0.1  # ... and dropout
    temporal_ensemble: float | None = None  # a weight m >= 0: ACT's temporal ensembling of every chunk covering a step, weights exp(-m * i)
    # from the oldest (needs action_steps=1); None: run the first action_steps of each chunk open loop
    action_repr: str = "auto"  # absolute | relative: learn (action - state) on every dim | auto: relative on the dims where actions and
    # state share a space (a real robot's joint targets, same size, not a simulator's delta space) and holding the state explains more
    # than half of the action's spread on the training frames (mean (a - s)^2 < var(a) / 2); grippers commanded open/close stay absolute
    augment: int = 0  # > 0: this many randomly shifted copies of every frame are encoded too (the frozen tokens cached), and each
    # training sample reads the clean frame or one of its copies at random (robomimic's / DrQ's random-shift augmentation)
    augment_shift: float = 0.06  # ... shifting each copy by up to this share of the frame side (edge pixels repeat)
    state_clip: float = 5.0  # standardised state inputs are clipped to +-this
    scale_floor: float = 0.01  # no state or action dim is standardised by less than this share of the median dim's std
    ridge_cv_units: str = "action"  # the ridge head's penalty is chosen on held-out error counted in units of each action dim's spread
    # (action: as offline_eval's nMSE) or of the standardised target the head outputs (target: relative dims by their motion's spread)
    dagger_rounds: int = 0  # > 0: DAgger on a simulated task (dagger.py): this many rounds of the policy's own rollouts labelled by
    # the scripted expert, each followed by BC from scratch on the demos plus every round
    dagger_episodes: int = 50  # ... rollouts per round
    dagger_expert: str = "memoryless"  # ... labelled by the task's memoryless expert (the same state, the same action), or "phases": the
    # phase expert that recorded the demos (its phase follows its own history, not the state the policy reached)
    token_cache: str | None = None  # folder of frozen demo tokens shared by runs with the same demos and backbone (any pooling or seed)
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        """Checked before any work; errors name the hydra key (policy.*) and the allowed range."""
        for key, low in (("epochs", 1), ("batch_size", 1), ("hidden", 1), ("history", 1), ("state_history", 1), ("chunk", 1), ("action_steps", 1), ("eval_every", 0),
                         ("eval_episodes", 0), ("eval_batch", 1), ("patience", 0), ("seed", 0), ("offline_folds", 2), ("bootstrap", 100), ("frame_stride", 1),
                         ("dagger_rounds", 0), ("dagger_episodes", 1), ("own_footage_steps", 1)):
            check_int(getattr(self, key), f"policy.{key}" if key != "seed" else "seed", low=low)
        if self.action_steps > self.chunk:
            raise ConfigError(f"policy.action_steps must be <= policy.chunk ({self.chunk}), got {self.action_steps}")
        self.lr = check_number(self.lr, "policy.lr", low=0, low_open=True)
        self.weight_decay = check_number(self.weight_decay, "policy.weight_decay", low=0)
        if self.grad_clip is not None:
            self.grad_clip = check_number(self.grad_clip, "policy.grad_clip", low=0, low_open=True)
        self.val_fraction = check_number(self.val_fraction, "policy.val_fraction", low=0, high=0.9)
        self.ood_warn_rate = check_number(self.ood_warn_rate, "policy.ood_warn_rate", low=0, high=1, low_open=True)
        self.ood_error_rate = check_number(self.ood_error_rate, "policy.ood_error_rate", low=0, high=self.ood_warn_rate, low_open=True)
        self.offline_horizons = [check_int(h, "policy.offline_horizons[]", low=1) for h in (self.offline_horizons or [1])]
        if self.max_episodes is not None:
            check_int(self.max_episodes, "policy.max_episodes", low=1)
        check_choice(self.activation, "policy.activation", ("gelu", "relu"))
        check_choice(self.action_norm, "policy.action_norm", ("auto", "none", "standard"))
        check_choice(self.action_repr, "policy.action_repr", ("auto", "absolute", "relative"))
        check_choice(self.head, "policy.head", (*HEADS, "auto"))
        check_choice(self.dagger_expert, "policy.dagger_expert", ("memoryless", "phases"))
        self.cameras = list(self.cameras or [])
        if not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise ConfigError(f"policy.cameras must list one or more distinct camera keys of the demos (image, wrist_image, ...), got {self.cameras}")
        check_int(self.augment, "policy.augment", low=0)
        self.augment_shift = check_number(self.augment_shift, "policy.augment_shift", low=0, high=0.5)
        for key in ("d_model", "layers", "heads"):
            check_int(getattr(self, key), f"policy.{key}", low=1)
        self.dropout = check_number(self.dropout, "policy.dropout", low=0, high=0.9)
        self.state_clip = check_number(self.state_clip, "policy.state_clip", low=0, low_open=True)
        self.scale_floor = check_number(self.scale_floor, "policy.scale_floor", low=0)
        check_choice(self.ridge_cv_units, "policy.ridge_cv_units", ("action", "target"))
        if self.temporal_ensemble is not None:
            self.temporal_ensemble = check_number(self.temporal_ensemble, "policy.temporal_ensemble", low=0)
            if self.action_steps != 1:
                raise ConfigError(f"policy.temporal_ensemble predicts a chunk every step: set policy.action_steps=1 (got {self.action_steps})")
        if self.head == "transformer" and self.history != 1:
            raise ConfigError(f"policy.head=transformer reads the current frame's tokens: set policy.history=1 (got {self.history})")
        if self.hidden_sizes is not None:
            self.hidden_sizes = [check_int(h, "policy.hidden_sizes[]", low=1) for h in self.hidden_sizes]
            if not self.hidden_sizes:
                raise ConfigError("policy.hidden_sizes must list at least one layer width (or be null)")


def demo_folders(demos: str | Path | list) -> list[str]:
    """``policy.demos``: one folder or a list of them -> the list."""
    return [str(d) for d in demos] if isinstance(demos, (list, tuple)) else [str(demos)]


def capped_counts(sizes: list[int], max_episodes: int | None = None) -> list[int]:
    """Episodes per folder [n_0, n_1, ...] -> how many of each are taken, in order, the first ``max_episodes`` in all."""
    left, counts = max_episodes, []
    for n in sizes:
        counts.append(n if left is None else min(n, left))
        left = None if left is None else left - counts[-1]
    return counts


def folder_counts(demos: str | Path | list, max_episodes: int | None = None) -> list[int]:
    """How many episodes ``load_demo_arrays`` takes from each folder of ``demos``, in order (the first ``max_episodes`` in all)."""
    return capped_counts([len(open_demos(root)) for root in demo_folders(demos)], max_episodes)


def load_demo_arrays(root: str | Path | list, max_episodes: int | None = None):
    """A demo folder, or a LeRobot v3 / RLDS dataset folder (``toto_robot.data.formats.open_demos``), or a list of them read as
    one set, episodes in folder order: the first folder's meta; every folder must share its state, action and action space."""
    folders = demo_folders(root)
    datasets = [open_demos(folder) for folder in folders]
    meta, eps = datasets[0].meta, []
    for folder, ds, count in zip(folders, datasets, capped_counts([len(ds) for ds in datasets], max_episodes)):
        for key in ("state_dim", "action_dim", "action_space"):
            if getattr(ds.meta, key) != getattr(meta, key):
                raise DemoFormatError(f"{folder} has {key}={getattr(ds.meta, key)!r}, the first demo folder "
                                      f"{folders[0]} has {getattr(meta, key)!r}: policy.demos must share one space")
        eps += [ds[i] for i in range(count)]
    if not eps:
        raise DemoFormatError(f"{root}: no episodes to learn from")
    return meta, eps


def train_bc(cfg: BCConfig) -> Path:
    if cfg.offline_eval and cfg.offline_own_footage and (cfg.encoder.get("name") != "toto" or not cfg.encoder.get("checkpoint")):
        raise ConfigError(f"policy.offline_own_footage pre-trains a Toto like the run's encoder on each fold's training episodes: it needs "
                          f"encoder=toto with encoder.checkpoint=<pre-training final/ dir>, got encoder {cfg.encoder}")
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_save_json(asdict(cfg), out / "bc_config.json")
    torch.manual_seed(cfg.seed)
    meta, eps = load_demo_arrays(cfg.demos, cfg.max_episodes)
    if cfg.frame_stride > 1:
        eps = [every_kth_frame(ep, cfg.frame_stride) for ep in eps]
    if cfg.offline_eval and len(eps) < 2:
        raise DemoFormatError(f"policy.offline_eval holds whole episodes out and needs at least 2 episodes; {cfg.demos} gives {len(eps)}"
                              + (f" (policy.max_episodes={cfg.max_episodes})" if cfg.max_episodes else ""))
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(eps))
    n_val = min(len(eps) - 1, max(1, round(cfg.val_fraction * len(eps)))) if len(eps) > 1 and cfg.val_fraction > 0 else 0
    val_ids, train_ids = set(order[:n_val].tolist()), order[n_val:]
    if eps[0][ACTION].shape[1] != meta.action_dim:  # before any encoder work
        raise DemoFormatError(f"actions have {eps[0][ACTION].shape[1]} dims, meta.json says {meta.action_dim}")
    missing = [k for k in cfg.cameras if any(k not in ep for ep in eps)]
    if missing:
        have = sorted(set.intersection(*(set(camera_keys(ep)) for ep in eps)))
        raise DemoFormatError(f"policy.cameras asks for {missing}, which not every episode of {cfg.demos} has; its cameras: {have}")
    encoder = encoder_from_spec(cfg.encoder).to(cfg.device)
    pool_init = copy.deepcopy(encoder.pool.state_dict())  # every offline-evaluation fold starts its pool from here
    per_episode = demo_tokens(encoder, eps, cfg)
    copies = augmented_tokens(encoder, eps, cfg)  # shifted copies of every frame's tokens, read in training only
    tokens = {split: split_tensors(per_episode, eps, ids, cfg, copies if split == "train" else None)
              for split, ids in (("train", list(train_ids)), ("val", sorted(val_ids))) if ids}
    policy = make_policy(encoder, meta, cfg, tokens["train"])
    eval_envs: list = []  # built by the first evaluation, reused by the later ones (a renderer is slow to build)

    def success(epoch: int) -> dict:
        if cfg.eval_episodes and ((cfg.eval_every and epoch % cfg.eval_every == 0) or epoch == cfg.epochs):
            return {"success_rate": evaluate_policy(policy, meta.task, cfg.eval_episodes, seed=cfg.seed, progress=False,
                                                    batch=cfg.eval_batch, env_pool=eval_envs)["success_rate"]}
        return {}

    try:
        history, best_epoch = fit_policy(policy, tokens["train"], tokens.get("val"), cfg, eps=eps, on_epoch=success,
                                         lengths=[len(per_episode[i]) for i in train_ids])
    finally:
        close_envs(eval_envs)
    policy.save_pretrained(out / "policy")
    if cfg.ood:
        ood_reference(policy, per_episode, cfg).save(out / "policy")
    _write_metrics(history, out)
    result = {"final": history[-1], "best_epoch": best_epoch, "train_frames": len(tokens["train"][2]), "episodes": len(eps),
              "encoder": encoder.name, "layer": encoder.layer, "task": meta.task, "action_norm": policy.action_norm,
              "head": policy.head_kind, "relative_dims": policy.relative}
    if cfg.offline_eval:
        from toto_robot.policies.offline import offline_evaluation

        result["offline_eval"] = offline_evaluation(cfg, meta, eps, encoder, per_episode, pool_init, out, action_norm=policy.action_norm,
                                                    copies=copies, head=policy.head_kind)
    atomic_save_json(result, out / "result.json")
    return out / "policy"


@torch.no_grad()
def ood_reference(policy: Policy, per_episode: list[torch.Tensor], cfg: BCConfig) -> OODReference:
    """The trained policy's pooled features of every demo frame, per episode, fit and calibrated into its OOD reference
    (seeded episode split: ``fit_reference``); the same features ``Policy.act_with_features`` gives the node."""
    policy.eval()
    feats = [torch.cat([policy.frame_features(t[i:i + 256].to(cfg.device)) for i in range(0, len(t), 256)]).cpu().numpy()
             for t in per_episode]  # (T_i, F) each
    ref = fit_reference(feats, cfg.ood_warn_rate, cfg.ood_error_rate, seed=cfg.seed, feature=f"{policy.encoder.name} pooled")
    log.info("OOD reference: %d frames fit, %d held-out frames calibrate WARN %.3g / ERROR %.3g (moving average)",
             ref.info["n_fit"], ref.info["n_calib"], ref.thresholds["average_warn"], ref.thresholds["average_error"])
    return ref


def every_kth_frame(ep: dict, k: int) -> dict:
    """An episode with every ``k``-th frame (and its state, action, reward, ...) from the first; per-episode values stay."""
    T = len(ep[ACTION])
    return {key: v[::k] if isinstance(v, np.ndarray) and v.ndim and len(v) == T else v for key, v in ep.items()}


def split_tensors(per_episode: list[torch.Tensor], eps: list[dict], ids: list[int], cfg: BCConfig,
                  copies: list[list[torch.Tensor]] | None = None) -> tuple:
    """Episodes ``ids`` laid end to end: (tokens [F, N, C], state [F, S] (``with_motion``'s [F, S * k] with state_history k > 1),
    action chunks [F, chunk * A], history rows [F, history]);
    with augmented ``copies`` (``augmented_tokens``) the tokens are [1 + copies, F, N, C], the clean frames first."""
    chunks = np.concatenate([chunk_actions(eps[i][ACTION], cfg.chunk) for i in ids])  # (F, chunk * A)
    tokens = torch.cat([per_episode[i] for i in ids])
    if copies:
        tokens = torch.stack([tokens, *(torch.cat([c[i] for i in ids]) for c in copies)])  # (1 + copies, F, N, C)
    lengths = [len(per_episode[i]) for i in ids]
    state = torch.from_numpy(np.concatenate([eps[i][OBS_STATE] for i in ids])).float()  # (F, S)
    if cfg.state_history > 1:
        state = with_motion(state[history_index(lengths, cfg.state_history)])  # (F, S * k): the state and its last moves
    return tokens, state, torch.from_numpy(chunks).float(), history_index(lengths, cfg.history)


def make_policy(encoder, meta, cfg: BCConfig, train: tuple) -> Policy:
    """A fresh policy on ``encoder`` for the training split ``train`` (``split_tensors``): state standardised by its frames' mean
    and floored std, actions learnt relative to the state on the dims ``relative_dims`` picks, and standardised when
    ``cfg.action_norm`` says so (auto: when an action lies outside the tanh head's [-1, 1] and the demos are not in a
    simulator's action space, or when any dim is relative)."""
    tokens, state, chunks, _ = train
    A = meta.action_dim
    actions = chunks[:, :A]  # (F, A): each frame's own action
    relative = relative_dims(cfg.action_repr, meta, actions, state)
    norm = cfg.action_norm
    head = choose_head(cfg.head, relative)
    if head == "ridge" and norm == "none":
        raise ConfigError("policy.head=ridge is a linear map to standardised actions: set policy.action_norm=standard (or auto)")
    if relative and norm == "none":
        raise ConfigError(f"policy.action_repr learns action dims {relative} relative to the state, which needs standardised actions: "
                          "set policy.action_norm=standard (or auto)")
    if norm == "auto":  # a simulator's action spaces are [-1, 1] by definition: a value outside is an error the loss check names
        norm = "standard" if relative or head == "ridge" or (meta.action_space not in SIM_ACTION_SPACES and float(actions.abs().max()) > 1) else "none"
        if norm == "standard":
            log.info("the head learns actions standardised by the training episodes' mean and std (policy.action_norm=standard): %s",
                     f"dims {relative} relative to the state" if relative else f"actions reach {float(actions.abs().max()):.4g}, outside [-1, 1]")
    a_mean = a_std = None
    if norm == "standard":
        target = (chunks.reshape(len(chunks), -1, A) - relative_base(state, relative, A)).reshape(-1, A)  # (F * chunk, A): what the head learns, every step of the chunk
        a_mean, a_std = target.mean(0), robust_scale(target, cfg.scale_floor)
    return Policy(encoder, meta.state_dim, A, cfg.hidden, cfg.use_state, state.mean(0), robust_scale(state, cfg.scale_floor),
                  meta={"task": meta.task, "image_size": int(meta.image_size[0]), "action_space": meta.action_space,
                        "binary_gripper": meta.action_space in SIM_ACTION_SPACES, "demos": str(cfg.demos),
                        "camera": meta.extra.get("camera", "agentview"),
                        **({"max_steps": meta.extra["max_steps"]} if meta.extra.get("max_steps") else {})}, chunk=cfg.chunk, action_steps=cfg.action_steps,
                  history=cfg.history, hidden_sizes=cfg.hidden_sizes, activation=cfg.activation, action_mean=a_mean, action_std=a_std,
                  head=head, head_config={"d_model": cfg.d_model, "layers": cfg.layers, "heads": cfg.heads, "dropout": cfg.dropout} if head == "transformer" else None,
                  n_tokens=tokens.shape[-2] // len(cfg.cameras), temporal_ensemble=cfg.temporal_ensemble, relative=relative, state_clip=cfg.state_clip,
                  cameras=cfg.cameras, state_history=cfg.state_history).to(cfg.device)


def choose_head(head: str, relative: list[int]) -> str:
    """``policy.head`` -> the head built. ``auto``: ridge when some action dims are learnt relative to the state (joint-position
    targets of a real arm, ``relative_dims``), mlp otherwise (a simulator's delta actions). Measured on the real sets
    (docs/formats.md): with 8 episodes the MLP's (action - state) is worse than holding still, the ridge head's is better."""
    if head != "auto":
        return head
    return "ridge" if relative else "mlp"


def relative_dims(action_repr: str, meta, actions: torch.Tensor, state: torch.Tensor) -> list[int]:
    """The action dims learnt as (action - state of the same index). ``absolute``: none. ``relative``: all of them (needs state
    and action of one size). ``auto``: none for a simulator's delta action spaces or when the sizes differ; otherwise each dim
    where holding the state explains more than half the training actions' spread, mean (a - s)^2 < var(a) / 2: a joint-position
    target that tracks its joint. A gripper commanded open/close (+-1) while its state is a finger width stays absolute, and so
    does a dim that never moves."""
    if action_repr == "absolute":
        return []
    shares = meta.state_dim == meta.action_dim
    if action_repr == "relative":
        if not shares or meta.action_space in SIM_ACTION_SPACES:
            raise ConfigError(f"policy.action_repr=relative learns action - state: it needs actions in the state's space "
                              f"(state {meta.state_dim} dims, action {meta.action_dim} dims, action space {meta.action_space!r})")
        return list(range(meta.action_dim))
    if not shares or meta.action_space in SIM_ACTION_SPACES or len(actions) < 2:
        return []
    a, s = actions.double(), state[:, : meta.state_dim].double()  # the state itself, not its moves (state_history)
    return torch.nonzero(((a - s) ** 2).mean(0) < 0.5 * a.var(0)).flatten().tolist()


def robust_scale(x: torch.Tensor, floor: float) -> torch.Tensor:
    """Per-dim std of ``x`` [F, D], floored at ``floor`` times the median std of the dims that move (at least 1e-6): a dim that
    hardly moves in training (a resting joint) gets a scale it cannot be 1e5 stds away from. [D]."""
    std = x.double().std(0) if len(x) > 1 else torch.ones(x.shape[1], dtype=torch.float64)
    moving = std[std > 1e-6]
    low = max(1e-6, floor * float(moving.median())) if len(moving) else 1.0
    return std.clamp_min(low).float()


def fit_policy(policy: Policy, train: tuple, val: tuple | None, cfg: BCConfig, eps: list[dict] | None = None, on_epoch=None,
               progress: bool = True, lengths: list[int] | None = None) -> tuple[list[dict], int]:
    """Train ``policy``'s pool and head on the cached tokens of ``train`` (``split_tensors``) for ``cfg.epochs``; ``val``, if given,
    is scored every epoch and (``keep_best``) the lowest-loss epoch's weights are kept, ``patience`` stops early.
    ``on_epoch(epoch) -> dict`` adds columns to the epoch's row. Returns (one row per epoch, best epoch).
    The ridge head is fit in closed form instead (``fit_ridge_head``; ``lengths``: the training episodes' frame counts)."""
    tr_tok, tr_state, tr_act, tr_hist = train
    tr_target = policy.targets(tr_act, tr_state)  # what the head outputs: actions as they are, or relative and standardised
    if policy.head_kind == "ridge":
        row = fit_ridge_head(policy, train, tr_target, lengths or [len(tr_act)], cfg)
        row["val_loss"] = _val_loss(policy, val, cfg.device)
        row.update(on_epoch(cfg.epochs) if on_epoch else {})
        return [row], 1
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(tr_act) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(1, steps), pct_start=0.1)
    g = torch.Generator().manual_seed(cfg.seed)
    history = []
    best = (float("inf"), 0, None)  # (held-out loss, epoch, state)
    bar = tqdm(range(1, cfg.epochs + 1), desc=f"bc {policy.encoder.name}", unit="epoch", disable=not progress)
    for epoch in bar:
        policy.train()
        perm, total = torch.randperm(len(tr_act), generator=g), 0.0
        for i in range(0, len(perm), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            if tr_tok.ndim == 4:  # augmented: each sample reads the clean frame or one of its shifted copies (its history the same copy)
                copy = torch.randint(len(tr_tok), (len(idx), 1), generator=g)
                tok = tr_tok[copy, tr_hist[idx]]  # (B, history, N, C)
            else:
                tok = tr_tok[tr_hist[idx]]  # (B, history, N, C)
            pred = policy.forward_tokens(tok.to(cfg.device), tr_state[idx].to(cfg.device))
            loss = F.mse_loss(pred, tr_target[idx].to(cfg.device))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"behaviour cloning loss is {loss.item()} at epoch {epoch}"
                                         + (f": {_extreme_values(eps, cfg.demos)}" if eps is not None else ""))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        row = {"epoch": epoch, "train_loss": total / len(tr_act), "val_loss": _val_loss(policy, val, cfg.device)}
        row.update(on_epoch(epoch) if on_epoch else {})
        history.append(row)
        bar.set_postfix(train=f"{row['train_loss']:.4f}", val=f"{row['val_loss']:.4f}" if row["val_loss"] == row["val_loss"] else "-")
        if row["val_loss"] < best[0]:
            best = (row["val_loss"], epoch, {k: v.detach().clone() for k, v in policy.state_dict().items()})
        elif cfg.patience and val is not None and epoch - best[1] >= cfg.patience:
            log.info("early stop at epoch %d: held-out loss last improved at epoch %d", epoch, best[1])
            break
    if cfg.keep_best and best[2] is not None:
        policy.load_state_dict(best[2])
    return history, best[1]


@torch.no_grad()
def fit_ridge_head(policy: Policy, train: tuple, target: torch.Tensor, lengths: list[int], cfg: BCConfig) -> dict:
    """The ridge head's linear map, in closed form: the frozen pool's features (and standardised state) of every training frame
    (every shifted copy too, with ``policy.augment``) -> the head's targets, its penalty chosen over whole training episodes
    (``heads.fit_ridge``). Returns the one row ``metrics.csv`` gets (the training MSE, the penalty chosen)."""
    tok, state, act, hist = train
    policy.eval()
    copies = tok if tok.ndim == 4 else tok[None]  # (copies, F, N, C)
    state_in = policy.state_input(state.to(cfg.device))

    def inputs(t):
        feats = torch.cat([policy.pool_tokens(t[hist[i:i + 256]].to(cfg.device)) for i in range(0, len(hist), 256)])  # (F, history * K * F')
        return feats if state_in is None else torch.cat([feats, state_in], dim=-1)

    X = torch.cat([inputs(t) for t in copies]).cpu()  # (copies * F, D)
    Y = target.repeat(len(copies), 1)  # (copies * F, chunk * A)
    groups = np.tile(np.repeat(np.arange(len(lengths)), lengths), len(copies))  # a frame's copies stay in its episode's fold
    image_dims = X.shape[1] - (0 if state_in is None else state_in.shape[1])
    blocks = [(image_dims, IMAGE_WEIGHTS)] + ([(policy.state_dim, STATE_WEIGHTS)] if state_in is not None and policy.state_history > 1 else [])
    out_w = None
    if cfg.ridge_cv_units == "action" and policy.action_norm != "none":
        # count each output's held-out error in units of its action dim's spread in the training frames (as offline_eval's nMSE
        # does), not of the standardised relative target's: a joint that barely moves within a chunk would otherwise decide the penalty
        spread = robust_scale(act.reshape(len(act), -1, policy.action_dim)[:, 0].to(policy.action_std), cfg.scale_floor)  # (A,)
        out_w = ((policy.action_std / spread) ** 2).repeat(Y.shape[1] // policy.action_dim).cpu()  # (chunk * A,)
    weight, bias, info = fit_ridge(X, Y, groups, blocks, output_weight=out_w)  # the image, the state (when its motion follows), the motion
    linear = policy.head.net[-1]
    linear.weight.copy_(weight.to(linear.weight.device))
    linear.bias.copy_(bias.to(linear.bias.device))
    log.info("ridge head: penalty %.3g per frame, weights %s (image, state), chosen over %d folds of whole episodes",
             info["lambda"], info["weights"], info["folds"])
    train_loss = float(F.mse_loss(torch.cat([policy.head(X[i:i + 4096].to(cfg.device), None) for i in range(0, len(X), 4096)]).cpu(), Y))
    return {"epoch": 1, "train_loss": train_loss, "ridge_lambda": info["lambda"], "ridge_image_weight": info["weights"][0],
            **({"ridge_state_weight": info["weights"][1]} if len(info["weights"]) > 1 else {})}


def _extreme_values(eps: list[dict], demos: str) -> str:
    """Where the demonstrations hold their largest action and state magnitudes (what makes a loss overflow)."""
    parts = []
    for key in (ACTION, OBS_STATE):
        peaks = [float(np.abs(ep[key]).max()) for ep in eps]
        i = int(np.argmax(peaks))
        parts.append(f"largest |{key}| is {peaks[i]:.3g} in episode {i} of {demos}")
    return "; ".join(parts) + " (actions are expected in [-1, 1]); fix or drop that episode"


def history_index(lengths: list[int], history: int) -> torch.Tensor:
    """Row t of episodes laid end to end -> the rows of its last ``history`` frames, oldest first: LongTensor
    [sum(lengths), history]; before an episode's first frame, that first frame repeats (as ``Policy.act``)."""
    rows, start = [], 0
    for n in lengths:
        t = torch.arange(n)[:, None] + torch.arange(1 - history, 1)[None]  # (n, history)
        rows.append(start + t.clamp_min(0))
        start += n
    return torch.cat(rows) if rows else torch.zeros((0, history), dtype=torch.long)


def chunk_actions(actions: np.ndarray, chunk: int) -> np.ndarray:
    """[T, A] -> [T, chunk * A]: row t holds actions t .. t+chunk-1; steps past the end repeat the last action."""
    T = len(actions)
    idx = np.minimum(np.arange(T)[:, None] + np.arange(chunk)[None], T - 1)  # (T, chunk)
    return actions[idx].reshape(T, -1)


def demo_tokens(encoder, eps: list[dict], cfg: BCConfig, copy: int = 0) -> list[torch.Tensor]:
    """Frozen tokens of every demo frame, per episode: [T_i, K * N, C] float16, the K cameras of ``cfg.cameras`` one after
    the other. The backbone is frozen, so with ``cfg.token_cache`` each camera's tokens are computed once per (demos,
    backbone, layer) and reused by later runs whatever their pooling, cameras or seed (a comparison's 2nd..kth run skips
    the encoder entirely). ``copy`` c > 0: every frame shifted at random first (``shift_frames`` by up to
    ``cfg.augment_shift`` of its side, seeded by c alone, so runs with other seeds share the cache)."""
    lengths = [len(ep[OBS_IMAGE]) for ep in eps]
    folders = demo_folders(cfg.demos)
    counts = folder_counts(cfg.demos, len(eps)) if len(folders) > 1 else [len(eps)]
    starts = np.cumsum([0, *counts])
    out: list[torch.Tensor] = []
    for folder, a, b in zip(folders, starts[:-1], starts[1:]):  # each folder cached on its own: a DAgger round adds one, the rest stay cached
        group = eps[a:b]
        identity = {"demos": str(Path(folder).resolve()), "lengths": lengths[a:b], "encoder": {k: v for k, v in cfg.encoder.items() if k != "pooling"},
                    **({"shift_copy": copy, "shift": cfg.augment_shift} if copy else {})}

        def frames(key: str, group=group) -> np.ndarray:
            if not copy:
                return np.concatenate([ep[key] for ep in group])
            rng = np.random.default_rng(copy)
            return np.concatenate([shift_frames(ep[key], max(1, round(cfg.augment_shift * min(ep[key].shape[1:3]))), rng) for ep in group])

        views = [cached_encoder_tokens(encoder, lambda key=key: frames(key), cfg.token_cache, {**identity, **({"camera": key} if key != OBS_IMAGE else {})},
                                       desc=f"{encoder.name} demo features ({key})") for key in cfg.cameras]  # (F, N, C), or (F, 1, C) read-outs
        out += list(torch.cat(views, dim=1).split(lengths[a:b]))
    return out


def shift_frames(frames: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [N, H, W, 3] -> each frame moved by its own random (dy, dx) in [-max_shift, max_shift], the edge pixels repeated
    into the gap (DrQ's pad-and-crop)."""
    if max_shift <= 0:
        return frames
    N, H, W, _ = frames.shape
    padded = np.pad(frames, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)), mode="edge")
    dy, dx = rng.integers(0, 2 * max_shift + 1, (2, N))
    return np.stack([padded[n, dy[n]:dy[n] + H, dx[n]:dx[n] + W] for n in range(N)])


def augmented_tokens(encoder, eps: list[dict], cfg: BCConfig) -> list[list[torch.Tensor]]:
    """The ``cfg.augment`` shifted copies of ``demo_tokens``: [copy][episode] -> [T_i, K * N, C]."""
    return [demo_tokens(encoder, eps, cfg, copy=c) for c in range(1, cfg.augment + 1)]


@torch.no_grad()
def _val_loss(policy: Policy, val, device) -> float:
    if val is None:
        return float("nan")
    policy.eval()
    tok, state, act, hist = val
    act = policy.targets(act, state)  # the head's output space (relative and standardised actions, or as they are)
    losses = [F.mse_loss(policy.forward_tokens(tok[hist[i:i + 256]].to(device), state[i:i + 256].to(device)), act[i:i + 256].to(device),
                         reduction="sum").item() for i in range(0, len(act), 256)]
    return sum(losses) / (len(act) * act.shape[1])


def _write_metrics(history: list[dict], out: Path) -> None:
    keys = sorted({k for r in history for k in r}, key=["epoch", "train_loss", "val_loss", "success_rate", "ridge_lambda", "ridge_image_weight",
                                                         "ridge_state_weight"].index)
    atomic_write_csv(history, out / "metrics.csv", keys)
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=120)
    ep = [r["epoch"] for r in history]
    ax.plot(ep, [r["train_loss"] for r in history], label="train")
    if any(r["val_loss"] == r["val_loss"] for r in history):
        ax.plot(ep, [r["val_loss"] for r in history], label="held-out episodes")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("action MSE")
    ax.set_title("behaviour cloning")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, out / "loss_curve.png")
