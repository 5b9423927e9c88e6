"""Atomic writes and safetensors checkpoints.

Everything the project persists goes through ``atomic_write``: the data is
written to a temporary file in the destination folder, flushed, fsynced and
then ``os.replace``d over the target, so a crash leaves either the old file or
the new one, never half of one.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file

from toto_robot.constants import CONFIG_NAME, WEIGHTS_NAME


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or does not match what loads it."""


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success move it over ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def config_hash(config: Any) -> str:
    """Stable short hash of a JSON-able config (dict key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


def atomic_save_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)


def atomic_save_tensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """safetensors ``save_file`` through a temporary file (tensors are made contiguous and detached)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_pretrained(directory: str | os.PathLike, state_dict: dict[str, torch.Tensor], config: dict[str, Any]) -> Path:
    """Write ``model.safetensors`` + ``config.json`` into ``directory`` (each atomically)."""
    directory = Path(directory)
    atomic_save_tensors(state_dict, directory / WEIGHTS_NAME)
    atomic_save_json(config, directory / CONFIG_NAME)
    return directory


def load_pretrained(directory: str | os.PathLike, map_location: str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read what ``save_pretrained`` wrote; a clear ``CheckpointError`` if anything is missing or unreadable."""
    directory = Path(directory)
    weights, config = directory / WEIGHTS_NAME, directory / CONFIG_NAME
    if not directory.exists():
        raise CheckpointError(f"checkpoint directory not found: {directory}")
    for f in (weights, config):
        if not f.is_file():
            raise CheckpointError(f"checkpoint {directory} is missing {f.name}")
    try:
        state = load_file(str(weights), device=map_location)
    except Exception as e:  # safetensors raises several types for truncated/corrupt files
        raise CheckpointError(f"corrupt weights file {weights}: {e}") from e
    try:
        cfg = json.loads(config.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"corrupt config file {config}: {e}") from e
    return state, cfg


def check_state_dict(own: dict[str, torch.Tensor], sd: dict[str, torch.Tensor], source: str, what: str = "model", hint: str = "") -> None:
    """Raise ``CheckpointError`` unless ``sd`` has exactly ``own``'s keys with the same shapes: the message
    names missing/unexpected keys, or the first tensors whose shapes differ (``hint`` says why that may be)."""
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    if missing or unexpected:
        raise CheckpointError(report_key_mismatch(missing, unexpected, source))
    bad = [f"{k} has shape {tuple(sd[k].shape)}, {what} expects {tuple(v.shape)}" for k, v in own.items() if sd[k].shape != v.shape]
    if bad:
        raise CheckpointError(f"{source}: {'; '.join(bad[:5])}{hint}")


def report_key_mismatch(missing: list[str], unexpected: list[str], source: str) -> str:
    """One readable message naming the keys that did not line up (MAE ``main_linprobe`` style)."""
    lines = [f"state dict from {source} does not match the model:"]
    if missing:
        lines.append(f"  missing keys ({len(missing)}): {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}")
    if unexpected:
        lines.append(f"  unexpected keys ({len(unexpected)}): {', '.join(unexpected[:20])}{' ...' if len(unexpected) > 20 else ''}")
    return "\n".join(lines)


def atomic_write_csv(rows: list[dict], path: str | os.PathLike, fieldnames: list[str] | None = None) -> None:
    """A table of dicts as CSV with a header row, written atomically."""
    import csv

    with atomic_write(path, "w") as f:
        w = csv.DictWriter(f, fieldnames=fieldnames or list(rows[0]))
        w.writeheader()
        w.writerows(rows)
