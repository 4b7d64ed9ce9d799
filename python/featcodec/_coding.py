"""The numpy coding API: integer arrays and table indexes in, bytes out, and back."""

from __future__ import annotations

import functools
import os
from typing import Optional, Sequence

import numpy as np

from . import _core
from ._arrays import as_int32, as_shape
from ._tables import CdfTables

DecodeError = _core.DecodeError
DecodeError.__doc__ = "Bytes that are not a valid message for the given tables and shape (a ValueError)."
DecodeError.__module__ = "featcodec"

#: Symbols per independently coded chunk, by default.  Chunks are what
#: threads share out; each costs about 15 bytes (lane flushes, directory),
#: so a chunk of 2**19 symbols (typically 200+ KB) keeps that below 0.01 %.
DEFAULT_CHUNK_SIZE = 1 << 19


def encode(
    symbols: np.ndarray,
    tables: CdfTables,
    indexes: np.ndarray,
    *,
    checksum: bool = True,
    threads: Optional[int] = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> bytes:
    """Codes an integer array into bytes.

    symbols: integer array of any shape and dtype whose values fit in int32.
    indexes: integer array broadcastable to ``symbols.shape``; element i is
    coded with table ``indexes[i]``.  A factorized model over channels of a
    (B, C, H, W) tensor is ``indexes`` of shape (1, C, 1, 1): nothing is
    materialized per element.
    checksum: append a 4-byte checksum of the values, so that decoding
    corrupt bytes, or with other tables or indexes, raises DecodeError.
    threads: chunks coded in parallel (default: all available cores).
    chunk_size: symbols per chunk, a power of two in [16, 2**30].

    >>> import numpy as np, featcodec as fc
    >>> t = fc.CdfTables.gaussian([1.0, 4.0])
    >>> x = np.array([[0, -3, 1], [7, 2, -100000]])
    >>> data = fc.encode(x, t, [[0], [1]])  # row 0 with table 0, row 1 with table 1
    >>> fc.decode(data, t, [[0], [1]], shape=x.shape).tolist()
    [[0, -3, 1], [7, 2, -100000]]
    """
    _check_tables(tables)
    values = as_int32(symbols, "symbols")
    table_indexes = as_int32(indexes, "indexes")  # broadcast natively, without a copy
    return _core.encode(
        values, tables._core, table_indexes, bool(checksum), _threads(threads), _chunk_bits(chunk_size)
    )


def decode(
    data: bytes,
    tables: CdfTables,
    indexes: np.ndarray,
    *,
    shape: Optional[Sequence[int]] = None,
    threads: Optional[int] = None,
) -> np.ndarray:
    """Decodes bytes from :func:`encode` with the same tables and indexes.

    Returns an int32 array of ``shape`` (default: ``indexes``' shape).
    Raises DecodeError for bytes that are not such a message.
    """
    _check_tables(tables)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    table_indexes = as_int32(indexes, "indexes")
    shape = table_indexes.shape if shape is None else as_shape(shape)
    return _core.decode(bytes(data), tables._core, table_indexes, shape, _threads(threads))


def information_content(symbols: np.ndarray, tables: CdfTables, indexes: np.ndarray) -> float:
    """Ideal bits of ``symbols`` under the quantized tables: sum of -log2 p.

    An escaped value counts the escape's -log2 p plus the raw bits of its
    value code.  What :func:`encode` spends beyond this is the coder's
    overhead (header, flush, checksum).
    """
    _check_tables(tables)
    values = as_int32(symbols, "symbols")
    return _core.information_content(values, tables._core, as_int32(indexes, "indexes"))


def _check_tables(tables: object) -> None:
    if not isinstance(tables, CdfTables):
        raise TypeError(f"tables must be a CdfTables, got {type(tables).__name__}")


@functools.lru_cache(maxsize=None)
def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _threads(threads: Optional[int]) -> int:
    if threads is None:
        return _available_cores()
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    return int(threads)


def _chunk_bits(chunk_size: int) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
        raise TypeError(f"chunk_size must be an integer, got {chunk_size!r}")
    bits = int(chunk_size).bit_length() - 1
    if chunk_size < 16 or chunk_size > 1 << 30 or chunk_size != 1 << bits:
        raise ValueError(f"chunk_size must be a power of two in [16, 2**30], got {chunk_size}")
    return bits
