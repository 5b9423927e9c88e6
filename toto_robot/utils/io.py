"""Atomic writes, staged directories and safetensors checkpoints: the one write protocol.

Everything the project persists goes through these helpers:

* ``atomic_write`` (one file): the data goes to a hidden temporary file beside the target
  (``.<name>.XXXX.tmp``), is flushed, fsynced, given the normal permissions (``0o666 & ~umask``;
  ``mkstemp`` alone would leave it 0600) and ``os.replace``d over the target, so a crash leaves
  either the old file or the new one, never half of one.
* ``staged_dir`` / ``publish_dir`` (a unit of several files): the unit is written into a hidden
  ``.<name>.XXXX.tmp`` folder and becomes visible with one rename.
* ``save_checkpoint`` / ``find_checkpoint`` (a folder that is replaced again and again): the new
  checkpoint is staged completely (a ``MANIFEST.json`` of file sizes is its last file), then swapped in
  so that at every instant ``<ckpt>`` or ``<ckpt>.old`` holds a complete checkpoint; resume looks at both.
* ``remove_partial(folder)``: a rerun deletes the hidden leftovers of units a crash interrupted.

``crash_point(label)`` marks the moments between the steps of every write. A test sets
``TOTO_CRASH_AT=N`` to SIGKILL the process at the N-th point it reaches, and ``TOTO_CRASH_TRACE=<file>``
to record the labels of all points a run passes (see tests/test_fault_injection.py).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors.torch import load_file, save_file

from toto_robot.constants import CONFIG_NAME, WEIGHTS_NAME
from toto_robot.errors import UserError


TMP_SUFFIX = ".tmp"
MANIFEST_NAME = "MANIFEST.json"
_crashes_seen = 0


class CheckpointError(UserError, RuntimeError):
    """A checkpoint is missing, corrupt or does not match what loads it."""


def crash_point(label: str) -> None:
    """Fault injection: SIGKILL this process at the point ``TOTO_CRASH_AT`` names, either a number N
    (the N-th point reached, 1-based) or a label (the first point with that label); with
    ``TOTO_CRASH_TRACE`` set, append ``label`` to that file first. A no-op otherwise."""
    global _crashes_seen
    at, trace = os.environ.get("TOTO_CRASH_AT"), os.environ.get("TOTO_CRASH_TRACE")
    if not (at or trace):
        return
    _crashes_seen += 1
    if trace:
        with open(trace, "a") as f:
            f.write(f"{label}\n")
    if at and (at == label or (at.isdigit() and _crashes_seen == int(at))):
        os.kill(os.getpid(), signal.SIGKILL)


def normal_mode(path: str | os.PathLike, directory: bool = False) -> None:
    """Give a ``mkstemp``/``mkdtemp`` path the permissions a plain ``open``/``mkdir`` would (umask applied)."""
    umask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(umask)
    os.chmod(path, (0o777 if directory else 0o666) & ~umask)


def temp_path(target: Path, directory: bool = False) -> Path:
    """A fresh hidden temporary file or folder beside ``target`` (normal permissions)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = f".{target.name}.", TMP_SUFFIX if directory else f"{TMP_SUFFIX}{target.suffix}"
    if directory:
        tmp = tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=target.parent)
    else:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
        os.close(fd)
    normal_mode(tmp, directory)
    return Path(tmp)


def is_partial(path: Path) -> bool:
    """Whether ``path`` is the hidden temporary file or folder of an interrupted write."""
    return path.name.startswith(".") and (path.name.endswith(TMP_SUFFIX) or f"{TMP_SUFFIX}." in path.name)


