"""Compare frozen encoders on the same tasks, seeds and budget: behaviour cloning from the same
demonstrations, evaluation on the same held-out seeds; a table and plots.

    from toto_robot.policies.compare import CompareConfig, compare
    compare(CompareConfig(tasks=["franka_cabinet"], encoders={"toto": {...}, "random": {"name": "random"}},
                          demos={"franka_cabinet": "runs/demos/franka_cabinet"}, out_dir="runs/compare/x"))

Writes ``results.csv`` (one row per encoder x task x seed), ``summary.csv`` and ``summary.md``
(success mean over seeds with the pooled Wilson 95% interval), ``success.png`` (bars with
intervals) and ``learning_curves.png`` (held-out BC loss per epoch, and success when evaluated
during training). Each (encoder, task, seed) run lives in its own folder; finished runs are
skipped when the comparison is run again, so an interrupted comparison continues.
"""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from toto_robot.data.demos import DemoDataset
from toto_robot.policies.bc import BCConfig
from toto_robot.policies.dagger import train_policy_bc
from toto_robot.policies.evaluate import evaluate_policy, wilson_interval
from toto_robot.policies.policy import load_policy
from toto_robot.utils.config import ConfigError
from toto_robot.utils.plots import pyplot, save_figure
from toto_robot.utils.io import atomic_save_json, atomic_write, atomic_write_csv


@dataclass
class CompareConfig:
    tasks: list[str]
    encoders: dict[str, dict]  # label -> build_encoder kwargs (or {"dir": saved encoder})
    demos: dict[str, str]  # task -> demonstration folder
    out_dir: str
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    eval_episodes: int = 20
    bc: dict = field(default_factory=dict)  # BCConfig fields shared by every run (the budget)
    demo_counts: list[int] | None = None  # data efficiency: train on the first n demos for each n (None = all of them)
    eval_randomization: dict = field(default_factory=dict)  # the scene's visual randomization at evaluation ({} = the plain scene)


def compare(cfg: CompareConfig) -> Path:
    missing = [t for t in cfg.tasks if not cfg.demos.get(t)]
    if missing:
        raise ConfigError(f"no demonstrations given for tasks {missing}")
    if cfg.demo_counts:
        if cfg.bc.get("max_episodes"):
            raise ConfigError("give the number of demos either as demo_counts or as bc.max_episodes, not both")
        for task in cfg.tasks:
            if max(cfg.demo_counts) > (have := len(DemoDataset(cfg.demos[task]))):
                raise ConfigError(f"demo_counts asks for {max(cfg.demo_counts)} demos of {task}, but {cfg.demos[task]} holds {have}")
    from toto_robot.sim_envs.arena import Randomization  # here, not at the top: importing compare loads no simulator

    shift = Randomization.from_config(cfg.eval_randomization, "eval_randomization")
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (old := out / "compare_config.json").is_file() and any((out / "runs").glob("**/eval.json")):
        before = json.loads(old.read_text()).get("eval_randomization") or {}
        if Randomization.from_config(before) != shift:
            raise ConfigError(f"{out} holds runs evaluated with eval_randomization={before}, not {cfg.eval_randomization}: "
                              f"give another out_dir, or re-score the saved policies with benchmarks/eval_shift.py")
    atomic_save_json(asdict(cfg), out / "compare_config.json")
    rows = []
    for task in cfg.tasks:
        for count in cfg.demo_counts or [None]:
            for label, spec in cfg.encoders.items():
                for seed in cfg.seeds:
                    run = run_dir(out, task, label, count, seed)
                    done = run / "eval.json"
                    if not done.is_file():
                        bc = {"token_cache": str(out / "token_cache"), **cfg.bc}  # frozen tokens shared across seeds and poolings
                        if count is not None:
                            bc["max_episodes"] = count
                        policy_dir = train_policy_bc(BCConfig(demos=cfg.demos[task], out_dir=str(run), encoder=dict(spec), seed=seed, **bc))
                        ev = evaluate_policy(load_policy(policy_dir), task, cfg.eval_episodes, seed=seed, video_path=run / "rollouts.mp4",
                                             randomization=cfg.eval_randomization)
                        atomic_save_json(ev, done)
                    ev = json.loads(done.read_text())
                    bc = json.loads((run / "result.json").read_text())
                    rows.append({"task": task, "encoder": label, "demos": bc["episodes"], "seed": seed, "success_rate": ev["success_rate"],
                                 "successes": ev["successes"], "episodes": ev["episodes"], "ci_low": ev["ci_low"], "ci_high": ev["ci_high"],
                                 "mean_return": ev["mean_return"], "val_loss": bc["final"]["val_loss"], "layer": bc["layer"]})
    atomic_write_csv(rows, out / "results.csv")
    summary = summarize(rows, by_demos=bool(cfg.demo_counts))
    atomic_write_csv(summary, out / "summary.csv")
    with atomic_write(out / "summary.md", "w") as f:
        f.write(markdown_table(summary))
    plot_success(summary, out / "success.png")
    plot_learning_curves(out, cfg, out / "learning_curves.png")
    if cfg.demo_counts:
        plot_data_efficiency(summary, out / "data_efficiency.png")
    return out


