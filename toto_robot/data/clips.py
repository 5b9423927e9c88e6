"""Clip sampling as in the paper (Sec. 4.1): shortest side resized to R, random R x R crop,
T = 16 frames at stride 4; images are packed 16 to a "clip"."""
from __future__ import annotations

import numpy as np
from PIL import Image


def resize_shortest(frame: np.ndarray, size: int) -> np.ndarray:
    H, W = frame.shape[:2]
    if min(H, W) == size:
        return frame
    s = size / min(H, W)
    new = (max(size, round(W * s)), max(size, round(H * s)))
    return np.asarray(Image.fromarray(frame).resize(new, Image.BICUBIC))


def crop(frames: np.ndarray, size: int, top: int, left: int) -> np.ndarray:
    return frames[..., top:top + size, left:left + size, :]


def random_crop_box(H: int, W: int, size: int, rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.integers(0, H - size + 1)), int(rng.integers(0, W - size + 1))


def sample_clip(video: np.ndarray, size: int, num_frames: int = 16, stride: int = 4,
                rng: np.random.Generator | None = None) -> np.ndarray:
    """uint8 [N, H, W, 3] -> [num_frames, size, size, 3]; short videos are looped to fill the clip."""
    rng = rng or np.random.default_rng()
    if video.ndim != 4 or video.shape[-1] != 3 or len(video) == 0:
        raise ValueError(f"video must be uint8 [N, H, W, 3] with N > 0, got {video.shape}")
    span = (num_frames - 1) * stride + 1
    start = int(rng.integers(0, max(1, len(video) - span + 1)))
    idx = (start + np.arange(num_frames) * stride) % len(video)
    frames = np.stack([resize_shortest(video[i], size) for i in idx])
    top, left = random_crop_box(frames.shape[1], frames.shape[2], size, rng)
    return np.ascontiguousarray(crop(frames, size, top, left))


def pack_images(images: list[np.ndarray], size: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """A list of images (any sizes) -> [len(images), size, size, 3], each resized and randomly cropped."""
    rng = rng or np.random.default_rng()
    out = []
    for img in images:
        img = resize_shortest(img, size)
        top, left = random_crop_box(img.shape[0], img.shape[1], size, rng)
        out.append(crop(img, size, top, left))
    return np.stack(out)


def sample_video_clips(path, n_clips: int, size: int, num_frames: int = 16, stride: int = 4,
                       rng: np.random.Generator | None = None, max_bytes: int = 512 << 20) -> list[np.ndarray]:
    """``n_clips`` clips of a video file, the ones ``sample_clip(read_video(path), ...)`` called ``n_clips``
    times draws, without holding the whole video: a video whose decoded frames would take more than
    ``max_bytes`` (per its stream's frame count; HowTo100M and Ego4D videos run for minutes to hours) is
    decoded in one pass that keeps only the frames the clips use, resized. A stream holding fewer frames
    than its header says is planned again with the count decoded, from the same generator state."""
    import av

    from toto_robot.data.video import VideoDecodeError, read_video

    rng = rng or np.random.default_rng()
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0] if container.streams.video else None
            n, H, W = (stream.frames, stream.height, stream.width) if stream is not None else (0, 0, 0)
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise VideoDecodeError(f"{path}: cannot decode ({e})") from e
    if not n or n * H * W * 3 <= max_bytes:
        video = read_video(path)
        return [sample_clip(video, size, num_frames, stride, rng) for _ in range(n_clips)]
    h, w = resize_shortest(np.zeros((H, W, 3), np.uint8), size).shape[:2]
    span, state = (num_frames - 1) * stride + 1, rng.bit_generator.state
    while True:
        plan = []  # (frame indices, crop box) per clip, drawn in sample_clip's order
        for _ in range(n_clips):
            start = int(rng.integers(0, max(1, n - span + 1)))
            plan.append(((start + np.arange(num_frames) * stride) % n, random_crop_box(h, w, size, rng)))
        need, kept, decoded = {int(i) for idx, _ in plan for i in idx}, {}, 0
        try:
            with av.open(str(path)) as container:
                for frame in container.decode(video=0):
                    if decoded in need:
                        kept[decoded] = resize_shortest(frame.to_ndarray(format="rgb24"), size)
                    decoded += 1
                    if decoded > max(need):
                        break
        except (av.error.FFmpegError, OSError, ValueError) as e:
            if not decoded:
                raise VideoDecodeError(f"{path}: cannot decode ({e})") from e
        if len(kept) == len(need):
            return [np.ascontiguousarray(crop(np.stack([kept[int(i)] for i in idx]), size, top, left)) for idx, (top, left) in plan]
        if not decoded:
            raise VideoDecodeError(f"{path}: no decodable frames")
        n = decoded  # the header promised more frames than the stream holds
        rng.bit_generator.state = state