def remove_partial(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files/folders that interrupted writes left in ``folder`` (not recursive)."""
    folder, removed = Path(folder), []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if is_partial(p):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success move it over ``path`` atomically."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        crash_point(f"write {path.name}")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    crash_point(f"wrote {path.name}")


@contextlib.contextmanager
def staged_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden temporary folder beside ``target``; on success publish it as ``target`` (``publish_dir``)."""
    target = Path(target)
    tmp = temp_path(target, directory=True)
    try:
        yield tmp
        publish_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish_dir(tmp: Path, target: Path) -> None:
    """Move the complete folder ``tmp`` to ``target`` with one rename. An existing ``target`` is first
    renamed to a hidden temporary name (so a crash leaves the old unit or the new one in place, or neither
    and a leftover that ``remove_partial`` deletes) and removed afterwards."""
    for f in tmp.rglob("*"):
        if f.is_file():
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
    crash_point(f"publish {target.name}")
    trash = None
    if target.exists():
        trash = temp_path(target, directory=True)
        os.replace(target, trash / target.name)
        crash_point(f"unpublished old {target.name}")
    os.replace(tmp, target)
    _fsync_dir(target.parent)
    crash_point(f"published {target.name}")
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


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
    tmp = temp_path(path)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        normal_mode(tmp)  # save_file creates the file anew, with mode 0600
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        crash_point(f"write {path.name}")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    crash_point(f"wrote {path.name}")


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


def write_manifest(directory: Path) -> None:
    """Record every file of ``directory`` and its size in ``MANIFEST.json``, written last: the folder is
    complete exactly when the manifest exists and every file it lists has that size (``is_complete``)."""
    files = {str(f.relative_to(directory)): f.stat().st_size for f in sorted(directory.rglob("*"))
             if f.is_file() and f.name != MANIFEST_NAME and not is_partial(f)}
    atomic_save_json({"files": files}, directory / MANIFEST_NAME)


def is_complete(directory: Path, legacy: tuple[str, ...] = ()) -> bool:
    """Whether ``directory`` holds a complete unit: its manifest's files all have their sizes. A folder
    without a manifest counts as complete when it holds every file named in ``legacy`` (checkpoints
    written before manifests existed were published whole by one rename)."""
    if legacy and directory.is_dir() and not (directory / MANIFEST_NAME).exists():
        return all((directory / name).is_file() for name in legacy)
    try:
        files = json.loads((directory / MANIFEST_NAME).read_text())["files"]
        return all((directory / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def find_checkpoint(ckpt: str | os.PathLike, legacy: tuple[str, ...] = ()) -> Path | None:
    """The complete checkpoint to resume from: ``ckpt`` if complete, else ``<ckpt>.old``, else None."""
    ckpt = Path(ckpt)
    return next((d for d in (ckpt, ckpt.with_name(ckpt.name + ".old")) if is_complete(d, legacy)), None)


def save_checkpoint(ckpt: str | os.PathLike, write: Callable[[Path], None], legacy: tuple[str, ...] = ()) -> Path:
    """Replace the checkpoint folder ``ckpt`` by what ``write(folder)`` puts into a fresh folder.

    The new checkpoint is written completely into ``<ckpt>.new`` (manifest last). Then the complete one
    of ``ckpt`` becomes ``<ckpt>.old`` (an incomplete ``ckpt`` is deleted instead: ``.old`` is then the
    complete one), ``.new`` becomes ``ckpt`` and ``.old`` is deleted. At every instant ``ckpt`` or
    ``<ckpt>.old`` is complete, which is what ``find_checkpoint`` looks for."""
    ckpt = Path(ckpt)
    new, old = ckpt.with_name(ckpt.name + ".new"), ckpt.with_name(ckpt.name + ".old")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    write(new)
    write_manifest(new)
    if is_complete(ckpt, legacy):
        shutil.rmtree(old, ignore_errors=True)
        crash_point("removed checkpoint.old")
        os.replace(ckpt, old)
        crash_point("moved checkpoint to checkpoint.old")
    else:
        shutil.rmtree(ckpt, ignore_errors=True)
    os.replace(new, ckpt)
    _fsync_dir(ckpt.parent)
    crash_point("moved checkpoint.new to checkpoint")
    shutil.rmtree(old, ignore_errors=True)
    return ckpt


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

    if not rows and not fieldnames:
        raise ValueError(f"no rows to write to {path} and no column names given")
    with atomic_write(path, "w") as f:
        w = csv.DictWriter(f, fieldnames=fieldnames or list(rows[0]))
        w.writeheader()
        w.writerows(rows)
