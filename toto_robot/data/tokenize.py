"""Turn video/image datasets into token shards: parallel over worker processes, resumable.

Each work unit (one video file, one chunk of images, one batch of synthetic videos) becomes one
named shard. The name is a content key, never a position in a folder listing: a video's unit is
named by its path relative to the dataset folder and its size, a chunk of images by the paths and
sizes of its members, a synthetic batch by its number and size. Random crops come from a generator
seeded by (seed, unit name), so a killed job that resumes writes bit-identical shards and skips every
unit already listed (intact) in the index; adding or removing videos between runs tokenizes the new
ones and drops the shards of the removed ones (of this job's sources), as a fresh run would.

Under torchrun (WORLD_SIZE > 1) every rank takes part: rank 0 plans the units, opens the folder as the
coordinator (folding in what a killed job left, repairing) and deals the units not yet done out to the
ranks in the order of a hash of their names (unit i of that order goes to rank i % world_size), so the
split depends on what the units are, never on the listing order or on which job did what before:
a rerun with more or fewer ranks deals out only the remaining units. Each rank decodes in its
``workers`` processes, encodes on its own device (``device=cuda``: cuda:LOCAL_RANK) and commits its
shards to its own journal; after a barrier rank 0 folds the journals into the one ``index.json``
(see ``data.shards``). A unit's clips are encoded in chunks of ``encode_batch`` frames of that unit
alone, so its codes do not depend on which rank, or how many, encoded it.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import multiprocessing as mp
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from toto_robot.constants import NUM_SPECIAL_TOKENS
from toto_robot.data.clips import pack_images, sample_clip, sample_video_clips
from toto_robot.data.sequence import codes_to_sequence, seq_len
from toto_robot.data.shards import ShardWriter
from toto_robot.data.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, VideoDecodeError, list_media, read_image
from toto_robot.errors import DataFormatError, InputNotFoundError
from toto_robot.utils.config import ConfigError, check_choice, check_int

log = logging.getLogger(__name__)
AUTOCAST_DTYPES = {"none": None, "tf32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
COORDINATION_TIMEOUT = datetime.timedelta(days=7)


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
    device: str = "cpu"  # cpu: the workers decode and encode; cuda: the workers decode, this rank encodes on cuda:LOCAL_RANK
    autocast: str = "none"  # none (float32) | tf32 | bf16 | fp16 on CUDA (measure code agreement first: bench_tokenize.py)
    encode_batch: int = 64  # frames per encoder call (a unit's frames only, so the codes do not depend on the split)

    def __post_init__(self):
        """Checked before any work; errors name the hydra key (shards.* / data.datasets.*) and the allowed range."""
        check_int(self.resolution, "shards.resolution", low=8)
        check_int(self.num_frames, "shards.num_frames", low=1)
        check_int(self.stride, "shards.stride", low=1)
        check_int(self.workers, "shards.workers", low=1)
        check_int(self.seed, "shards.seed", low=0)
        check_int(self.images_per_shard, "shards.images_per_shard", low=1)
        check_int(self.encode_batch, "shards.encode_batch", low=1)
        check_choice(self.autocast, "shards.autocast", AUTOCAST_DTYPES)
        if not isinstance(self.device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"shards.device must be cpu, cuda or cuda:<index>, got {self.device!r}")
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


def _init_worker(tokenizer_dir: str | None) -> None:
    """A worker process: one thread; the tokenizer too when the workers encode (device=cpu)."""
    global _TOKENIZER
    from toto_robot.tokenizers import load_tokenizer

    torch.set_num_threads(1)
    _TOKENIZER = load_tokenizer(tokenizer_dir) if tokenizer_dir else None


def _clips_for(unit: _Unit, cfg: ShardJobConfig, rng: np.random.Generator) -> list[np.ndarray]:
    p, T, R = unit.payload, cfg.num_frames, cfg.resolution
    if "file" in p:  # long videos are decoded in one pass keeping only the frames their clips use
        return sample_video_clips(p["file"], p["clips"], R, T, cfg.stride, rng)
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


def _decode(args) -> tuple[_Unit, list[np.ndarray] | None, str]:
    """(unit, its clips or None, the decode error or '')."""
    unit, cfg = args
    try:
        return unit, _clips_for(unit, cfg, _rng(cfg.seed, unit.name)), ""
    except VideoDecodeError as e:
        return unit, None, str(e)


@contextlib.contextmanager
def autocast_context(device: torch.device | str, autocast: str):
    """Encode in the precision ``shards.autocast`` names: bf16/fp16 under ``torch.autocast``; none in float32,
    TF32 off on CUDA (cuDNN convolutions use it by default); tf32 with TF32 convolutions and matmuls."""
    device = torch.device(device)
    if (dtype := AUTOCAST_DTYPES[autocast]) is not None:
        with torch.autocast(device.type, dtype=dtype):
            yield
        return
    if device.type != "cuda":
        yield
        return
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = autocast == "tf32"
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def encode_clips(tok, clips: list[np.ndarray], batch: int, autocast: str = "none") -> torch.Tensor:
    """Clips uint8 [T, R, R, 3] -> codes [N, T, h, w], encoded in chunks of ``batch`` frames on the tokenizer's device."""
    frames = torch.from_numpy(np.concatenate(clips))  # (N*T, R, R, 3)
    if tok.device.type == "cuda":
        frames = frames.pin_memory()
    with autocast_context(tok.device, autocast):
        codes = torch.cat([tok.encode(frames[i:i + batch]) for i in range(0, len(frames), batch)])  # (N*T, h, w)
    return codes.view(len(clips), clips[0].shape[0], *codes.shape[1:])


