"""Turn video/image datasets into token shards: parallel over worker processes, resumable.

Each work unit (one video file, one chunk of images, one batch of synthetic videos) becomes one
named shard. The name is a content key, never a position in a folder listing: a video's unit is
named by its path relative to the dataset folder and its size, a chunk of images by the paths and
sizes of its members, a synthetic batch by its number and size. Random crops come from a generator
seeded by (seed, unit name), so a killed job that resumes writes bit-identical shards and skips every
unit already listed (intact) in the index; adding or removing videos between runs tokenizes the new
ones and drops the shards of the removed ones (of this job's sources), as a fresh run would.
"""
from __future__ import annotations

import hashlib
import logging
import multiprocessing as mp
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from toto_robot.constants import NUM_SPECIAL_TOKENS
from toto_robot.data.clips import pack_images, sample_clip
from toto_robot.data.sequence import codes_to_sequence, seq_len
from toto_robot.data.shards import ShardWriter
from toto_robot.data.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, VideoDecodeError, list_media, read_image, read_video
from toto_robot.errors import DataFormatError, InputNotFoundError
from toto_robot.utils.config import ConfigError, check_choice, check_int

log = logging.getLogger(__name__)


@dataclass
class DatasetSpec:
    name: str  # shard source name (the mixture sampler's key)
    kind: str  # "video" | "image" | "synthetic" | "bundled_images"
    path: str = ""  # folder or file for video/image
    clips_per_video: int = 4
    count: int = 0  # synthetic: number of videos; images: max images (0 = all)


@dataclass
class ShardJobConfig:
    tokenizer_dir: str
    datasets: list[DatasetSpec]
    out_dir: str
    resolution: int = 64
    num_frames: int = 16
    stride: int = 4
    workers: int = 2
    seed: int = 0
    images_per_shard: int = 256

    def __post_init__(self):
        """Checked before any work; errors name the hydra key (shards.* / data.datasets.*) and the allowed range."""
        check_int(self.resolution, "shards.resolution", low=8)
        check_int(self.num_frames, "shards.num_frames", low=1)
        check_int(self.stride, "shards.stride", low=1)
        check_int(self.workers, "shards.workers", low=1)
        check_int(self.seed, "shards.seed", low=0)
        check_int(self.images_per_shard, "shards.images_per_shard", low=1)
        if not self.datasets:
            raise ConfigError("data.datasets is empty: name at least one dataset")
        names = [d.name for d in self.datasets]
        for i, d in enumerate(self.datasets):
            key = f"data.datasets.{i}"
            check_choice(d.kind, f"{key}.kind", ("video", "image", "synthetic", "bundled_images"))
            check_int(d.clips_per_video, f"{key}.clips_per_video", low=1)
            check_int(d.count, f"{key}.count", low=1 if d.kind == "synthetic" else 0)
            if not isinstance(d.name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", d.name) or names.count(d.name) > 1:
                raise ConfigError(f"{key}.name must be a unique name of letters, digits, '_', '.' or '-', got {d.name!r}")
            if d.kind in ("video", "image") and not d.path:
                raise ConfigError(f"{key}.path must name a folder or file for a {d.kind} dataset")


@dataclass
class _Unit:
    name: str
    source: str
    kind: str  # "video" | "image" (sequence start token)
    payload: dict = field(default_factory=dict)


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)])


def content_key(root: str | Path, files: list[Path], *extra) -> str:
    """12 hex digits that name a unit by what it reads: each file's path relative to the dataset root
    and its size (plus ``extra`` settings), independent of where the files sit in a listing."""
    root = Path(root)
    h = hashlib.sha256()
    for f in files:
        rel = f.name if root.is_file() else f.relative_to(root).as_posix()
        h.update(f"{rel}\0{f.stat().st_size}\0".encode())
    h.update(repr(extra).encode())
    return h.hexdigest()[:12]


def _slug(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem)[:40]


