"""Compare frozen encoders by PPO learning curves: every encoder gets the same tasks, seeds and
env-step budget (the paper's Sec. 4.6 / MVP protocol at the scale a machine allows).

    from toto_robot.policies.compare_ppo import PPOCompareConfig, compare_ppo
    compare_ppo(PPOCompareConfig(tasks=["franka_reach"], encoders={"toto": {...}, "random": {"name": "random"}},
                                 out_dir="runs/compare_ppo/x", ppo={"total_timesteps": 40_000}))

Writes ``results.csv`` (one row per task x encoder x seed: held-out success of the final policy,
env steps until the training success first reaches each threshold), ``summary.csv`` / ``summary.md``
(success pooled over seeds with its Wilson 95% interval, steps-to-threshold per seed),
``learning_curves.png`` (training success and return against env steps, mean over seeds with a
min-max band) and ``success.png``. Each run lives in its own folder and finished runs are skipped
when the comparison is run again, so an interrupted comparison continues.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from toto_robot.policies.compare import plot_success
from toto_robot.policies.evaluate import wilson_interval
from toto_robot.policies.ppo import PPOConfig, read_monitor, train_ppo
from toto_robot.utils.config import ConfigError
from toto_robot.utils.parallel import run_jobs
from toto_robot.utils.io import atomic_save_json, atomic_write, atomic_write_csv
from toto_robot.utils.plots import pyplot, save_figure
from toto_robot.utils.stats import mcnemar_exact


@dataclass
class PPOCompareConfig:
    tasks: list[str]
    encoders: dict[str, dict]  # label -> encoder spec (encoder_from_spec)
    out_dir: str
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    ppo: dict = field(default_factory=dict)  # PPOConfig fields shared by every run (the budget)
    thresholds: list[float] = field(default_factory=lambda: [0.5, 0.8])  # training success levels for steps-to-threshold
    window: int = 100  # training episodes (all envs) in the moving success average
    workers: int = 1  # PPO runs in parallel processes (each gets cores / workers torch threads)

    def __post_init__(self):
        if not self.tasks or not self.encoders or not self.seeds:
            raise ConfigError("compare_ppo needs at least one task, one encoder and one seed")
        bad = sorted(set(self.ppo) - set(PPOConfig.__dataclass_fields__) | set(self.ppo) & {"task", "encoder", "seed", "out_dir"})
        if bad:
            raise ConfigError(f"ppo: {bad} are not shared PPO settings (known: {sorted(set(PPOConfig.__dataclass_fields__) - {'task', 'encoder', 'seed', 'out_dir'})})")
        if any(not 0 < t <= 1 for t in self.thresholds):
            raise ConfigError(f"thresholds are success rates in (0, 1], got {self.thresholds}")
        if self.window < 1 or self.workers < 1:
            raise ConfigError(f"window and workers must be >= 1, got {self.window}, {self.workers}")


def run_dir(out: Path, task: str, label: str, seed: int) -> Path:
    return out / "runs" / task / label / f"seed{seed}"


def compare_ppo(cfg: PPOCompareConfig) -> Path:
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_save_json(asdict(cfg), out / "compare_config.json")
    runs = [(t, label, s) for t in cfg.tasks for label in cfg.encoders for s in cfg.seeds]
    # seed by seed, every encoder in turn: a comparison stopped early holds the same seeds for each encoder
    jobs = [PPOConfig(**{**cfg.ppo, "task": t, "encoder": dict(cfg.encoders[label]), "seed": s, "out_dir": str(run_dir(out, t, label, s))})
            for t in cfg.tasks for s in cfg.seeds for label in cfg.encoders if not (run_dir(out, t, label, s) / "result.json").is_file()]
    bar = tqdm(total=len(runs), initial=len(runs) - len(jobs), desc="compare ppo", unit="run")
    run_jobs(train_ppo, jobs, cfg.workers, on_done=lambda: bar.update(1))
    bar.close()
    curves = {(t, label, s): read_monitor(run_dir(out, t, label, s) / "monitor") for t, label, s in runs}  # read once: rows and plot
    results = {(t, label, s): read_result(run_dir(out, t, label, s)) for t, label, s in runs}  # read once: rows and paired tests
    rows = [run_row(results[t, label, s], curves[t, label, s], t, label, s, cfg.thresholds, cfg.window) for t, label, s in runs]
    atomic_write_csv(rows, out / "results.csv")
    summary = summarize(rows, cfg.thresholds)
    atomic_write_csv(summary, out / "summary.csv")
    paired = paired_tests(results)
    atomic_write_csv(paired, out / "paired.csv", fieldnames=PAIRED_FIELDS)  # header only when one encoder ran
    with atomic_write(out / "summary.md", "w") as f:
        f.write(markdown_table(summary, cfg) + paired_table(paired))
    plot_success([{**r, "label": r["encoder"]} for r in summary], out / "success.png", title="PPO on frozen encoders")
    plot_learning_curves(curves, cfg, out / "learning_curves.png")
    return out


def moving_success(curve: list[dict], window: int) -> tuple[np.ndarray, np.ndarray]:
    """Training episodes in the order they ended -> (env steps, success averaged over the last ``window`` episodes)."""
    return np.array([r["timesteps"] for r in curve], dtype=np.int64), moving_mean([r["success"] for r in curve], window)


def steps_to(curve: list[dict], threshold: float, window: int) -> int | None:
    """Env steps until the moving training success first reaches ``threshold`` (over a full window); None if never."""
    steps, avg = moving_success(curve, window)
    hit = np.flatnonzero(avg[window - 1:] >= threshold - 1e-12)
    return int(steps[window - 1 + hit[0]]) if hit.size else None


def read_result(run: Path) -> dict:
    """A finished run's ``result.json``, which must hold a held-out evaluation."""
    result = json.loads((run / "result.json").read_text())
    if not result.get("eval"):
        raise RuntimeError(f"{run}: the PPO run has no held-out evaluation (set ppo.eval_episodes > 0)")
    return result


