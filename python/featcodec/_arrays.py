"""Argument normalization shared by the table builders and the coder.

Every public entry point funnels its integer arrays through here, so that a
wrong dtype is a TypeError and a value that does not fit is a ValueError with
the offending value named, before anything reaches native code.
"""

from __future__ import annotations

import numpy as np

_INT32 = np.iinfo(np.int32)


def as_int32(values: object, what: str) -> np.ndarray:
    """``values`` as a C-contiguous int32 array; integers outside int32 raise."""
    array = np.asarray(values)
    if array.dtype == np.int32:
        return np.asarray(array, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
    if array.dtype.kind not in "iu":
        if array.size == 0 and array.dtype.kind == "f":  # np.asarray([]) is float64
            return np.zeros(array.shape, dtype=np.int32)
        raise TypeError(f"{what} must be an integer array, got dtype {array.dtype}")
    if array.size and (array.dtype.itemsize > 4 or array.dtype == np.uint32):
        low, high = array.min(), array.max()
        if low < _INT32.min or high > _INT32.max:
            bad = low if low < _INT32.min else high
            raise ValueError(f"{what} must fit in int32; got {bad}")
    return np.asarray(array, dtype=np.int32, order="C")


def as_shape(shape: object) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in shape)  # type: ignore[attr-defined]
    except TypeError:
        raise TypeError(f"shape must be a sequence of integers, got {shape!r}") from None
    if any(d < 0 for d in dims):
        raise ValueError(f"shape must not have negative dimensions: {dims}")
    return dims


def check_precision(precision: object, low: int = 1) -> int:
    """``precision`` as an int in [low, 16]: TypeError for a non-integer, ValueError outside."""
    if isinstance(precision, bool) or not isinstance(precision, (int, np.integer)):
        raise TypeError(f"precision must be an integer, got {precision!r}")
    if not low <= precision <= 16:
        raise ValueError(f"precision must be in [{low}, 16], got {precision}")
    return int(precision)
