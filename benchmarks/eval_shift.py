"""Re-score a finished ``toto-robot compare`` under a visual shift: every saved policy of the chosen encoders is rolled out
again on the same seeded episodes as compare's own evaluation, with the scene's visual randomization switched on
(``sim_envs/arena.py``: lighting, table and floor colours, camera jitter, distractor boxes). The results are written in
compare's layout, so ``benchmarks/bc_table.py`` pools them and pairs encoders on the same shifted episodes.

    python benchmarks/eval_shift.py runs/dart400/ps1/picks --shift train_variation --out runs/shift/ps1/train_variation
    python benchmarks/eval_shift.py runs/dart400/ps1/picks --shift distractors --encoders toto random --out runs/shift/ps1/distractors
    python benchmarks/bc_table.py toto=runs/shift/ps1/distractors:toto random=runs/shift/ps1/distractors:random --markdown

Shifts: ``train_variation`` is the randomization ``toto-robot collect`` draws its demonstrations under (lighting, colours,
1 cm camera jitter): new draws from the training distribution. The others were never in the demonstrations.
A run that stops resumes: a seed whose ``eval.json`` exists is skipped.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from toto_robot.policies.evaluate import evaluate_policy
from toto_robot.policies.policy import load_policy
from toto_robot.sim_envs.collect import DEMO_RANDOMIZATION
from toto_robot.utils.io import atomic_save_json

SHIFTS = {
    "none": {},
    "train_variation": DEMO_RANDOMIZATION,
    "lighting": {"lighting": True},
    "colours": {"colors": True},
    "distractors": {"distractors": 3},
    "distractors_variation": {**DEMO_RANDOMIZATION, "distractors": 3},
    "camera_5cm": {"camera_jitter": 0.05},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("compare", type=Path, help="a finished compare folder (runs/<task>/<encoder>/seed<s>/policy)")
    ap.add_argument("--shift", choices=sorted(SHIFTS), required=True)
    ap.add_argument("--encoders", nargs="*", default=None, help="default: every encoder in the folder")
    ap.add_argument("--tasks", nargs="*", default=None, help="default: every task in the folder")
    ap.add_argument("--episodes", type=int, default=None, help="default: compare's eval_episodes")
    ap.add_argument("--batch", type=int, default=1, help="episodes in lockstep, one encoder pass per step (same seeds)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    config_file = args.compare / "compare_config.json"
    if not config_file.is_file():
        raise SystemExit(f"{args.compare}: no compare_config.json: not a finished toto-robot compare folder")
    cfg = json.loads(config_file.read_text())
    episodes = args.episodes or int(cfg["eval_episodes"])
    randomization = SHIFTS[args.shift]
    policies = sorted(args.compare.glob("runs/*/*/seed*/policy/policy.json"))
    if not policies:
        raise SystemExit(f"{args.compare}: no saved policies (runs/<task>/<encoder>/seed<s>/policy)")
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_save_json({**cfg, "out_dir": str(args.out), "eval_episodes": episodes, "shift": args.shift,
                      "randomization": randomization, "policies_from": str(args.compare)}, args.out / "compare_config.json")
    for meta in policies:
        seed_dir = meta.parent.parent
        task, encoder, seed = seed_dir.parts[-3], seed_dir.parts[-2], int(seed_dir.name[len("seed"):])
        if (args.encoders and encoder not in args.encoders) or (args.tasks and task not in args.tasks):
            continue
        target = args.out / "runs" / task / encoder / seed_dir.name / "eval.json"
        if target.is_file():
            continue
        ev = evaluate_policy(load_policy(meta.parent), task, episodes, seed=seed, randomization=randomization, batch=args.batch)
        atomic_save_json({**ev, "shift": args.shift, "randomization": randomization, "policy": str(meta.parent)}, target)
        print(f"{task:15s} {encoder:8s} seed {seed}: {ev['successes']}/{episodes}", flush=True)


if __name__ == "__main__":
    main()
