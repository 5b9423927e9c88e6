"""RLDS (the Open X-Embodiment datasets' format) read and written without TensorFlow.

An RLDS dataset prepared by TFDS is a folder (``<name>/<version>/``) holding ``features.json`` (the
feature tree), ``dataset_info.json`` (splits and shard lengths) and shards
``<name>-<split>.tfrecord-NNNNN-of-MMMMM``. Each record is one episode: a ``tf.train.Example`` whose
step features are flattened along time under ``steps/...`` (``steps/observation/image`` holds T
encoded images, ``steps/action`` T*A floats, booleans are int64, text is bytes) and whose episode
features sit under ``episode_metadata/...``.

Keys are picked by name from ``features.json`` (with or without the ``steps/`` prefix):
``image_key`` (default: ``observation/image`` or the only image), ``wrist_image_key``,
``state_keys`` (default ``observation/state``; several are concatenated), ``action_keys`` (default
``action``; an action dict such as RT-1's is listed component by component) and ``language_key``
(default ``language_instruction`` or ``observation/natural_language_instruction`` when present).
Success is ``episode_metadata/success`` when present, else ``is_terminal`` of the last step.

``export_rlds`` writes a demo folder the same way (PNG frames, so a round trip is bit-exact) with a
``toto_demo.json`` sidecar that keeps the dataset's ``DemoMeta``.
"""
from __future__ import annotations

import io
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from toto_robot.data.demos import DemoDataset, DemoMeta
from toto_robot.data.formats.common import DemoImportError, Episode, Unit, camera_field, content_key, extra_camera_fields, run_import
from toto_robot.data.formats.tfrecord import TFRecordError, parse_example, read_records, serialize_example, write_records
from toto_robot.utils.io import atomic_save_json, staged_dir

log = logging.getLogger(__name__)
SIDECAR = "toto_demo.json"
FEATURES_NAME = "features.json"
_FD = "tensorflow_datasets.core.features."


@dataclass
class Leaf:
    """One leaf of ``features.json``: how a key is stored in the Example."""

    kind: str  # image | tensor | text
    shape: tuple[int, ...]
    dtype: str
    per_step: bool
    encoding: str = "none"  # tensor: none | bytes
    image_format: str = ""


def flatten_features(tree: dict) -> dict[str, Leaf]:
    """``features.json`` -> {"steps/observation/image": Leaf, ...} (the keys the Example uses)."""
    out: dict[str, Leaf] = {}

    def walk(node: dict, prefix: str, per_step: bool) -> None:
        if "featuresDict" in node:
            for k, v in node["featuresDict"]["features"].items():
                walk(v, f"{prefix}{k}/", per_step)
        elif "sequence" in node:
            walk(node["sequence"]["feature"], prefix, True)
        elif "image" in node:
            spec = node["image"]
            out[prefix[:-1]] = Leaf("image", _dims(spec.get("shape", {})), spec.get("dtype", "uint8"), per_step,
                                    image_format=spec.get("encodingFormat", "png"))
        elif "tensor" in node:
            spec = node["tensor"]
            kind = "text" if spec.get("dtype") == "string" else "tensor"
            out[prefix[:-1]] = Leaf(kind, _dims(spec.get("shape", {})), spec.get("dtype", "float32"), per_step, spec.get("encoding", "none"))
        elif "text" in node:
            out[prefix[:-1]] = Leaf("text", (), "string", per_step)
        elif "classLabel" in node:
            out[prefix[:-1]] = Leaf("tensor", (), "int64", per_step)
        else:
            log.warning("features.json: %s has a feature type this reader does not know (%s); ignored", prefix[:-1], node.get("pythonClassName"))

    walk(tree, "", False)
    return out


def _dims(shape: dict) -> tuple[int, ...]:
    return tuple(int(d) for d in shape.get("dimensions", []))


