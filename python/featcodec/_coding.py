"""The numpy coding API: integer arrays and table indexes in, bytes out, and back."""

from __future__ import annotations

import functools
import os
from typing import Optional, Sequence, Tuple, Union

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

#: Checksum sizes in bytes a message may carry; ``checksum=True`` is the largest.
CHECKSUM_SIZES = (1, 2, 4)

Checksum = Union[bool, int]


def encode(
    symbols: np.ndarray,
    tables: CdfTables,
    indexes: np.ndarray,
    *,
    checksum: Checksum = True,
    context: bytes = b"",
    threads: Optional[int] = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> bytes:
    """Codes an integer array into bytes.

    symbols: integer array of any shape and dtype whose values fit in int32.
    indexes: integer array broadcastable to ``symbols.shape``; element i is
    coded with table ``indexes[i]``.  A factorized model over channels of a
    (B, C, H, W) tensor is ``indexes`` of shape (1, C, 1, 1): nothing is
    materialized per element.
    checksum: a checksum of the values (and of ``context``), so that decoding
    corrupt bytes, or with other tables, indexes or shape, raises
    DecodeError: True for 4 bytes, False for none, or a size of 1, 2 or 4
    bytes (a wrong message then passes with probability 2**(-8 * size)).
    context: associated data that the receiver has by other means (a
    container's header, a model fingerprint): hashed into the checksum but
    not sent, so :func:`decode` with another context raises DecodeError.
    Needs a checksum (ValueError without one).
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
    size = checksum_size(checksum)
    aad = _context(context, size)
    return _core.encode(values, tables._core, table_indexes, size, aad, _threads(threads), _chunk_bits(chunk_size))


def decode(
    data: bytes,
    tables: CdfTables,
    indexes: np.ndarray,
    *,
    shape: Optional[Sequence[int]] = None,
    checksum: Optional[Checksum] = None,
    context: bytes = b"",
    threads: Optional[int] = None,
) -> np.ndarray:
    """Decodes bytes from :func:`encode` with the same tables and indexes.

    Returns an int32 array of ``shape`` (default: ``indexes``' shape).
    Raises DecodeError for bytes that are not such a message.

    checksum: what the message must carry.  None or False: whatever it says
    (a message without a checksum is checked only structurally); True: a
    checksum of any size; an int n in (1, 2, 4): at least n bytes.  Since
    the message itself says whether it has a checksum, a receiver that
    relies on it must ask for it here.
    context: the encoder's ``context``.  A nonempty context needs a checksum:
    with ``checksum=False`` it is a ValueError, and a message without one
    raises DecodeError.
    """
    _check_tables(tables)
    _check_data(data)
    table_indexes = as_int32(indexes, "indexes")
    shape = table_indexes.shape if shape is None else as_shape(shape)
    required = required_checksum(checksum, context)
    aad = _context(context, None)
    return _core.decode(bytes(data), tables._core, table_indexes, shape, required, aad, _threads(threads))


def information_content(symbols: np.ndarray, tables: CdfTables, indexes: np.ndarray) -> float:
    """Ideal bits of ``symbols`` under the quantized tables: sum of -log2 p.

    An escaped value counts the escape's -log2 p plus the raw bits of its
    value code.  What :func:`encode` spends beyond this is the coder's
    overhead (header, flush, checksum).
    """
    _check_tables(tables)
    values = as_int32(symbols, "symbols")
    return _core.information_content(values, tables._core, as_int32(indexes, "indexes"))


def checksum_size(checksum: object) -> int:
    """Bytes of checksum an encoder writes for ``checksum=`` (True: 4, False: 0)."""
    if isinstance(checksum, (bool, np.bool_)):
        return 4 if checksum else 0
    if isinstance(checksum, (int, np.integer)) and int(checksum) in (0,) + CHECKSUM_SIZES:
        return int(checksum)
    raise ValueError(f"checksum must be True, False or a size in bytes (1, 2 or 4), got {checksum!r}")


def required_checksum(checksum: object, context: object) -> int:
    """The least checksum size a decoder accepts for ``checksum=`` and ``context=``."""
    if checksum is None:
        return 1 if context else 0
    if isinstance(checksum, (bool, np.bool_)):
        if not checksum and context:
            raise ValueError("context is verified by the checksum: it cannot be given with checksum=False")
        return 1 if checksum or context else 0
    if isinstance(checksum, (int, np.integer)) and int(checksum) in CHECKSUM_SIZES:
        return int(checksum)
    raise ValueError(f"checksum must be None, True, False or a size in bytes (1, 2 or 4), got {checksum!r}")


def _context(context: object, size: Optional[int]) -> bytes:
    if not isinstance(context, (bytes, bytearray, memoryview)):
        raise TypeError(f"context must be bytes, got {type(context).__name__}")
    if size == 0 and len(context):
        raise ValueError("context is verified by the checksum: it cannot be given with checksum=False")
    return bytes(context)


def _check_data(data: object) -> None:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")


def message_layout(data: bytes, n_symbols: int) -> Tuple[int, int]:
    """(header bytes, checksum bytes) of a message of ``n_symbols`` symbols
    (docs/format.md): its header byte and chunk directory, and the size of
    its checksum (held in lane 0's state, so not bytes of its own, but what
    it costs)."""
    if not data:
        return 0, 0
    head = data[0]
    # Bits 5-4 give the checksum size in both header forms; only a full header
    # (bits 7-6 = 11) has the chunked bit (a compact one has state bits there).
    checksum, chunked = (0, 1, 2, 4)[head >> 4 & 3], head >> 6 == 3 and bool(head >> 2 & 1)
    header = 1
    if chunked and len(data) > 1:
        chunks = -(-n_symbols // (1 << min(data[1], 30)))
        header += 1
        for _ in range(chunks - 1):  # varint chunk lengths
            while header < len(data) and data[header] & 0x80:
                header += 1
            header += 1
    return min(header, len(data)), checksum


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
    """Threads to code with: all cores for None; never more than the cores
    times a small factor (the native layer also caps them at the chunk count)."""
    cap = _available_cores() * _core.THREADS_PER_CORE
    if threads is None:
        return _available_cores()
    if isinstance(threads, (bool, np.bool_)) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    return min(int(threads), cap)


def _chunk_bits(chunk_size: int) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
        raise TypeError(f"chunk_size must be an integer, got {chunk_size!r}")
    bits = int(chunk_size).bit_length() - 1
    if chunk_size < 16 or chunk_size > 1 << 30 or chunk_size != 1 << bits:
        raise ValueError(f"chunk_size must be a power of two in [16, 2**30], got {chunk_size}")
    return bits
