"""External benchmark: CortexBench's MetaWorld protocol (VC-1, Majumdar et al. 2023) on frozen encoders.

    from toto_robot.policies.benchmark import BenchmarkConfig, run_benchmark
    run_benchmark(BenchmarkConfig(encoders={"random": {"name": "random"}}, out_dir="runs/benchmark/x"))

Protocol (``PROTOCOL``, written to ``protocol.json`` / ``protocol.md`` with every run): the five MetaWorld
tasks; 25 scripted-expert demonstrations per task (metaworld.policies, successful episodes only); a frozen
encoder whose features of the last 3 frames (oldest first) and the 4-d proprioception feed a BC MLP
(256, 256, 256, ReLU), MSE on the expert actions, batch 256, lr 1e-3, 100 epochs, no held-out split;
success over 25 evaluation rollouts every 5 epochs and at the last; seeds 100, 200, 300. CortexBench reports
the best evaluation over training ("best epoch"); the table gives that and the last epoch's success.

Differences from CortexBench, kept in ``protocol.md``: metaworld 3.1.1's v3 tasks (CortexBench ran v2),
the ``corner2`` camera (its ``top_cap2`` exists only in its metaworld fork), episodes end at the first
success (success is counted "at any step" either way), the project's trainable pool (attention for Toto)
unless the encoder spec asks for the authors' read-out (``pooling: authors`` for the ViT baselines), a tanh
on the action output, AdamW with a one-cycle schedule (the project's BC trainer).

Resumable: demonstrations are collected once per task (the collector resumes), each (task, encoder, seed)
run is skipped when its ``result.json`` exists, and the table is rebuilt from what is on disk.
Outputs: ``results.csv`` (one row per task x encoder x seed), ``summary.csv`` / ``summary.md`` (per task and
the mean over tasks, best-epoch and last-epoch success with Wilson 95% intervals over seeds x rollouts),
``success.png`` (bars), ``curves.png`` (success vs epoch).
"""
from __future__ import annotations

import csv
import json
import logging
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from toto_robot.policies.bc import BCConfig, train_bc
from toto_robot.sim_envs.metaworld_env import MESH_CELL
from toto_robot.policies.compare import plot_success
from toto_robot.utils.config import ConfigError, check_bool, check_choice, check_int
from toto_robot.utils.parallel import run_jobs
from toto_robot.utils.io import atomic_save_json, atomic_write, atomic_write_csv
from toto_robot.utils.plots import pyplot, save_figure
from toto_robot.utils.stats import wilson_interval

log = logging.getLogger(__name__)

SUITES = {"metaworld": ["mw_assembly", "mw_bin_picking", "mw_button_press_topdown", "mw_drawer_open", "mw_hammer"]}
PROTOCOL = {"demos": 25, "seeds": [100, 200, 300], "eval_episodes": 25, "eval_every": 5, "epochs": 100, "history": 3,
            "hidden_sizes": [256, 256, 256], "activation": "relu", "batch_size": 256, "lr": 1e-3, "image_size": 256, "max_steps": 500}
# CI: one task, two demos, one seed, two epochs, two rollouts of at most 90 steps at 32 px
FAST = {"tasks": ["mw_button_press_topdown"], "demos": 2, "seeds": [100], "eval_episodes": 2, "eval_every": 1, "epochs": 2,
        "image_size": 32, "max_steps": 90, "batch_size": 64}
CORTEXBENCH_REFERENCE = "VC-1 ViT-L: 88.8 mean best-epoch success on these five tasks (CortexBench, v2 tasks, 256 px)"


@dataclass
class BenchmarkConfig:
    encoders: dict[str, dict]  # label -> build_encoder kwargs (or {"dir": saved encoder})
    out_dir: str
    suite: str = "metaworld"
    tasks: list[str] | None = None  # None: the suite's tasks
    fast: bool = False  # FAST overrides PROTOCOL (CI)
    demos_dir: str | None = None  # where demonstrations are collected (shared between benchmark runs); default out_dir/demos
    camera: str = "corner2"
    overrides: dict = field(default_factory=dict)  # any PROTOCOL key, e.g. {"epochs": 50}
    workers: int = 1  # BC runs in parallel processes (each gets cores / workers torch threads)
    eval_batch: int = 10  # rollouts stepped in lockstep with one batched encoder pass (same seeds)

    def __post_init__(self):
        check_choice(self.suite, "suite", sorted(SUITES))
        check_bool(self.fast, "fast")
        check_int(self.workers, "workers", low=1)
        check_int(self.eval_batch, "eval_batch", low=1)
        if not self.encoders:
            raise ConfigError("encoders: name at least one encoder to benchmark")
        bad = sorted(set(self.overrides) - set(PROTOCOL))
        if bad:
            raise ConfigError(f"protocol overrides {bad} are not protocol keys; known: {', '.join(PROTOCOL)}")
        for t in self.tasks or []:
            check_choice(t, "tasks[]", SUITES[self.suite])

    def protocol(self) -> dict:
        p = {**PROTOCOL, **({k: v for k, v in FAST.items() if k != "tasks"} if self.fast else {}), **self.overrides}
        for key in ("demos", "eval_episodes", "eval_every", "epochs", "history", "batch_size", "image_size", "max_steps"):
            check_int(p[key], f"protocol.{key}", low=1)
        tasks = self.tasks or (FAST["tasks"] if self.fast else SUITES[self.suite])
        return {**p, "suite": self.suite, "tasks": list(tasks), "camera": self.camera, "render_mesh_cell_m": MESH_CELL, "fast": self.fast}


