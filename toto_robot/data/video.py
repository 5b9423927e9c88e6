"""Video files in and out with PyAV. Corrupt or truncated files raise ``VideoDecodeError`` (one
file) or are logged and skipped (``iter_videos``), so a long job never dies on one bad file."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from toto_robot.errors import UserError
from toto_robot.utils.io import crash_point, temp_path

log = logging.getLogger(__name__)
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class VideoDecodeError(UserError, RuntimeError):
    """A video file could not be decoded (missing, corrupt, truncated, or no video stream)."""


def read_video(path: str | Path, max_frames: int | None = None) -> np.ndarray:
    """All (or the first ``max_frames``) frames as uint8 [N, H, W, 3] RGB."""
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"video not found: {path}")
    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"{path}: no video stream")
            for frame in container.decode(video=0):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except VideoDecodeError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        if not frames:
            raise VideoDecodeError(f"{path}: cannot decode ({e})") from e
        log.warning("%s: truncated after %d frames (%s); keeping the decoded frames", path, len(frames), e)
    if not frames:
        raise VideoDecodeError(f"{path}: no decodable frames")
    return np.stack(frames)


def write_video(path: str | Path, frames: np.ndarray, fps: int = 10) -> Path:
    """Write uint8 [N, H, W, 3] frames as H.264 MP4, atomically (temp file, then rename)."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"video frames must be uint8 [N, H, W, 3], got {frames.dtype} {frames.shape}")
    path = Path(path)
    tmp = str(temp_path(path))  # hidden, normal permissions, keeps the suffix that picks the container
    try:
        H, W = frames.shape[1:3]
        with av.open(tmp, mode="w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height = W - W % 2, H - H % 2
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "18", "preset": "veryfast"}
            for img in frames:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[: stream.height, : stream.width]), format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        crash_point(f"write {path.name}")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    crash_point(f"wrote {path.name}")
    return path


def read_image(path: str | Path) -> np.ndarray:
    """An 8-bit image as uint8 [H, W, 3] RGB. Images of more than 8 bits per channel (16-bit PNGs such
    as depth maps, 32-bit integer or float images) raise ``VideoDecodeError``: squeezing them into RGB
    would clip every value above 255 to white."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode.startswith(("I", "F")):
                raise VideoDecodeError(f"{path}: {im.mode} image (more than 8 bits per channel, e.g. a depth map); "
                                       "convert it to 8-bit RGB first")
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise VideoDecodeError(f"{path}: cannot read image ({e})") from e


def list_media(root: str | Path, suffixes: tuple[str, ...]) -> list[Path]:
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes)


def iter_videos(paths, max_frames: int | None = None) -> Iterator[tuple[Path, np.ndarray]]:
    """Decode each file; a bad file is logged with its reason and skipped."""
    for p in paths:
        try:
            yield Path(p), read_video(p, max_frames)
        except VideoDecodeError as e:
            log.warning("skipping video: %s", e)
