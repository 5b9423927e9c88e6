"""The demo's figures over pipeline seeds: each `make demo` run (``toto-robot demo pipeline_seed=<s>``) trains every
stage afresh (videos, tokenizer, Toto, MAE, demonstrations, the random-init control) and scores the same probe images
and evaluation episodes, so the runs show how far one run's figures move. Prints, per encoder, each run's BC success
and probe accuracy, their mean and range over runs, and the pooled success with its Wilson interval; with ``--plot``
a PNG of each run's success.

    for s in 0 1 2 3 4; do toto-robot demo pipeline_seed=$s out_dir=runs/demo-dart-ps$s; done   # seed 0 is `make demo`'s, cached
    python benchmarks/demo_spread.py runs/demo-dart-ps*/results.json --plot docs/figures/demo_spread.png
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from toto_robot.demo.pipeline import PLAIN_DEMOS
from toto_robot.utils.stats import mcnemar_p, wilson_interval


def read_runs(paths: list[str]) -> tuple[dict[int, dict], list[str]]:
    """{pipeline_seed: results.json} of the newest run of each seed (later files replace earlier ones), and the BC encoders
    of the newest run of all. Runs that recorded their demonstrations differently (``bc_demos``; older results without it
    recorded plain ones) are different experiments: refused."""
    runs, newest, recordings = {}, [], {}
    for p in sorted(paths, key=lambda p: Path(p).stat().st_mtime):
        r = json.loads(Path(p).read_text())
        recordings[p] = json.dumps(r["config"].get("bc_demos") or PLAIN_DEMOS, sort_keys=True)
        if "bc" not in r:
            continue
        runs[int(r["config"].get("pipeline_seed", 0))] = r
        newest = [row["encoder"] for row in r["bc"]]
    if len(set(recordings.values())) > 1:
        sys.exit(f"the runs recorded their demonstrations differently (bc_demos: {recordings}): "
                 "give the results of one recording, e.g. one out_dir pattern per recording")
    return dict(sorted(runs.items())), newest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", help="results.json of demo runs")
    ap.add_argument("--plot", default="")
    args = ap.parse_args()
    runs, want = read_runs(args.results)
    if not runs:
        sys.exit("no demo results with a BC comparison among the files given")
    skipped = [s for s, r in runs.items() if [row["encoder"] for row in r["bc"]] != want]
    if skipped:
        print(f"left out pipeline seeds {skipped}: their BC compared other encoders than {want} (another demo config)")
    runs = {s: r for s, r in runs.items() if s not in skipped}
    seeds = list(runs)
    first = next(iter(runs.values()))
    encoders = want
    pool = first["config"].get("poolings", ["spatial_attention"])[0]
    print(f"pipeline seeds {seeds}; BC success over {first['bc'][0]['seeds']} BC seeds x the same evaluation episodes per run; "
          f"probe: best layer, {pool} pool, the same validation images")
    print("| encoder | " + " | ".join(f"seed {s}" for s in seeds) + " | mean (min-max) | pooled [95% Wilson] | probe mean (min-max) |")
    print("|---|" + "---|" * (len(seeds) + 3))
    rates = {}
    for enc in encoders:
        rows = [next(r for r in run["bc"] if r["encoder"] == enc) for run in runs.values()]
        rate = np.array([float(r["success_rate"]) for r in rows])
        n = np.array([int(r["seeds"]) for r in rows]) * int(first["config"]["eval_episodes"])
        wins = np.round(rate * n).astype(int)
        lo, hi = wilson_interval(int(wins.sum()), int(n.sum()))
        backbone = enc.split("+")[0]
        probe = np.array([run["probe"]["best"][f"{backbone}/{pool}"]["val_acc"] for run in runs.values()])
        rates[enc] = rate
        print(f"| {enc} | " + " | ".join(f"{100 * x:.0f}%" for x in rate) + f" | {100 * rate.mean():.0f}% ({100 * rate.min():.0f}-{100 * rate.max():.0f}) | "
              f"{wins.sum()}/{n.sum()} = {100 * wins.sum() / n.sum():.0f}% [{100 * lo:.0f}, {100 * hi:.0f}] | "
              f"{100 * probe.mean():.1f}% ({100 * probe.min():.1f}-{100 * probe.max():.1f}) |")
    toto = next(e for e in encoders if e.startswith("toto"))
    for enc in encoders:
        if enc != toto:
            ahead = int((rates[toto] > rates[enc]).sum())
            pairs = [next(x for x in run["paired"] if x["what"] == "bc" and x["toto"] == toto and x["control"] == enc) for run in runs.values()]
            a, b = sum(x["a_only"] for x in pairs), sum(x["b_only"] for x in pairs)
            p = mcnemar_p(a, b)
            print(f"{toto} ahead of {enc} in {ahead} of {len(seeds)} runs (mean difference {100 * (rates[toto] - rates[enc]).mean():+.0f} points; "
                  f"episodes only {toto} / only {enc} solved, summed over runs, {a} : {b}, exact McNemar p = {p:.2g})")
    if args.plot:
        from toto_robot.utils.plots import pyplot, save_figure

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=120)
        for k, enc in enumerate(encoders):
            ax.scatter(np.array(seeds) + (k - 1) * 0.12, 100 * rates[enc], label=enc, s=24)
            ax.hlines(100 * rates[enc].mean(), min(seeds) - 0.3, max(seeds) + 0.3, colors=f"C{k}", linestyles=":", linewidth=1)
        ax.set_xlabel("pipeline seed (every training stage afresh)")
        ax.set_ylabel("BC success, 90 episodes (%)")
        ax.set_xticks(seeds)
        ax.set_title("the demo over pipeline seeds (dotted: mean)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        save_figure(fig, args.plot)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
