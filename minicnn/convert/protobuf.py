"""A minimal protobuf wire-format reader (and writer, for test fixtures).

Wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32 (3/4, groups, are refused).
The reader walks a ``memoryview`` (of a memory map) and hands out *slices*, never copies,
so a 528 MB .caffemodel is parsed without a second copy in memory; packed floats become
``np.frombuffer`` views of the same buffer.
"""
import struct

import numpy as np


class WireError(ValueError):
    """Bytes that are not a valid protobuf message."""


def read_varint(buf, pos, end):
    """-> (value, new position). At most 10 bytes (64 bits)."""
    value, shift = 0, 0
    while True:
        if pos >= end:
            raise WireError(f"varint runs past the end of the message at byte {pos}")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise WireError(f"varint longer than 10 bytes at byte {pos}")


def iter_fields(buf, start=0, end=None):
    """Yield (field number, wire type, value, stop) for each field of the message in
    ``buf[start:end]``: varints as (n, 0, int, None), fixed32/64 as (n, w, raw bytes, None),
    length-delimited fields as (n, 2, first byte, end byte): a range, never a copy."""
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        key, pos = read_varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise WireError(f"field number 0 at byte {pos}")
        if wire == 0:
            value, pos = read_varint(buf, pos, end)
            yield field, wire, value, None
        elif wire == 1:
            if pos + 8 > end:
                raise WireError(f"fixed64 field {field} runs past the end at byte {pos}")
            yield field, wire, bytes(buf[pos:pos + 8]), None
            pos += 8
        elif wire == 5:
            if pos + 4 > end:
                raise WireError(f"fixed32 field {field} runs past the end at byte {pos}")
            yield field, wire, bytes(buf[pos:pos + 4]), None
            pos += 4
        elif wire == 2:
            length, pos = read_varint(buf, pos, end)
            if pos + length > end:
                raise WireError(f"field {field} claims {length} bytes at byte {pos}, past the end"
                                f" of its message (byte {end}): truncated file?")
            yield field, wire, pos, pos + length
            pos += length
        else:
            raise WireError(f"unsupported wire type {wire} (field {field}) at byte {pos}")


def as_string(buf, start, end):
    return bytes(buf[start:end]).decode("utf-8", "replace")


def packed_varints(buf, start, end):
    out, pos = [], start
    while pos < end:
        value, pos = read_varint(buf, pos, end)
        out.append(value)
    return out


def float32(raw):
    return struct.unpack("<f", raw)[0]


def packed_floats(buf, start, end):
    """Zero-copy little-endian float32 view of a packed field."""
    if (end - start) % 4:
        raise WireError(f"packed float field of {end - start} bytes (not a multiple of 4)")
    return np.frombuffer(buf, dtype="<f4", count=(end - start) // 4, offset=start)


# ---------------------------------------------------------------------- writer (fixtures)
def varint(value):
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_varint(number, value):
    return varint(number << 3) + varint(value)


def field_bytes(number, payload):
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return varint(number << 3 | 2) + varint(len(payload)) + bytes(payload)


def field_packed_floats(number, values):
    return field_bytes(number, np.ascontiguousarray(values, dtype="<f4").tobytes())


def field_packed_varints(number, values):
    return field_bytes(number, b"".join(varint(int(v)) for v in values))
