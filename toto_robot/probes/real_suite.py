"""The real-frame evaluation: any frozen encoder scored on real footage the user has on disk, beside
baselines that need no training, with an interval beside every mean and the command that made it.

    toto-robot real-frames toto=runs/pretrain/<run>/final davis_root=~/data/DAVIS robot_roots=[~/lerobot/g1,~/demos/arm]

Two suites, either or both:

* **DAVIS label propagation** (``davis.py``: DAVIS 2016 0/255 masks or DAVIS 2017 palette ids, read as
  they are). Every frame of every sequence; J and F per sequence, J&F their mean (DINO's protocol,
  ``label_propagation.py``). A context-limited model runs in windows that restart from the annotated
  frame and carry its own predicted masks. Baselines: copying the first mask, and raw-pixel patches
  (``encoders/pixels.py``) at each encoder's input size.
* **Real robot episodes** (any folder ``open_demos`` reads: the project's demo folder, LeRobot, RLDS).
  Ridge regression from single frames' pooled features to the joint state and to the action, out of
  fold with folds grouped by episode (``regression.py``). Baselines: raw 8 x 8 x 3 pixels and a
  constant (each fold's training mean).

Intervals are percentile bootstraps over sequences (DAVIS) or episodes (robot sets); encoders are
compared with a baseline or control on the same sequences (Wilcoxon signed-rank, exact for small n)
and the same episodes (paired bootstrap of the R^2 difference). Writes ``real_frames.md``,
``davis.csv`` (a row per encoder x layer x sequence), ``robot.csv`` (per encoder x layer x set x target),
``results.json`` and ``davis.png`` / ``robot.png``.

The scoring and the page are plain functions that other reports call too: ``real_frame_scores`` is one encoder's
means on frames already read (the recipe study's frame scores), ``page_sections`` the page's sections (the demo
report's real-frame sections).
"""
from __future__ import annotations

import logging
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from toto_robot.encoders import Encoder, encoder_from_spec
from toto_robot.encoders.features import pooled_features
from toto_robot.probes.regression import r2_per_column, raw_pixels, ridge_cv
from toto_robot.probes.robot_frames import FrameTargets, robot_frames
from toto_robot.utils.stats import group_folds
from toto_robot.utils.config import ConfigError, check_choice, check_int
from toto_robot.utils.io import atomic_save_json, atomic_write, atomic_write_csv
from toto_robot.utils.plots import pyplot, save_figure

log = logging.getLogger(__name__)
TARGETS = ("state", "action")
PROTOCOL = 2  # bumped when a default of the scoring changes, so cached reports are recomputed (demo stage real_frames)
COPY_FIRST, PIXELS, CONSTANT, RAW8 = "copy first mask", "pixels", "constant", "raw 8x8 pixels"


