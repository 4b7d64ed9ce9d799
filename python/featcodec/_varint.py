"""Unsigned LEB128 varints for the small headers the Python layers write (docs/format.md)."""

from __future__ import annotations

from ._core import DecodeError

_MAX_BYTES = 10  # enough for 64 bits


def write_varint(value: int) -> bytes:
    """``value`` (>= 0) in its shortest LEB128 form."""
    if value < 0:
        raise ValueError(f"a varint must be non-negative, got {value}")
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def read_varint(data: bytes, position: int, *, limit: int = 1 << 63, what: str = "varint") -> tuple[int, int]:
    """(value, next position); DecodeError if truncated, overlong, padded or >= ``limit``."""
    value = shift = 0
    for i in range(_MAX_BYTES):
        if position + i >= len(data):
            raise DecodeError(f"truncated {what}")
        byte = data[position + i]
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise DecodeError(f"{what} is not in its shortest form")
            if value >= limit:
                raise DecodeError(f"{what} {value} is out of range (must be < {limit})")
            return value, position + i + 1
    raise DecodeError(f"{what} is too long")
