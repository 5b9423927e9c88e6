"""``toto-robot`` reports a user's mistake as one ``error: ...`` line with exit status 2; a bug keeps its traceback.

Each case runs the installed console script in a fresh process, as a user would, with input that
fails validation before any heavy work (a few seconds per case).
"""
from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toto_robot import cli
from toto_robot.errors import UserError
from toto_robot.utils.config import ConfigError

TOTO_ROBOT = Path(sys.executable).parent / "toto-robot"  # the venv's console script


def run(args: list[str], cwd: Path, full_error: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "TOTO_ROBOT_RUNS")}  # run folders under cwd
    env["OMP_NUM_THREADS"] = "1"
    if full_error:
        env["HYDRA_FULL_ERROR"] = "1"
    out = subprocess.run(args, cwd=cwd, capture_output=True, timeout=120, env=env)  # bytes: text=True would turn "\r" into "\n"
    return subprocess.CompletedProcess(args, out.returncode, out.stdout.decode(errors="replace"), out.stderr.decode(errors="replace"))


def assert_one_error_line(out: subprocess.CompletedProcess, *expected: str) -> str:
    """Exit status 2, at most 3 lines in all, one stderr line ``error: ...`` holding every ``expected`` text."""
    # lines as a terminal shows them: a progress bar redrawn with "\r" stays one line
    lines = [line for line in (out.stdout + out.stderr).split("\n") if line.strip()]
    report = f"status {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    assert out.returncode == 2, report
    assert len(lines) <= 3, report
    assert "Traceback" not in out.stderr, report
    assert "Error executing job" not in out.stderr, report  # hydra's own line before ours: the error line says it all
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, report
    for text in expected:
        assert text in errors[0], report
    return errors[0]


def corrupt_davis(root: Path) -> Path:
    """A DAVIS layout whose annotations are fine and whose JPEG frames are not images."""
    frames, masks = root / "JPEGImages" / "480p" / "seq", root / "Annotations" / "480p" / "seq"
    frames.mkdir(parents=True)
    masks.mkdir(parents=True)
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 2:5] = 1
    for i in range(2):
        (frames / f"{i:05d}.jpg").write_bytes(b"not a jpeg")
        im = Image.fromarray(mask, "P")
        im.putpalette([0, 0, 0, 255, 0, 0])
        im.save(masks / f"{i:05d}.png")
    return root


# (command line, texts the error line must contain); {tmp} is a fresh folder, {missing} a path that does not exist
CASES = {
    "pretrain_negative_steps": (["pretrain", "shards={missing}", "trainer.max_steps=-5"],
                                ["trainer.max_steps must be an integer >= 1, got -5"]),
    "pretrain_no_shards": (["pretrain"], ["missing mandatory value shards", "shards=..."]),
    "pretrain_missing_shards": (["pretrain", "shards={missing}"], ["{missing}", "not a token shard folder"]),
    "probe_missing_checkpoint": (["probe", "encoder=toto", "encoder.checkpoint={missing}"], ["Toto checkpoint not found: {missing}"]),
    "probe_unset_checkpoint": (["probe", "encoder=toto"], ["encoder.checkpoint=..."]),
    "probe_missing_vit_weights": (["probe", "encoder=mvp_vit_b", "encoder.checkpoint={missing}"], ["ViT checkpoint not found: {missing}"]),
    "probe_missing_image_folder": (["probe", "probe=image_folder", "probe.kwargs.root={missing}"], ["{missing} is not a folder"]),
    "probe_corrupt_davis_frames": (["probe", "probe=davis", "probe.kwargs.root={davis}"], ["00000.jpg: unreadable image"]),
    "train_policy_missing_checkpoint": (["train-policy", "policy=ppo", "encoder=toto", "encoder.checkpoint={missing}"],
                                        ["Toto checkpoint not found: {missing}"]),
    "train_policy_without_demos": (["train-policy", "policy=bc"], ["policy=bc needs demos="]),
    "train_policy_not_a_demo_folder": (["train-policy", "policy=bc", "demos={tmp}"], ["{tmp} is not a demonstration dataset"]),
    "evaluate_missing_policy": (["evaluate", "policy_dir={missing}"], ["{missing} is not a policy folder"]),
    "import_demos_missing_src": (["import-demos", "src={missing}"], ["{missing} does not exist"]),
    "import_demos_corrupt_bag": (["import-demos", "format=rosbag2", "src={bag}"], ["not a readable rosbag2"]),
    "export_demos_missing_demos": (["export-demos", "demos={missing}", "out_dir={tmp}/export"], ["{missing} is not a demonstration dataset"]),
    "tokenize_corrupt_video": (["tokenize", "data.datasets=[{{name:v,kind:video,path:{videos}}}]"],
                               ["no frames found", "1 of 1 inputs could not be decoded"]),
    "collect_negative_episodes": (["collect", "collect.episodes=-1"], ["collect.episodes must be an integer >= 1, got -1"]),
    "benchmark_unknown_encoder": (["benchmark", "encoders=[nope]"], ["encoders ['nope'] have no entry in encoder_specs"]),
    "hydra_unknown_key": (["pretrain", "foo=1"], ["Could not override 'foo'", "+foo=1"]),
    "hydra_unknown_group_option": (["probe", "encoder=nope"], ["Could not find 'encoder/nope'", "available:", "toto"]),
    "hydra_unparsable_override": (["pretrain", "trainer.max_steps=["], ["trainer.max_steps=["]),
}