@dataclass
class RealFramesConfig:
    encoders: dict[str, dict]  # label -> encoder spec (``encoder_from_spec``: name, checkpoint, like, layer, img_size, ...)
    out_dir: str = "runs/real_frames"
    davis_root: str | None = None
    robot_roots: list[str] = field(default_factory=list)
    davis: dict = field(default_factory=lambda: {"size": 256, "fit": "squash"})  # ``davis_videos`` options
    propagation: dict = field(default_factory=dict)  # ``propagate``/``segment`` options (topk, temperature, context, radius, norm) and window
    layers: str = "own"  # own: each encoder's configured layer; all: every layer too (sweep figure), the headline stays at its own layer
    poolings: list[str] = field(default_factory=lambda: ["average", "spatial2"])  # robot read-outs (``regression.pool_tokens``)
    robot_size: int | None = None  # robot frames are centre-cropped and resized to this on load (None: the largest
    # encoder input size, at least 128, so no encoder reads upsampled frames)
    robot_max_frames: int = 1500  # per set: every k-th frame of each episode so that at most this many are kept
    targets: list[str] = field(default_factory=lambda: list(TARGETS))
    pixel_baseline: bool = True  # raw-pixel patches at each input size the encoders use, and raw 8x8 pixels on robot frames
    folds: int = 5
    bootstrap: int = 2000
    seed: int = 0
    controls: list[str] = field(default_factory=list)  # pairs to test: "<label> vs <label>"; empty = the first encoder vs every other row
    command: str | None = None  # the command that made the run (written on the page); None = this process's argv

    def __post_init__(self):
        if not self.davis_root and not self.robot_roots:
            raise ConfigError("real-frames needs davis_root=<DAVIS folder> and/or robot_roots=[<episode folders>]")
        if not self.encoders:
            raise ConfigError("real-frames needs at least one encoder: toto=<pre-training final/ dir> or +encoders.<label>.name=...")
        check_choice(self.layers, "layers", ("own", "all"))
        for t in self.targets:
            check_choice(t, "targets", TARGETS)
        if self.robot_size is not None:
            check_int(self.robot_size, "robot_size", low=1)
        check_int(self.robot_max_frames, "robot_max_frames", low=1)
        check_int(self.folds, "folds", low=2)
        check_int(self.bootstrap, "bootstrap", low=0)
        if self.davis_root and not Path(self.davis_root).expanduser().is_dir():
            raise ConfigError(f"davis_root: folder not found: {self.davis_root}")
        for k, root in enumerate(self.robot_roots):
            if not Path(root).expanduser().is_dir():
                raise ConfigError(f"robot_roots[{k}]: folder not found: {root}")


def standard_encoders(toto: str | None = None, mae: str | None = None, layer: int | None = None, mae_layer: int | None = None,
                      resolution: int | None = None, scan: str = "raster") -> dict[str, dict]:
    """The comparison every real-frame table holds, from a Toto checkpoint: Toto at ``layer`` (default half depth), its
    random-init control (same tokenizer and architecture), an untrained ViT of the same input size and, given an MAE
    checkpoint of the mae_tiny layout, that MAE at the same input size. ``resolution`` reads them all at another
    frame size than Toto's pre-training (one frame must fit Toto's context); ``scan`` is Toto's read-out scans
    (``toto_robot.encoders.toto.SCANS``), its random-init control read the same way."""
    specs: dict[str, dict] = {}
    size = resolution
    if toto:
        from toto_robot.encoders.toto import read_pretrained_run

        size = resolution or read_pretrained_run(toto)[2]
        at = {**({"resolution": resolution} if resolution else {}), **({"scan": scan} if scan != "raster" else {})}
        specs["toto"] = {"name": "toto", "checkpoint": str(toto), "layer": layer, **at}
        specs["random-init"] = {"name": "random", "like": str(toto), "layer": layer, **at}
        specs["untrained ViT"] = {"name": "random", "img_size": size}
    if mae:
        specs["mae"] = {"name": "mae_tiny", "checkpoint": str(mae), "layer": mae_layer, **({"img_size": size} if size else {})}
    return specs


# ---- statistics ------------------------------------------------------------------------------------

