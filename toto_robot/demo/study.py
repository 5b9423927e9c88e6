"""The recipe study: the demo pipeline run once per recipe, scored side by side.

    from toto_robot.demo.study import StudyConfig, run_study
    run_study(StudyConfig(base={...DemoConfig fields...}, recipes={"vq512": {}, "patch8": {"tokenizer": {...}}},
                          out_dir="runs/study"))

A recipe is the demo with a few fields changed (tokenizer, pre-training steps, clip length, model
size, poolings, BC layer, video mix, camera, ...). Every recipe runs the whole demo: Toto, its
random-init control and the MAE baseline (same frames, same steps; FLOPs measured) are probed
and cloned on the same demonstrations, seeds and evaluation episodes. Stages two recipes share
(the videos, the demonstrations, a pre-training run that only the read-out differs on) are
computed once in the shared stage cache, so adding a read-out recipe costs only its BC runs.

Writes ``<out>/<recipe>/`` (each recipe's demo report), ``study.csv`` (a row per recipe x encoder),
``study.md`` (tables with 95% Wilson intervals, episode counts, FLOPs and minutes) and
``study_bc.png`` / ``study_probe.png``; ``publish`` copies the page and figures elsewhere (docs/).
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from toto_robot.demo.pipeline import DemoConfig, run_demo
from toto_robot.policies.evaluate import wilson_interval
from toto_robot.utils.io import atomic_save_json, atomic_write, atomic_write_csv
from toto_robot.utils.plots import pyplot, save_figure

log = logging.getLogger(__name__)
BACKBONES = {"toto": "Toto (pre-trained)", "random-init": "random-init Toto", "mae": "MAE-tiny"}


@dataclass
class StudyConfig:
    base: dict  # DemoConfig fields every recipe starts from
    recipes: dict[str, dict]  # recipe name -> DemoConfig fields it changes
    out_dir: str = "runs/study"
    cache_dir: str = "runs/demo-cache"
    fast: bool = False  # every recipe at the demo's smoke-test sizes
    publish: str | None = None  # also copy study.md and its figures into this folder (e.g. docs/study)
    select: list[str] | None = None  # run only these recipes (None = all)
    # Frame scores of every encoder at its BC layer, each beside its trivial baseline: end-effector xyz by ridge
    # (folds by episode) against raw 8x8 pixels, and, with a DAVIS-layout folder, label propagation J against
    # copying the first mask. robot_root: robot camera frames with targets (toto_robot.probes.robot_frames);
    # None = the recipe's own simulated demonstrations.
    robot_root: str | None = None
    robot_kwargs: dict = field(default_factory=lambda: {"stride": 2})
    davis_root: str | None = None
    davis_kwargs: dict = field(default_factory=lambda: {"max_sequences": 10, "max_frames": 24})

    def __post_init__(self):
        if not self.recipes:
            raise ValueError("study.recipes is empty: name at least one recipe (a dict of demo fields to change)")
        unknown = sorted(set(self.select or []) - set(self.recipes))
        if unknown:
            raise ValueError(f"study.select names recipes {unknown} that study.recipes lacks; have {sorted(self.recipes)}")
        if self.select:
            self.recipes = {k: v for k, v in self.recipes.items() if k in self.select}
        known = {f for f in DemoConfig.__dataclass_fields__} - {"out_dir", "cache_dir", "fast"}
        for name, over in self.recipes.items():
            bad = sorted(set(over or {}) - known)
            if bad:
                raise ValueError(f"recipe {name!r} changes unknown demo fields {bad}; known: {sorted(known)}")


def recipe_config(cfg: StudyConfig, name: str) -> DemoConfig:
    return DemoConfig(**{**cfg.base, **(cfg.recipes[name] or {}), "out_dir": str(Path(cfg.out_dir) / name), "cache_dir": cfg.cache_dir,
                         "fast": cfg.fast})


def run_study(cfg: StudyConfig) -> Path:
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_save_json(asdict(cfg), out / "study_config.json")
    results = {}
    for name in cfg.recipes:  # the page is rewritten after each recipe, so a long study shows what it has so far
        log.info("study: recipe %s", name)
        run_demo(recipe_config(cfg, name))
        results[name] = json.loads((out / name / "results.json").read_text())
        results[name]["frames"] = frame_scores(cfg, results[name], out / name)
        page = write_page(cfg, results, out)
    if cfg.publish:
        dst = Path(cfg.publish)
        dst.mkdir(parents=True, exist_ok=True)
        for f in (page, out / "study_bc.png", out / "study_probe.png", out / "study.csv"):
            shutil.copyfile(f, dst / f.name)
    return page


def frame_scores(cfg: StudyConfig, res: dict, out: Path) -> dict[str, dict]:
    """Toto, random-init and MAE at the layers BC read, scored on real frames by the real-frame suite's
    ``real_frame_scores`` (kept in ``frame_scores.json``)."""
    from toto_robot.encoders import build_encoder
    from toto_robot.encoders.vit import VIT_CONFIGS
    from toto_robot.probes.davis import davis_videos
    from toto_robot.probes.real_suite import real_frame_scores
    from toto_robot.probes.robot_frames import robot_frames

    if "probe" not in res:  # a real-footage recipe (sim_eval=false): its own real-frame report is in results["real_frames"]
        return {}
    robot_root = cfg.robot_root or str(Path(res["stages"]["demos"]["dir"]) / "demos")
    key = {"robot_root": robot_root, "robot_kwargs": cfg.robot_kwargs, "davis_root": cfg.davis_root, "davis_kwargs": cfg.davis_kwargs,
           "pretrain": res["stages"]["pretrain"]["dir"], "mae": res["stages"]["mae"]["dir"]}
    path = out / "frame_scores.json"
    if path.is_file() and (saved := json.loads(path.read_text()))["key"] == key:
        return saved["scores"]
    demo = res["config"]
    final = str(Path(res["stages"]["pretrain"]["dir"]) / "run" / "final")
    layers = {b: best["layer"] for b in BACKBONES if (best := res["probe"]["best"].get(f"{b}/{demo['poolings'][0]}"))}
    if demo.get("bc_layer"):
        layers["toto"] = layers["random-init"] = demo["bc_layer"]
    size = {} if VIT_CONFIGS["mae_tiny"]["img_size"] == demo["image_size"] else {"img_size": demo["image_size"]}
    encoders = {"toto": build_encoder("toto", checkpoint=final, layer=layers["toto"]),
                "random-init": build_encoder("random", like=final, layer=layers["random-init"]),
                "mae": build_encoder("mae_tiny", checkpoint=str(Path(res["stages"]["mae"]["dir"]) / "mae_vit.safetensors"), layer=layers["mae"], **size)}
    robot = robot_frames(robot_root, **cfg.robot_kwargs)
    davis = davis_videos(cfg.davis_root, **cfg.davis_kwargs) if cfg.davis_root else None
    scores = {b: real_frame_scores(enc, davis=davis, robot=robot) for b, enc in encoders.items()}
    atomic_save_json({"key": key, "scores": scores}, path)
    return scores


def write_page(cfg: StudyConfig, results: dict[str, dict], out: Path) -> Path:
    rows = study_rows(results)
    if rows:
        atomic_write_csv(rows, out / "study.csv")
    real = real_rows(results)
    if real:
        atomic_write_csv(real, out / "study_real.csv", fieldnames=list(dict.fromkeys(k for r in real for k in r)))
    plot_study(rows, out)
    page = out / "study.md"
    with atomic_write(page, "w") as f:
        f.write(study_markdown(cfg, rows, results))
    return page


def study_rows(results: dict[str, dict]) -> list[dict]:
    """One row per recipe x BC encoder (``toto``, ``toto+spatial_attention``, ...): probe, BC and compute."""
    rows = []
    for recipe, res in results.items():
        best, pre, mae = res.get("probe", {}).get("best", {}), res["pretrain"], res["mae"]
        minutes = {k: res["stages"][k]["seconds"] / 60 for k in ("pretrain", "mae", "tokenizer")}
        for bc in res.get("bc", []):
            backbone, _, pooling = bc["encoder"].partition("+")
            pooling = pooling or "attention"
            probe = best.get(f"{backbone}/{pooling}", {})
            n = int(bc["seeds"]) * int(res["config"]["eval_episodes"])
            flops = {"toto": pre.get("train_flops", 0), "mae": mae.get("train_flops", 0), "random-init": 0}[backbone]
            n_val = int(res["config"].get("probe_val", 0))
            acc = probe.get("val_acc", float("nan"))
            p_lo, p_hi = wilson_interval(round(acc * n_val), n_val) if n_val and acc == acc else (float("nan"), float("nan"))
            rows.append({"recipe": recipe, "task": f"{res['config']['bc_task']} ({res['config']['camera']})",
                         "encoder": bc["encoder"], "backbone": backbone, "pooling": pooling,
                         "probe_acc": acc, "probe_ci_low": p_lo, "probe_ci_high": p_hi, "probe_layer": probe.get("layer", ""),
                         "success_rate": float(bc["success_rate"]), "ci_low": float(bc["ci_low"]), "ci_high": float(bc["ci_high"]),
                         "episodes": n, "seeds": int(bc["seeds"]), "pretrain_gflop": flops / 1e9,
                         "pretrain_minutes": {"toto": minutes["pretrain"], "mae": minutes["mae"], "random-init": 0.0}[backbone],
                         "tokenizer_minutes": minutes["tokenizer"] if backbone != "mae" else 0.0,
                         "pretrain_eval_loss": pre.get("eval_loss", float("nan")) if backbone == "toto" else float("nan"),
                         **{k: v for k, v in res.get("frames", {}).get(backbone, {}).items() if k not in ("encoder", "layer")}})
    return rows


def real_rows(results: dict[str, dict]) -> list[dict]:
    """One row per recipe x encoder of the real-frame report (recipes with ``davis_root``/``robot_roots``): DAVIS J&F with its
    interval, the paired test against Toto, and R^2 of joint state and action on each robot set and their mean over sets."""
    rows = []
    for recipe, res in results.items():
        real = res.get("real_frames")
        if not real:
            continue
        davis = {t["encoder"]: t for t in real.get("davis", {}).get("table", []) if t["own_layer"]}
        tests = {t["b"]: t for t in real.get("davis", {}).get("tests", [])}
        labels = list(dict.fromkeys([*davis, *[k for r in real.get("robot", {}).values() for t in r["targets"].values() for k in t["headline"]]]))
        flops = {"toto": res["pretrain"].get("train_flops", 0), "mae": res["mae"].get("train_flops", 0)}
        minutes = {"toto": res["stages"]["pretrain"]["seconds"] / 60, "mae": res["stages"]["mae"]["seconds"] / 60}
        for label in labels:
            row = {"recipe": recipe, "encoder": label, "pretrain_gflop": flops.get(label, 0) / 1e9, "pretrain_minutes": minutes.get(label, 0.0)}
            if label in davis:
                d = davis[label]
                row |= {"davis_JF": d["J&F"], "davis_JF_low": d["J&F_low"], "davis_JF_high": d["J&F_high"], "davis_layer": d["layer"]}
                if label in tests:
                    row |= {"davis_vs_toto_diff": -tests[label]["mean_diff"], "davis_vs_toto_p": tests[label]["p"]}
            for target in ("state", "action"):
                per_set = {name: r["targets"][target]["headline"][label]["r2"] for name, r in real.get("robot", {}).items()
                           if target in r["targets"] and label in r["targets"][target]["headline"]}
                row |= {f"{target}_r2 {name}": v for name, v in per_set.items()}
                if per_set:
                    row[f"{target}_r2_mean"] = float(np.mean(list(per_set.values())))
            rows.append(row)
    return rows


def verdict(rows: list[dict], recipe: str, pooling: str, paired: list[dict] | None = None) -> str:
    """Toto against its random-init control and MAE, same recipe and pooling, in words (with the demo's paired
    McNemar p-values of BC episodes and probe images, where the run kept per-item outcomes)."""
    cell = {r["backbone"]: r for r in rows if r["recipe"] == recipe and r["pooling"] == pooling}
    t, c, m = cell.get("toto"), cell.get("random-init"), cell.get("mae")
    if not (t and c):
        return ""
    gap = 100 * (t["success_rate"] - c["success_rate"])
    if t["ci_low"] > c["ci_high"]:
        vs_random = f"beats random-init by {gap:.0f} points (intervals separate)"
    elif c["ci_low"] > t["ci_high"]:
        vs_random = f"loses to random-init by {-gap:.0f} points (intervals separate)"
    else:
        vs_random = f"{gap:+.0f} points against random-init (intervals overlap)"
    tests = {(x["what"], x["control"].partition("+")[0]): x["p"] for x in paired or [] if x["pooling"] == pooling}
    if ("bc", "random-init") in tests:
        vs_random += f", paired p = {tests[('bc', 'random-init')]:.2g} over the same episodes"
    if ("probe", "random-init") in tests:
        vs_random += f"; probe {100 * (t['probe_acc'] - c['probe_acc']):+.0f} points, paired p = {tests[('probe', 'random-init')]:.2g}"
    vs_mae = ""
    if m and m["success_rate"] > 0:
        vs_mae = f"; {100 * t['success_rate'] / m['success_rate']:.0f}% of MAE's success"
    return f"{recipe}, {pooling} pool: Toto {vs_random}{vs_mae}."


def _pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.0f}%"


def _ci(lo: float, hi: float) -> str:
    return "" if lo != lo else f"[{100 * lo:.0f}, {100 * hi:.0f}]"


def _num(x: float) -> str:
    return "" if x != x else f"{x:.3f}"


def study_markdown(cfg: StudyConfig, rows: list[dict], results: dict[str, dict]) -> str:
    lines = ["# Recipe study: which pre-training and read-out make frozen Toto features worth using", "",
             "Every recipe is the demo pipeline (`toto-robot demo`) with the fields below changed; each trains Toto-tiny, "
             "its random-init control (same tokenizer and architecture, untrained) and a tiny MAE on the same frames for the same "
             "number of steps, probes all three, and clones the same expert demonstrations on each frozen encoder.", "",
             "Reproduce: `toto-robot study` (this page: `toto-robot study publish=docs/study`). BC success with the 95% Wilson "
             "interval of all its episodes (seeds x held-out episodes). Probe: a 3 x 3 grid (9 classes) from one frame, best layer, "
             "Wilson interval over the validation images; `position` asks where the cube or cabinet stands on the table, `offset` where "
             "the cube sits relative to the gripper. FLOPs are measured with PyTorch's FlopCounterMode on one training step "
             "(matmuls and attention) times the steps; minutes are this machine's wall-clock for the stage.", "",
             "## Recipes", "", "| recipe | changes | BC task (camera), demos | probe | seeds x episodes |", "|---|---|---|---|---|"]
    for name, over in cfg.recipes.items():
        c = results[name]["config"] if name in results else asdict(recipe_config(cfg, name))
        target = results[name].get("probe", {}).get("target", "real frames only") if name in results else ""
        lines.append(f"| {name} | {', '.join(f'`{k}={json.dumps(v)}`' for k, v in (over or {}).items()) or '(the demo as configured)'} | "
                     f"{c['bc_task']} ({c['camera']}), {c['bc_episodes']} | {target} | {len(c['seeds'])} x {c['eval_episodes']} |")
    lines += ["", "## Results", "",
              "| recipe | encoder | probe [95% CI] (best layer) | BC success [95% CI] (episodes) | pre-training GFLOP | pre-training min | tokenizer min | Toto eval loss |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['recipe']} | {r['encoder']} | {_pct(r['probe_acc'])} {_ci(r['probe_ci_low'], r['probe_ci_high'])} ({r['probe_layer']}) | "
                     f"{_pct(r['success_rate'])} {_ci(r['ci_low'], r['ci_high'])} ({r['episodes']}) | "
                     f"{r['pretrain_gflop']:.0f} | {r['pretrain_minutes']:.1f} | {r['tokenizer_minutes']:.1f} | {_num(r['pretrain_eval_loss'])} |")
    framed = [r for r in rows if "robot_raw_pixels_r2" in r]
    if framed:
        davis = any("davis_J" in r for r in rows)
        lines += ["", "## Frames no policy trained on", "",
                  "End-effector xyz from frozen features (ridge, 5 folds grouped by episode, R^2) of "
                  + (f"`{cfg.robot_root}`" if cfg.robot_root else "each recipe's own demonstration frames")
                  + ", at the layer BC read, beside raw 8x8 pixels; average pool and a 2x2 spatial average pool."
                  + (" DAVIS-layout label propagation J beside copying the first mask to every frame." if davis else ""), "",
                  "| recipe | encoder | EE R^2, average | EE R^2, 2x2 | raw 8x8 pixels R^2 |" + (" J | copy first mask J |" if davis else ""),
                  "|---|---|---|---|---|" + ("---|---|" if davis else "")]
        for r in framed:
            lines.append(f"| {r['recipe']} | {r['backbone']} | {r['robot_r2_average']:.3f} | {r['robot_r2_spatial2']:.3f} | {r['robot_raw_pixels_r2']:.3f} |"
                         + (f" {r['davis_J']:.3f} | {r['davis_copy_first_J']:.3f} |" if davis else ""))
    real = real_rows(results)
    if real:
        sets = sorted({k.split(" ", 1)[1] for r in real for k in r if k.startswith("state_r2 ")})
        lines += ["", "## Real frames", "",
                  "Each real-footage recipe's real-frame report (`toto_robot/probes/real_suite.py`): DAVIS label propagation J&F over every "
                  "frame of every sequence with its 95% bootstrap interval over sequences (the difference and Wilcoxon p are this encoder "
                  "against the recipe's Toto, paired over sequences), and ridge R^2 of the joint state from one frame on each robot set "
                  "(folds by episode), their mean, and the mean R^2 of the action.", "",
                  "| recipe | encoder | DAVIS J&F [95% CI] | vs Toto (p) | " + " | ".join(f"state R^2 {n}" for n in sets)
                  + " | state R^2 mean | action R^2 mean | pre-training GFLOP | min |",
                  "|---|---|---|---|" + "---|" * len(sets) + "---|---|---|---|"]
        for r in real:
            jf = f"{r['davis_JF']:.3f} [{r['davis_JF_low']:.3f}, {r['davis_JF_high']:.3f}]" if "davis_JF" in r else ""
            vs = f"{r['davis_vs_toto_diff']:+.3f} ({r['davis_vs_toto_p']:.2g})" if "davis_vs_toto_p" in r else ""
            lines.append(f"| {r['recipe']} | {r['encoder']} | {jf} | {vs} | " + " | ".join(_num(r.get(f"state_r2 {n}", float("nan"))) for n in sets)
                         + f" | {_num(r.get('state_r2_mean', float('nan')))} | {_num(r.get('action_r2_mean', float('nan')))} | "
                         f"{r['pretrain_gflop']:.0f} | {r['pretrain_minutes']:.1f} |")
    lines += ["", "## Toto against its controls", ""]
    for recipe in results:
        for pooling in dict.fromkeys(r["pooling"] for r in rows if r["recipe"] == recipe):
            v = verdict(rows, recipe, pooling, results[recipe].get("paired"))
            if v:
                lines.append(f"- {v}")
    lines += ["", "![BC success by recipe](study_bc.png)", "", "![probe accuracy by recipe](study_probe.png)", ""]
    return "\n".join(lines)


def plot_study(rows: list[dict], out: Path) -> None:
    """Grouped bars per recipe x pooling: BC success with Wilson intervals, and probe accuracy."""
    plt = pyplot()
    groups = list(dict.fromkeys((r["recipe"], r["pooling"]) for r in rows))
    backbones = [b for b in BACKBONES if any(r["backbone"] == b for r in rows)]
    cell = {(r["recipe"], r["pooling"], r["backbone"]): r for r in rows}
    width = 0.8 / max(1, len(backbones))
    for key, lo, hi, ylabel, name in (("success_rate", "ci_low", "ci_high", "BC success (95% Wilson)", "study_bc.png"),
                                      ("probe_acc", "probe_ci_low", "probe_ci_high", "probe accuracy, best layer (95% Wilson)", "study_probe.png")):
        fig, ax = plt.subplots(figsize=(max(5.5, 1.3 * len(groups) + 2), 3.8), dpi=120)
        x = np.arange(len(groups))
        for k, b in enumerate(backbones):
            rs = [cell.get((g[0], g[1], b)) for g in groups]
            vals = [r[key] if r else np.nan for r in rs]
            err = np.nan_to_num(np.array([[r[key] - r[lo], r[hi] - r[key]] if r else [0, 0] for r in rs]).T)
            ax.bar(x + (k - (len(backbones) - 1) / 2) * width, vals, width, yerr=err, capsize=2, label=BACKBONES[b])
        ax.set_xticks(x, [f"{g[0]}\n{g[1]}" for g in groups], fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
        save_figure(fig, out / name)


__all__ = ["StudyConfig", "run_study", "study_rows", "recipe_config"]
