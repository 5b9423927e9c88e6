"""LeRobot dataset v2.x (``codebase_version`` "v2.0" / "v2.1") read with pyarrow and PyAV, through the v3 reader's
code (``lerobot.LeRobotDataset``); ``lerobot.open_lerobot`` picks the reader by version. The layout
(lerobot 0.1 to 0.3, ``lerobot/common/datasets/utils.py``)::

    meta/info.json               # features, fps, chunks_size, data_path and video_path templates
    meta/episodes.jsonl          # one line per episode: {"episode_index", "tasks": [...], "length"}
    meta/tasks.jsonl             # {"task_index", "task"}
    meta/episodes_stats.jsonl    # per-episode stats (v2.1; v2.0 has meta/stats.json); not needed to read
    data/chunk-000/episode_000000.parquet                  # one file per episode, one row per frame
    videos/chunk-000/<video key>/episode_000000.mp4         # one file per episode and camera, frame k at timestamp k

with ``data_path = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"`` and
``video_path = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"``, where an
episode's chunk is ``episode_index // chunks_size``.

Dialects of users' recordings read as well: ``{chunk_index}`` in place of ``{episode_chunk}`` in the
templates; no ``index`` / ``task_index`` columns (tasks come from ``episodes.jsonl``); float64 lists where
info.json says float32 (read as float32); camera shapes written as [C, H, W]; any codec PyAV decodes
(H.264, AV1 through libdav1d, MPEG-4 Part 2 "mp4v"). Episodes whose parquet or videos are absent (a
partial download; ``meta/`` still describes the whole dataset) are left out and named in one warning.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from toto_robot.data.formats.common import DemoImportError
from toto_robot.data.formats.lerobot import LeRobotDataset

DATA_PATH_V21 = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH_V21 = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"


def read_jsonl(path: Path) -> list[dict]:
    """One JSON object per non-empty line; a bad line is named by its number."""
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DemoImportError(f"{path} line {n}: not valid JSON ({e})") from e
    return rows


class LeRobotV21Dataset(LeRobotDataset):
    """A LeRobot v2.0 / v2.1 folder; everything but where an episode's rows and frames live is ``LeRobotDataset``'s."""

    VERSION = "v2"

    def _read_tasks(self) -> dict[int, str]:
        path = self.root / "meta" / "tasks.jsonl"
        return {int(r["task_index"]): str(r["task"]) for r in read_jsonl(path)} if path.is_file() else {}

    def _read_episodes(self) -> list[dict]:
        path = self.root / "meta" / "episodes.jsonl"
        if not path.is_file():
            raise DemoImportError(f"{self.root}: missing meta/episodes.jsonl (LeRobot v2.x lists its episodes there)")
        rows = read_jsonl(path)
        for n, r in enumerate(rows, 1):
            if "episode_index" not in r:
                raise DemoImportError(f"{path} line {n}: no episode_index (has {sorted(r)})")
        return sorted(rows, key=lambda r: int(r["episode_index"]))

    def _episode_path(self, name: str, ep: dict, video_key: str | None = None) -> Path:
        i = int(ep["episode_index"])
        chunk = i // int(self.info.get("chunks_size") or 1000)
        default = {"data_path": DATA_PATH_V21, "video_path": VIDEO_PATH_V21}[name]
        template = self.info.get(name) or default
        try:
            return self.root / template.format(episode_chunk=chunk, chunk_index=chunk, episode_index=i, video_key=video_key)
        except (KeyError, IndexError, ValueError) as e:
            raise DemoImportError(f"{self.root}: meta/info.json {name} {template!r} has a field this reader does not fill ({e}); "
                                  "it fills episode_chunk (= chunk_index), episode_index and video_key") from e

    def episode_files(self, ep: dict) -> list[Path]:
        return [self._episode_path("data_path", ep)] + [self._video_location(k, ep)[0] for k in self._video_keys()]

    def _video_location(self, key: str, ep: dict) -> tuple[Path, float]:
        return self._episode_path("video_path", ep, key), 0.0

    def _episode_table(self, e: int):
        import pyarrow.parquet as pq

        ep_index = int(self.episodes[e]["episode_index"])
        path = self._episode_path("data_path", self.episodes[e])
        if self._data is None or self._data[0] != path:  # one episode's table at a time
            names = pq.read_schema(path).names
            t = pq.read_table(path, columns=[c for c in self._wanted if c in names])
            if "episode_index" in names:
                other = set(t.column("episode_index").to_pylist()) - {ep_index}
                if other:
                    raise DemoImportError(f"{path}: rows of episode(s) {sorted(other)[:5]} in the file of episode {ep_index}")
            if "frame_index" in names:
                t = t.take(np.argsort(t.column("frame_index").to_numpy(), kind="stable"))
            self._data = (path, t)
        t = self._data[1]
        return t, np.arange(t.num_rows)