def run_row(result: dict, curve: list[dict], task: str, label: str, seed: int, thresholds: list[float], window: int) -> dict:
    """One run's held-out success (``read_result``) and steps-to-threshold from its training ``curve`` (read_monitor)."""
    ev = result["eval"]
    row = {"task": task, "encoder": label, "seed": seed, "timesteps": result["timesteps"], "train_episodes": len(curve),
           "successes": ev["successes"], "episodes": ev["episodes"], "success_rate": ev["success_rate"], "ci_low": ev["ci_low"],
           "ci_high": ev["ci_high"], "mean_return": ev["mean_return"], "final_train_success": result["final_train_success"]}
    for t in thresholds:
        row[f"steps_to_{t:g}"] = steps_to(curve, t, window)
    return row


def summarize(rows: list[dict], thresholds: list[float]) -> list[dict]:
    """Per (task, encoder): held-out successes pooled over seeds (Wilson 95%), seed spread, and
    steps-to-threshold per seed (median over the seeds that reached it, and how many did)."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["task"], r["encoder"])].append(r)
    out = []
    for (task, enc), rs in groups.items():
        k, n = sum(r["successes"] for r in rs), sum(r["episodes"] for r in rs)
        lo, hi = wilson_interval(k, n)
        row = {"task": task, "encoder": enc, "seeds": len(rs), "successes": k, "episodes": n, "success_rate": k / n, "ci_low": lo, "ci_high": hi,
               "seed_rates": " ".join(f"{r['success_rate']:.2f}" for r in rs), "timesteps": rs[0]["timesteps"]}
        for t in thresholds:
            hits = [r[f"steps_to_{t:g}"] for r in rs if r[f"steps_to_{t:g}"] not in (None, "")]
            row[f"steps_to_{t:g}_median"] = float(np.median(hits)) if hits else None
            row[f"steps_to_{t:g}_reached"] = len(hits)
        out.append(row)
    return out


PAIRED_FIELDS = ["task", "encoder", "versus", "n", "a", "b", "a_only", "b_only", "p"]


def paired_tests(results: dict[tuple[str, str, int], dict]) -> list[dict]:
    """The first encoder against each other one, per task: exact McNemar test on the same held-out
    episodes (evaluation seeds follow the run's seed, so seed s of every encoder meets the same episodes).
    ``results``: (task, encoder, seed) -> the run's ``result.json``, in the comparison's order."""
    runs = list(results)
    outcomes = {key: r["eval"]["per_episode"] for key, r in results.items()}
    labels = list(dict.fromkeys(label for _, label, _ in runs))
    rows = []
    for task in dict.fromkeys(t for t, _, _ in runs):
        seeds = list(dict.fromkeys(s for t, _, s in runs if t == task))
        for other in labels[1:]:
            a = [x for s in seeds for x in outcomes[task, labels[0], s]]
            b = [x for s in seeds for x in outcomes[task, other, s]]
            rows.append({"task": task, "encoder": labels[0], "versus": other, **mcnemar_exact(a, b)})
    return rows


def paired_table(paired: list[dict]) -> str:
    if not paired:
        return ""
    lines = ["", "| task | encoder vs | successes | episodes only the first solves / only the second | exact McNemar p |", "|---|---|---|---|---|"]
    for r in paired:
        lines.append(f"| {r['task']} | {r['encoder']} vs {r['versus']} | {r['a']} vs {r['b']} of {r['n']} | {r['a_only']} / {r['b_only']} | {r['p']:.2g} |")
    return "\n".join(lines) + "\n\nPaired on the same held-out episodes: seed s of every encoder is evaluated on the same seeded episodes.\n"


def markdown_table(summary: list[dict], cfg: PPOCompareConfig) -> str:
    ths = [f"{t:g}" for t in cfg.thresholds]
    lines = ["| task | encoder | held-out success | per seed | " + " | ".join(f"steps to {100 * float(t):.0f}% (seeds)" for t in ths) + " |",
             "|---|---|---|---|" + "---|" * len(ths)]
    for r in summary:
        cells = [f"{r[f'steps_to_{t}_median'] / 1000:.1f}k ({r[f'steps_to_{t}_reached']}/{r['seeds']})" if r[f"steps_to_{t}_median"] is not None
                 else f"not reached (0/{r['seeds']})" for t in ths]
        lines.append(f"| {r['task']} | {r['encoder']} | {100 * r['success_rate']:.0f}% [{100 * r['ci_low']:.0f}, {100 * r['ci_high']:.0f}] "
                     f"({r['successes']}/{r['episodes']}) | {r['seed_rates']} | " + " | ".join(cells) + " |")
    budget = summary[0]["timesteps"] if summary else 0
    lines.append(f"\nPPO, {budget} env steps per run, {len(cfg.seeds)} seeds. Held-out success: the final policy (deterministic actions) "
                 f"on evaluation episodes, pooled over seeds, 95% Wilson interval. Steps to x%: env steps until the training success "
                 f"(stochastic actions, moving average over {cfg.window} episodes) first reaches x%, median over the seeds that reached it.\n")
    return "\n".join(lines)


def plot_learning_curves(curves: dict[tuple[str, str, int], list[dict]], cfg: PPOCompareConfig, path: Path, points: int = 60) -> None:
    """Training success (moving average) and return against env steps: mean over seeds, min-max band."""
    plt = pyplot()
    fig, axes = plt.subplots(2, len(cfg.tasks), figsize=(4.4 * len(cfg.tasks), 6.0), dpi=120, squeeze=False)
    for col, task in enumerate(cfg.tasks):
        for label in cfg.encoders:
            grids = defaultdict(list)
            for seed in cfg.seeds:
                curve = curves[task, label, seed]
                if len(curve) < 2:
                    continue
                steps, succ = moving_success(curve, cfg.window)
                ret = moving_mean([r["r"] for r in curve], cfg.window)
                grid = np.linspace(steps[0], steps[-1], points)
                grids["x"].append(grid)
                grids["success"].append(np.interp(grid, steps, succ))
                grids["return"].append(np.interp(grid, steps, ret))
            if not grids:
                continue
            x = np.mean(grids["x"], axis=0)
            for row, key in enumerate(("success", "return")):
                ys = np.array(grids[key])
                line, = axes[row, col].plot(x, ys.mean(0), label=f"{label} ({len(ys)} seeds)")
                axes[row, col].fill_between(x, ys.min(0), ys.max(0), color=line.get_color(), alpha=0.2)
        for row, name in enumerate(("training success", "episode return")):
            ax = axes[row, col]
            ax.set_title(task, fontsize=9)
            ax.set_xlabel("env steps")
            ax.set_ylabel(f"{name} (last {cfg.window} episodes)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        axes[0, col].set_ylim(-0.02, 1.02)
    save_figure(fig, path)


def moving_mean(values: list[float], window: int) -> np.ndarray:
    """Mean of each value and the up to ``window - 1`` before it."""
    v = np.asarray(values, dtype=np.float64)
    csum = np.concatenate([[0.0], np.cumsum(v)])
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(0, idx - window)
    return (csum[idx] - csum[lo]) / (idx - lo)
