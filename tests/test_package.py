"""The package as users install it: package.xml, setup.py, hydra configs, the CLI, colcon."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TOTO_ROBOT = Path(sys.executable).parent / "toto-robot"  # the venv's console script
ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def test_required_top_level_layout():
    for name in ("package.xml", "setup.py", "README.md", "toto_robot", "ros_nodes", "sim_envs", "train", "tests", "configs"):
        assert (ROOT / name).exists(), name
    assert (ROOT / "resource" / "toto_robot").is_file()


def test_package_xml_is_ament_python_and_declares_ros_deps():
    from catkin_pkg.package import parse_package

    pkg = parse_package(str(ROOT / "package.xml"))
    assert pkg.name == "toto_robot"
    assert pkg.package_format == 3
    assert pkg.get_build_type() == "ament_python"
    deps = {d.name for d in pkg.exec_depends + pkg.build_depends + pkg.build_export_depends}
    assert {"rclpy", "sensor_msgs", "std_msgs"} <= deps


def test_package_xml_version_matches_setup_py():
    from catkin_pkg.package import parse_package

    out = subprocess.run([sys.executable, "setup.py", "--version"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == parse_package(str(ROOT / "package.xml")).version


def test_setup_py_installs_every_launch_file_and_the_ament_marker():
    out = subprocess.run(
        [sys.executable, "-c", "import runpy, setuptools, json, sys;"
         "captured = {};"
         "setuptools.setup = lambda **kw: captured.update(kw);"
         "runpy.run_path('setup.py', run_name='__main__');"
         "print(json.dumps({'data_files': captured['data_files'], 'packages': captured['packages'],"
         " 'scripts': captured['entry_points']['console_scripts']}))"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    import json

    info = json.loads(out.stdout)
    installed = {f for _dest, files in info["data_files"] for f in files}
    assert "resource/toto_robot" in installed and "package.xml" in installed
    for launch in (ROOT / "launch").glob("*_launch.py"):
        assert f"launch/{launch.name}" in installed
    for params in (ROOT / "launch" / "params").glob("*.yaml"):
        assert f"launch/params/{params.name}" in installed
    for sub in ("toto_robot.sim_envs", "toto_robot.ros_nodes", "toto_robot.train", "toto_robot.configs"):
        assert sub in info["packages"]
    assert any(s.startswith("toto-robot =") for s in info["scripts"])


def _config_options() -> list[tuple[str, str]]:
    """(group, option) for every YAML in every config group folder."""
    pairs = []
    for group_dir in sorted(p for p in CONFIGS.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for yaml in sorted(group_dir.glob("*.yaml")):
            pairs.append((group_dir.name, yaml.stem))
    return pairs


def _job_configs() -> list[str]:
    return sorted(p.stem for p in CONFIGS.glob("*.yaml"))


@pytest.mark.parametrize("job", _job_configs())
def test_every_job_config_composes(job):
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="toto_robot.configs", version_base="1.3"):
        cfg = compose(config_name=job)
    assert len(cfg) > 0


@pytest.mark.parametrize("group,option", _config_options())
def test_every_group_option_composes_into_a_job(group, option):
    """Each option of each group composes into at least one job config that uses that group."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    used_by = []
    for job in _job_configs():
        text = (CONFIGS / f"{job}.yaml").read_text()
        if f"- {group}:" in text or f"- {group}@" in text or f"- /{group}" in text:
            used_by.append(job)
    assert used_by, f"config group {group!r} is used by no job config"
    with initialize_config_module(config_module="toto_robot.configs", version_base="1.3"):
        cfg = compose(config_name=used_by[0], overrides=[f"{group}={option}"])
    resolved = OmegaConf.to_container(cfg, resolve=False)
    assert resolved.get(group) is not None or any(group in k for k in resolved), (group, option, used_by[0])


def test_bad_config_key_is_rejected_with_its_name():
    from hydra import compose, initialize_config_module
    from hydra.errors import ConfigCompositionException

    jobs = _job_configs()
    assert jobs
    with initialize_config_module(config_module="toto_robot.configs", version_base="1.3"):
        with pytest.raises(ConfigCompositionException, match="no_such_key_xyz"):
            compose(config_name=jobs[0], overrides=["no_such_key_xyz=1"])


def test_cli_help_lists_every_command():
    from toto_robot import cli

    out = subprocess.run([str(TOTO_ROBOT), "--help"], capture_output=True, text=True, check=True)
    assert "usage: toto-robot" in out.stdout
    for name, (module, _desc) in cli.COMMANDS.items():
        assert name in out.stdout
        __import__(module)  # every listed command's module imports
        assert callable(getattr(sys.modules[module], "main"))


def test_cli_rejects_unknown_command():
    out = subprocess.run([str(TOTO_ROBOT), "no-such-command"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "unknown command 'no-such-command'" in out.stderr


@pytest.mark.slow
def test_colcon_build_accepts_the_package(tmp_path):
    colcon = Path(sys.executable).parent / "colcon"
    if not colcon.exists():
        pytest.skip("colcon not installed in this environment")
    src = tmp_path / "ws" / "src" / "toto_robot"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "build", "install", "log", "*.egg-info", "__pycache__", ".gl", ".whl"))
    env = {**os.environ, "COLCON_HOME": str(tmp_path / "colcon_home")}
    out = subprocess.run([str(colcon), "build"], cwd=tmp_path / "ws", capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    share = tmp_path / "ws" / "install" / "toto_robot" / "share"
    assert (share / "ament_index" / "resource_index" / "packages" / "toto_robot").is_file()
    assert (share / "toto_robot" / "package.xml").is_file()
    lib = tmp_path / "ws" / "install" / "toto_robot" / "lib" / "toto_robot"
    assert (lib / "toto-robot").is_file()  # ros2 run finds entry points here (setup.cfg install_scripts)
