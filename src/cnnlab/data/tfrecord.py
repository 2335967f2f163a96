"""TFRecord files of ``tf.train.Example`` records, read and written without TensorFlow.

A TFRecord file is a sequence of records, each ``uint64 length | uint32 masked_crc32c(length) |
data | uint32 masked_crc32c(data)`` (little endian). Both checksums are verified when a file is
indexed, so a truncated or corrupted file fails before training, naming the file and the record.
``tf.train.Example`` is a small protobuf (features: map<string, Feature>, a Feature being a
bytes, float or int64 list); the few lines of wire-format code here read and write it, so
neither TensorFlow nor generated protobuf classes are needed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from cnnlab.errors import DataError

_MASK_DELTA = 0xA282EAD8


def masked_crc(data: bytes) -> int:
    """TFRecord's checksum: CRC-32C, rotated right by 15 bits, plus a constant."""
    try:
        import crc32c  # optional extra `shards`; imported here so cnnlab runs without it
    except ImportError:
        raise DataError("Reading or writing TFRecord files needs the `crc32c` package: "
                        "pip install 'cnnlab[shards]' (or pip install crc32c).") from None
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


# ------------------------------------------------------------------------ protobuf wire format

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: bytes):
    """(field number, wire type, value) of a message: ints for varints, bytes otherwise."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError("truncated field")
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _feature_values(feature: bytes) -> list:
    """The values of one Feature: a list of bytes, floats or ints."""
    for kind, _, payload in _fields(feature):
        values: list = []
        for _, wire, value in _fields(payload):
            if kind == 1:  # BytesList
                values.append(bytes(value))
            elif kind == 2:  # FloatList: packed (one run of fixed32) or one fixed32 a field
                values.extend(struct.unpack(f"<{len(value) // 4}f", value))
            elif kind == 3:  # Int64List, packed or not
                if wire == 0:
                    values.append(_signed(value))
                else:
                    pos = 0
                    while pos < len(value):
                        v, pos = _varint(value, pos)
                        values.append(_signed(v))
        return values
    return []


def parse_example(data: bytes) -> dict[str, list]:
    """``{key: values}`` of a serialized tf.train.Example."""
    features: dict[str, list] = {}
    for number, _, message in _fields(data):
        if number != 1:
            continue
        for entry_no, _, entry in _fields(message):
            if entry_no != 1:
                continue
            key, value = "", b""
            for field_no, _, part in _fields(entry):
                if field_no == 1:
                    key = bytes(part).decode("utf-8")
                elif field_no == 2:
                    value = part
            features[key] = _feature_values(value)
    return features


def _put_varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _put_varint(number << 3 | 2) + _put_varint(len(payload)) + payload


def encode_example(features: dict[str, bytes | str | int | float | list]) -> bytes:
    """A serialized tf.train.Example; str/bytes become BytesList, int Int64List, float FloatList."""
    entries = b""
    for key, value in features.items():
        values = value if isinstance(value, list) else [value]
        if all(isinstance(v, (bytes, str)) for v in values):
            inner = b"".join(_len_field(1, v.encode() if isinstance(v, str) else v) for v in values)
            feature = _len_field(1, inner)
        elif all(isinstance(v, int) for v in values):
            feature = _len_field(3, _len_field(1, b"".join(_put_varint(v) for v in values)))
        else:
            feature = _len_field(2, _len_field(1, struct.pack(f"<{len(values)}f", *values)))
        entries += _len_field(1, _len_field(1, key.encode()) + _len_field(2, feature))
    return _len_field(1, entries)


# ------------------------------------------------------------------------------- records

@dataclass
class Record:
    offset: int  # of the record's data
    length: int
    data: bytes


def read_records(path: Path):
    """Each record of a TFRecord file, both CRCs checked; DataError naming file and record."""
    masked_crc(b"")  # the `crc32c` package is there, or a DataError says how to get it
    with open(path, "rb") as handle:
        index = 0
        while True:
            start = handle.tell()
            header = handle.read(12)
            if not header:
                return
            if len(header) < 12:
                raise DataError(f"{path}: record {index} (byte {start}) is truncated: the file ends "
                                "inside its length header. The file is incomplete; write it again.")
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc(header[:8]) != length_crc:
                raise DataError(f"{path}: record {index} (byte {start}) has a bad length CRC: the "
                                "file is corrupt or not a TFRecord file.")
            data = handle.read(length)
            footer = handle.read(4)
            if len(data) < length or len(footer) < 4:
                raise DataError(f"{path}: record {index} (byte {start}) is truncated: it declares "
                                f"{length} bytes but the file ends first. The file is incomplete; "
                                "write it again.")
            if masked_crc(data) != struct.unpack("<I", footer)[0]:
                raise DataError(f"{path}: record {index} (byte {start}) has a bad data CRC: its "
                                "bytes are corrupt.")
            yield Record(start + 12, length, data)
            index += 1


def record_bytes(data: bytes) -> bytes:
    """``data`` framed as one TFRecord record."""
    header = struct.pack("<Q", len(data))
    return (header + struct.pack("<I", masked_crc(header)) + data
            + struct.pack("<I", masked_crc(data)))


def example_image(data: bytes, where: str, key: str) -> bytes:
    """The encoded image of a serialized Example (a worker's payload function)."""
    try:
        values = parse_example(data).get(key)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{where}: not a tf.train.Example ({exc}).") from None
    if not values or not isinstance(values[0], bytes):
        raise DataError(f"{where}: the Example has no bytes feature {key!r}.")
    return values[0]
