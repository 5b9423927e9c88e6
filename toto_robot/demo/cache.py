"""Stage cache for multi-stage jobs: a finished stage is skipped when its config is unchanged.

Each stage runs in ``<root>/<name>-<hash of its config>/``; when its function returns, the result
(plain JSON) is written atomically to ``result.json`` in that folder, and that file is the only
"finished" marker. A stage killed half-way leaves no marker and simply runs again.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from toto_robot.utils.io import atomic_save_json, config_hash

log = logging.getLogger(__name__)
RESULT_NAME = "result.json"


@dataclass
class StageResult:
    name: str
    dir: Path
    result: dict
    cached: bool
    seconds: float


class StageCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def stage_dir(self, name: str, config: Any) -> Path:
        return self.root / f"{name}-{config_hash(config)}"

    def is_done(self, name: str, config: Any) -> bool:
        return (self.stage_dir(name, config) / RESULT_NAME).is_file()

    def run(self, name: str, config: Any, fn: Callable[[Path], dict]) -> StageResult:
        """Run ``fn(stage_dir) -> dict`` unless a finished run with the same config exists."""
        d = self.stage_dir(name, config)
        marker = d / RESULT_NAME
        if marker.is_file():
            saved = json.loads(marker.read_text())
            log.info("stage %s: cached in %s", name, d)
            return StageResult(name, d, saved["result"], cached=True, seconds=saved["seconds"])
        if d.exists():  # an unfinished earlier attempt: start clean unless the stage resumes itself
            log.info("stage %s: resuming unfinished attempt in %s", name, d)
        d.mkdir(parents=True, exist_ok=True)
        atomic_save_json(config, d / "config.json")
        t0 = time.perf_counter()
        result = fn(d)
        if not isinstance(result, dict):
            raise TypeError(f"stage {name!r} must return a dict of results, got {type(result).__name__}")
        seconds = time.perf_counter() - t0
        atomic_save_json({"result": result, "seconds": seconds}, marker)
        return StageResult(name, d, result, cached=False, seconds=seconds)

    def clear(self, name: str, config: Any) -> None:
        shutil.rmtree(self.stage_dir(name, config), ignore_errors=True)