@pytest.fixture
def paths(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "bad.mp4").write_bytes(b"not a video")
    (tmp_path / "bad.mcap").write_bytes(b"not a rosbag")
    return {"tmp": tmp_path / "work", "missing": tmp_path / "no_such_thing", "videos": tmp_path / "videos",
            "bag": tmp_path / "bad.mcap", "davis": corrupt_davis(tmp_path / "davis")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_user_error_is_one_line_with_status_2(case, paths):
    args, expected = CASES[case]
    paths["tmp"].mkdir()
    fill = {k: str(v) for k, v in paths.items()}
    out = run([str(TOTO_ROBOT), *(a.format(**fill) for a in args)], cwd=paths["tmp"])
    assert_one_error_line(out, *(e.format(**fill) for e in expected))
    left = sorted(str(p.relative_to(paths["tmp"])) for p in (paths["tmp"] / "runs").rglob("*"))
    assert not left, left  # a failed command leaves no run folder behind


def test_module_entry_point_reports_the_same_way(tmp_path):
    out = run([sys.executable, "-m", "toto_robot.cli", "pretrain", f"shards={tmp_path / 'none'}", "trainer.max_steps=-5"], cwd=tmp_path)
    assert_one_error_line(out, "trainer.max_steps must be an integer >= 1, got -5")


def test_hydra_full_error_shows_the_traceback(tmp_path):
    out = run([str(TOTO_ROBOT), "pretrain", f"shards={tmp_path / 'none'}", "trainer.max_steps=-5"], cwd=tmp_path, full_error=True)
    assert out.returncode == 1, out.stderr[-3000:]
    assert "Traceback (most recent call last)" in out.stderr
    assert "toto_robot.utils.config.ConfigError: trainer.max_steps must be an integer >= 1, got -5" in out.stderr
    assert not any(line.startswith("error: ") for line in out.stderr.splitlines())


def test_hydra_full_error_shows_the_traceback_of_a_config_error(tmp_path):
    out = run([str(TOTO_ROBOT), "pretrain", "foo=1"], cwd=tmp_path, full_error=True)
    assert out.returncode == 1 and "Traceback (most recent call last)" in out.stderr, out.stderr[-3000:]
    assert "ConfigCompositionException" in out.stderr


# a hydra job run through the CLI's error handling: +mode=bug hits a KeyError (a bug), +mode=user a ConfigError
HARNESS = textwrap.dedent("""
    import sys

    import hydra

    from toto_robot.cli import run_command
    from toto_robot.utils.config import ConfigError

    @hydra.main(config_path=None, version_base="1.3")
    def main(cfg):
        if cfg.mode == "bug":
            return {}["a key the code forgot"]
        raise ConfigError("seeds must not be empty")

    sys.argv = ["job", f"+mode={sys.argv[1]}", "hydra.run.dir=.", "hydra.output_subdir=null"]
    sys.exit(run_command(main))
""")


def test_unexpected_exception_keeps_its_traceback(tmp_path):
    out = run([sys.executable, "-c", HARNESS, "bug"], cwd=tmp_path)
    assert out.returncode == 1, out.stderr[-3000:]
    assert "Traceback (most recent call last)" in out.stderr
    assert "KeyError: 'a key the code forgot'" in out.stderr
    assert not any(line.startswith("error: ") for line in out.stderr.splitlines())


def test_the_same_job_reports_a_user_error_as_one_line(tmp_path):
    assert_one_error_line(run([sys.executable, "-c", HARNESS, "user"], cwd=tmp_path), "seeds must not be empty")


def test_run_command_restores_the_environment_and_passes_bugs_through(monkeypatch, capsys):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)

    def user_error():
        assert os.environ["HYDRA_FULL_ERROR"] == "1"  # hydra re-raises while the job runs ...
        raise ConfigError("trainer.lr must be a finite number > 0, got -1")

    assert cli.run_command(user_error) == 2
    assert "HYDRA_FULL_ERROR" not in os.environ  # ... and the caller's environment is as it was
    assert capsys.readouterr().err == "error: trainer.lr must be a finite number > 0, got -1\n"
    with pytest.raises(ZeroDivisionError):
        cli.run_command(lambda: 1 / 0)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError):
        cli.run_command(user_error)
    assert os.environ["HYDRA_FULL_ERROR"] == "1"
    assert cli.run_command(lambda: None) == 0


