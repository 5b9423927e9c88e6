"""Behaviour cloning judged offline: the action error on whole held-out episodes (a real robot has no
simulator to roll out in), beside two baselines trained and scored on the same split.

    toto-robot train-policy policy=bc demos=<folder> encoder=random policy.eval_episodes=0 policy.offline_eval=true

The episodes go into ``policy.offline_folds`` folds (``utils.stats.group_folds``: whole
episodes, balanced by frames, each episode held out exactly once). For each fold three predictors
learn from the other folds' episodes only:

* **BC**: a fresh policy on the run's encoder (its pool from the same initial weights, a new head),
  trained as ``train_bc`` trains (same epochs, optimiser, state input, action standardisation), for
  all epochs: no held-out loss picks its epoch, so the held-out episodes are never looked at.
* **constant**: the training episodes' mean action.
* **raw pixels**: the same BC head and training on the frame centre-cropped and resized to 8 x 8 x 3
  (``build_encoder("pixels", input_size=8, patch=8)``), with the same state input as the policy.
* **state as action** (only where state and action have the same size): the frame's own state, as
  if the robot held its position. Where actions are absolute joint targets a step ahead, this
  trivial predictor is hard to beat frame by frame; where they are not, it scores badly.
* **BC state only** (with ``use_state``): the same head and training on the same frames with every
  image token set to zero: what the image adds over the state.
* **BC random-init** (``offline_random_init``, encoders built from a pre-training checkpoint): the
  same architecture untrained (``build_encoder("random", like=<checkpoint>)``), read the same way.
* **BC own footage** (``offline_own_footage``, encoders built from a pre-training checkpoint): for each
  fold, a fresh Toto of the checkpoint's architecture, tokenizer and clip layout pre-trained on that fold's
  training episodes only, every camera the policy reads (``pretrain/footage.py``, ``own_footage_steps``
  steps of the demo's schedule), read the same way. The held-out episodes' frames never reach it; the
  runs are kept in ``<out>/own_footage/fold<k>-<hash>/`` and reused when the command runs again with the same
  episodes, cameras and steps.

Horizons: the policy predicts a chunk of ``chunk`` actions per frame; each horizon h of
``offline_horizons`` (capped at ``chunk``) scores the chunk's h-th action against the action
recorded h - 1 frames later (frames with fewer than h - 1 frames after them left out), every
predictor on the same frames: "state as action" holds the frame's state, the constant stays.

Scores, over the held-out frames of every fold:

* **nMSE**: squared error of each action dimension divided by that dimension's variance over the
  fold's training frames, averaged over dimensions and frames. Sets in radians and in raw servo ticks
  read on one scale; predicting the training mean scores about 1.
* **R^2**: 1 - SSE / SST over all scored dimensions at once, SST being the spread of the held-out
  frames about their own mean, each dimension counted in units of its spread over the whole dataset
  (scikit-learn's ``variance_weighted`` R^2 of standardised actions). On all held-out frames it is
  close to the plain mean of the per-dimension R^2 (also reported); unlike that mean it stays finite
  in a bootstrap resample where one dimension hardly moves. 0 = no better than the held-out mean.

A dimension is scored when it moves in every fold's training frames by at least ``MOVES`` (a tenth)
of its spread over the whole set; the others are left out of both scores and named. A resting arm's
joints (sensor noise around an offset that differs between episodes) or a hand used in one episode
only give no training scale: normalised by it, their offsets would outweigh every dimension that moves.
Intervals: 95% percentile bootstrap over held-out episodes (an episode's frames are resampled
together; the same resamples for every predictor, so differences are paired).

Writes ``offline_eval.json`` (everything, folds included), ``offline_eval.csv`` (one row per
predictor), ``offline_episodes.csv`` (nMSE per held-out episode), ``offline_eval.png``; prints one line.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from toto_robot.constants import ACTION, OBS_STATE
from toto_robot.encoders import encoder_from_spec
from toto_robot.errors import DataFormatError
from toto_robot.utils.io import atomic_save_json, atomic_write_csv
from toto_robot.utils.plots import pyplot, save_figure
from toto_robot.utils.stats import group_folds

log = logging.getLogger(__name__)

PIXEL_BASELINE = {"name": "pixels", "input_size": 8, "patch": 8, "pooling": "average"}  # one token: the 8 x 8 x 3 frame
CONSTANT, PIXELS, STATE, STATE_ONLY, RANDOM_INIT = "constant", "raw pixels 8x8x3", "state as action", "BC state only", "BC random-init"
OWN_FOOTAGE = "BC own footage"
MOVES = 0.1  # a dim is scored when its std over each fold's training frames is at least this fraction of its std over all frames


def episode_folds(lengths: list[int], folds: int) -> list[tuple[list[int], list[int]]]:
    """Episode lengths -> ``min(folds, episodes)`` (train episode ids, held-out episode ids) pairs, every episode held out once."""
    groups = np.repeat(np.arange(len(lengths)), lengths)  # (F,) the episode of each frame
    return [(np.unique(groups[tr]).tolist(), np.unique(groups[te]).tolist()) for tr, te in group_folds(groups, folds)]


@torch.no_grad()
def predict_actions(policy, split: tuple, device: str, batch: int = 256) -> np.ndarray:
    """A trained policy's action chunks, in the robot's units, for every frame of ``split`` (``bc.split_tensors``) -> float64
    [F, chunk, A] (``[:, 0]``: the frame's own action)."""
    policy.eval()
    tok, state, _, hist = split
    out = [policy.actions_from_outputs(policy.forward_tokens(tok[hist[i:i + batch]].to(device), state[i:i + batch].to(device)), state[i:i + batch].to(device))
           for i in range(0, len(state), batch)]
    return torch.cat(out).double().cpu().numpy().reshape(len(state), policy.chunk, policy.action_dim)


def _fold_predictions(cfg, meta, eps, encoder, per_episode, pool_init, train_ids, test_ids, seed, copies=None) -> np.ndarray:
    """Train a fresh BC policy on episodes ``train_ids`` and predict the frames of ``test_ids`` -> [F_test, chunk, A]."""
    from toto_robot.policies.bc import fit_policy, make_policy, split_tensors

    encoder.pool.load_state_dict(pool_init)
    torch.manual_seed(seed)  # the head's initial weights
    train = split_tensors(per_episode, eps, train_ids, cfg, copies)
    policy = make_policy(encoder, meta, replace(cfg, seed=seed), train)
    fit_policy(policy, train, None, replace(cfg, seed=seed), eps=eps, progress=False, lengths=[len(per_episode[i]) for i in train_ids])
    return predict_actions(policy, split_tensors(per_episode, eps, test_ids, cfg), cfg.device)


def offline_horizons(cfg) -> list[int]:
    """The horizons scored: ``cfg.offline_horizons`` capped at the chunk the policy predicts, each once, ascending."""
    return sorted({min(int(h), cfg.chunk) for h in cfg.offline_horizons})


def offline_evaluation(cfg, meta, eps: list[dict], encoder, per_episode: list[torch.Tensor], pool_init: dict, out: Path,
                       action_norm: str | None = None, copies: list | None = None, head: str | None = None) -> dict:
    """Held-out-episode action error of BC (``cfg``, on ``encoder``'s cached tokens ``per_episode``) beside its baselines on the
    same folds, at each horizon; writes the report into ``out`` and returns its summary (see the module docstring).
    ``action_norm``: the trained policy's (none | standard), used by every fold; None: ``cfg.action_norm``; ``head`` the same for
    ``cfg.head``. ``copies``: the
    shifted copies of ``per_episode`` the policy trained on (``policy.augment``); every learner with images trains on its own."""
    from toto_robot.policies.bc import augmented_tokens

    if len(eps) < 2:
        raise DataFormatError(f"offline evaluation holds whole episodes out: it needs at least 2 episodes, got {len(eps)}")
    cfg = replace(cfg, action_norm=action_norm or cfg.action_norm, head=head or cfg.head)
    lengths = [len(ep[ACTION]) for ep in eps]
    folds = episode_folds(lengths, cfg.offline_folds)
    method = f"BC {encoder.name}"
    copies = copies if copies is not None else augmented_tokens(encoder, eps, cfg)
    # (name, config, encoder, its tokens, its shifted copies, its pool's initial weights)
    learners = [(method, cfg, encoder, per_episode, copies, pool_init)]
    if cfg.use_state:  # the same head on the same frames with blank images: what the image adds over the state
        learners.append((STATE_ONLY, cfg, encoder, [torch.zeros_like(t) for t in per_episode], None, pool_init))
    for name, spec in ((PIXELS, dict(PIXEL_BASELINE)), *([(RANDOM_INIT, random_init_spec(cfg.encoder))] if cfg.offline_random_init else [])):
        learners.append(encoder_learner(name, cfg, spec, eps))
    A = meta.action_dim
    chunks: dict[str, list] = {}  # learner -> per episode [T, chunk, A]
    train_mean = np.zeros((len(folds), A))
    train_std = np.zeros((len(folds), A))
    fold_of = np.zeros(len(eps), np.int64)
    for f, (train_ids, test_ids) in enumerate(folds):
        log.info("offline evaluation fold %d/%d: %d training episodes, held out %s", f + 1, len(folds), len(train_ids), test_ids)
        y_train = np.concatenate([eps[i][ACTION] for i in train_ids]).astype(np.float64)  # (F_train, A)
        train_mean[f], train_std[f] = y_train.mean(0), y_train.std(0)
        bounds = np.cumsum([0] + [lengths[i] for i in test_ids])
        fold_learners = learners + ([own_footage_learner(cfg, meta, eps, train_ids, out / "own_footage", f)] if cfg.offline_own_footage else [])
        for name, lcfg, lenc, ltok, lcopies, linit in fold_learners:
            pred = _fold_predictions(lcfg, meta, eps, lenc, ltok, linit, train_ids, test_ids, cfg.seed + f, lcopies)  # (F_test, chunk, A)
            for j, i in enumerate(test_ids):
                chunks.setdefault(name, [None] * len(eps))[i] = pred[bounds[j]:bounds[j + 1]]
        fold_of[test_ids] = f
    all_std = np.concatenate([ep[ACTION] for ep in eps]).astype(np.float64).std(0)
    dims = np.flatnonzero((all_std > 0) & (train_std >= MOVES * all_std).all(0))  # dims that move in every fold's training frames
    if not len(dims):
        raise DataFormatError(f"offline evaluation: no action dimension moves in every fold's training episodes (by {MOVES:g} of its "
                              f"spread over the set); there is nothing to score")
    skipped = sorted(set(range(A)) - set(dims.tolist()))
    if skipped:
        log.info("offline evaluation scores %d of %d action dims; left out (still in some fold's training episodes): %s", len(dims), A, skipped)
    horizons = offline_horizons(cfg)
    by_horizon, scores_of = {}, {}
    for h in horizons:
        keep = [i for i in range(len(eps)) if lengths[i] >= h]  # episodes with a frame h - 1 frames after their first
        ys = [eps[i][ACTION].astype(np.float64)[h - 1:, dims] for i in keep]  # the action recorded h - 1 frames later
        preds = {name: [chunks[name][i][: lengths[i] - h + 1, h - 1][:, dims] for i in keep] for name in chunks}
        preds[CONSTANT] = [np.broadcast_to(train_mean[fold_of[i]][dims], (lengths[i] - h + 1, len(dims))) for i in keep]
        if meta.state_dim == A:  # hold the position: the action = the frame's own state
            preds[STATE] = [eps[i][OBS_STATE].astype(np.float64)[: lengths[i] - h + 1, dims] for i in keep]
        scale = [train_std[fold_of[i]][dims] for i in keep]
        scores = {m: episode_stats(ys, preds[m], scale) for m in preds}
        rep = summarise(scores, n_boot=cfg.bootstrap, seed=cfg.seed, baseline_of=method, also=(RANDOM_INIT, OWN_FOOTAGE))
        rep["episodes"] = keep
        by_horizon[h], scores_of[h] = rep, scores
    first = by_horizon[horizons[0]]
    report = {"methods": first["methods"], "paired": first["paired"], "held_out_episodes": first["held_out_episodes"], "interval": first["interval"],
              "horizons": {str(h): by_horizon[h] for h in horizons}}
    report.update({"encoder": encoder.name, "encoder_spec": {k: v for k, v in cfg.encoder.items() if v is not None}, "demos": str(cfg.demos),
                   "episodes": len(eps), "frames": int(sum(lengths)), "folds": [{"train": tr, "held_out": te} for tr, te in folds],
                   "action_dims_scored": dims.tolist(), "action_dims_left_out": skipped, "use_state": cfg.use_state, "chunk": cfg.chunk,
                   "head": cfg.head, "action_repr": cfg.action_repr, "cameras": list(cfg.cameras),
                   "frame_stride": cfg.frame_stride, "epochs": cfg.epochs, "seed": cfg.seed, "bootstrap": cfg.bootstrap, "pixel_baseline": PIXEL_BASELINE})
    write_report(report, scores_of[horizons[0]], fold_of, out)
    print(summary_line(report))
    return {k: report[k] for k in ("methods", "paired", "held_out_episodes", "frames", "interval", "horizons")}


def random_init_spec(spec: dict) -> dict:
    """The random-init control of an encoder spec built from a pre-training checkpoint: the same architecture and read-out,
    untrained."""
    like = spec.get("checkpoint") or spec.get("like")
    if spec.get("name") == "random" or not like:
        raise DataFormatError(f"policy.offline_random_init needs an encoder built from a pre-training checkpoint (encoder.checkpoint), "
                              f"got {spec}")
    keep = {k: v for k, v in spec.items() if k not in ("name", "checkpoint", "like") and v is not None}
    return {"name": "random", "like": like, **keep}


def encoder_learner(name: str, cfg, spec: dict, eps: list[dict]) -> tuple:
    """A learner on its own encoder, built from ``spec``: (name, config, encoder, its tokens of every episode, their shifted
    copies, its pool's initial weights), the tuple ``offline_evaluation`` trains per fold."""
    from toto_robot.policies.bc import augmented_tokens, demo_tokens

    lcfg = replace(cfg, encoder=spec)
    enc = encoder_from_spec(spec).to(cfg.device)
    return (name, lcfg, enc, demo_tokens(enc, eps, lcfg), augmented_tokens(enc, eps, lcfg), {k: v.clone() for k, v in enc.pool.state_dict().items()})


def own_footage_learner(cfg, meta, eps: list[dict], train_ids: list[int], root: Path, fold: int) -> tuple:
    """The ``OWN_FOOTAGE`` learner of fold ``fold``: Toto pre-trained like the run's encoder checkpoint (``train_bc`` checked it is a
    Toto built from one) on the videos of episodes ``train_ids`` (every camera of ``cfg.cameras``), read as the run's encoder
    reads. Its run lives in ``root/fold<k>-<hash>``, the hash of what it trains on and how (a rerun with other episodes, cameras
    or steps trains anew)."""
    from toto_robot.pretrain.footage import FootageRecipe, episode_videos, pretrain_like
    from toto_robot.utils.io import config_hash

    spec = {k: v for k, v in cfg.encoder.items() if v is not None}
    recipe = FootageRecipe(steps=cfg.own_footage_steps, seed=cfg.seed, device=cfg.device)
    key = {"demos": str(cfg.demos), "train": list(map(int, train_ids)), "cameras": list(cfg.cameras), "frame_stride": cfg.frame_stride,
           "like": str(Path(spec["checkpoint"]).resolve()), "steps": recipe.steps, "batch_tokens": recipe.batch_tokens, "seed": recipe.seed}
    out = root / f"fold{fold}-{config_hash(key)}"
    log.info("own footage: pre-training Toto on training episodes %s (%d steps) in %s", train_ids, cfg.own_footage_steps, out)
    videos = episode_videos(eps, train_ids, list(cfg.cameras), out / "videos", fps=max(1, round(meta.fps)))
    final = pretrain_like(spec["checkpoint"], [videos], out, recipe)
    # a fold's encoder is never reused: its tokens skip the shared cache
    return encoder_learner(OWN_FOOTAGE, replace(cfg, token_cache=None), {**spec, "checkpoint": str(final)}, eps)


def episode_stats(ys: list[np.ndarray], preds: list[np.ndarray], scales: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per held-out episode: frames ``n`` [E], normalised squared error summed over frames and dims ``nse`` [E], and per dim the
    squared error ``sse`` [E, D], sum ``sy`` [E, D] and sum of squares ``syy`` [E, D] of the targets, in units of each dim's spread
    over all episodes (and centred on its mean, for precision); sums, so any resample of episodes adds them up."""
    y_all = np.concatenate(ys)
    centre, spread = y_all.mean(0), y_all.std(0)
    spread = np.where(spread > 0, spread, 1.0)
    return {"n": np.array([len(y) for y in ys], np.float64),
            "nse": np.array([(((p - y) / s) ** 2).sum() for y, p, s in zip(ys, preds, scales)]),
            "sse": np.stack([(((p - y) / spread) ** 2).sum(0) for y, p in zip(ys, preds)]),
            "sy": np.stack([((y - centre) / spread).sum(0) for y in ys]), "syy": np.stack([(((y - centre) / spread) ** 2).sum(0) for y in ys])}


def scores_from(stats: dict[str, np.ndarray], weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Episode weights [B, E] (1 each for the held-out set; bootstrap counts for a resample) -> (nMSE [B], R^2 [B], R^2 per dim [B, D])."""
    n = weights @ stats["n"]  # (B,)
    D = stats["sse"].shape[1]
    nmse = (weights @ stats["nse"]) / (n * D)
    sse = weights @ stats["sse"]  # (B, D)
    sst = weights @ stats["syy"] - (weights @ stats["sy"]) ** 2 / n[:, None]  # (B, D) about the resample's own mean
    with np.errstate(divide="ignore", invalid="ignore"):
        per_dim = 1 - sse / sst
        r2 = 1 - sse.sum(1) / sst.sum(1)
    return nmse, r2, per_dim


def summarise(scores: dict[str, dict], n_boot: int, seed: int, baseline_of: str, also: tuple[str, ...] = ()) -> dict:
    """Point scores on all held-out episodes and 95% bootstrap intervals over episodes (the same resamples for every predictor), and
    the paired nMSE / R^2 differences of ``baseline_of`` minus each baseline, then of each learner in ``also`` minus each predictor
    that is not a learner (holding still, the constant, BC on the state alone, raw pixels)."""
    E = len(next(iter(scores.values()))["n"])
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, E, E), minlength=E) for _ in range(n_boot)]).astype(np.float64)  # (B, E)
    full = np.ones((1, E))
    point, boot = {}, {}
    for m, st in scores.items():
        (nmse,), (r2,), (per_dim,) = scores_from(st, full)
        point[m] = (nmse, r2, per_dim)
        boot[m] = scores_from(st, counts)[:2]

    def interval(x):
        x = x[np.isfinite(x)]
        return [float(np.percentile(x, 2.5)), float(np.percentile(x, 97.5))] if len(x) else [float("nan")] * 2

    methods = [{"method": m, "nmse": float(point[m][0]), "nmse_ci": interval(boot[m][0]), "r2": float(point[m][1]), "r2_ci": interval(boot[m][1]),
                "r2_mean_over_dims": float(np.mean(point[m][2])), "r2_per_dim": point[m][2].tolist(),
                "nmse_per_episode": (st["nse"] / (st["n"] * st["sse"].shape[1])).tolist()} for m, st in scores.items()]
    pairs = [(baseline_of, m) for m in scores if m != baseline_of]
    pairs += [(a, m) for a in also if a in scores for m in scores if m not in (baseline_of, *also)]
    paired = [{"difference": f"{a} - {m}", "nmse": float(point[a][0] - point[m][0]), "nmse_ci": interval(boot[a][0] - boot[m][0]),
               "r2": float(point[a][1] - point[m][1]), "r2_ci": interval(boot[a][1] - boot[m][1])} for a, m in pairs]
    return {"methods": methods, "paired": paired, "held_out_episodes": E,
            "interval": f"95% percentile bootstrap over {E} held-out episodes, {n_boot} resamples"}


