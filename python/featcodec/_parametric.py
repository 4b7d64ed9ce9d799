"""Per-element parametric models and scale indexing: the CPU references of
the CUDA kernels in :mod:`featcodec.cuda` (same native arithmetic, bit for bit)."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from . import _core
from ._arrays import as_int32, as_shape
from ._coding import (
    DEFAULT_CHUNK_SIZE,
    Checksum,
    _check_data,
    _chunk_bits,
    _context,
    _threads,
    checksum_size,
    required_checksum,
)

FAMILIES = {"gaussian": 0, "laplace": 1, "logistic": 2}

#: Documented ranges of per-element parameters (ValueError outside).
MIN_ELEMENT_SCALE = 2.0**-20
MAX_ELEMENT_SCALE = 2.0**20
MAX_ELEMENT_MEAN = 2.0**30


def family_code(family: str) -> int:
    try:
        return FAMILIES[family]
    except (KeyError, TypeError):
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}") from None


def _float_array(values: object, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{what} must be a float array, got dtype {array.dtype}")
    return array


def check_table_scales(table_scales: object) -> np.ndarray:
    table = _float_array(table_scales, "table_scales").astype(np.float64)
    if table.ndim != 1 or table.size == 0:
        raise ValueError("table_scales must be a non-empty 1-D array")
    if not (np.isfinite(table).all() and (table > 0).all() and (np.diff(table) > 0).all()):
        raise ValueError("table_scales must be positive, finite and strictly increasing")
    return table


def scale_index(scales: np.ndarray, table_scales: np.ndarray) -> np.ndarray:
    """Index of each scale in a scale family: the smallest i with
    ``table_scales[i] >= scale``, clamped to the last table.

    Defined by comparisons only, so exact for float32 and float64 scales
    alike (a float32 compares as its exact double value).  NaN raises
    ValueError.  :func:`featcodec.cuda.scale_index` computes the same on a GPU.

    >>> import numpy as np, featcodec as fc
    >>> fc.scale_index(np.array([0.05, 0.11, 0.2, 1e9]), [0.11, 0.2, 256.0]).tolist()
    [0, 0, 1, 2]
    >>> fc.scale_index(np.float32([0.2]), [0.11, 0.2, 256.0]).tolist()  # float32(0.2) > 0.2
    [2]
    """
    s = _float_array(scales, "scales")
    s = s if s.dtype in (np.float32, np.float64) else s.astype(np.float64)
    return _core.scale_index(s, check_table_scales(table_scales))


def element_arrays(
    values: object, means: object, scales: object
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """values (int32), means and scales (float64) broadcast to one shape, C-contiguous."""
    v = as_int32(values, "values")
    mu = _float_array(means, "means").astype(np.float64)
    s = _float_array(scales, "scales").astype(np.float64)
    try:
        v, mu, s = np.broadcast_arrays(v, mu, s)
    except ValueError:
        raise ValueError(f"values {v.shape}, means {mu.shape} and scales {s.shape} do not broadcast") from None
    return (np.ascontiguousarray(v), np.ascontiguousarray(mu), np.ascontiguousarray(s))


def parametric_intervals(
    values: np.ndarray, family: str, means: np.ndarray, scales: np.ndarray, precision: int = 16
) -> Tuple[np.ndarray, np.ndarray]:
    """The (start, frequency) of each value under its own discretized
    distribution (mean and scale per element), as uint32 arrays.

    Each element's quantized CDF is closed-form (docs/format.md, "Per-element
    parametric models"): every value of its support has a frequency of at
    least 1, the rest is the escape's interval, and frequencies sum to
    ``2**precision``.  ``means`` must be finite with ``|mean| <= 2**30``,
    ``scales`` in ``[2**-20, 2**20]`` (ValueError otherwise).
    :func:`featcodec.cuda.parametric_intervals` computes the same on a GPU.

    >>> import featcodec as fc
    >>> start, freq = fc.parametric_intervals([0, 1, 99], "gaussian", means=0.0, scales=1.0)
    >>> freq.tolist()  # a likely value, a less likely one, an escape
    [25092, 15840, 2]
    """
    precision = _check_precision(precision)
    v, mu, s = element_arrays(values, means, scales)
    packed = _core.element_intervals(family_code(family), v, mu, s, int(precision))
    return packed & 0xFFFF, packed >> 16


def element_cdf(family: str, mean: float, scale: float, precision: int = 16) -> Tuple[int, np.ndarray]:
    """(k_min, cdf) of one element's quantized distribution: cdf[j] is the
    start of value k_min + j for j < n, cdf[n] the escape's start and
    cdf[n + 1] = 2**precision."""
    k_min, cdf = _core.element_cdf(family_code(family), _scalar(mean, "mean"), _scalar(scale, "scale"),
                                   _check_precision(precision))
    return int(k_min), cdf


def _scalar(value: object, what: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{what} must be a real number, got {value!r}")
    return float(value)


# --- coding with per-element models ---------------------------------------------------


def _check_precision(precision: object) -> int:
    if isinstance(precision, bool) or not isinstance(precision, (int, np.integer)) or not 2 <= precision <= 16:
        raise ValueError(f"precision must be an integer in [2, 16], got {precision!r}")
    return int(precision)


def _element_params(means: object, scales: object, shape: Tuple[int, ...]) -> Tuple[np.ndarray, np.ndarray]:
    """means and scales (float64) broadcast to ``shape``, C-contiguous."""
    mu = _float_array(means, "means").astype(np.float64)
    s = _float_array(scales, "scales").astype(np.float64)
    try:
        mu, s = (np.broadcast_to(a, shape) for a in (mu, s))
    except ValueError:
        raise ValueError(f"means {mu.shape} and scales {s.shape} do not broadcast to {shape}") from None
    return np.ascontiguousarray(mu), np.ascontiguousarray(s)


def _packed_intervals(intervals: object, shape: Tuple[int, ...]) -> np.ndarray:
    """A (start, freq) pair or a packed ``start | freq << 16`` array, packed, of ``shape``."""
    if isinstance(intervals, tuple):
        if len(intervals) != 2:
            raise ValueError("intervals must be a (start, freq) pair or a packed array")
        start, freq = (np.asarray(a) for a in intervals)
        for name, a in (("start", start), ("freq", freq)):
            if a.dtype.kind not in "iu" or not _fits(a, shape):
                raise ValueError(f"intervals' {name} must be an integer array of shape {shape}")
            if a.size and not (a.min() >= 0 and a.max() < 1 << 16):
                raise ValueError(f"intervals' {name} must be in [0, 2**16)")
        packed = start.astype(np.uint32) | freq.astype(np.uint32) << np.uint32(16)
    else:
        packed = np.asarray(intervals)
        if packed.dtype.kind not in "iu" or not _fits(packed, shape):
            raise ValueError(f"intervals must be an integer array of shape {shape}")
        if packed.size and not (packed.min() >= 0 and packed.max() < 1 << 32):
            raise ValueError("packed intervals must be in [0, 2**32)")
    return np.ascontiguousarray(packed, dtype=np.uint32).reshape(shape)


def _fits(a: np.ndarray, shape: Tuple[int, ...]) -> bool:
    # A 0-d element's intervals come back from parametric_intervals as (1,).
    return a.shape == shape or (a.size == 1 and shape == ())


def encode_parametric(
    symbols: np.ndarray,
    family: str,
    means: np.ndarray,
    scales: np.ndarray,
    *,
    precision: int = 16,
    intervals: object = None,
    checksum: Checksum = True,
    context: bytes = b"",
    threads: Optional[int] = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> bytes:
    """Codes an integer array with a distribution of its own for every
    element: ``family`` with ``means[i]`` and ``scales[i]`` (broadcast to
    ``symbols.shape``), quantized as :func:`parametric_intervals` does.

    The message has :func:`encode`'s layout (docs/format.md); only the
    intervals come from the per-element models.  Values outside an
    element's support are escape-coded.  ``means`` must be finite with
    ``|mean| <= 2**30``, ``scales`` in ``[2**-20, 2**20]`` (ValueError).

    intervals: optionally each element's interval, already computed (by
    :func:`parametric_intervals` or :func:`featcodec.cuda.parametric_intervals`),
    as a (start, freq) pair of arrays or packed ``start | freq << 16``, of
    ``symbols.shape``; the coder then evaluates no distributions (means and
    scales still give each support, for escapes).  The bytes are the same
    when the intervals are; other intervals make a message that does not
    decode (DecodeError with the checksum on).

    checksum and context: as for :func:`encode`.

    >>> import numpy as np, featcodec as fc
    >>> x = np.array([[0, 3, -2], [40, 41, 2**31 - 1]])
    >>> mu, sigma = np.array([[0.2], [40.0]]), np.array([1.5, 0.5, 2.0])
    >>> data = fc.encode_parametric(x, "gaussian", mu, sigma)
    >>> fc.decode_parametric(data, "gaussian", mu, sigma, shape=x.shape).tolist()
    [[0, 3, -2], [40, 41, 2147483647]]
    >>> data == fc.encode_parametric(x, "gaussian", mu, sigma,
    ...                              intervals=fc.parametric_intervals(x, "gaussian", mu, sigma))
    True
    """
    values = as_int32(symbols, "symbols")
    p = _check_precision(precision)
    mu, s = _element_params(means, scales, values.shape)
    packed = None if intervals is None else _packed_intervals(intervals, values.shape)
    size = checksum_size(checksum)
    aad = _context(context, size)
    return _core.encode_elements(
        values, family_code(family), mu, s, packed, p, size, aad, _threads(threads), _chunk_bits(chunk_size)
    )


def decode_parametric(
    data: bytes,
    family: str,
    means: np.ndarray,
    scales: np.ndarray,
    *,
    precision: int = 16,
    shape: Optional[Sequence[int]] = None,
    checksum: Optional[Checksum] = None,
    context: bytes = b"",
    threads: Optional[int] = None,
) -> np.ndarray:
    """Decodes bytes from :func:`encode_parametric` with the same family,
    means, scales and precision.

    Returns an int32 array of ``shape`` (default: the broadcast shape of
    ``means`` and ``scales``).  Raises DecodeError for bytes that are not
    such a message, and, with the checksum on, for other means or scales.
    checksum and context: as for :func:`decode`.
    """
    _check_data(data)
    p = _check_precision(precision)
    required = required_checksum(checksum, context)
    aad = _context(context, None)
    code = family_code(family)
    if shape is None:
        try:
            shape = np.broadcast_shapes(np.shape(means), np.shape(scales))
        except ValueError:
            raise ValueError(f"means {np.shape(means)} and scales {np.shape(scales)} do not broadcast") from None
    shape = as_shape(shape)
    mu, s = _element_params(means, scales, shape)
    return _core.decode_elements(bytes(data), code, mu, s, shape, p, required, aad, _threads(threads))
