"""TFRecord files and ``tf.train.Example`` without TensorFlow.

A TFRecord file is a sequence of records, each framed as::

    uint64 length (little endian) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)

with ``masked_crc(x) = ((crc >> 15) | (crc << 17)) + 0xa282ead8`` over CRC-32C (Castagnoli). Both
checksums are verified on read; a mismatch or a truncated record raises ``TFRecordError`` naming the
file and byte offset. GZIP-compressed files (TFRecordOptions "GZIP") are recognised by their magic bytes.

``tf.train.Example`` is decoded with the ``protobuf`` runtime from a descriptor built here, field for
field as in tensorflow/core/example/{example,feature}.proto (BytesList, FloatList, Int64List, Feature,
Features with its ``map<string, Feature>``, Example), so no generated code or TensorFlow is needed.
"""
from __future__ import annotations

import gzip
import struct
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, Iterator

import google_crc32c
import numpy as np

from toto_robot.errors import UserError

_MASK_DELTA = 0xA282EAD8


class TFRecordError(UserError, ValueError):
    """A TFRecord file is corrupt, truncated or not a TFRecord file."""


def masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _open(path: Path) -> BinaryIO:
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def read_records(path: str | Path) -> Iterator[bytes]:
    """Yield the payload of every record of a TFRecord file, checksums verified."""
    path = Path(path)
    with _open(path) as f:
        offset = 0
        while True:
            head = f.read(12)
            if not head:
                return
            if len(head) < 12:
                raise TFRecordError(f"{path}: truncated record header at byte {offset} ({len(head)} of 12 bytes)")
            length, length_crc = struct.unpack("<QI", head)
            if masked_crc32c(head[:8]) != length_crc:
                raise TFRecordError(f"{path}: length checksum mismatch at byte {offset} (not a TFRecord file, or corrupt)")
            data = f.read(length)
            tail = f.read(4)
            if len(data) < length or len(tail) < 4:
                raise TFRecordError(f"{path}: truncated record at byte {offset}: {length} data bytes announced, {len(data)} present")
            if masked_crc32c(data) != struct.unpack("<I", tail)[0]:
                raise TFRecordError(f"{path}: data checksum mismatch in the record at byte {offset} (corrupt file)")
            offset += 16 + length
            yield data


def write_records(f: BinaryIO, records: Iterator[bytes]) -> int:
    """Write records with TFRecord framing to an open binary file; returns how many."""
    n = 0
    for data in records:
        head = struct.pack("<Q", len(data))
        f.write(head + struct.pack("<I", masked_crc32c(head)) + data + struct.pack("<I", masked_crc32c(data)))
        n += 1
    return n


@lru_cache(maxsize=1)
def example_class():
    """The ``tensorflow.Example`` message class, built from a descriptor (see module doc)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fd = descriptor_pb2.FileDescriptorProto(name="toto_robot/tf_example.proto", package="tensorflow", syntax="proto3")

    def message(name, fields, nested=()):
        m = fd.message_type.add(name=name)
        for num, (fname, ftype, label, type_name, packed) in enumerate(fields, start=1):
            f = m.field.add(name=fname, number=num, type=ftype, label=label)
            if type_name:
                f.type_name = type_name
            if packed:
                f.options.packed = True
        for n in nested:
            n(m)
        return m

    rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    message("BytesList", [("value", F.TYPE_BYTES, rep, None, False)])
    message("FloatList", [("value", F.TYPE_FLOAT, rep, None, True)])
    message("Int64List", [("value", F.TYPE_INT64, rep, None, True)])
    feature = message("Feature", [("bytes_list", F.TYPE_MESSAGE, opt, ".tensorflow.BytesList", False),
                                  ("float_list", F.TYPE_MESSAGE, opt, ".tensorflow.FloatList", False),
                                  ("int64_list", F.TYPE_MESSAGE, opt, ".tensorflow.Int64List", False)])
    feature.oneof_decl.add(name="kind")
    for f in feature.field:
        f.oneof_index = 0

    def entry(m):
        e = m.nested_type.add(name="FeatureEntry")
        e.options.map_entry = True
        e.field.add(name="key", number=1, type=F.TYPE_STRING, label=opt)
        e.field.add(name="value", number=2, type=F.TYPE_MESSAGE, label=opt, type_name=".tensorflow.Feature")

    message("Features", [("feature", F.TYPE_MESSAGE, rep, ".tensorflow.Features.FeatureEntry", False)], nested=[entry])
    message("Example", [("features", F.TYPE_MESSAGE, opt, ".tensorflow.Features", False)])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


def parse_example(data: bytes) -> dict[str, np.ndarray | list[bytes]]:
    """A serialized ``tf.train.Example`` -> {key: float32 array | int64 array | list of bytes}."""
    from google.protobuf.message import DecodeError

    ex = example_class()()
    try:
        ex.ParseFromString(data)
    except DecodeError as e:
        raise TFRecordError(f"record is not a tf.train.Example: {e}") from e
    out: dict = {}
    for key, feat in ex.features.feature.items():
        kind = feat.WhichOneof("kind")
        if kind == "float_list":
            out[key] = np.asarray(feat.float_list.value, dtype=np.float32)
        elif kind == "int64_list":
            out[key] = np.asarray(feat.int64_list.value, dtype=np.int64)
        elif kind == "bytes_list":
            out[key] = list(feat.bytes_list.value)
        else:
            out[key] = np.zeros(0, np.float32)  # a feature with no list set: empty
    return out


def serialize_example(features: dict) -> bytes:
    """{key: float array | int/bool array | list of bytes/str} -> a serialized ``tf.train.Example``."""
    ex = example_class()()
    for key, value in features.items():
        feat = ex.features.feature[key]
        if isinstance(value, (list, tuple)) and (not value or isinstance(value[0], (bytes, str))):
            feat.bytes_list.value.extend(v.encode() if isinstance(v, str) else v for v in value)
            continue
        arr = np.asarray(value).reshape(-1)
        if arr.dtype.kind == "f":
            feat.float_list.value.extend(arr.astype(np.float32).tolist())
        elif arr.dtype.kind in "iub":
            feat.int64_list.value.extend(arr.astype(np.int64).tolist())
        else:
            raise TypeError(f"feature {key!r}: cannot store dtype {arr.dtype} in a tf.train.Example")
    return ex.SerializeToString()