def run_benchmark(cfg: BenchmarkConfig) -> Path:
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    proto = cfg.protocol()
    atomic_save_json({"config": asdict(cfg), "protocol": proto}, out / "protocol.json")
    write_protocol_md(proto, cfg, out / "protocol.md")
    demos = {task: collect_demos(task, proto, Path(cfg.demos_dir) if cfg.demos_dir else out / "demos") for task in proto["tasks"]}
    runs = [(t, label, s) for t in proto["tasks"] for label in cfg.encoders for s in proto["seeds"]]
    jobs = [bc_config(cfg, proto, demos[t], run_dir(out, t, label, s), label, s) for t, label, s in runs
            if not (run_dir(out, t, label, s) / "result.json").is_file()]
    bar = tqdm(total=len(runs), initial=len(runs) - len(jobs), desc="benchmark", unit="run")
    run_jobs(train_bc, jobs, cfg.workers, on_done=lambda: bar.update(1))
    bar.close()
    rows = [run_row(out, t, label, s, proto["eval_episodes"]) for t, label, s in runs]
    atomic_write_csv(rows, out / "results.csv")
    summary = summarize(rows)
    atomic_write_csv(summary, out / "summary.csv")
    with atomic_write(out / "summary.md", "w") as f:
        f.write(markdown_table(summary, proto))
    plot_success([{**r, "label": r["encoder"], "success_rate": r["best_success"], "ci_low": r["best_ci_low"], "ci_high": r["best_ci_high"]}
                  for r in summary], out / "success.png")
    plot_curves(out, proto, list(cfg.encoders), out / "curves.png")
    return out


def bc_config(cfg: BenchmarkConfig, proto: dict, demos: Path, run: Path, label: str, seed: int) -> BCConfig:
    """One (task, encoder, seed) run of the protocol: BC on every demo, evaluated every ``eval_every`` epochs."""
    return BCConfig(demos=str(demos), out_dir=str(run), encoder=dict(cfg.encoders[label]), seed=seed, epochs=proto["epochs"],
                    batch_size=proto["batch_size"], lr=proto["lr"], hidden_sizes=proto["hidden_sizes"], activation=proto["activation"],
                    history=proto["history"], val_fraction=0.0, keep_best=False, eval_every=proto["eval_every"],
                    eval_episodes=proto["eval_episodes"], eval_batch=cfg.eval_batch, token_cache=str(Path(cfg.out_dir) / "token_cache"))


def collect_demos(task: str, proto: dict, root: Path) -> Path:
    """``proto["demos"]`` successful scripted-expert episodes of ``task`` (resumes; one folder per image size)."""
    from toto_robot.sim_envs.collect import CollectConfig, collect

    out = root / f"{task}-{proto['image_size']}px-{proto['max_steps']}steps-mesh{proto['render_mesh_cell_m'] * 100:g}cm"
    collect(CollectConfig(task=task, episodes=proto["demos"], out_dir=str(out), image_size=proto["image_size"], camera=proto["camera"],
                          noise=0.0, only_success=True, videos=False, preview_episodes=0, randomization={}, max_steps=proto["max_steps"]))
    return out


def run_dir(out: Path, task: str, label: str, seed: int) -> Path:
    return out / "runs" / task / label / f"seed{seed}"


def run_row(out: Path, task: str, label: str, seed: int, episodes: int) -> dict:
    """One run's best-epoch and last-epoch success from its metrics.csv (evaluated epochs only)."""
    run = run_dir(out, task, label, seed)
    with open(run / "metrics.csv") as f:
        evals = [(int(r["epoch"]), float(r["success_rate"])) for r in csv.DictReader(f) if r.get("success_rate") not in (None, "")]
    if not evals:
        raise RuntimeError(f"{run}: no evaluated epoch in metrics.csv")
    best_epoch, best = max(evals, key=lambda e: (e[1], -e[0]))  # the first epoch reaching the best success
    last_epoch, last = evals[-1]
    return {"task": task, "encoder": label, "seed": seed, "episodes": episodes, "best_success": best, "best_epoch": best_epoch,
            "last_success": last, "last_epoch": last_epoch, "best_successes": round(best * episodes), "last_successes": round(last * episodes)}


