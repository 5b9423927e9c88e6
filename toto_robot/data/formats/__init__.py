"""Demonstrations in the formats robot data is recorded in, to and from the project's demo folder
(``toto_robot.data.demos``):

* ``rosbag2``  (``ros2 bag record``: MCAP or sqlite3) -- import (topics aligned by stamp) and export (replays with ``ros2 bag play``)
* ``lerobot``  (LeRobot dataset v2.1 or v3.0: parquet + MP4) -- read (also directly by behaviour cloning); export as v3.0
* ``rlds``     (Open X-Embodiment RLDS TFRecords)       -- read (also directly by behaviour cloning) and export

``open_demos(folder)`` opens any of the folders behaviour cloning can learn from: a demo folder, a
LeRobot v2.1/v3 dataset or an RLDS dataset, as an object with ``meta``, ``len()`` and ``[i]`` -> episode dict.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from toto_robot.data.demos import META_NAME, DemoDataset, DemoFormatError

FORMATS = ("rosbag2", "lerobot", "rlds")


class RLDSDemos:
    """An RLDS dataset folder read whole into memory as episodes (behaviour cloning reads every episode anyway)."""

    def __init__(self, root: str | Path, **keys):
        from toto_robot.data.demos import validate_episode
        from toto_robot.data.formats.rlds import RLDSKeys, RLDSReader

        reader = RLDSReader(root, split=keys.pop("split", "train"), keys=RLDSKeys(**keys))
        self.root, self.paths = Path(root), [str(f) for f in reader.files]
        episodes = [ep.check(f"{root} episode {i}") for i, ep in enumerate(reader)]
        if not episodes:
            raise DemoFormatError(f"{root}: no episodes")
        self.meta = reader.make_meta(None, None, None)(episodes[0])
        self.episodes = []
        for i, ep in enumerate(episodes):
            d = ep.as_dict()  # the Episode fields are the demo format's keys
            d["success"] = np.asarray(bool(d["success"]))
            for key, dtype in (("seed", np.int64), ("language", None)):
                if key in d:
                    d[key] = np.asarray(d[key], dtype)
            if "reward" not in d:
                d["reward"] = np.zeros(len(d["image"]), np.float32)
            validate_episode(d, self.meta, where=f"{root} episode {i}")
            self.episodes.append(d)

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, i: int) -> dict:
        return self.episodes[i]


def detect_format(root: str | Path) -> str:
    """"demos" (this project's folder), "lerobot" or "rlds"; raises ``DemoFormatError`` naming what a folder lacks."""
    root = Path(root)
    if (root / META_NAME).is_file():
        return "demos"
    if (root / "meta" / "info.json").is_file():
        return "lerobot"
    if root.is_dir() and ((root / "features.json").is_file() or any(root.rglob("features.json"))):
        return "rlds"
    raise DemoFormatError(f"{root} is not a demonstration dataset: no {META_NAME} (demo folder), meta/info.json (LeRobot) "
                          "or features.json (RLDS); rosbag2 recordings are imported first: toto-robot import-demos format=rosbag2")


def open_demos(root: str | Path):
    """A demo folder, LeRobot v2.1/v3 dataset or RLDS dataset, as episodes of the project's format."""
    fmt = detect_format(root)
    if fmt == "demos":
        return DemoDataset(root)
    if fmt == "lerobot":
        from toto_robot.data.formats.lerobot import open_lerobot

        return open_lerobot(root)
    return RLDSDemos(root)