def _encode(tok, decoded, cfg: ShardJobConfig) -> tuple[str, np.ndarray | None, str, str, str]:
    unit, clips, error = decoded
    if error:
        return unit.name, None, unit.source, unit.kind, error
    if not tok.is_discrete:  # continuous patch tokens: store the clips, the trainer patchifies them
        R = cfg.resolution
        return unit.name, np.stack(clips) if clips else np.zeros((0, cfg.num_frames, R, R, 3), np.uint8), unit.source, unit.kind, ""
    L = seq_len(cfg.num_frames, cfg.resolution // tok.downsample, cfg.resolution // tok.downsample)
    if not clips:
        return unit.name, np.zeros((0, L), np.int64), unit.source, unit.kind, ""
    codes = encode_clips(tok, clips, cfg.encode_batch, cfg.autocast)
    return unit.name, np.stack([codes_to_sequence(c, unit.kind, tok.vocab_size) for c in codes]), unit.source, unit.kind, ""


def _work(args) -> tuple[str, np.ndarray | None, str, str, str]:
    """Decode and encode one unit in a worker (device=cpu)."""
    return _encode(_TOKENIZER, _decode(args), args[1])


def _unit_order(unit: _Unit) -> str:
    return hashlib.sha256(unit.name.encode()).hexdigest()


def deal_units(units: list[_Unit], world_size: int) -> list[list[_Unit]]:
    """Each rank's share: the units in the order of a hash of their names, unit i to rank i % world_size.
    The shares differ by at most one unit and follow from the units' names alone."""
    ordered = sorted(units, key=_unit_order)
    return [ordered[r::world_size] for r in range(world_size)]


def coordination_group(info, folder: Path):
    """Under torchrun: the gloo group the ranks coordinate over (CPU objects, with a long timeout: a rank done early
    waits at a barrier for the slowest, for longer than NCCL's default 10 minutes), once every rank is known to name
    the same ``folder`` (``ConfigError`` otherwise)."""
    group = dist.new_group(backend="gloo", timeout=COORDINATION_TIMEOUT)
    folders: list = [None] * info.world_size
    dist.all_gather_object(folders, str(folder.resolve()), group=group)
    if len(set(folders)) > 1:  # every rank must write into one folder
        raise ConfigError(f"the ranks write to different folders ({', '.join(sorted(set(folders)))}): pass out_dir=<a folder every "
                          "node sees> explicitly (hydra's default run folder is named by each rank's start time)")
    return group


def write_shards(cfg: ShardJobConfig) -> Path:
    """Tokenize ``cfg.datasets`` into ``cfg.out_dir``: in this process (and its workers), or under torchrun
    on every rank (WORLD_SIZE > 1; gloo on CPU, nccl on CUDA), each writing its share of the units."""
    from toto_robot.pretrain.distributed import init_distributed
    from toto_robot.tokenizers import load_tokenizer

    info = init_distributed(cfg.device)
    group = coordination_group(info, Path(cfg.out_dir)) if info.world_size > 1 else None
    tok = load_tokenizer(cfg.tokenizer_dir)
    if cfg.resolution % tok.downsample:
        raise ConfigError(f"resolution {cfg.resolution} is not divisible by the tokenizer's downsampling factor {tok.downsample}")
    hw = cfg.resolution // tok.downsample
    about = {"name": tok.kind, "hash": tok.hash(), "path": str(Path(cfg.tokenizer_dir).resolve()),
             "num_frames": cfg.num_frames, "tokens_per_frame": hw * hw, "resolution": cfg.resolution}
    if tok.is_discrete:
        layout = dict(seq_len=seq_len(cfg.num_frames, hw, hw), vocab_size=tok.vocab_size + NUM_SPECIAL_TOKENS, tokenizer=about)
    else:  # continuous patch tokens: clips of frames; one token per patch, the model supplies the start
        layout = dict(seq_len=cfg.num_frames * hw * hw, vocab_size=0, tokenizer=about, frame_shape=[cfg.num_frames, cfg.resolution, cfg.resolution, 3])
    coordinator, shares = None, None
    if info.is_main:  # the whole job's plan; in a single process also its only writer
        coordinator = ShardWriter(cfg.out_dir, **layout)
        units = plan_units(cfg)
        planned, sources = {u.name for u in units}, {d.name for d in cfg.datasets}
        for name, source in coordinator.names():
            if source in sources and name not in planned:  # its file was removed or changed since the last run
                log.info("removing shard %s: no longer part of dataset %r", name, source)
                coordinator.remove(name)
        listed = {name for name, _ in coordinator.names()}
        todo = [u for u in units if u.name not in listed]
        shares = deal_units(todo, info.world_size) if info.world_size > 1 else [todo]
    if info.world_size == 1:
        _tokenize_units(shares[0], coordinator, tok, cfg, info)
        return Path(cfg.out_dir)
    mine: list = [None]
    dist.scatter_object_list(mine, shares, src=0, group=group)  # rank 0 made index.json before any rank opens it
    _tokenize_units(mine[0], ShardWriter(cfg.out_dir, **layout, rank=info.rank), tok, cfg, info)
    dist.barrier(group=group)
    if coordinator is not None:
        n = coordinator.merge_parts()
        log.info("merged %d shards written by %d ranks into %s", n, info.world_size, Path(cfg.out_dir) / "index.json")
    dist.barrier(group=group)  # every rank returns once the index lists the whole job
    return Path(cfg.out_dir)


def _tokenize_units(todo: list[_Unit], writer: ShardWriter, tok, cfg: ShardJobConfig, info) -> None:
    """Write one shard per unit: device=cpu decodes and encodes in the workers; otherwise the workers
    decode and this process encodes on its device."""
    device = f"cuda:{info.local_rank}" if cfg.device == "cuda" else cfg.device
    encode_here = device != "cpu"
    if encode_here:
        tok = tok.to(device)
    who = f" (rank {info.rank} of {info.world_size})" if info.world_size > 1 else ""
    bar = tqdm(total=len(todo), desc=f"tokenize{who}", unit="shard", disable=info.rank != 0)
    jobs = [(u, cfg) for u in todo]
    fn = _decode if encode_here else _work
    t0 = time.perf_counter()
    if cfg.workers > 1 and len(todo) > 1:
        ctx = mp.get_context("fork")  # the workers never touch CUDA (device=cuda: they only decode)
        with ctx.Pool(cfg.workers, initializer=_init_worker, initargs=(None if encode_here else cfg.tokenizer_dir,)) as pool:
            for result in pool.imap_unordered(fn, jobs):
                _store(writer, _encode(tok, result, cfg) if encode_here else result)
                bar.update()
    else:  # in this process: the worker's one-thread setting must not outlive the job
        threads = torch.get_num_threads()
        _init_worker(None if encode_here else cfg.tokenizer_dir)
        try:
            for job in jobs:
                _store(writer, _encode(tok, _decode(job), cfg) if encode_here else _work(job))
                bar.update()
        finally:
            torch.set_num_threads(threads)
    bar.close()
    log.info("tokenized %d units%s in %.2f s", len(todo), who, time.perf_counter() - t0)


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
