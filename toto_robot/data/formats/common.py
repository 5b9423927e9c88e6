"""What every importer shares: named errors, episodes in memory, content keys and the import ledger.

An import turns *units* (one rosbag2, one TFRecord shard, one LeRobot dataset) into episodes of the
project's demo format (``toto_robot.data.demos``). Nothing is lost and a rerun continues:

* every episode lands as one atomic ``.npz`` (``DemoWriter``);
* ``import_ledger.json`` in the output folder keys each unit by the sha256 of its bytes. Before an
  episode is written its file name is added to the unit's entry, and the entry is marked complete
  after the unit's last episode. A rerun skips complete units (a renamed or copied bag is still the
  same content) and deletes the episodes of an incomplete one (a crash mid-unit) before importing
  it again, so an interrupted import neither repeats nor drops an episode;
* a rerun with different import options into the same folder is refused (naming the options), since
  its episodes would not mean the same thing as the ones already there.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from tqdm.auto import tqdm

from toto_robot.constants import ACTION, OBS_STATE
from toto_robot.data.demos import EPISODE_DIR, DemoFormatError, DemoMeta, DemoWriter
from toto_robot.utils.io import atomic_save_json

log = logging.getLogger(__name__)

LEDGER_NAME = "import_ledger.json"
SUMMARY_NAME = "import_summary.json"


class DemoImportError(DemoFormatError):
    """A recording cannot become demonstrations; the message names the file, topic or key and what is wrong."""


@dataclass
class Episode:
    """One episode in memory, as importers produce and exporters consume it."""

    image: np.ndarray  # uint8 [T, H, W, 3]
    state: np.ndarray  # float32 [T, S]
    action: np.ndarray  # float32 [T, A]
    reward: np.ndarray | None = None  # float32 [T]
    success: bool = False
    wrist_image: np.ndarray | None = None
    seed: int | None = None
    language: str | None = None
    cameras: dict | None = None  # more views of the same steps: {"<name>_image": uint8 [T, H, W, 3]}

    def check(self, where: str) -> "Episode":
        """Raise ``DemoImportError`` naming the first array and row that is wrong."""
        T = len(self.image)
        if T == 0:
            raise DemoImportError(f"{where}: no frames")
        if self.image.dtype != np.uint8 or self.image.ndim != 4 or self.image.shape[-1] != 3:
            raise DemoImportError(f"{where}: camera frames must be uint8 [T, H, W, 3], got {self.image.dtype} {self.image.shape}")
        for name, x in ((OBS_STATE, self.state), (ACTION, self.action), ("reward", self.reward)):
            if x is None:
                continue
            if len(x) != T:
                raise DemoImportError(f"{where}: {len(x)} {name} rows for {T} camera frames")
            bad = ~np.isfinite(np.asarray(x, np.float64).reshape(T, -1)).all(axis=1)
            if bad.any():
                i = int(np.argmax(bad))
                raise DemoImportError(f"{where}: {name} has NaN/inf at step {i} of {T} ({int(bad.sum())} steps in all): {np.asarray(x)[i]}")
        if self.wrist_image is not None and self.wrist_image.shape[:1] != (T,):
            raise DemoImportError(f"{where}: {len(self.wrist_image)} wrist frames for {T} camera frames")
        for key, frames in (self.cameras or {}).items():
            if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) != T:
                raise DemoImportError(f"{where}: camera {key} must be uint8 [T={T}, H, W, 3], got {frames.dtype} {frames.shape}")
        return self

    def as_dict(self) -> dict:
        """The fields that are set, by name (the demo format's keys; arrays are not copied)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


def camera_field(key: str) -> str:
    """A source's camera name -> the demo folder's key for it: its last dotted or slashed part + ``_image``
    (``observation.images.cam_high`` -> ``cam_high_image``, ``steps/observation/image_2`` -> ``image_2_image``)."""
    return key.replace("/", ".").split(".")[-1] + "_image"


def extra_camera_fields(keys: list[str], wrist: bool, where: str) -> list[str]:
    """``camera_field`` of each extra camera key; ``DemoImportError`` when two would be stored under one name, or one under
    ``wrist_image`` beside a wrist camera."""
    fields = [camera_field(k) for k in keys]
    if len(set(fields)) != len(fields) or (wrist and "wrist_image" in fields):
        raise DemoImportError(f"{where}: cameras {keys} would be stored under clashing names {fields}")
    return fields


def content_key(files: Iterable[Path], root: Path) -> str:
    """sha256 over the relative names and bytes of ``files``: the same recording gives the same key
    wherever it is copied or however its folder is named (names inside ``root`` count, ``root``'s own does not)."""
    h = hashlib.sha256()
    for f in sorted(Path(p) for p in files):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def fit_images(frames: np.ndarray, size: int | None) -> np.ndarray:
    """uint8 [T, H, W, 3] -> [T, size, size, 3] (centre crop and resize, as the encoders see frames); as-is when ``size`` is falsy."""
    if not size or frames.shape[1:3] == (size, size):
        return frames
    import torch

    from toto_robot.encoders.base import resize_frames_u8

    return np.concatenate([resize_frames_u8(torch.from_numpy(np.ascontiguousarray(frames[i:i + 256])), size).numpy()
                           for i in range(0, len(frames), 256)])


class ImportLedger:
    """``import_ledger.json``: which units of which content an output folder already holds (see module doc)."""

    def __init__(self, out: Path, fmt: str, options: dict):
        import json

        self.out, self.path = Path(out), Path(out) / LEDGER_NAME
        self.data = {"format": fmt, "options": options, "units": {}}
        if self.path.exists():
            old = json.loads(self.path.read_text())
            if old.get("format") != fmt:
                raise DemoImportError(f"{self.out} holds a {old.get('format')} import; import {fmt} data into another folder")
            changed = sorted(k for k in set(old["options"]) | set(options) if old["options"].get(k) != options.get(k))
            if changed:
                diff = ", ".join(f"{k}: {old['options'].get(k)!r} -> {options.get(k)!r}" for k in changed)
                raise DemoImportError(f"{self.out} was imported with other options ({diff}); use a new output folder "
                                      "or the same options to continue that import")
            self.data = old
        self._recover()

    def _recover(self) -> None:
        """Delete the episodes of units an interrupted import left incomplete (they are imported again)."""
        for key, unit in list(self.data["units"].items()):
            if unit.get("complete") or unit.get("error"):
                continue
            for name in unit["episodes"]:
                (self.out / EPISODE_DIR / name).unlink(missing_ok=True)
            log.info("re-importing %s: an earlier import stopped inside it", unit["source"])
            del self.data["units"][key]
        self._save()

    def _save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_save_json(self.data, self.path)

    def done(self, key: str) -> bool:
        unit = self.data["units"].get(key)
        return bool(unit and unit.get("complete"))

    def begin(self, key: str, source: str) -> dict:
        unit = self.data["units"][key] = {"source": source, "episodes": [], "complete": False}
        self._save()
        return unit

    def will_write(self, unit: dict, name: str) -> None:
        unit["episodes"].append(name)
        self._save()

    def finish(self, unit: dict, **info) -> None:
        unit.update(complete=True, **info)
        self._save()

    def fail(self, key: str, source: str, error: str) -> None:
        self.data["units"][key] = {"source": source, "episodes": [], "complete": False, "error": error}
        self._save()


@dataclass
class Unit:
    """One thing to import: a content key, a name for messages, and a function yielding its episodes."""

    key: str
    source: str
    episodes: Callable[[], Iterator[Episode]]


def run_import(units: Iterable[Unit], out: str | Path, fmt: str, options: dict, make_meta: Callable[[Episode], DemoMeta],
               image_size: int | None = None, skip_bad: bool = False) -> dict:
    """Write every episode of every unit not yet imported into the demo folder ``out``; returns (and writes)
    ``import_summary.json``. With ``skip_bad`` a unit that fails validation is recorded in the ledger
    with its error and the import goes on; otherwise the error stops it (units before it stay imported)."""
    out = Path(out)
    ledger = ImportLedger(out, fmt, options)
    writer: DemoWriter | None = None
    new_eps, skipped, failed = 0, 0, []
    units = list(units)
    for unit in tqdm(units, desc=f"import {fmt}", unit="unit"):
        if ledger.done(unit.key):
            skipped += 1
            continue
        entry = None
        try:
            for ep in unit.episodes():
                ep.image = fit_images(ep.image, image_size)
                if ep.wrist_image is not None:
                    ep.wrist_image = fit_images(ep.wrist_image, image_size)
                ep.cameras = {k: fit_images(v, image_size) for k, v in (ep.cameras or {}).items()} or None
                ep.check(unit.source)
                if writer is None:
                    meta = make_meta(ep)
                    writer = DemoWriter(out, replace(meta, image_size=tuple(int(n) for n in ep.image.shape[1:3])))
                if entry is None:
                    entry = ledger.begin(unit.key, unit.source)
                ledger.will_write(entry, f"episode_{writer.next_index():06d}.npz")
                try:
                    writer.write_episode(**ep.as_dict())
                except DemoFormatError as e:
                    raise DemoImportError(f"{unit.source}: {e}") from e
                new_eps += 1
            if entry is None:
                entry = ledger.begin(unit.key, unit.source)
            ledger.finish(entry)
        except DemoImportError as e:
            if not skip_bad:
                raise
            if entry is not None:
                for name in entry["episodes"]:
                    (out / EPISODE_DIR / name).unlink(missing_ok=True)
                new_eps -= len(entry["episodes"])
            log.error("skipped %s: %s", unit.source, e)
            ledger.fail(unit.key, unit.source, str(e))
            failed.append({"source": unit.source, "error": str(e)})
    from toto_robot.data.demos import DemoDataset

    total = len(DemoDataset(out)) if (out / "meta.json").exists() else 0
    summary = {"format": fmt, "units": len(units), "units_skipped_already_imported": skipped, "new_episodes": new_eps,
               "episodes": total, "failed": failed}
    atomic_save_json(summary, out / SUMMARY_NAME)
    if total == 0 and not failed:
        raise DemoImportError(f"no episodes found in {len(units)} {fmt} input(s)")
    return summary