def bootstrap_mean(values, n: int, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean of ``values`` over ``n`` resamples (the values themselves when n = 0)."""
    v = np.asarray(values, np.float64)
    if n == 0 or len(v) < 2:
        return float(v.min()), float(v.max())
    idx = np.random.default_rng(seed).integers(0, len(v), (n, len(v)))
    means = v[idx].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def wilcoxon_paired(a, b) -> dict:
    """Two-sided Wilcoxon signed-rank test of a - b over the same items (exact for n <= 25 without ties)."""
    from scipy.stats import wilcoxon

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = a - b
    out = {"n": len(d), "mean_diff": float(d.mean()), "wins": int((d > 0).sum()), "losses": int((d < 0).sum())}
    out["p"] = 1.0 if not np.any(d != 0) else float(wilcoxon(a, b, zero_method="wilcox").pvalue)
    return out


def r2_resampled(y: np.ndarray, preds: list[np.ndarray], groups: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """R^2 (mean over columns) of each prediction [N, D] on ``n`` bootstrap resamples of whole episodes -> [n, len(preds)].
    Each column's squared error is taken over the resampled frames and divided by that column's variance over ALL frames
    (a resample of few episodes can hold a column nearly constant, and its own variance would blow the ratio up). Every
    prediction meets the same resamples, so differences are paired."""
    uniq = np.unique(groups)
    members = [np.flatnonzero(groups == g) for g in uniq]
    var = y.var(0)  # (D,)
    rng = np.random.default_rng(seed)
    out = np.empty((n, len(preds)))
    for i in range(n):
        rows = np.concatenate([members[j] for j in rng.integers(0, len(uniq), len(uniq))])
        for k, p in enumerate(preds):
            out[i, k] = float((1 - ((y[rows] - p[rows]) ** 2).mean(0) / var).mean())
    return out


def constant_predictions(y: np.ndarray, groups: np.ndarray, folds: int) -> np.ndarray:
    """The constant baseline: every test frame predicted as its fold's training mean [N, D]."""
    pred = np.empty_like(y)
    for train, test in group_folds(groups, folds):
        pred[test] = y[train].mean(0)
    return pred


# ---- DAVIS -------------------------------------------------------------------------------------------

def davis_rows(label: str, encoder: Encoder | None, videos, names: list, layer: int | None, prop: dict) -> list[dict]:
    """One row per sequence: J, F and J&F of ``encoder`` at ``layer`` (``propagation_j``; None encoder: ``copy_first_j``)."""
    from toto_robot.probes.label_propagation import copy_first_j

    if encoder is None:
        return score_rows(label, copy_first_j(videos), videos, names, None)
    layer = encoder.layer if layer is None else layer
    return davis_layer_rows(label, encoder, videos, names, [layer], prop)[layer]


def davis_layer_rows(label: str, encoder: Encoder, videos, names: list, layers: list[int], prop: dict) -> dict[int, list[dict]]:
    """``davis_rows`` at each of ``layers``, every clip through the encoder once: {layer: rows}."""
    from toto_robot.probes.label_propagation import propagation_layers

    return {l: score_rows(label, score, videos, names, l) for l, score in propagation_layers(encoder, videos, layers, **prop).items()}


def score_rows(label: str, score: dict, videos, names: list, layer: int | None) -> list[dict]:
    return [{"encoder": label, "layer": "" if layer is None else layer, "own_layer": True, "sequence": name, "frames": len(frames),
             "J": j, "F": f, "J&F": (j + f) / 2}
            for name, (frames, _), j, f in zip(names, videos, score["per_video"], score["per_video_F"])]


# ---- robot episodes ----------------------------------------------------------------------------------

@dataclass
class RobotSet:
    name: str
    frames: np.ndarray  # uint8 [N, S, S, 3]
    targets: dict[str, np.ndarray]  # "state" / "action" -> float64 [N, D] (constant columns dropped)
    groups: np.ndarray  # int64 [N] episode of each frame
    dropped: dict[str, list[int]]  # target -> constant columns left out
    episodes: int = 0
    stride: int = 1


def read_robot_set(root: str | Path, size: int, max_frames: int, targets) -> RobotSet:
    """Any folder ``open_demos`` reads -> frames at ``size`` px with state and action targets, every k-th frame of
    each episode so that at most ``max_frames`` are kept."""
    from toto_robot.constants import ACTION, OBS_IMAGE, OBS_STATE
    from toto_robot.data.formats import open_demos
    from toto_robot.encoders.base import resize_frames_u8

    root = Path(root).expanduser()
    ds = open_demos(root)
    keys = {"state": OBS_STATE, "action": ACTION}
    frames, ys, groups = [], {t: [] for t in targets}, []
    for g in tqdm(range(len(ds)), desc=f"{root.name} episodes", unit="ep", leave=False):
        ep = ds[g]  # one episode decoded at a time; frames shrunk at once
        frames.append(resize_frames_u8(torch.from_numpy(np.ascontiguousarray(ep[OBS_IMAGE])), size).numpy())  # (T, size, size, 3)
        for t in targets:
            ys[t].append(np.asarray(ep[keys[t]], np.float64).reshape(len(frames[-1]), -1))
        groups.append(np.full(len(frames[-1]), g, np.int64))
    total = sum(len(f) for f in frames)
    stride = max(1, int(np.ceil(total / max_frames)))
    frames = [f[::stride] for f in frames]
    groups = [g[::stride] for g in groups]
    ys = {t: [y[::stride] for y in v] for t, v in ys.items()}
    if len(ds) < 3:
        raise ConfigError(f"{root}: {len(ds)} episode(s); grouped cross-validation needs at least 3")
    out, dropped = {}, {}
    for t in targets:
        y = np.concatenate(ys[t])
        keep = y.std(0) > 1e-12
        dropped[t] = np.flatnonzero(~keep).tolist()
        if keep.any():
            out[t] = y[:, keep]
    return RobotSet(root.name, np.concatenate(frames), out, np.concatenate(groups), dropped, len(ds), stride)


def robot_predictions(encoders: dict[str, Encoder], frames: np.ndarray, targets: dict[str, np.ndarray], groups: np.ndarray,
                      layers: dict[str, list[int]], poolings, folds: int, pixels: bool = True) -> dict[str, list[tuple]]:
    """Out-of-fold predictions of each target y [N, D] from one frame: the constant baseline, ridge on raw 8 x 8 pixels
    (``pixels``) and ridge on every encoder's pooled features at each of its ``layers`` x ``poolings``, folds grouped by
    ``groups`` [N] -> target -> [(label, layer, pooling, pred [N, D])] (baselines have layer and pooling "")."""
    feats = {label: pooled_features(enc, frames, layers[label], poolings) for label, enc in encoders.items()}  # (layer, pooling) -> [N, F]
    raw = raw_pixels(frames) if pixels else None  # (N, 192)
    out = {}
    for target, y in targets.items():
        preds = [(CONSTANT, "", "", constant_predictions(y, groups, folds))]
        if pixels:
            preds.append((RAW8, "", "", ridge_cv(raw, y, groups, folds)["pred"]))
        preds += [(label, layer, pooling, ridge_cv(x, y, groups, folds)["pred"])
                  for label in encoders for (layer, pooling), x in feats[label].items()]
        out[target] = preds
    return out


def mean_r2(y: np.ndarray, pred: np.ndarray) -> float:
    """R^2 of predictions [N, D] of y [N, D], averaged over columns."""
    return float(r2_per_column(y, pred).mean())


# ---- one encoder ---------------------------------------------------------------------------------------

def real_frame_scores(encoder: Encoder, davis_root: str | Path | None = None, robot_root: str | Path | None = None, *,
                      davis: list[tuple[np.ndarray, np.ndarray]] | None = None, robot: FrameTargets | None = None,
                      layer: int | None = None, poolings=("average", "spatial2"), folds: int = 5,
                      davis_kwargs: dict | None = None, robot_kwargs: dict | None = None) -> dict:
    """Means of ``encoder`` at ``layer`` (default: ``encoder.layer``) on whichever real sets are given, scored by
    ``davis_rows`` and ``robot_predictions`` as the suite's tables are, each beside its baseline.

    DAVIS clips come from ``davis_videos(davis_root, **davis_kwargs)`` or ready as ``davis``; robot frames from
    ``robot_frames(robot_root, **robot_kwargs)`` (``probes/robot_frames.py``: one target array, e.g. end-effector xyz)
    or ready as ``robot``, so several encoders can be scored without reading the files again.

    Returns ``{"encoder", "layer"}`` plus, with DAVIS clips, ``davis_J``/``davis_F`` and ``davis_copy_first_J``/``_F``; with
    robot frames, ``robot_r2_<pooling>`` for each pooling and ``robot_raw_pixels_r2``.
    """
    if davis_root is not None and davis is None:
        from toto_robot.probes.davis import davis_videos

        davis = davis_videos(davis_root, **(davis_kwargs or {}))
    if robot_root is not None and robot is None:
        robot = robot_frames(robot_root, **(robot_kwargs or {}))
    if davis is None and robot is None:
        raise ValueError("real_frame_scores needs DAVIS clips (davis_root or davis) and/or robot frames (robot_root or robot)")
    layer = encoder.layer if layer is None else int(layer)
    scores: dict = {"encoder": encoder.name, "layer": layer}
    if davis is not None:
        names = list(range(len(davis)))
        ours, floor = davis_rows(encoder.name, encoder, davis, names, layer, {}), davis_rows(COPY_FIRST, None, davis, names, None, {})
        scores |= {"davis_J": float(np.mean([r["J"] for r in ours])), "davis_F": float(np.mean([r["F"] for r in ours])),
                   "davis_copy_first_J": float(np.mean([r["J"] for r in floor])), "davis_copy_first_F": float(np.mean([r["F"] for r in floor]))}
    if robot is not None:
        y = np.asarray(robot.targets, np.float64)  # (N, D)
        preds = robot_predictions({"encoder": encoder}, robot.frames, {"y": y}, robot.groups, {"encoder": [layer]}, poolings, folds)["y"]
        r2 = {(label, pooling): mean_r2(y, pred) for label, _, pooling, pred in preds}
        scores |= {f"robot_r2_{p}": r2[("encoder", p)] for p in poolings}
        scores["robot_raw_pixels_r2"] = r2[(RAW8, "")]
    return scores


# ---- the run -----------------------------------------------------------------------------------------

def encoder_layers(encoder: Encoder, mode: str) -> list[int]:
    own = encoder.layer
    if mode == "own" or encoder.num_layers == 0:
        return [own]
    return sorted({own, *range(1, encoder.num_layers + 1)})


def input_size(encoder: Encoder) -> int | None:
    return getattr(encoder, "input_size", None) or getattr(getattr(encoder, "config", None), "img_size", None)


def frame_size(encoders, least: int) -> int:
    """The size frames are read at when the config leaves it open: the largest encoder input, at least ``least``,
    so that no encoder reads frames upsampled from a smaller copy."""
    return max([least, *(input_size(e) or 0 for e in encoders)])


def run_real_frames(cfg: RealFramesConfig) -> Path:
    t0 = time.perf_counter()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    command = cfg.command or "toto-robot real-frames " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    atomic_save_json({**asdict(cfg), "command": command}, out / "real_frames_config.json")
    encoders = {label: encoder_from_spec(spec).eval() for label, spec in cfg.encoders.items()}
    for label, enc in encoders.items():
        enc.name = label
    baselines: dict[str, Encoder] = {}
    if cfg.pixel_baseline:
        from toto_robot.encoders.pixels import PixelEncoder

        for enc in encoders.values():
            size, grid = input_size(enc), enc.token_grid
            if size and grid and size % grid == 0:
                label = f"{PIXELS} {size}px/{grid}x{grid}"
                baselines.setdefault(label, PixelEncoder(label, size, size // grid))
    results: dict = {"command": command, "encoders": {k: v for k, v in cfg.encoders.items()}}

    davis_all: list[dict] = []
    if cfg.davis_root:
        from toto_robot.probes.davis import davis_sequences, davis_videos

        kw = dict(cfg.davis)
        names = davis_sequences(cfg.davis_root, kw.get("res", "480p"), kw.get("split", "val"), kw.get("sequences"), kw.get("max_sequences"))
        kw["size"] = kw.get("size") or frame_size(encoders.values(), 256)
        videos = davis_videos(cfg.davis_root, **kw)
        davis_all += davis_rows(COPY_FIRST, None, videos, names, None, cfg.propagation)
        for label, enc in tqdm({**encoders, **baselines}.items(), desc="DAVIS label propagation", unit="encoder"):
            for layer, rows in davis_layer_rows(label, enc, videos, names, encoder_layers(enc, cfg.layers), cfg.propagation).items():
                for r in rows:
                    r["own_layer"] = layer == enc.layer
                davis_all += rows
        atomic_write_csv(davis_all, out / "davis.csv")
        results["davis"] = davis_summary(davis_all, list(encoders), cfg)
        plot_davis(results["davis"], davis_all, out / "davis.png")

    robot_all: list[dict] = []
    if cfg.robot_roots:
        results["robot"] = {}
        size = cfg.robot_size or frame_size(encoders.values(), 128)
        for root in cfg.robot_roots:
            data = read_robot_set(root, size, cfg.robot_max_frames, cfg.targets)
            results["robot"][data.name] = robot_set_results(data, encoders, cfg, robot_all)
        atomic_write_csv(robot_all, out / "robot.csv")
        plot_robot(results["robot"], out / "robot.png")
    results["minutes"] = (time.perf_counter() - t0) / 60
    atomic_save_json(results, out / "results.json")
    write_page(results, cfg, out)
    return out / "real_frames.md"


def davis_summary(rows: list[dict], order: list[str], cfg: RealFramesConfig) -> dict:
    """Mean J, F, J&F with bootstrap intervals per (encoder, layer); paired tests at each encoder's own layer."""
    by: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        by.setdefault((r["encoder"], str(r["layer"])), []).append(r)
    table = []
    for (label, layer), rs in by.items():
        jf = [r["J&F"] for r in rs]
        lo, hi = bootstrap_mean(jf, cfg.bootstrap, cfg.seed)
        table.append({"encoder": label, "layer": layer, "own_layer": rs[0].get("own_layer", True), "sequences": len(rs),
                      "J": float(np.mean([r["J"] for r in rs])), "F": float(np.mean([r["F"] for r in rs])), "J&F": float(np.mean(jf)),
                      "J&F_low": lo, "J&F_high": hi})
    headline = {t["encoder"]: t for t in table if t["own_layer"]}
    per_seq = {label: [r["J&F"] for r in by[(label, headline[label]["layer"])]] for label in headline}
    tests = []
    for a, b in comparison_pairs(cfg.controls, order, list(headline)):
        tests.append({"a": a, "b": b, **wilcoxon_paired(per_seq[a], per_seq[b])})
    return {"table": table, "tests": tests, "sequences": sorted({r["sequence"] for r in rows})}


def comparison_pairs(controls: list[str], order: list[str], labels: list[str]) -> list[tuple[str, str]]:
    if controls:
        pairs = []
        for c in controls:
            a, _, b = c.partition(" vs ")
            if a not in labels or b not in labels:
                raise ConfigError(f"controls: {c!r} names labels outside {labels}")
            pairs.append((a, b))
        return pairs
    first = order[0]
    return [(first, other) for other in labels if other != first]


def robot_set_results(data: RobotSet, encoders: dict[str, Encoder], cfg: RealFramesConfig, rows: list[dict]) -> dict:
    """R^2 of every encoder x layer x pooling and the baselines on one robot set, for each target, with intervals
    over episodes and paired differences of each encoder's headline read-out against every baseline and the first encoder."""
    res: dict = {"frames": len(data.frames), "episodes": data.episodes, "stride": data.stride, "dropped": data.dropped, "targets": {}}
    layers = {label: encoder_layers(enc, cfg.layers) for label, enc in encoders.items()}
    preds = robot_predictions(encoders, data.frames, data.targets, data.groups, layers, cfg.poolings, cfg.folds, cfg.pixel_baseline)
    for target, y in data.targets.items():
        boot = r2_resampled(y, [p for *_, p in preds[target]], data.groups, max(cfg.bootstrap, 1), cfg.seed)  # (n, P)
        table = []
        for k, (label, layer, pooling, pred) in enumerate(preds[target]):
            own = label not in encoders or (layer == encoders[label].layer)
            row = {"dataset": data.name, "target": target, "dims": y.shape[1], "encoder": label, "layer": layer, "pooling": pooling,
                   "own_layer": own, "r2": mean_r2(y, pred), "r2_low": float(np.percentile(boot[:, k], 2.5)),
                   "r2_high": float(np.percentile(boot[:, k], 97.5))}
            table.append(row)
            rows.append(row)
        # headline read-out of each encoder: its own layer, the pooling that the first encoder scores best with at its own layer
        first = next(iter(encoders))
        own_rows = [i for i, r in enumerate(table) if r["encoder"] == first and r["own_layer"]]
        best_pool = table[max(own_rows, key=lambda i: table[i]["r2"])]["pooling"]
        head = {}
        for i, r in enumerate(table):
            if r["encoder"] not in encoders:
                head[r["encoder"]] = i
            elif r["own_layer"] and r["pooling"] == best_pool:
                head[r["encoder"]] = i
        tests = []
        for label in encoders:
            for other in [o for o in head if o != label and (o not in encoders or label == first)]:
                d = boot[:, head[label]] - boot[:, head[other]]
                tests.append({"a": label, "b": other, "diff": table[head[label]]["r2"] - table[head[other]]["r2"],
                              "diff_low": float(np.percentile(d, 2.5)), "diff_high": float(np.percentile(d, 97.5)),
                              "p_le_0": float((d <= 0).mean())})
        res["targets"][target] = {"table": table, "headline": {k: table[i] for k, i in head.items()}, "pooling": best_pool, "tests": tests}
    return res


# ---- page and figures ------------------------------------------------------------------------------

def fmt_ci(m: float, lo: float, hi: float) -> str:
    return f"{m:.3f} [{lo:.3f}, {hi:.3f}]"


@dataclass
class PageSection:
    title: str
    text: list[str]  # paragraphs (`code` allowed)
    tables: list[tuple[list[str], list[list[str]]]]  # (header, rows of cells)
    figures: list[tuple[str, str]]  # (file in the run folder, caption)


def page_sections(results: dict, folds: int, bootstrap: int) -> list[PageSection]:
    """The sections of the real-frame page from a run's ``results`` (``results.json``): a DAVIS section (headline table,
    paired tests, other layers) and one section per robot set (R^2 of every read-out per target, paired differences)."""
    sections = []
    if "davis" in results:
        d = results["davis"]
        head = sorted((t for t in d["table"] if t["own_layer"]), key=lambda t: -t["J&F"])
        sweep = [t for t in d["table"] if not t["own_layer"]]
        s = PageSection("DAVIS label propagation", [
            f"{len(d['sequences'])} sequences, every frame; J (region IoU), F (boundary), J&F their mean, over the frames after the first. "
            f"Each encoder at its own layer; baselines need no training. Intervals: 95% percentile bootstrap ({bootstrap} resamples) over sequences."],
            [(["encoder", "layer", "J", "F", "J&F [95% CI]"],
              [[t["encoder"], str(t["layer"]), f"{t['J']:.3f}", f"{t['F']:.3f}", fmt_ci(t["J&F"], t["J&F_low"], t["J&F_high"])] for t in head])],
            [("davis.png", "DAVIS J&F (95% bootstrap CI)")])
        if d["tests"]:
            s.text.append("Below the table, pairs of rows compared over the same sequences (J&F, two-sided Wilcoxon signed-rank)"
                          + ("; then every other layer (not the headline)." if sweep else "."))
            s.tables.append((["encoder", "vs", "mean J&F difference", "sequences better / worse", "p (Wilcoxon)"],
                             [[t["a"], t["b"], f"{t['mean_diff']:+.3f}", f"{t['wins']} / {t['losses']}", f"{t['p']:.3g}"] for t in d["tests"]]))
        elif sweep:
            s.text.append("Below the table, every other layer (not the headline).")
        if sweep:
            s.tables.append((["encoder", "other layer", "J&F [95% CI]"],
                             [[t["encoder"], str(t["layer"]), fmt_ci(t["J&F"], t["J&F_low"], t["J&F_high"])] for t in sweep]))
        sections.append(s)
    for name, r in results.get("robot", {}).items():
        targets = r["targets"]
        read = [f"{target}: {t['table'][0]['dims']} dims"
                + (f", constant columns {r['dropped'][target]} left out" if r["dropped"].get(target) else "") + f", {t['pooling']} pooling"
                for target, t in targets.items()]
        s = PageSection(f"Robot set {name}", [
            f"{r['episodes']} episodes, {r['frames']} frames (1 in {r['stride']}); ridge from one frame, {folds} folds grouped by episode, "
            f"encoders at their own layer ({'; '.join(read)}). Intervals: 95% percentile bootstrap ({bootstrap} resamples) over episodes."],
            [], [])
        first = next(iter(targets.values()))["headline"]
        labels = sorted(first, key=lambda k: -first[k]["r2"])
        s.tables.append((["read-out", *[f"{target} R^2 [95% CI]" for target in targets]],
                         [[k + (f" (layer {first[k]['layer']})" if first[k]["layer"] != "" else ""),
                           *[fmt_ci(t["headline"][k]["r2"], t["headline"][k]["r2_low"], t["headline"][k]["r2_high"]) for t in targets.values()]]
                          for k in labels]))
        if any(t["tests"] for t in targets.values()):
            s.text.append("Below the table, for each target, an encoder's R^2 minus another read-out's, the interval paired over the same episodes.")
        for target, t in targets.items():
            if t["tests"]:
                s.tables.append((["encoder", "vs", f"{target} R^2 difference [95% CI]"],
                                 [[x["a"], x["b"], fmt_ci(x["diff"], x["diff_low"], x["diff_high"])] for x in t["tests"]]))
        sections.append(s)
    if results.get("robot"):
        sections[-1].figures.append(("robot.png", "robot sets: R^2 (95% bootstrap CI)"))
    return sections


def write_page(results: dict, cfg: RealFramesConfig, out: Path) -> None:
    """``real_frames.md``: the command that made the run, its minutes and ``page_sections`` as Markdown."""
    lines = ["# Frozen encoders on real frames", "", "Made by:", "", "```", results["command"], "```", "",
             f"{results['minutes']:.1f} min on this machine.", ""]
    for s in page_sections(results, cfg.folds, cfg.bootstrap):
        lines += [f"## {s.title}", ""]
        for paragraph in s.text:
            lines += [paragraph, ""]
        for header, rows in s.tables:
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(row) + " |" for row in rows), ""]
        for path, caption in s.figures:
            lines += [f"![{caption}]({path})", ""]
    with atomic_write(out / "real_frames.md", "w") as f:
        f.write("\n".join(lines))


def plot_davis(summary: dict, rows: list[dict], path: Path) -> None:
    plt = pyplot()
    head = sorted((t for t in summary["table"] if t["own_layer"]), key=lambda t: -t["J&F"])
    fig, ax = plt.subplots(figsize=(6.5, 3.6), dpi=120)
    x = np.arange(len(head))
    ax.bar(x, [t["J&F"] for t in head], color="#4c72b0")
    ax.errorbar(x, [t["J&F"] for t in head], yerr=[[t["J&F"] - t["J&F_low"] for t in head], [t["J&F_high"] - t["J&F"] for t in head]],
                fmt="none", color="k", capsize=3)
    ax.set_xticks(x, [t["encoder"] for t in head], rotation=25, ha="right", fontsize=7)
    ax.set_ylabel("J&F (mean over sequences)")
    ax.set_title("DAVIS label propagation (95% bootstrap CI)")
    ax.grid(alpha=0.3, axis="y")
    save_figure(fig, path)


def plot_robot(robot: dict, path: Path) -> None:
    plt = pyplot()
    panels = [(name, target, t) for name, r in robot.items() for target, t in r["targets"].items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), dpi=120, squeeze=False)
    for ax, (name, target, t) in zip(axes[0], panels):
        head = sorted(t["headline"].items(), key=lambda kv: -kv[1]["r2"])
        x = np.arange(len(head))
        r2 = [row["r2"] for _, row in head]
        ax.bar(x, r2, color="#55a868")
        ax.errorbar(x, r2, yerr=[[row["r2"] - row["r2_low"] for _, row in head], [row["r2_high"] - row["r2"] for _, row in head]],
                    fmt="none", color="k", capsize=3)
        ax.set_xticks(x, [k for k, _ in head], rotation=30, ha="right", fontsize=6)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(f"{name}: {target}", fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("R^2 (out of fold, by episode)")
    save_figure(fig, path)