def summarize(rows: list[dict]) -> list[dict]:
    """Per (task, encoder) and per encoder over all tasks ("mean"): successes pooled over seeds (and tasks) with
    Wilson 95% intervals, for the best and the last epoch."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["task"], r["encoder"])].append(r)
        groups[("mean", r["encoder"])].append(r)
    out = []
    for (task, enc), rs in groups.items():
        n = sum(r["episodes"] for r in rs)
        row = {"task": task, "encoder": enc, "runs": len(rs), "episodes": n}
        for which in ("best", "last"):
            k = sum(r[f"{which}_successes"] for r in rs)
            lo, hi = wilson_interval(k, n)
            row |= {f"{which}_success": k / n, f"{which}_ci_low": lo, f"{which}_ci_high": hi,
                    f"{which}_seed_std": float(np.std([r[f"{which}_success"] for r in rs]))}
        out.append(row)
    return out


def markdown_table(summary: list[dict], proto: dict) -> str:
    tasks = [t for t in proto["tasks"]] + ["mean"]
    encs = list(dict.fromkeys(r["encoder"] for r in summary))
    cell = {(r["task"], r["encoder"]): r for r in summary}
    lines = []
    for which, title in (("best", "best epoch (CortexBench's convention)"), ("last", "last epoch")):
        lines += [f"Success, {title}:", "", "| encoder | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
        for e in encs:
            vals = []
            for t in tasks:
                r = cell.get((t, e))
                vals.append("-" if r is None else
                            f"{100 * r[f'{which}_success']:.1f} [{100 * r[f'{which}_ci_low']:.0f}, {100 * r[f'{which}_ci_high']:.0f}]")
            lines.append(f"| {e} | " + " | ".join(vals) + " |")
        lines.append("")
    lines.append(f"Success in % over {len(proto['seeds'])} seed(s) x {proto['eval_episodes']} rollouts per task (the mean pools the tasks), "
                 f"95% Wilson interval in brackets; the best epoch is picked per seed after the fact, so its interval is optimistic. "
                 f"Context: {CORTEXBENCH_REFERENCE}.\n")
    return "\n".join(lines)


def write_protocol_md(proto: dict, cfg: BenchmarkConfig, path: Path) -> None:
    changed = {k: v for k, v in proto.items() if k in PROTOCOL and v != PROTOCOL[k]}
    kind = "fast CI mode" if proto["fast"] else "CortexBench protocol, budgeted" if changed else "CortexBench protocol"
    lines = ["# Protocol", "", f"Suite: {proto['suite']} ({kind}).", ""]
    lines += [f"* {k}: {v}" for k, v in proto.items() if k not in ("suite", "fast")]
    if changed:
        lines += ["", "Changed from CortexBench's protocol: " + ", ".join(f"{k} {v} (CortexBench: {PROTOCOL[k]})" for k, v in changed.items())
                  + ". With fewer evaluations the best epoch is a maximum over fewer points, so it sits closer to the last epoch."]
    lines += ["", "Encoders:", ""] + [f"* {label}: {json.dumps(spec)}" for label, spec in cfg.encoders.items()]
    lines += ["", "Differences from CortexBench: metaworld 3.1.1's v3 tasks (CortexBench: v2), camera corner2 (top_cap2 is in its "
              "metaworld fork only), episodes end at the first success, tanh on the action output, AdamW with a one-cycle schedule, "
              "the project's trainable pool unless the encoder asks for `pooling: authors`, render meshes simplified to a "
              f"{proto['render_mesh_cell_m'] * 100:g} cm vertex grid (sim_envs/render_lod.py; physics unchanged).", ""]
    with atomic_write(path, "w") as f:
        f.write("\n".join(lines))


def plot_curves(out: Path, proto: dict, encoders: list[str], path: Path) -> None:
    """Success vs epoch (mean over seeds), one panel per task."""
    plt = pyplot()
    tasks = proto["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.0), dpi=120, squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for label in encoders:
            curves = []
            for seed in proto["seeds"]:
                f = run_dir(out, task, label, seed) / "metrics.csv"
                if f.is_file():
                    with open(f) as fh:
                        curves.append({int(r["epoch"]): float(r["success_rate"]) for r in csv.DictReader(fh) if r.get("success_rate")})
            epochs = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
            if epochs:
                ax.plot(epochs, [np.mean([c[e] for c in curves]) for e in epochs], marker="o", label=label)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("success")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)