def run_dir(out: Path, task: str, label: str, count: int | None, seed: int) -> Path:
    """One BC run's folder: ``runs/<task>/<encoder>/[demos<n>/]seed<s>``."""
    return out / "runs" / task / label / ("" if count is None else f"demos{count}") / f"seed{seed}"


def summarize(rows: list[dict], by_demos: bool = False) -> list[dict]:
    """Success pooled over seeds per (task, encoder), and per number of demos with ``by_demos``.
    ``encoder`` is the label of ``results.csv``; ``label`` names the row in tables and bar plots
    (``toto @ 50 demos`` with ``by_demos``, else the encoder)."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["task"], r["encoder"], r["demos"] if by_demos else None)].append(r)
    out = []
    for (task, enc, demos), rs in groups.items():
        k, n = sum(r["successes"] for r in rs), sum(r["episodes"] for r in rs)
        lo, hi = wilson_interval(k, n)
        rates = [r["success_rate"] for r in rs]
        out.append({"task": task, "encoder": enc, "label": enc if demos is None else f"{enc} @ {demos} demos",
                    "demos": demos if demos is not None else rs[0]["demos"], "seeds": len(rs), "success_rate": k / n,
                    "seed_std": float(np.std(rates)), "ci_low": lo, "ci_high": hi, "val_loss": float(np.mean([r["val_loss"] for r in rs]))})
    return out


def markdown_table(summary: list[dict]) -> str:
    tasks = sorted({r["task"] for r in summary})
    encs = list(dict.fromkeys(r["label"] for r in summary))
    cell = {(r["task"], r["label"]): r for r in summary}
    lines = ["| encoder | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for e in encs:
        vals = []
        for t in tasks:
            r = cell.get((t, e))
            vals.append("-" if r is None else f"{100 * r['success_rate']:.0f}% [{100 * r['ci_low']:.0f}, {100 * r['ci_high']:.0f}]")
        lines.append(f"| {e} | " + " | ".join(vals) + " |")
    n = summary[0]["seeds"] if summary else 0
    lines.append(f"\nSuccess over {n} seed(s) x evaluation episodes, 95% Wilson interval in brackets.\n")
    return "\n".join(lines)



def plot_success(summary: list[dict], path: Path, title: str = "BC on frozen encoders") -> None:
    plt = pyplot()
    tasks = sorted({r["task"] for r in summary})
    encs = list(dict.fromkeys(r["label"] for r in summary))
    width = 0.8 / max(1, len(encs))
    fig, ax = plt.subplots(figsize=(3.0 + 1.6 * len(tasks), 3.4), dpi=120)
    cell = {(r["task"], r["label"]): r for r in summary}
    for j, e in enumerate(encs):
        xs, ys, err = [], [], [[], []]
        for i, t in enumerate(tasks):
            r = cell.get((t, e))
            if r:
                xs.append(i + (j - (len(encs) - 1) / 2) * width)
                ys.append(r["success_rate"])
                err[0].append(max(0.0, r["success_rate"] - r["ci_low"]))  # rounding must not give matplotlib a negative bar
                err[1].append(max(0.0, r["ci_high"] - r["success_rate"]))
        ax.bar(xs, ys, width, yerr=err, capsize=3, label=e)
    ax.set_xticks(range(len(tasks)), tasks, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate")
    ax.set_title(title)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_learning_curves(out: Path, cfg: CompareConfig, path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(cfg.tasks), figsize=(4.2 * len(cfg.tasks), 3.3), dpi=120, squeeze=False)
    for ax, task in zip(axes[0], cfg.tasks):
        for label in cfg.encoders:
            curves = []
            for seed in cfg.seeds:  # with demo_counts: the runs on the most demos
                f = run_dir(out, task, label, max(cfg.demo_counts) if cfg.demo_counts else None, seed) / "metrics.csv"
                if f.is_file():
                    with open(f) as fh:
                        curves.append([float(r["val_loss"]) for r in csv.DictReader(fh)])
            if curves:
                n = min(len(c) for c in curves)
                m = np.nanmean([c[:n] for c in curves], axis=0)
                ax.plot(range(1, n + 1), m, label=label)
        ax.set_title(task)
        ax.set_xlabel("epoch")
        ax.set_ylabel("held-out action MSE")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_data_efficiency(summary: list[dict], path: Path) -> None:
    """Success vs number of demonstrations, one line per encoder (95% Wilson band), a panel per task."""
    plt = pyplot()
    tasks = sorted({r["task"] for r in summary})
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.3), dpi=120, squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for enc in dict.fromkeys(r["encoder"] for r in summary if r["task"] == task):
            rs = sorted((r for r in summary if r["task"] == task and r["encoder"] == enc), key=lambda r: r["demos"])
            xs = [r["demos"] for r in rs]
            line, = ax.plot(xs, [r["success_rate"] for r in rs], marker="o", label=enc)
            ax.fill_between(xs, [r["ci_low"] for r in rs], [r["ci_high"] for r in rs], color=line.get_color(), alpha=0.15)
        ax.set_title(task)
        ax.set_xlabel("demonstrations")
        ax.set_ylabel("success rate")
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)