def plan_units(cfg: ShardJobConfig) -> list[_Unit]:
    units = []
    for ds in cfg.datasets:
        if ds.kind == "video":
            files = list_media(ds.path, VIDEO_SUFFIXES)
            if not files:
                raise InputNotFoundError(f"dataset {ds.name!r}: no videos under {ds.path}")
            units += [_Unit(f"{ds.name}-{_slug(f)}-{content_key(ds.path, [f], ds.clips_per_video)}", ds.name, "video",
                            {"file": str(f), "clips": ds.clips_per_video}) for f in files]
        elif ds.kind == "image":
            files = list_media(ds.path, IMAGE_SUFFIXES)[: ds.count or None]
            if not files:
                raise InputNotFoundError(f"dataset {ds.name!r}: no images under {ds.path}")
            for i in range(0, len(files), cfg.images_per_shard):
                chunk = files[i:i + cfg.images_per_shard]
                units.append(_Unit(f"{ds.name}-{content_key(ds.path, chunk)}", ds.name, "image", {"files": [str(f) for f in chunk]}))
        elif ds.kind == "bundled_images":
            count = ds.count or 64
            units.append(_Unit(f"{ds.name}-bundled-{count}", ds.name, "image", {"bundled": True, "count": count}))
        elif ds.kind == "synthetic":
            per = 16
            for i in range(0, ds.count, per):
                n = min(per, ds.count - i)
                units.append(_Unit(f"{ds.name}-{i // per:05d}-{n}x{ds.clips_per_video}", ds.name, "video", {"synthetic": n, "clips": ds.clips_per_video}))
        else:
            raise ConfigError(f"dataset {ds.name!r}: unknown kind {ds.kind!r} (video, image, synthetic, bundled_images)")
    return units


_TOKENIZER = None


def _init_worker(tokenizer_dir: str) -> None:
    global _TOKENIZER
    from toto_robot.tokenizers import load_tokenizer

    torch.set_num_threads(1)
    _TOKENIZER = load_tokenizer(tokenizer_dir)


def _clips_for(unit: _Unit, cfg: ShardJobConfig, rng: np.random.Generator) -> list[np.ndarray]:
    p, T, R = unit.payload, cfg.num_frames, cfg.resolution
    if "file" in p:
        video = read_video(p["file"])
        return [sample_clip(video, R, T, cfg.stride, rng) for _ in range(p["clips"])]
    if "synthetic" in p:
        from toto_robot.data.synthetic import moving_shapes

        clips = []
        for _ in range(p["synthetic"]):
            frames, _, _ = moving_shapes((T - 1) * cfg.stride + 1, R, int(rng.integers(1, 4)), rng)
            clips += [sample_clip(frames, R, T, cfg.stride, rng) for _ in range(p["clips"])]
        return clips
    if p.get("bundled"):
        from toto_robot.data.synthetic import bundled_images

        images = bundled_images()
        if not images:
            return []
        picks = [images[i] for i in rng.integers(0, len(images), p["count"] - p["count"] % T or T)]
    else:
        picks = []
        for f in p["files"]:
            try:
                picks.append(read_image(f))
            except VideoDecodeError as e:
                log.warning("skipping image: %s", e)
        picks = picks[: len(picks) - len(picks) % T]
    return [pack_images(picks[i:i + T], R, rng) for i in range(0, len(picks), T)]


