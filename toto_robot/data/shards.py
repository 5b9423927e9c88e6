"""Pre-tokenized token shards on disk: memory-mapped fixed-length sequences plus a JSON index.

Layout of a shard folder::

    index.json            # ShardIndex: layout, seq_len, dtype, vocab_size, tokenizer hash, list of shards
    <name>.bin            # layout "ids": raw little-endian uint16 (or uint32) array [num_sequences, seq_len]
                          # layout "frames": uint8 clips [num_sequences, T, R, R, 3] for continuous patch
                          # tokens (the trainer patchifies them; seq_len = T * tokens per frame)

A shard and its index entry are one unit: the ``.bin`` is written atomically and only then added
to ``index.json`` (also atomic), which is the commit. Opening a folder for writing repairs it first:
hidden temporary files, ``.bin`` files the index does not list (a kill between the two writes) and
listed shards that are missing or have the wrong size (truncated, damaged) are deleted and dropped
from the index, so the tokenize job writes them again. A resumed job skips every shard that is
listed and intact (``ShardWriter.has``); shards are named by content keys (see ``data.tokenize``). Token ids in a sequence are model ids: tokenizer codes offset by
``NUM_SPECIAL_TOKENS`` with start/end markers (see ``toto_robot.constants``).

Several writers (torchrun ranks) share one folder without sharing a file: each rank commits its
shards by appending one JSON line per shard to its own journal, ``index.rank<r>.jsonl`` (after the
``.bin`` landed; a line torn by a kill is ignored). Only the coordinator, rank 0 or a single process
(``ShardWriter(rank=None)``), writes ``index.json``: it folds every journal into it when it opens the
folder (the leftovers of a killed job, whatever its world size) and again when the ranks are done
(``merge_parts``), each time atomically and before deleting the journals, so a kill at any moment
loses at most the shards whose lines were not yet appended; they are written again. Every shard
entry names the ``rank`` that wrote it (0 for a single process).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from toto_robot.errors import UserError
from toto_robot.utils.io import atomic_save_json, atomic_write, crash_point, remove_partial

log = logging.getLogger(__name__)
INDEX_NAME = "index.json"
PART_GLOB = "index.rank*.jsonl"  # one journal per writing rank, folded into index.json by the coordinator
FORMAT_VERSION = 1


def part_path(root: str | Path, rank: int) -> Path:
    """The journal in which ``rank`` lists the shards it committed."""
    return Path(root) / f"index.rank{rank:05d}.jsonl"


class ShardError(UserError, ValueError):
    """A shard folder is missing, corrupt, or does not match the tokenizer/model reading it."""


@dataclass
class ShardInfo:
    file: str
    num_sequences: int
    source: str  # dataset name used by the mixture sampler, e.g. "sim_video" or "images"
    kind: str  # "video" or "image"
    rank: int = 0  # the torchrun rank that wrote it (0 for a single process)


@dataclass
class ShardIndex:
    seq_len: int
    vocab_size: int  # model vocabulary: tokenizer codes + NUM_SPECIAL_TOKENS
    tokenizer: dict  # {"name": ..., "hash": ...}: which tokenizer made the ids
    dtype: str = "uint16"
    shards: list[ShardInfo] = field(default_factory=list)
    format_version: int = FORMAT_VERSION
    layout: str = "ids"  # ids | frames
    frame_shape: list[int] = field(default_factory=list)  # layout frames: [T, R, R, 3]

    @property
    def item_shape(self) -> tuple[int, ...]:
        """Shape of one stored sequence."""
        return tuple(self.frame_shape) if self.layout == "frames" else (self.seq_len,)

    @classmethod
    def load(cls, root: Path) -> "ShardIndex":
        path = Path(root) / INDEX_NAME
        if not path.is_file():
            raise ShardError(f"{root} is not a token shard folder: no {INDEX_NAME}")
        try:
            d = json.loads(path.read_text())
            d["shards"] = [ShardInfo(**s) for s in d.get("shards", [])]
            index = cls(**d)
        except (json.JSONDecodeError, TypeError, KeyError) as e:
            raise ShardError(f"{path}: unreadable shard index ({e})") from e
        if index.format_version != FORMAT_VERSION:
            raise ShardError(f"{path}: format_version {index.format_version} != {FORMAT_VERSION}")
        return index

    def save(self, root: Path) -> None:
        atomic_save_json(asdict(self), Path(root) / INDEX_NAME)

    def problem(self, root: Path, s: ShardInfo) -> str:
        """Why the listed shard ``s`` cannot be read ('' when its file exists with the expected size)."""
        path = Path(root) / s.file
        if not path.is_file():
            return f"shard listed in index is missing: {path}"
        itemsize = np.dtype(self.dtype).itemsize
        shape = self.item_shape
        if path.stat().st_size != s.num_sequences * int(np.prod(shape)) * itemsize:
            return f"corrupt shard {path}: {path.stat().st_size} bytes, expected {s.num_sequences}x{'x'.join(map(str, shape))}x{itemsize}"
        return ""


def dtype_for_vocab(vocab_size: int) -> str:
    return "uint16" if vocab_size <= np.iinfo(np.uint16).max + 1 else "uint32"


class ShardWriter:
    """Write named shards into a folder; resumable (``has(name)``) and consistent after a crash.

    ``rank=None``: the coordinator (a single process, or rank 0 before and after the ranks write): it
    creates or opens ``index.json``, folds leftover rank journals into it and repairs the folder.
    ``rank=r``: one of several writers; ``index.json`` must exist (the coordinator made it), and each
    ``write`` is committed to this rank's journal instead of ``index.json``."""

    def __init__(self, root: str | Path, seq_len: int, vocab_size: int, tokenizer: dict, frame_shape: list[int] | None = None,
                 rank: int | None = None):
        self.root = Path(root)
        self.rank = rank
        layout = "frames" if frame_shape else "ids"
        if rank is not None:
            if not (self.root / INDEX_NAME).is_file():
                raise ShardError(f"rank {rank}: {self.root} has no {INDEX_NAME}; rank 0 creates it before the others write "
                                 "(on several nodes the output folder must be on a filesystem every node shares)")
            self.index = ShardIndex.load(self.root)
            self._check_matches(seq_len, vocab_size, layout, frame_shape, tokenizer)
            self.journal = part_path(self.root, rank)
            if self.journal.is_file() and not self.journal.read_bytes().endswith(b"\n") and self.journal.stat().st_size:
                with open(self.journal, "ab") as f:  # a line torn by a kill stays a line of its own (ignored)
                    f.write(b"\n")
            return
        self.root.mkdir(parents=True, exist_ok=True)
        if (self.root / INDEX_NAME).exists():
            self.index = ShardIndex.load(self.root)
            self._check_matches(seq_len, vocab_size, layout, frame_shape, tokenizer)
        else:
            self.index = ShardIndex(seq_len=seq_len, vocab_size=vocab_size, tokenizer=tokenizer,
                                    dtype="uint8" if frame_shape else dtype_for_vocab(vocab_size), layout=layout,
                                    frame_shape=list(frame_shape or []))
            self.index.save(self.root)
        self.merge_parts()
        self._repair()

    def _check_matches(self, seq_len: int, vocab_size: int, layout: str, frame_shape: list[int] | None, tokenizer: dict) -> None:
        for key, want in (("seq_len", seq_len), ("vocab_size", vocab_size), ("layout", layout), ("frame_shape", list(frame_shape or []))):
            if getattr(self.index, key) != want:
                raise ShardError(f"{self.root}: existing shards have {key}={getattr(self.index, key)}, this job writes {key}={want}")
        if self.index.tokenizer.get("hash") != tokenizer.get("hash"):
            raise ShardError(
                f"{self.root}: existing shards were made by tokenizer {self.index.tokenizer}, this job uses {tokenizer}; "
                "write to a new folder"
            )

    def merge_parts(self) -> int:
        """Coordinator: fold every rank's journal into ``index.json`` (atomically), then delete the journals.
        Returns the number of shard entries folded in. Idempotent: a kill between the two steps leaves
        journals whose entries are already listed, and folding them again changes nothing."""
        if self.rank is not None:
            raise ShardError(f"rank {self.rank} cannot merge the journals: only the coordinator (rank=None) writes {INDEX_NAME}")
        parts = sorted(self.root.glob(PART_GLOB))
        if not parts:
            return 0
        listed = {s.file: s for s in self.index.shards}
        n = 0
        for part in parts:
            for line in part.read_text().split("\n")[:-1]:  # the piece after the last newline is empty or torn
                try:
                    s = ShardInfo(**json.loads(line))
                except (json.JSONDecodeError, TypeError) as e:
                    log.warning("%s: ignoring an unreadable line (%s); that shard will be written again", part.name, e)
                    continue
                listed[s.file] = s
                n += 1
        self.index.shards = sorted(listed.values(), key=lambda s: s.file)
        self.index.save(self.root)
        crash_point("merged rank journals")
        for part in parts:
            part.unlink()
        return n

    def _repair(self) -> None:
        """Delete what interrupted or damaged writes left, so those shards are written again."""
        remove_partial(self.root)
        keep = []
        for s in self.index.shards:
            if problem := self.index.problem(self.root, s):
                log.warning("%s; it will be written again", problem)
                (self.root / s.file).unlink(missing_ok=True)
            else:
                keep.append(s)
        if len(keep) != len(self.index.shards):
            self.index.shards = keep
            self.index.save(self.root)
        listed = {s.file for s in keep}
        for p in self.root.glob("*.bin"):
            if p.name not in listed:  # written, but killed before the index listed it
                p.unlink()

    def has(self, name: str) -> bool:
        return any(s.file == f"{name}.bin" for s in self.index.shards)

    def names(self) -> list[tuple[str, str]]:
        """(name, source) of every listed shard."""
        return [(s.file[: -len(".bin")], s.source) for s in self.index.shards]

    def remove(self, name: str) -> None:
        """Drop a shard from the index (the commit), then delete its file."""
        self.index.shards = [s for s in self.index.shards if s.file != f"{name}.bin"]
        self.index.save(self.root)
        (self.root / f"{name}.bin").unlink(missing_ok=True)

    def write(self, name: str, sequences: np.ndarray, source: str, kind: str) -> None:
        seqs = np.asarray(sequences)
        shape = self.index.item_shape
        if seqs.shape[1:] != shape:
            raise ShardError(f"shard {name}: sequences must be [N, {', '.join(map(str, shape))}], got {seqs.shape}")
        if self.index.layout == "frames":
            if seqs.dtype != np.uint8:
                raise ShardError(f"shard {name}: frame clips must be uint8, got {seqs.dtype}")
        elif seqs.size and (seqs.min() < 0 or seqs.max() >= self.index.vocab_size):
            raise ShardError(f"shard {name}: token ids outside [0, {self.index.vocab_size}) (min {seqs.min()}, max {seqs.max()})")
        with atomic_write(self.root / f"{name}.bin") as f:
            f.write(np.ascontiguousarray(seqs.astype(self.index.dtype)).tobytes())
        info = ShardInfo(file=f"{name}.bin", num_sequences=int(seqs.shape[0]), source=source, kind=kind, rank=self.rank or 0)
        if self.rank is not None:  # one appended line is this rank's commit; the coordinator folds it into index.json
            crash_point(f"commit {self.journal.name}")
            with open(self.journal, "a") as f:
                f.write(json.dumps(asdict(info)) + "\n")
                f.flush()
                os.fsync(f.fileno())
            self.index.shards = [s for s in self.index.shards if s.file != info.file] + [info]
            return
        self.index.shards = [s for s in self.index.shards if s.file != f"{name}.bin"]
        self.index.shards.append(info)
        self.index.shards.sort(key=lambda s: s.file)  # the index does not depend on which worker finished first
        self.index.save(self.root)