def test_multi_line_messages_become_one_line(capsys):
    def checkpoint_mismatch():
        from toto_robot.utils.io import CheckpointError

        raise CheckpointError("model.safetensors does not match:\n  missing: head.weight\n  unexpected: fc.weight")

    assert cli.run_command(checkpoint_mismatch) == 2
    assert capsys.readouterr().err == "error: model.safetensors does not match: missing: head.weight unexpected: fc.weight\n"


def test_project_errors_share_the_user_error_base_and_keep_their_builtin_base():
    from toto_robot.data.demos import DemoFormatError
    from toto_robot.data.formats.common import DemoImportError
    from toto_robot.data.formats.tfrecord import TFRecordError
    from toto_robot.data.shards import ShardError
    from toto_robot.data.video import VideoDecodeError
    from toto_robot.encoders.base import FrameFormatError
    from toto_robot.errors import DataFormatError, InputNotFoundError, UnknownNameError
    from toto_robot.model.hf import UnsupportedConfigError
    from toto_robot.probes.davis import DavisFormatError
    from toto_robot.sim_envs.robots import AssetError
    from toto_robot.ros.control import ControlError
    from toto_robot.ros.convert import ImageEncodingError
    from toto_robot.tokenizers.base import TokenizerInputError
    from toto_robot.utils.io import CheckpointError

    builtin = {ConfigError: ValueError, DemoFormatError: ValueError, DemoImportError: ValueError, TFRecordError: ValueError,
               ShardError: ValueError, VideoDecodeError: RuntimeError, FrameFormatError: ValueError, UnsupportedConfigError: ValueError,
               DavisFormatError: ValueError, ControlError: ValueError, ImageEncodingError: ValueError, TokenizerInputError: ValueError,
               CheckpointError: RuntimeError, DataFormatError: ValueError, InputNotFoundError: FileNotFoundError, UnknownNameError: KeyError,
               AssetError: FileNotFoundError}
    for cls, base in builtin.items():
        assert issubclass(cls, UserError) and issubclass(cls, base), cls
    # every *Error class the project defines is a user error, unless named here as one that reports a bug
    internal: set[str] = set()
    root = Path(__file__).resolve().parents[1]
    found = {}
    for folder, package in (("toto_robot", "toto_robot"), ("sim_envs", "toto_robot.sim_envs"), ("train", "toto_robot.train")):
        for path in (root / folder).rglob("*.py"):
            module = ".".join([package, *path.relative_to(root / folder).with_suffix("").parts]).removesuffix(".__init__")
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef) and node.name.endswith("Error") and node.name not in internal | {"UserError"}:
                    found[node.name] = module
    assert len(found) >= len(builtin), found
    for name, module in found.items():
        assert issubclass(getattr(importlib.import_module(module), name), UserError), f"{module}.{name} does not derive from UserError"


def test_unknown_name_error_prints_its_message_unquoted():
    from toto_robot.model.toto import TotoConfig

    with pytest.raises(KeyError) as info:
        TotoConfig.from_name("toto_huge")
    assert str(info.value).startswith("unknown Toto size 'toto_huge'; known: toto_tiny")


@pytest.mark.parametrize("config_name", ["evaluate", "train_policy", "tokenize", "real_frames", "ood", "import_demos"])
def test_run_folders_go_where_toto_robot_runs_says(config_name, monkeypatch, tmp_path):
    """Every job's hydra run folder sits under $TOTO_ROBOT_RUNS when it is set (the test suite's own, so that tests
    leave nothing in the checkout's runs/), under runs/ otherwise."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    for value, expected in ((str(tmp_path / "elsewhere"), str(tmp_path / "elsewhere") + "/"), (None, "runs/")):
        if value is None:
            monkeypatch.delenv("TOTO_ROBOT_RUNS", raising=False)
        else:
            monkeypatch.setenv("TOTO_ROBOT_RUNS", value)
        with initialize_config_module(config_module="toto_robot.configs", version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=["policy_dir=x"] if config_name in ("evaluate", "ood") else [],
                          return_hydra_config=True)
            run_dir = OmegaConf.to_container(cfg.hydra.run, resolve=True)["dir"]
        assert run_dir.startswith(expected), run_dir