def _work(args) -> tuple[str, np.ndarray | None, str, str, str]:
    unit, cfg = args
    try:
        clips = _clips_for(unit, cfg, _rng(cfg.seed, unit.name))
    except VideoDecodeError as e:
        return unit.name, None, unit.source, unit.kind, str(e)
    tok = _TOKENIZER
    if not tok.is_discrete:  # continuous patch tokens: store the clips, the trainer patchifies them
        R = cfg.resolution
        return unit.name, np.stack(clips) if clips else np.zeros((0, cfg.num_frames, R, R, 3), np.uint8), unit.source, unit.kind, ""
    seqs = [codes_to_sequence(tok.encode(torch.from_numpy(c)), unit.kind, tok.vocab_size) for c in clips]
    L = seq_len(cfg.num_frames, cfg.resolution // tok.downsample, cfg.resolution // tok.downsample)
    return unit.name, np.stack(seqs) if seqs else np.zeros((0, L), np.int64), unit.source, unit.kind, ""


def write_shards(cfg: ShardJobConfig) -> Path:
    from toto_robot.tokenizers import load_tokenizer

    tok = load_tokenizer(cfg.tokenizer_dir)
    if cfg.resolution % tok.downsample:
        raise ConfigError(f"resolution {cfg.resolution} is not divisible by the tokenizer's downsampling factor {tok.downsample}")
    hw = cfg.resolution // tok.downsample
    about = {"name": tok.kind, "hash": tok.hash(), "path": str(Path(cfg.tokenizer_dir).resolve()),
             "num_frames": cfg.num_frames, "tokens_per_frame": hw * hw, "resolution": cfg.resolution}
    if tok.is_discrete:
        writer = ShardWriter(cfg.out_dir, seq_len(cfg.num_frames, hw, hw), tok.vocab_size + NUM_SPECIAL_TOKENS, about)
    else:  # continuous patch tokens: clips of frames; one token per patch, the model supplies the start
        writer = ShardWriter(cfg.out_dir, cfg.num_frames * hw * hw, 0, about, frame_shape=[cfg.num_frames, cfg.resolution, cfg.resolution, 3])
    units = plan_units(cfg)
    planned, sources = {u.name for u in units}, {d.name for d in cfg.datasets}
    for name, source in writer.names():
        if source in sources and name not in planned:  # its file was removed or changed since the last run
            log.info("removing shard %s: no longer part of dataset %r", name, source)
            writer.remove(name)
    todo = [u for u in units if not writer.has(u.name)]
    bar = tqdm(total=len(todo), desc="tokenize", unit="shard")
    jobs = [(u, cfg) for u in todo]
    if cfg.workers > 1 and len(todo) > 1:
        ctx = mp.get_context("fork")
        with ctx.Pool(cfg.workers, initializer=_init_worker, initargs=(cfg.tokenizer_dir,)) as pool:
            for result in pool.imap_unordered(_work, jobs):
                _store(writer, result)
                bar.update()
    else:  # in this process: the worker's one-thread setting must not outlive the job
        threads = torch.get_num_threads()
        _init_worker(cfg.tokenizer_dir)
        try:
            for job in jobs:
                _store(writer, _work(job))
                bar.update()
        finally:
            torch.set_num_threads(threads)
    bar.close()
    return Path(cfg.out_dir)


def _store(writer: ShardWriter, result) -> None:
    name, seqs, source, kind, error = result
    if error:
        log.warning("skipping %s: %s", name, error)
        return
    writer.write(name, seqs, source, kind)


def training_frames(cfg: ShardJobConfig, max_frames: int = 4096) -> np.ndarray:
    """Frames for training a tokenizer, sampled from the same datasets and crops the shards use:
    uint8 [N, R, R, 3] with N <= max_frames (a corrupt video is logged and skipped)."""
    rng = np.random.default_rng(cfg.seed)
    frames: list[np.ndarray] = []
    units = plan_units(cfg)
    skipped = 0
    for i in rng.permutation(len(units)):
        unit = units[i]
        try:
            clips = _clips_for(unit, cfg, _rng(cfg.seed, unit.name))
        except VideoDecodeError as e:
            log.warning("skipping %s: %s", unit.name, e)
            skipped += 1
            continue
        for clip in clips:
            frames.extend(clip)
        if len(frames) >= 2 * max_frames:
            break
    if not frames:
        raise DataFormatError(f"no frames found in the configured datasets ({skipped} of {len(units)} inputs could not be decoded)")
    stack = np.stack(frames)
    return stack[rng.permutation(len(stack))[:max_frames]]
