"""``toto-robot``: one command, one subcommand per job; each job is a hydra entry point in ``train/``.

    toto-robot --help
    toto-robot pretrain model=toto_tiny data=sim_default trainer.max_steps=200
    toto-robot pretrain --help          # hydra's own help: config groups and overrides

Every argument after the subcommand is passed to hydra unchanged.
"""
from __future__ import annotations

import importlib
import sys

# subcommand -> (module in toto_robot.train with a hydra ``main``, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "collect": ("toto_robot.train.collect", "scripted-expert demonstrations and videos from the MuJoCo tasks"),
    "import-demos": ("toto_robot.train.import_demos", "rosbag2 (MCAP/sqlite3), LeRobot v3 or RLDS recordings -> a demo folder"),
    "export-demos": ("toto_robot.train.export_demos", "a demo folder -> rosbag2 (ros2 bag play), LeRobot v3 or RLDS"),
    "probe": ("toto_robot.train.probe", "layer sweep of a frozen encoder: classification probes, label propagation J, ridge R^2"),
    "train-policy": ("toto_robot.train.train_policy", "behaviour cloning or PPO on a frozen encoder"),
    "evaluate": ("toto_robot.train.evaluate", "success rate of a saved policy in a MuJoCo task"),
    "compare": ("toto_robot.train.compare", "compare encoders with BC on the same tasks, seeds and budget"),
    "compare-ppo": ("toto_robot.train.compare_ppo", "compare encoders by PPO learning curves on the same tasks, seeds and env steps"),
    "benchmark": ("toto_robot.train.benchmark", "CortexBench's MetaWorld protocol on frozen encoders: best/last-epoch success table"),
    "tokenize": ("toto_robot.train.tokenize", "train a visual tokenizer (dVAE, VQ, patches) and write token shards"),
    "demo": ("toto_robot.train.demo", "the whole pipeline on simulated robot videos, ending in a report"),
    "study": ("toto_robot.train.study", "the recipe study: the demo once per recipe (tokenizer, steps, read-out, ...) in one page"),
    "scaling": ("toto_robot.train.scaling", "scaling sweep of small Totos and the power-law fit L(C) = a * C^b"),
    "pretrain": ("toto_robot.train.pretrain", "next-token pre-training of Toto on token shards (torchrun for multi-GPU)"),
}


def usage() -> str:
    width = max((len(c) for c in COMMANDS), default=8)
    lines = [
        "usage: toto-robot <command> [hydra overrides ...]",
        "",
        "Toto: autoregressive video pre-training as a frozen visual encoder for robots.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, desc) in sorted(COMMANDS.items())]
    lines += ["", "`toto-robot <command> --help` lists that command's config groups and options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from toto_robot import __version__

        print(f"toto-robot {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"toto-robot: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    # hydra reads sys.argv itself; show the subcommand as the program name in its help.
    sys.argv = [f"toto-robot {name}", *rest]
    result = module.main()
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