def summary_line(report: dict) -> str:
    dims = len(report["action_dims_scored"])
    head = (f"offline BC, {report['held_out_episodes']} held-out episodes ({len(report['folds'])} folds, {report['frames']} frames, "
            f"{dims} of {dims + len(report['action_dims_left_out'])} action dims, 95% bootstrap over episodes)")
    parts = []
    for h, rep in report["horizons"].items():
        parts.append(f"horizon {h}: " + "; ".join(f"{r['method']} nMSE {r['nmse']:.3f} [{r['nmse_ci'][0]:.3f}, {r['nmse_ci'][1]:.3f}] "
                                                   f"R^2 {r['r2']:.3f}" for r in rep["methods"]))
    return head + ": " + " | ".join(parts)


def write_report(report: dict, scores: dict, fold_of: np.ndarray, out: Path) -> None:
    atomic_save_json(report, out / "offline_eval.json")
    rows = [{"method": r["method"], "horizon": int(h), "encoder": report["encoder"], "held_out_episodes": rep["held_out_episodes"], "frames": report["frames"],
             "nmse": r["nmse"], "nmse_lo": r["nmse_ci"][0], "nmse_hi": r["nmse_ci"][1], "r2": r["r2"], "r2_lo": r["r2_ci"][0], "r2_hi": r["r2_ci"][1]}
            for h, rep in report["horizons"].items() for r in rep["methods"]]
    atomic_write_csv(rows, out / "offline_eval.csv")
    per_ep = [{"episode": e, "fold": int(fold_of[e]), "frames": int(scores[r["method"]]["n"][e]), "method": r["method"], "nmse": v}
              for r in report["methods"] for e, v in enumerate(r["nmse_per_episode"])]
    atomic_write_csv(per_ep, out / "offline_episodes.csv")
    plt = pyplot()
    if len(report["horizons"]) > 1:
        plot_horizons(report, out / "offline_horizons.png")
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), dpi=120)
    names = [r["method"] for r in report["methods"]]
    y = np.arange(len(names))
    for ax, key, label in ((axes[0], "nmse", "held-out action nMSE (lower is better)"), (axes[1], "r2", "held-out action R^2")):
        vals = np.array([r[key] for r in report["methods"]])
        ci = np.array([r[f"{key}_ci"] for r in report["methods"]])
        ax.errorbar(vals, y, xerr=np.abs(np.stack([vals - ci[:, 0], ci[:, 1] - vals])), fmt="o", capsize=4, color="C0", label="all held-out episodes")
        if key == "nmse":
            for k, r in enumerate(report["methods"]):
                ax.scatter(r["nmse_per_episode"], np.full(len(r["nmse_per_episode"]), k + 0.2), s=10, color="grey", label="one episode" if k == 0 else None)
            ax.legend(fontsize=7)
        ax.set_yticks(y, names if key == "nmse" else [""] * len(names))
        ax.set_xlabel(label, fontsize=8)
        ax.grid(alpha=0.3)
    inputs = "image + state" if report["use_state"] else "image only"
    fig.suptitle(f"offline BC ({inputs}): {Path(report['demos']).name}, {report['held_out_episodes']} held-out episodes, 95% bootstrap", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out / "offline_eval.png")


