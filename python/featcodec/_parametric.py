"""Per-element parametric models and scale indexing: the CPU references of
the CUDA kernels in :mod:`featcodec.cuda` (same native arithmetic, bit for bit)."""

from __future__ import annotations

from typing import Tuple

import numpy as np

from . import _core
from ._arrays import as_int32

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
    if not isinstance(precision, (int, np.integer)) or not 2 <= precision <= 16:
        raise ValueError(f"precision must be an integer in [2, 16], got {precision!r}")
    v, mu, s = element_arrays(values, means, scales)
    packed = _core.element_intervals(family_code(family), v, mu, s, int(precision))
    return packed & 0xFFFF, packed >> 16


def element_cdf(family: str, mean: float, scale: float, precision: int = 16) -> Tuple[int, np.ndarray]:
    """(k_min, cdf) of one element's quantized distribution: cdf[j] is the
    start of value k_min + j for j < n, cdf[n] the escape's start and
    cdf[n + 1] = 2**precision."""
    k_min, cdf = _core.element_cdf(family_code(family), float(mean), float(scale), int(precision))
    return int(k_min), cdf