class ShardDataset(torch.utils.data.Dataset):
    """All sequences of a shard folder, memory-mapped. ``ds[i]`` -> LongTensor [seq_len] (layout ids)
    or uint8 [T, R, R, 3] (layout frames). Shards are mapped when first read, at most ``max_open`` at a
    time (the paper's mixture is over a million shards, past Linux's 65530 mappings a process may hold)."""

    max_open = 1024

    def __init__(self, root: str | Path, expect_vocab_size: int | None = None, expect_tokenizer_hash: str | None = None):
        self.root = Path(root)
        self.index = ShardIndex.load(self.root)
        if expect_vocab_size is not None and expect_vocab_size != self.index.vocab_size:
            raise ShardError(
                f"vocab mismatch: shards in {self.root} use vocab_size={self.index.vocab_size} "
                f"(tokenizer {self.index.tokenizer.get('name')}), the model expects {expect_vocab_size}"
            )
        if expect_tokenizer_hash is not None and expect_tokenizer_hash != self.index.tokenizer.get("hash"):
            raise ShardError(f"tokenizer mismatch: shards made by {self.index.tokenizer}, expected hash {expect_tokenizer_hash}")
        self.files: list[Path] = []
        self.sources: list[str] = []
        self.kinds: list[str] = []
        shape = self.index.item_shape
        # Global indices follow shard names, not the order shards were written in (parallel tokenize
        # workers finish in any order), so a seed draws the same sequences from the same shards.
        for s in sorted(self.index.shards, key=lambda s: s.file):
            path = self.root / s.file
            if problem := self.index.problem(self.root, s):
                raise ShardError(f"{problem} (rerun the tokenize job to rewrite it)")
            self.files.append(path)
            self.sources.append(s.source)
            self.kinds.append(s.kind)
        self.offsets = np.cumsum([0] + [s.num_sequences for s in sorted(self.index.shards, key=lambda s: s.file)])
        self._open: dict[int, np.memmap] = {}  # shard -> its mapping, oldest first

    def shard(self, k: int) -> np.memmap:
        """Shard ``k``'s sequences [num_sequences, *item_shape], memory-mapped."""
        if (a := self._open.get(k)) is None:
            if len(self._open) >= self.max_open:
                del self._open[next(iter(self._open))]
            n = int(self.offsets[k + 1] - self.offsets[k])
            a = self._open[k] = np.memmap(self.files[k], dtype=self.index.dtype, mode="r", shape=(n, *self.index.item_shape))
        return a

    @property
    def seq_len(self) -> int:
        return self.index.seq_len

    @property
    def continuous(self) -> bool:
        """Frame clips for continuous patch tokens (rather than token ids)."""
        return self.index.layout == "frames"

    @property
    def vocab_size(self) -> int:
        return self.index.vocab_size

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, i: int) -> tuple[int, int]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        shard = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return shard, i - int(self.offsets[shard])

    def __getitem__(self, i: int) -> torch.Tensor:
        shard, row = self.locate(int(i))
        if self.continuous:
            return torch.from_numpy(np.array(self.shard(shard)[row]))  # (T, R, R, 3) uint8
        return torch.from_numpy(self.shard(shard)[row].astype(np.int64))

    def indices_by_source(self) -> dict[str, np.ndarray]:
        """source name -> global indices of its sequences (for the mixture sampler)."""
        out: dict[str, list[np.ndarray]] = {}
        for k, src in enumerate(self.sources):
            out.setdefault(src, []).append(np.arange(self.offsets[k], self.offsets[k + 1]))
        return {k: np.concatenate(v) for k, v in out.items()}
