"""Real video-segmentation clips in the DAVIS layout, read from a folder the user points at as it is
(nothing is downloaded, nothing needs converting)::

    <root>/JPEGImages/480p/<sequence>/00000.jpg ...
    <root>/Annotations/480p/<sequence>/00000.png ...    DAVIS 2017: palette PNGs, pixel value = object id 0..K (255 = void)
                                                        DAVIS 2016: grayscale PNGs, 0 = background, 255 = the one object
    <root>/ImageSets/2017/val.txt                       optional: one sequence name per line (DAVIS 2017)
    <root>/ImageSets/480p/val.txt                       optional: "/JPEGImages/480p/<seq>/00000.jpg /Annotations/..." (DAVIS 2016)

Both mask layouts are read as they are: a grayscale (or 1-bit) mask whose only values are 0 and 255 (or
0 and 1) is a DAVIS-2016 single-object mask, so 255 means the object; in a palette or multi-valued
mask 255 means void.

    videos = davis_videos("~/data/DAVIS", max_sequences=10, max_frames=16, stride=2, size=256)
    propagation_j(encoder, videos)                       # toto_robot.probes.label_propagation

Every frame of a chosen sequence needs its annotation (the DAVIS train/val sets have them; the
test sets annotate only frame 0 and cannot be scored). Frames and masks get the same geometry: with
``fit="squash"`` the whole frame is resized to ``size x size`` (nothing is cut off; J, an area ratio,
does not change under the stretch), with ``fit="crop"`` the centre square is cut out first. Frames are
resized with bicubic filtering and masks with nearest neighbour, so ids stay ids. Void pixels are
treated as background (id 0): they count as neither object in J.
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


def split_listing(root: Path, frames_dir: Path, split: str | None) -> Path | None:
    """The split file that lists the sequences: ``ImageSets/2017/<split>.txt`` (DAVIS 2017), else
    ``ImageSets/<res>/<split>.txt`` or ``ImageSets/2016/<split>.txt`` (DAVIS 2016); None when none exists."""
    if not split:
        return None
    for sub in ("2017", frames_dir.name, "2016"):
        listing = root / "ImageSets" / sub / f"{split}.txt"
        if listing.is_file():
            return listing
    return None


def listed_sequence(line: str) -> str:
    """A split file's line -> sequence name: ``blackswan``, or DAVIS 2016's ``/JPEGImages/480p/blackswan/00000.jpg /Annotations/...``."""
    first = line.split()[0]
    return first.strip("/").split("/")[-2] if "/" in first else first


def sequence_names(root: Path, frames_dir: Path, split: str | None) -> list[str]:
    """Sequences listed in the split file (``split_listing``) when one exists, else every folder in ``frames_dir``."""
    listing = split_listing(root, frames_dir, split)
    if listing is not None:
        names = list(dict.fromkeys(listed_sequence(line) for line in listing.read_text().splitlines() if line.strip()))
        missing = [n for n in names if not (frames_dir / n).is_dir()]
        if missing:
            raise DavisFormatError(f"{listing} lists sequences with no frames folder in {frames_dir}: {missing[:5]}")
        return names
    return sorted(p.name for p in frames_dir.iterdir() if p.is_dir())


FITS = ("squash", "crop")


def fit_image(im: Image.Image, size: int, fit: str, resample) -> Image.Image:
    """``squash``: the whole image resized to size x size; ``crop``: its centre square, resized."""
    if fit == "crop":
        return ImageOps.fit(im, (size, size), resample)
    return im.resize((size, size), resample)


def read_frame(path: Path, size: int, fit: str = "squash") -> np.ndarray:
    """An image file -> uint8 [size, size, 3] (``fit_image``, bicubic)."""
    try:
        with Image.open(path) as im:
            return np.asarray(fit_image(im.convert("RGB"), size, fit, Image.Resampling.BICUBIC))
    except (UnidentifiedImageError, OSError) as e:
        raise DavisFormatError(f"{path}: unreadable image ({e})") from e


def mask_ids(values: np.ndarray, mode: str) -> np.ndarray:
    """A mask's pixel values -> object ids (0 = background): a grayscale/1-bit mask holding only 0 and 255 (or 0
    and 1) is DAVIS 2016's single object (-> 0/1); otherwise values are ids and 255 is void (-> 0)."""
    ids = values.astype(np.int64)
    if mode in ("L", "1") and set(np.unique(ids).tolist()) <= {0, 1, 255}:
        return (ids > 0).astype(np.int64)
    ids[ids == VOID] = 0
    return ids


def read_mask(path: Path, size: int, fit: str = "squash") -> np.ndarray:
    """A DAVIS 2017 palette PNG of object ids or a DAVIS 2016 0/255 grayscale PNG -> int64 ids [size, size]
    (``fit_image``, nearest neighbour; ``mask_ids``)."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L", "1"):
                raise DavisFormatError(f"{path}: mask has mode {im.mode!r}; expected a palette ('P') PNG of object ids "
                                       f"(DAVIS 2017) or a grayscale 0/255 PNG (DAVIS 2016)")
            mode = im.mode
            values = np.asarray(fit_image(im, size, fit, Image.Resampling.NEAREST))  # (size, size)
    except (UnidentifiedImageError, OSError) as e:
        raise DavisFormatError(f"{path}: unreadable mask ({e})") from e
    return mask_ids(values, mode)


def read_sequence(frames_dir: Path, masks_dir: Path, max_frames: int | None = None, stride: int = 1,
                  size: int = 256, fit: str = "squash") -> tuple[np.ndarray, np.ndarray]:
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
    video = np.stack([read_frame(frames[i], size, fit) for i in picks])  # (T, size, size, 3)
    label = np.stack([read_mask(masks[i], size, fit) for i in picks])  # (T, size, size)
    if not label[0].any():
        raise DavisFormatError(f"sequence {name!r}: the first mask {masks[picks[0]]} holds no object (only background/void"
                               f"{', after the centre crop' if fit == 'crop' else ''}): nothing to propagate")
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
                 size: int = 256, fit: str = "squash") -> list[tuple[np.ndarray, np.ndarray]]:
    """A DAVIS-layout folder -> ``[(frames uint8 [T, size, size, 3], masks int64 [T, size, size]), ...]``, the
    input of ``propagation_j`` / ``propagation_sweep``, one per name of ``davis_sequences`` (same arguments).
    ``max_frames`` keeps the first frames of each after taking every ``stride``-th.
    """
    if stride < 1 or size < 1:
        raise ValueError(f"stride and size must be positive, got stride={stride} size={size}")
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    names = davis_sequences(root, res, split, sequences, max_sequences)
    root = Path(root).expanduser()
    frames_dir = resolution_dir(root, "JPEGImages", res)
    masks_dir = resolution_dir(root, "Annotations", res)
    videos = []
    for name in names:
        if not (frames_dir / name).is_dir():
            raise DavisFormatError(f"sequence {name!r}: no frames folder {frames_dir / name}")
        videos.append(read_sequence(frames_dir / name, masks_dir / name, max_frames, stride, size, fit))
    return videos
