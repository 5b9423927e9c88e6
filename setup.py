"""toto_robot: video-pretrained autoregressive visual encoders for robot learning.

One setup.py serves two worlds:
  * pip:   ``pip install .`` (extras: ros, sim, dev, gpu, all)
  * ROS 2: ``colcon build`` treats it as an ament_python package (package.xml beside it).

The repository's top-level folders ``sim_envs/``, ``ros_nodes/``, ``train/`` and
``configs/`` install as subpackages of ``toto_robot`` so nothing generic lands
at the top level of site-packages.
"""
import os
from glob import glob

from setuptools import setup

PACKAGE = "toto_robot"

SUBPACKAGE_DIRS = {
    f"{PACKAGE}.sim_envs": "sim_envs",
    f"{PACKAGE}.ros_nodes": "ros_nodes",
    f"{PACKAGE}.train": "train",
    f"{PACKAGE}.configs": "configs",
}


def find_packages_in(root: str, name: str) -> list[str]:
    """Every folder with an __init__.py below `root`, named as a dotted package under `name`."""
    packages = []
    for dirpath, _dirnames, filenames in os.walk(root):
        if "__init__.py" in filenames and "__pycache__" not in dirpath:
            rel = os.path.relpath(dirpath, root)
            packages.append(name if rel == "." else name + "." + rel.replace(os.sep, "."))
    return sorted(packages)


packages = find_packages_in(PACKAGE, PACKAGE)
package_dir = {PACKAGE: PACKAGE}
for name, folder in SUBPACKAGE_DIRS.items():
    for pkg in find_packages_in(folder, name):
        packages.append(pkg)
        package_dir[pkg] = os.path.join(folder, *pkg[len(name) + 1:].split(".")) if pkg != name else folder

# Versions pinned in requirements/*.txt; these are the lower bounds a user's env must meet.
CORE = [
    "torch==2.13.0",  # the CPU wheel on this project's machines; never an unpinned torch
    "numpy>=1.26",
    "einops>=0.8",
    "safetensors>=0.4",
    "hydra-core>=1.3.2",
    "omegaconf>=2.3",
    "tqdm>=4.66",
    "rich>=13",
    "matplotlib>=3.8",
    "av>=12",
    "pillow>=10",
    "scipy>=1.11",  # the real-frame suite's paired tests (Wilcoxon signed-rank)
]
EXTRAS = {
    "sim": ["mujoco>=3.2", "mujoco-menagerie>=2026.10.4", "gymnasium>=1.0", "stable-baselines3>=2.3", "scipy>=1.11", "imageio>=2.30"],
    "ros": ["catkin-pkg>=1.0", "pyyaml>=6"],  # rclpy itself: ros-kilted-* wheels (requirements/ros.txt) or a ROS 2 install
    "dev": ["pytest>=8", "transformers>=4.45", "tensorboard>=2.16", "catkin-pkg>=1.0"],
    "formats": ["rosbags>=0.11.9", "pyarrow>=15", "google-crc32c>=1.5", "protobuf>=4.25"],  # import-demos / export-demos
    "gpu": [],  # same code; install a CUDA torch build yourself and pass device=cuda
}
EXTRAS["all"] = sorted({dep for deps in EXTRAS.values() for dep in deps})

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Toto: autoregressive video pre-training as a frozen visual encoder for robot policies",
    long_description=open("README.md", encoding="utf-8").read() if os.path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=packages,
    package_dir=package_dir,
    package_data={f"{PACKAGE}.configs": ["*.yaml", "**/*.yaml"], f"{PACKAGE}.ros": ["*.xml"], f"{PACKAGE}.sim_envs": ["assets/*", "assets/**/*"]},
    include_package_data=True,
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", sorted(glob("launch/*_launch.py"))),
        (f"share/{PACKAGE}/params", sorted(glob("launch/params/*.yaml"))),
    ],
    install_requires=CORE,
    extras_require=EXTRAS,
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "toto-robot = toto_robot.cli:main",
            "toto_encoder_node = toto_robot.ros_nodes.encoder_node:main",
            "toto_policy_node = toto_robot.ros_nodes.policy_node:main",
            "toto_demo_recorder = toto_robot.ros_nodes.demo_recorder_node:main",
            "toto_sim_camera = toto_robot.ros_nodes.sim_camera_node:main",
            "toto_bag_recorder = toto_robot.ros_nodes.bag_recorder_node:main",
        ],
    },
)