def find_dataset_dir(root: Path) -> Path:
    """The folder holding ``features.json``: ``root`` itself or its only descendant that has one."""
    root = Path(root)
    if (root / FEATURES_NAME).is_file():
        return root
    found = sorted(p.parent for p in root.rglob(FEATURES_NAME)) if root.is_dir() else []
    if not found:
        raise DemoImportError(f"{root}: no {FEATURES_NAME} (an RLDS dataset is a TFDS folder with features.json and *.tfrecord-* shards)")
    if len(found) > 1:
        raise DemoImportError(f"{root}: several RLDS datasets ({', '.join(str(p) for p in found)}); point at one of them")
    return found[0]


def shard_files(ds_dir: Path, split: str | None) -> list[Path]:
    files = sorted(p for p in ds_dir.iterdir() if ".tfrecord" in p.name and not p.name.startswith("."))
    if split:
        chosen = [p for p in files if f"-{split}.tfrecord" in p.name]
        if not chosen:
            splits = sorted({p.name.split(".tfrecord")[0].rsplit("-", 1)[-1] for p in files})
            raise DemoImportError(f"{ds_dir}: no shards of split {split!r}; splits present: {splits}")
        files = chosen
    if not files:
        raise DemoImportError(f"{ds_dir}: no *.tfrecord* shards")
    return files


def _key(k: str) -> str:
    return k if k.startswith(("steps/", "episode_metadata/")) else f"steps/{k}"


@dataclass
class RLDSKeys:
    image_key: str | None = None
    wrist_image_key: str | None = None
    state_keys: list[str] | None = None
    action_keys: list[str] | None = None
    language_key: str | None = None
    camera_keys: list[str] | str | None = None  # more cameras stored as <name>_image ("all": every other image feature)

    def resolve(self, leaves: dict[str, Leaf], where: str) -> dict:
        images = [k for k, v in leaves.items() if v.kind == "image" and v.per_step]
        tensors = [k for k, v in leaves.items() if v.kind == "tensor" and v.per_step]

        def need(key: str, kinds: tuple[str, ...], what: str) -> str:
            key = _key(key)
            if key not in leaves:
                raise DemoImportError(f"{where}: no feature {key!r} for the {what}; features: {sorted(leaves)}")
            if leaves[key].kind not in kinds:
                raise DemoImportError(f"{where}: {key!r} is a {leaves[key].kind}, the {what} must be a {' or '.join(kinds)}")
            return key

        if self.image_key:
            image = need(self.image_key, ("image",), "camera")
        elif "steps/observation/image" in leaves:
            image = "steps/observation/image"
        elif len(images) == 1:
            image = images[0]
        else:
            raise DemoImportError(f"{where}: several cameras; choose the main one with format.read.image_key=<feature> (and the others with "
                                  f"format.read.camera_keys=all or a list); image features: {images or 'none'}")
        default_state = ["observation/state"] if "steps/observation/state" in leaves else None
        state_keys = self.state_keys or default_state
        if not state_keys:
            raise DemoImportError(f"{where}: no steps/observation/state; list the proprioception with state_keys from {tensors}")
        action_keys = self.action_keys or (["action"] if "steps/action" in leaves else None)
        if not action_keys:
            parts = [k for k in tensors if k.startswith("steps/action/")]
            raise DemoImportError(f"{where}: steps/action is a dict; list its parts in order with action_keys from {parts or tensors}")
        language = None
        if self.language_key:
            language = need(self.language_key, ("text",), "language instruction")
        else:
            language = next((k for k in ("steps/language_instruction", "steps/observation/natural_language_instruction")
                             if k in leaves and leaves[k].kind == "text"), None)
        wrist = need(self.wrist_image_key, ("image",), "wrist camera") if self.wrist_image_key else None
        extra = [k for k in images if k not in (image, wrist)] if self.camera_keys == "all" else \
            [need(k, ("image",), "camera") for k in (self.camera_keys or [])]
        extra_camera_fields(extra, bool(wrist), where)
        return {"image": image, "wrist": wrist, "cameras": extra,
                "state": [need(k, ("tensor",), "state") for k in state_keys], "action": [need(k, ("tensor",), "action") for k in action_keys],
                "language": language}