def plot_horizons(report: dict, path: Path) -> None:
    """Held-out nMSE and R^2 of every predictor against the horizon, with the bootstrap intervals."""
    plt = pyplot()
    hs = [int(h) for h in report["horizons"]]
    names = [r["method"] for r in report["horizons"][str(hs[0])]["methods"]]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), dpi=120)
    for k, name in enumerate(names):
        rows = [next(r for r in report["horizons"][str(h)]["methods"] if r["method"] == name) for h in hs]
        for ax, key in ((axes[0], "nmse"), (axes[1], "r2")):
            vals = np.array([r[key] for r in rows])
            ci = np.array([r[f"{key}_ci"] for r in rows])
            x = np.array(hs) * (1 + 0.03 * (k - len(names) / 2))  # side by side
            ax.errorbar(x, vals, yerr=np.abs(np.stack([vals - ci[:, 0], ci[:, 1] - vals])), fmt="o-", capsize=3, label=name, color=f"C{k}")
    for ax, label in ((axes[0], "held-out action nMSE (lower is better)"), (axes[1], "held-out action R^2")):
        ax.set_xscale("log")
        ax.set_xticks(hs, [str(h) for h in hs])
        ax.set_xlabel("horizon (frames ahead + 1)", fontsize=8)
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"offline BC by horizon: {Path(report['demos']).name}, {report['held_out_episodes']} held-out episodes, 95% bootstrap", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
