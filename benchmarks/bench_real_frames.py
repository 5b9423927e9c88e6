"""Time the real-frame report (``toto-robot real-frames``, probes/real_suite.py) on a subset of real frames, and with
``--reference`` the same run by another checkout of this project (an older commit) in the same way, then compare
every figure of the two ``results.json``.

The encoders are the recipe's read-out (docs/real_frames.md: Toto-tiny of the 128 px recipe's shape read at 256 px,
block 1, four mirrored scans, each frame alone), its random-init control, an untrained ViT of the same input size
and the raw-pixel baselines; ``--checkpoint`` names a pre-training run, otherwise an untrained model of that shape is
written first (the cost is the same; the figures then compare code, not encoders).

    git worktree add /tmp/toto-before 82e8504          # the code before label propagation scored only neighbourhoods
    python benchmarks/bench_real_frames.py --reference /tmp/toto-before
    python benchmarks/bench_real_frames.py --reference /tmp/toto-before --layers all --sequences blackswan libby --no-robot
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
SEQUENCES = ["blackswan", "dog", "libby", "scooter-black"]
ROBOT = ["so101_bimanual_cloth", "g1_inspire_pick_bottle"]


def recipe_checkpoint(root: Path) -> str:
    """An untrained Toto-tiny of the real-camera recipe's shape laid out as a pre-training final/ dir."""
    import torch

    from toto_robot.model.toto import Toto, TotoConfig
    from toto_robot.tokenizers import build_tokenizer
    from toto_robot.utils.io import atomic_save_json

    torch.manual_seed(0)
    final = root / "final"
    Toto(TotoConfig.from_name("toto_tiny", input_dim=192, block_size=1025, tokens_per_frame=256)).save_pretrained(final)
    build_tokenizer("patch", patch_size=8).save_pretrained(final / "tokenizer")
    atomic_save_json({"tokenizer": {"name": "patch", "resolution": 128, "tokens_per_frame": 256, "num_frames": 4}}, final / "data.json")
    return str(final)


def run_report(args) -> None:
    """The child: one real-frames run, its wall time printed as the last line."""
    from toto_robot.probes.real_suite import RealFramesConfig, run_real_frames, standard_encoders

    encoders = standard_encoders(args.checkpoint, None, layer=1, resolution=256, scan="four")
    robot = [] if args.no_robot else [str(Path(args.data) / "robot" / r) for r in ROBOT]
    cfg = RealFramesConfig(encoders=encoders, out_dir=args.out, davis_root=str(Path(args.data) / "davis2016"),
                           davis={"size": None, "fit": "squash", "sequences": args.sequences}, layers=args.layers,
                           propagation={"window": 1}, robot_roots=robot, robot_max_frames=args.robot_frames, bootstrap=200,
                           command="benchmarks/bench_real_frames.py")
    t0 = time.perf_counter()
    run_real_frames(cfg)
    print(json.dumps({"seconds": time.perf_counter() - t0}))


def numbers(a, b, path=""):
    """Every float of two results.json trees, side by side (minutes and commands left out)."""
    if isinstance(a, dict):
        for k in a:
            if k not in ("minutes", "command"):
                yield from numbers(a[k], b.get(k) if isinstance(b, dict) else None, f"{path}/{k}")
    elif isinstance(a, list):
        for i, (x, y) in enumerate(zip(a, b or [])):
            yield from numbers(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        yield path, a, b


def timed(code_root: str, args, out: Path) -> float:
    cmd = [sys.executable, __file__, "--child", "--checkpoint", args.checkpoint, "--out", str(out), "--data", args.data,
           "--layers", args.layers, "--robot-frames", str(args.robot_frames), "--sequences", *args.sequences] + (["--no-robot"] if args.no_robot else [])
    env = {**os.environ, "PYTHONPATH": code_root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"the run with the code in {code_root} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference", default="", help="another checkout of this project to time the same run with")
    ap.add_argument("--checkpoint", default="", help="a pre-training final/ dir (default: untrained, the recipe's shape)")
    ap.add_argument("--data", default=str(REAL), help="the real-data folder (davis2016/, robot/)")
    ap.add_argument("--sequences", nargs="+", default=SEQUENCES)
    ap.add_argument("--layers", default="own", choices=["own", "all"])
    ap.add_argument("--robot-frames", type=int, default=300)
    ap.add_argument("--no-robot", action="store_true")
    ap.add_argument("--out", default="")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return run_report(args)
    if not (Path(args.data) / "davis2016").is_dir():
        print(f"skipped: no real data at {args.data} (davis2016/ and robot/; give --data)")  # `make bench` goes on
        return
    work = Path(tempfile.mkdtemp(prefix="bench_real_frames_"))
    args.checkpoint = args.checkpoint or recipe_checkpoint(work)
    here = str(Path(__file__).resolve().parents[1])
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; DAVIS {args.sequences}, layers {args.layers}, "
          f"robot sets {'none' if args.no_robot else f'{ROBOT} at most {args.robot_frames} frames each'}")
    now = timed(here, args, work / "now")
    print(f"this checkout ({here}): {now:.1f} s")
    if args.reference:
        before = timed(str(Path(args.reference).resolve()), args, work / "reference")
        a = json.loads((work / "reference" / "results.json").read_text())
        b = json.loads((work / "now" / "results.json").read_text())
        pairs = list(numbers(a, b))
        diffs = [abs(x - y) for _, x, y in pairs if isinstance(y, float)]
        third = sum(round(x, 3) != round(y, 3) for _, x, y in pairs if isinstance(y, float))
        print(f"reference ({args.reference}): {before:.1f} s; ratio {before / now:.2f}x")
        print(f"{len(pairs)} figures compared: largest difference {max(diffs, default=0):.2e}, {third} differ at the third decimal")


if __name__ == "__main__":
    main()