def _decode_images(blobs: list[bytes], where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    frames = []
    for i, b in enumerate(blobs):
        try:
            img = Image.open(io.BytesIO(b))
            img.load()
        except (UnidentifiedImageError, OSError) as e:
            raise DemoImportError(f"{where}: frame {i} is not a readable PNG/JPEG ({e})") from e
        frames.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
    if len({f.shape for f in frames}) > 1:
        raise DemoImportError(f"{where}: frames of different sizes {sorted({f.shape for f in frames})}")
    return np.stack(frames) if frames else np.zeros((0, 1, 1, 3), np.uint8)


def _tensor(ex: dict, key: str, leaf: Leaf, T: int, where: str) -> np.ndarray:
    if key not in ex:
        raise DemoImportError(f"{where}: the record has no {key!r}")
    raw = ex[key]
    if leaf.encoding == "bytes":
        arr = np.stack([np.frombuffer(b, dtype=np.dtype(leaf.dtype)) for b in raw]) if raw else np.zeros((0,))
    else:
        arr = np.asarray(raw)
    n = int(np.prod(leaf.shape)) if leaf.shape else 1
    if arr.size != T * n:
        raise DemoImportError(f"{where}: {key!r} holds {arr.size} values, expected {T} steps x {n}")
    return arr.reshape(T, n)


def decode_episode(record: bytes, leaves: dict[str, Leaf], keys: dict, where: str) -> Episode:
    try:
        ex = parse_example(record)
    except TFRecordError as e:
        raise DemoImportError(f"{where}: {e}") from e
    if keys["image"] not in ex:
        raise DemoImportError(f"{where}: the record has no {keys['image']!r}")
    image = _decode_images(ex[keys["image"]], f"{where} {keys['image']}")
    T = len(image)
    state = np.concatenate([_tensor(ex, k, leaves[k], T, where) for k in keys["state"]], axis=1).astype(np.float32)
    action = np.concatenate([_tensor(ex, k, leaves[k], T, where) for k in keys["action"]], axis=1).astype(np.float32)
    reward = _tensor(ex, "steps/reward", leaves["steps/reward"], T, where)[:, 0].astype(np.float32) if "steps/reward" in leaves and "steps/reward" in ex else None
    if "episode_metadata/success" in ex:
        success = bool(np.asarray(ex["episode_metadata/success"]).reshape(-1)[0])
    elif "steps/is_terminal" in ex and len(ex["steps/is_terminal"]):
        success = bool(np.asarray(ex["steps/is_terminal"])[-1])
    else:
        success = False
    seed = int(np.asarray(ex["episode_metadata/seed"]).reshape(-1)[0]) if "episode_metadata/seed" in ex else None
    language = None
    if keys["language"] and ex.get(keys["language"]):
        texts = {b.decode("utf-8", "replace") for b in ex[keys["language"]]}
        language = " | ".join(sorted(texts))
    wrist = _decode_images(ex[keys["wrist"]], f"{where} {keys['wrist']}") if keys["wrist"] else None
    cameras = {camera_field(k): _decode_images(ex.get(k, []), f"{where} {k}") for k in keys.get("cameras", [])}
    return Episode(image, state, action, reward, success, wrist, seed, language, cameras or None)


class RLDSReader:
    """Episodes of an RLDS dataset folder, read shard by shard (each shard is one import unit)."""

    def __init__(self, root: str | Path, split: str | None = "train", keys: RLDSKeys | None = None):
        self.dir = find_dataset_dir(Path(root))
        self.leaves = flatten_features(json.loads((self.dir / FEATURES_NAME).read_text()))
        self.keys = (keys or RLDSKeys()).resolve(self.leaves, str(self.dir))
        self.files = shard_files(self.dir, split)
        info_path = self.dir / "dataset_info.json"
        self.info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        side = self.dir / SIDECAR
        self.sidecar = json.loads(side.read_text()) if side.is_file() else None

    def episodes(self, path: Path) -> Iterator[Episode]:
        try:
            for i, rec in enumerate(read_records(path)):
                ep = decode_episode(rec, self.leaves, self.keys, f"{path.name} episode {i}")
                if self.sidecar and ep.language == self.sidecar.get("task"):
                    ep.language = None  # the exporter's stand-in for an episode without an instruction
                yield ep
        except TFRecordError as e:
            raise DemoImportError(str(e)) from e

    def __iter__(self) -> Iterator[Episode]:
        for f in self.files:
            yield from self.episodes(f)

    def make_meta(self, task: str | None, fps: float | None, action_space: str | None):
        def meta(ep: Episode) -> DemoMeta:
            if self.sidecar and tuple(self.sidecar["image_size"]) == ep.image.shape[1:3]:
                return DemoMeta.from_json(self.sidecar)  # a dataset this project exported: its meta as it was
            return DemoMeta(source="rlds", task=task or self.info.get("name", self.dir.parent.name), image_size=tuple(ep.image.shape[1:3]),
                            state_dim=ep.state.shape[1], action_dim=ep.action.shape[1], fps=float(fps or 10.0),
                            action_space=action_space or "+".join(k.removeprefix("steps/") for k in self.keys["action"]),
                            extra={"rlds": str(self.dir), "keys": self.keys})
        return meta


@dataclass
class RLDSImportConfig:
    src: str
    out_dir: str
    split: str | None = "train"
    image_key: str | None = None
    wrist_image_key: str | None = None
    state_keys: list[str] | None = None
    action_keys: list[str] | None = None
    language_key: str | None = None
    camera_keys: list[str] | str | None = None
    task: str | None = None
    fps: float | None = None
    action_space: str | None = None
    image_size: int | None = None
    skip_bad: bool = False


def import_rlds(cfg: RLDSImportConfig) -> dict:
    """RLDS folder -> demo folder (resumable per shard, see ``common``)."""
    keys = RLDSKeys(cfg.image_key, cfg.wrist_image_key, cfg.state_keys, cfg.action_keys, cfg.language_key, cfg.camera_keys)
    reader = RLDSReader(cfg.src, cfg.split, keys)
    features_key = content_key([reader.dir / FEATURES_NAME], reader.dir)
    units = [Unit(f"{content_key([f], f.parent)}:{features_key}", str(f), lambda f=f: reader.episodes(f)) for f in reader.files]
    options = {k: v for k, v in asdict(cfg).items() if k not in ("src", "out_dir", "skip_bad")}
    return run_import(units, cfg.out_dir, "rlds", options, reader.make_meta(cfg.task, cfg.fps, cfg.action_space), cfg.image_size, cfg.skip_bad)


# ---------------------------------------------------------------- export
def _tensor_node(dims: list[int], dtype: str, doc: str) -> dict:
    return {"pythonClassName": _FD + "tensor_feature.Tensor",
            "tensor": {"shape": {"dimensions": [str(d) for d in dims]}, "dtype": dtype, "encoding": "none"}, "description": doc}


def _scalar_node(dtype: str, doc: str) -> dict:
    return {"pythonClassName": _FD + "scalar.Scalar", "tensor": {"shape": {}, "dtype": dtype, "encoding": "none"}, "description": doc}


def _image_node(shape, doc: str) -> dict:
    return {"pythonClassName": _FD + "image_feature.Image",
            "image": {"shape": {"dimensions": [str(d) for d in shape]}, "dtype": "uint8", "encodingFormat": "png"}, "description": doc}


def _dict_node(features: dict) -> dict:
    return {"pythonClassName": _FD + "features_dict.FeaturesDict", "featuresDict": {"features": features}}


def rlds_features(meta: DemoMeta, wrist: bool, seeds: bool) -> dict:
    H, W = meta.image_size
    obs = {"image": _image_node((H, W, 3), "camera RGB"), "state": _tensor_node([meta.state_dim], "float32", "proprioception")}
    if wrist:
        obs["wrist_image"] = _image_node((H, W, 3), "wrist camera RGB")
    step = {"observation": _dict_node(obs), "action": _tensor_node([meta.action_dim], "float32", f"action ({meta.action_space})"),
            "reward": _scalar_node("float32", "reward"), "discount": _scalar_node("float32", "discount"),
            "is_first": _scalar_node("bool", "first step"), "is_last": _scalar_node("bool", "last step"),
            "is_terminal": _scalar_node("bool", "last step of a successful episode"),
            "language_instruction": {"pythonClassName": _FD + "text_feature.Text", "text": {}, "description": "instruction"}}
    episode = {"success": _scalar_node("bool", "the episode ended in success"),
               "file_path": {"pythonClassName": _FD + "text_feature.Text", "text": {}, "description": "source episode file"}}
    if seeds:
        episode["seed"] = _scalar_node("int64", "simulator seed")
    return _dict_node({"steps": {"pythonClassName": _FD + "dataset_feature.Dataset",
                                 "sequence": {"feature": _dict_node(step), "length": "-1"}},
                       "episode_metadata": _dict_node(episode)})


def _png(frames: np.ndarray) -> list[bytes]:
    from PIL import Image

    out = []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def episode_record(ep: dict, path: str, task: str) -> bytes:
    from toto_robot.constants import LANGUAGE, OBS_WRIST_IMAGE, REWARD, SEED

    T = len(ep["image"])
    success = bool(ep["success"])
    is_last = np.zeros(T, bool)
    is_last[-1] = True
    feats = {"steps/observation/image": _png(ep["image"]), "steps/observation/state": ep["state"], "steps/action": ep["action"],
             "steps/reward": ep.get(REWARD, np.zeros(T, np.float32)), "steps/discount": np.ones(T, np.float32),
             "steps/is_first": np.arange(T) == 0, "steps/is_last": is_last, "steps/is_terminal": is_last & success,
             "steps/language_instruction": [str(ep[LANGUAGE]) if LANGUAGE in ep else task] * T,
             "episode_metadata/success": np.array([success]), "episode_metadata/file_path": [path]}
    if OBS_WRIST_IMAGE in ep:
        feats["steps/observation/wrist_image"] = _png(ep[OBS_WRIST_IMAGE])
    if SEED in ep:
        feats["episode_metadata/seed"] = np.array([int(ep[SEED])])
    return serialize_example(feats)


def export_rlds(demos: str | Path, out: str | Path, name: str | None = None, episodes_per_shard: int = 100) -> Path:
    """A demo folder -> an RLDS dataset folder ``out`` (written whole into a hidden folder, then renamed into place)."""
    from tqdm.auto import tqdm

    from toto_robot.constants import OBS_WRIST_IMAGE, SEED

    ds = DemoDataset(demos)
    if len(ds) == 0:
        raise DemoImportError(f"{demos}: no episodes to export")
    name = name or "".join(c if c.isalnum() else "_" for c in ds.meta.task).lower()
    first = ds[0]
    n_shards = -(-len(ds) // episodes_per_shard)
    lengths, total = [], 0
    out = Path(out)
    with staged_dir(out) as tmp:
        bar = tqdm(total=len(ds), desc="export rlds", unit="ep")
        for s in range(n_shards):
            ids = range(s * episodes_per_shard, min(len(ds), (s + 1) * episodes_per_shard))
            path = tmp / f"{name}-train.tfrecord-{s:05d}-of-{n_shards:05d}"

            def records(ids=ids):
                for i in ids:
                    yield episode_record(ds[i], str(ds.paths[i]), ds.meta.task)
                    bar.update(1)

            with open(path, "wb") as f:
                write_records(f, records())
            lengths.append(len(ids))
            total += path.stat().st_size
        bar.close()
        atomic_save_json(rlds_features(ds.meta, OBS_WRIST_IMAGE in first, SEED in first), tmp / FEATURES_NAME)
        atomic_save_json({"name": name, "version": "1.0.0", "fileFormat": "tfrecord", "moduleName": "toto_robot.data.formats.rlds",
                          "description": f"demonstrations of {ds.meta.task} exported by toto_robot",
                          "splits": [{"name": "train", "numBytes": str(total), "shardLengths": [str(n) for n in lengths],
                                      "filepathTemplate": "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"}]}, tmp / "dataset_info.json")
        atomic_save_json(asdict(ds.meta), tmp / SIDECAR)
    return out
