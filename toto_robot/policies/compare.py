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

from toto_robot.policies.bc import BCConfig, train_bc
from toto_robot.policies.evaluate import evaluate_policy, wilson_interval
from toto_robot.policies.policy import load_policy
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


def compare(cfg: CompareConfig) -> Path:
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_save_json(asdict(cfg), out / "compare_config.json")
    missing = [t for t in cfg.tasks if not cfg.demos.get(t)]
    if missing:
        raise ValueError(f"no demonstrations given for tasks {missing}")
    rows = []
    for task in cfg.tasks:
        for label, spec in cfg.encoders.items():
            for seed in cfg.seeds:
                run = out / "runs" / task / label / f"seed{seed}"
                done = run / "eval.json"
                if not done.is_file():
                    bc = {"token_cache": str(out / "token_cache"), **cfg.bc}  # frozen tokens shared across seeds and poolings
                    policy_dir = train_bc(BCConfig(demos=cfg.demos[task], out_dir=str(run), encoder=dict(spec), seed=seed, **bc))
                    ev = evaluate_policy(load_policy(policy_dir), task, cfg.eval_episodes, seed=seed, video_path=run / "rollouts.mp4")
                    atomic_save_json(ev, done)
                ev = json.loads(done.read_text())
                bc = json.loads((run / "result.json").read_text())
                rows.append({"task": task, "encoder": label, "seed": seed, "success_rate": ev["success_rate"], "successes": ev["successes"],
                             "episodes": ev["episodes"], "ci_low": ev["ci_low"], "ci_high": ev["ci_high"], "mean_return": ev["mean_return"],
                             "val_loss": bc["final"]["val_loss"], "layer": bc["layer"]})
    atomic_write_csv(rows, out / "results.csv")
    summary = summarize(rows)
    atomic_write_csv(summary, out / "summary.csv")
    with atomic_write(out / "summary.md", "w") as f:
        f.write(markdown_table(summary))
    plot_success(summary, out / "success.png")
    plot_learning_curves(out, cfg, out / "learning_curves.png")
    return out


def summarize(rows: list[dict]) -> list[dict]:
    groups = defaultdict(list)
    for r in rows:
        groups[(r["task"], r["encoder"])].append(r)
    out = []
    for (task, enc), rs in groups.items():
        k, n = sum(r["successes"] for r in rs), sum(r["episodes"] for r in rs)
        lo, hi = wilson_interval(k, n)
        rates = [r["success_rate"] for r in rs]
        out.append({"task": task, "encoder": enc, "seeds": len(rs), "success_rate": k / n, "seed_std": float(np.std(rates)),
                    "ci_low": lo, "ci_high": hi, "val_loss": float(np.mean([r["val_loss"] for r in rs]))})
    return out


def markdown_table(summary: list[dict]) -> str:
    tasks = sorted({r["task"] for r in summary})
    encs = list(dict.fromkeys(r["encoder"] for r in summary))
    cell = {(r["task"], r["encoder"]): r for r in summary}
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



def plot_success(summary: list[dict], path: Path) -> None:
    plt = pyplot()
    tasks = sorted({r["task"] for r in summary})
    encs = list(dict.fromkeys(r["encoder"] for r in summary))
    width = 0.8 / max(1, len(encs))
    fig, ax = plt.subplots(figsize=(3.0 + 1.6 * len(tasks), 3.4), dpi=120)
    cell = {(r["task"], r["encoder"]): r for r in summary}
    for j, e in enumerate(encs):
        xs, ys, err = [], [], [[], []]
        for i, t in enumerate(tasks):
            r = cell.get((t, e))
            if r:
                xs.append(i + (j - (len(encs) - 1) / 2) * width)
                ys.append(r["success_rate"])
                err[0].append(r["success_rate"] - r["ci_low"])
                err[1].append(r["ci_high"] - r["success_rate"])
        ax.bar(xs, ys, width, yerr=err, capsize=3, label=e)
    ax.set_xticks(range(len(tasks)), tasks, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate")
    ax.set_title("BC on frozen encoders")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_learning_curves(out: Path, cfg: CompareConfig, path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(cfg.tasks), figsize=(4.2 * len(cfg.tasks), 3.3), dpi=120, squeeze=False)
    for ax, task in zip(axes[0], cfg.tasks):
        for label in cfg.encoders:
            curves = []
            for seed in cfg.seeds:
                f = out / "runs" / task / label / f"seed{seed}" / "metrics.csv"
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
