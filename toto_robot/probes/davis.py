"""Real video-segmentation clips in the DAVIS 2017 layout, read from a folder the user points at
(nothing is downloaded)::

    <root>/JPEGImages/480p/<sequence>/00000.jpg ...
    <root>/Annotations/480p/<sequence>/00000.png ...    palette PNGs: pixel value = object id 0..K
    <root>/ImageSets/2017/val.txt                       optional: one sequence name per line

    videos = davis_videos("~/data/DAVIS", max_sequences=10, max_frames=16, stride=2, size=256)
    propagation_j(encoder, videos)                       # toto_robot.probes.label_propagation

Every frame of a chosen sequence needs its annotation (the DAVIS train/val sets have them; the
test sets annotate only frame 0 and cannot be scored). Frames and masks get the same centre square
crop, then frames are resized with bicubic filtering and masks with nearest neighbour, so ids stay
ids. Void pixels (value 255) are treated as background (id 0): they count as neither object in J.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from toto_robot.errors import UserError

VOID = 255
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


class DavisFormatError(UserError, ValueError):
    """A folder does not follow the DAVIS layout above, or one of its files cannot be used."""


def resolution_dir(root: Path, kind: str, res: str) -> Path:
    """``root/<kind>/<res>``; when ``res`` is absent but exactly one resolution folder exists, that one."""
    base = root / kind
    if not base.is_dir():
        raise DavisFormatError(f"{root}: no {kind}/ folder (expected the DAVIS layout {kind}/{res}/<sequence>/...)")
    if (base / res).is_dir():
        return base / res
    found = sorted(p.name for p in base.iterdir() if p.is_dir())
    if len(found) == 1:
        return base / found[0]
    raise DavisFormatError(f"{base}: no {res}/ folder; resolution folders found: {found or 'none'} (pass res=<one of them>)")


def sequence_names(root: Path, frames_dir: Path, split: str | None) -> list[str]:
    """Sequences listed in ``ImageSets/2017/<split>.txt`` when that file exists, else every folder in ``frames_dir``."""
    listing = root / "ImageSets" / "2017" / f"{split}.txt" if split else None
    if listing is not None and listing.is_file():
        names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        missing = [n for n in names if not (frames_dir / n).is_dir()]
        if missing:
            raise DavisFormatError(f"{listing} lists sequences with no frames folder in {frames_dir}: {missing[:5]}")
        return names
    return sorted(p.name for p in frames_dir.iterdir() if p.is_dir())


def read_frame(path: Path, size: int) -> np.ndarray:
    """An image file -> uint8 [size, size, 3]: centre square crop, bicubic resize."""
    try:
        with Image.open(path) as im:
            return np.asarray(ImageOps.fit(im.convert("RGB"), (size, size), Image.Resampling.BICUBIC))
    except (UnidentifiedImageError, OSError) as e:
        raise DavisFormatError(f"{path}: unreadable image ({e})") from e


def read_mask(path: Path, size: int) -> np.ndarray:
    """A palette (or grayscale) PNG of object ids -> int64 [size, size]: centre square crop, nearest resize, void -> 0."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise DavisFormatError(f"{path}: mask has mode {im.mode!r}; expected a palette ('P') PNG whose values are object ids")
            mask = np.asarray(ImageOps.fit(im, (size, size), Image.Resampling.NEAREST)).astype(np.int64)  # (size, size)
    except (UnidentifiedImageError, OSError) as e:
        raise DavisFormatError(f"{path}: unreadable mask ({e})") from e
    mask[mask == VOID] = 0
    return mask


def read_sequence(frames_dir: Path, masks_dir: Path, max_frames: int | None = None, stride: int = 1,
                  size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One sequence -> (frames uint8 [T, size, size, 3], masks int64 [T, size, size]), every ``stride``-th frame."""
    name = frames_dir.name
    if not masks_dir.is_dir():
        raise DavisFormatError(f"sequence {name!r}: no annotations folder {masks_dir}")
    frames = sorted(p for p in frames_dir.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    masks = sorted(p for p in masks_dir.iterdir() if p.suffix.lower() == ".png")
    if not masks:
        raise DavisFormatError(f"sequence {name!r}: no annotation PNGs in {masks_dir}")
    if len(frames) != len(masks) or [p.stem for p in frames] != [p.stem for p in masks]:
        unmatched = sorted({p.stem for p in frames} ^ {p.stem for p in masks})
        raise DavisFormatError(f"sequence {name!r}: {len(frames)} frames but {len(masks)} annotations; "
                               f"frames and masks must pair one to one by name (unpaired: {unmatched[:5]})")
    picks = list(range(0, len(frames), stride))[:max_frames]
    if len(picks) < 2:
        raise DavisFormatError(f"sequence {name!r}: {len(picks)} frame(s) after stride {stride}; label propagation needs at least 2")
    video = np.stack([read_frame(frames[i], size) for i in picks])  # (T, size, size, 3)
    label = np.stack([read_mask(masks[i], size) for i in picks])  # (T, size, size)
    if not label[0].any():
        raise DavisFormatError(f"sequence {name!r}: the first mask {masks[picks[0]]} holds no object id (only background/void); "
                               f"binary 0/255 masks (DAVIS 2016) must be converted to ids 0/1")
    return video, label


def davis_sequences(root: str | Path, res: str = "480p", split: str | None = "val", sequences: list[str] | None = None,
                    max_sequences: int | None = None) -> list[str]:
    """The sequence names ``davis_videos`` reads, in its order: ``sequences`` when given; otherwise
    ``ImageSets/2017/<split>.txt`` when it exists, else every sequence folder (sorted); the first ``max_sequences``."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DavisFormatError(f"DAVIS root not found: {root}")
    frames_dir = resolution_dir(root, "JPEGImages", res)
    names = (list(sequences) if sequences is not None else sequence_names(root, frames_dir, split))[:max_sequences]
    if not names:
        raise DavisFormatError(f"{frames_dir}: no sequence folders")
    return names


def davis_videos(root: str | Path, res: str = "480p", split: str | None = "val", sequences: list[str] | None = None,
                 max_sequences: int | None = None, max_frames: int | None = None, stride: int = 1,
                 size: int = 256) -> list[tuple[np.ndarray, np.ndarray]]:
    """A DAVIS-layout folder -> ``[(frames uint8 [T, size, size, 3], masks int64 [T, size, size]), ...]``, the
    input of ``propagation_j`` / ``propagation_sweep``, one per name of ``davis_sequences`` (same arguments).
    ``max_frames`` keeps the first frames of each after taking every ``stride``-th.
    """
    if stride < 1 or size < 1:
        raise ValueError(f"stride and size must be positive, got stride={stride} size={size}")
    names = davis_sequences(root, res, split, sequences, max_sequences)
    root = Path(root).expanduser()
    frames_dir = resolution_dir(root, "JPEGImages", res)
    masks_dir = resolution_dir(root, "Annotations", res)
    videos = []
    for name in names:
        if not (frames_dir / name).is_dir():
            raise DavisFormatError(f"sequence {name!r}: no frames folder {frames_dir / name}")
        videos.append(read_sequence(frames_dir / name, masks_dir / name, max_frames, stride, size))
    return videos
