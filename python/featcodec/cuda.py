"""CUDA kernels that build tables on a GPU, bit-exact with the CPU builders.

Every function here has a CPU reference that it matches bit for bit (both run
the same native routines, src/cpp/tables/table_math.h):

=====================================  ===========================================
``featcodec.cuda``                     CPU reference
=====================================  ===========================================
:func:`tables_from_pmf`                :meth:`featcodec.CdfTables.from_pmf`
:func:`gaussian` / laplace / logistic  :meth:`featcodec.CdfTables.gaussian` / ...
:func:`parametric_intervals`           :func:`featcodec.parametric_intervals`
:func:`scale_index`                    :func:`featcodec.scale_index`
=====================================  ===========================================

Arrays may be device arrays (anything with ``__cuda_array_interface__``:
torch CUDA tensors, CuPy arrays; the interface's ``stream`` is waited on) or
host arrays (copied over).  Work runs on ``stream`` (a handle as an int, or
an object with ``cuda_stream`` or ``ptr``, as torch and CuPy streams have);
by default on the first device array's stream, else the legacy default
stream.  Tables come back as :class:`featcodec.CdfTables` on the host.

The kernels are in a separate extension, ``featcodec._cuda``, imported only
here and only when needed: ``import featcodec`` never loads CUDA.

>>> import featcodec.cuda
>>> isinstance(featcodec.cuda.is_available(), bool)
True
"""

from __future__ import annotations

import importlib
from typing import Any, Optional, Tuple, Union

import numpy as np

from ._arrays import as_int32, check_precision
from ._family import Family
from ._parametric import check_table_scales, element_arrays, valid_element_params
from ._tables import SUPPORTS, CdfTables, default_tail_mass

_state: dict = {}


def _load() -> Tuple[Any, str]:
    if "module" not in _state:
        try:
            module = importlib.import_module("featcodec._cuda")
        except ImportError as e:
            _state["module"], _state["reason"] = None, f"featcodec was built without its CUDA kernels ({e})"
        else:
            try:
                reason = module.availability()
            except Exception as e:  # a broken driver must not make is_available() raise
                reason = f"no CUDA device ({e})"
            _state["module"], _state["reason"] = module, reason
    return _state["module"], _state["reason"]


def is_available() -> bool:
    """True when the kernels were built and a CUDA device can run them. Never raises."""
    module, reason = _load()
    return module is not None and not reason


def unavailable_reason() -> Optional[str]:
    """Why :func:`is_available` is False (None when it is True)."""
    module, reason = _load()
    return None if module is not None and not reason else reason


def device_name() -> str:
    """The current CUDA device's name (e.g. "NVIDIA H100 80GB HBM3")."""
    return _require().device_name()


def _require() -> Any:
    module, reason = _load()
    if module is None or reason:
        raise RuntimeError(f"featcodec.cuda is not available: {reason}")
    return module


def _stream(stream: Any, *arrays: Any) -> int:
    if stream is None:
        for a in arrays:
            cai = getattr(a, "__cuda_array_interface__", None)
            if cai is not None and cai.get("stream") is not None:
                return int(cai["stream"])
        return 0
    for attr in ("cuda_stream", "ptr"):
        if hasattr(stream, attr):
            return int(getattr(stream, attr))
    return int(stream)


def _on_device(a: Any) -> bool:
    return hasattr(a, "__cuda_array_interface__")


def scale_index(scales: Any, table_scales: np.ndarray, *, out: Any = None, stream: Any = None) -> Any:
    """:func:`featcodec.scale_index` on the GPU.

    scales: float32 or float64, on the device or the host.  Returns a host
    int32 array, or fills ``out`` (an int32 device array of the same shape)
    without synchronizing and returns it.  A NaN scale gets index -1 (on the
    device no exception can be raised; with a host result, a ValueError).
    """
    module = _require()
    table = check_table_scales(table_scales)
    if not _on_device(scales):
        scales = np.asarray(scales)
        if scales.dtype not in (np.float32, np.float64):
            scales = scales.astype(np.float64)
    result = module.scale_index(scales, table, out, _stream(stream, scales, out))
    if out is None and (result < 0).any():
        raise ValueError(f"scale {int(np.argmax(result.reshape(-1) < 0))} is NaN")
    return result


def parametric_intervals(
    values: Any,
    family: Union[Family, str],
    means: Any,
    scales: Any,
    precision: int = 16,
    *,
    out: Any = None,
    stream: Any = None,
) -> Any:
    """:func:`featcodec.parametric_intervals` on the GPU, packed.

    Returns uint32 ``start | freq << 16`` per element: a host array, or
    ``out`` (a uint32 device array) filled without synchronizing.  Device
    inputs: values int32, means and scales both float32 or both float64, all
    of one shape; an element whose mean or scale is out of range gets 0 (no
    valid interval is 0).  Host inputs are broadcast and validated
    (ValueError) as by the CPU reference.
    """
    module = _require()
    code = Family.of(family)
    precision = check_precision(precision, low=2)
    if not (_on_device(values) or _on_device(means) or _on_device(scales)):
        values, means, scales = element_arrays(values, means, scales)
        from . import _core

        # Validation as the CPU reference does it (same messages), on an empty slice.
        _core.element_intervals(int(code), values.reshape(-1)[:0], means.reshape(-1)[:0], scales.reshape(-1)[:0], 2)
        bad = ~valid_element_params(means, scales)
        if bad.any():
            raise ValueError(f"element {int(np.argmax(bad.reshape(-1)))}: mean must be finite within +-2**30 "
                             "and scale in [2**-20, 2**20]")
    result = module.element_intervals(int(code), values, means, scales, precision, out,
                                      _stream(stream, values, means, scales, out))
    return result


def _parametric(family: Family, scales: Any, precision: int, tail_mass: Optional[float], stream: Any) -> CdfTables:
    module = _require()
    precision = check_precision(precision, low=2)
    tail_mass = default_tail_mass(precision) if tail_mass is None else float(tail_mass)
    if not 0.0 < tail_mass < 1.0:
        raise ValueError("tail_mass must be in (0, 1)")
    if not _on_device(scales):
        scales = np.asarray(scales, dtype=np.float64)
        if scales.ndim != 1:
            raise ValueError(f"scales must be 1-D, got shape {scales.shape}")
    offsets, lengths, freqs = module.parametric_tables(int(family), scales, precision, tail_mass,
                                                       _stream(stream, scales))
    from . import _core

    return CdfTables(_core.Tables.from_freqs(precision, offsets, lengths, freqs))


def gaussian(scales: Any, precision: int = 16, tail_mass: Optional[float] = None, *, stream: Any = None) -> CdfTables:
    """:meth:`featcodec.CdfTables.gaussian` built on the GPU (equal tables)."""
    return _parametric(Family.GAUSSIAN, scales, precision, tail_mass, stream)


def laplace(scales: Any, precision: int = 16, tail_mass: Optional[float] = None, *, stream: Any = None) -> CdfTables:
    """:meth:`featcodec.CdfTables.laplace` built on the GPU (equal tables)."""
    return _parametric(Family.LAPLACE, scales, precision, tail_mass, stream)


def logistic(scales: Any, precision: int = 16, tail_mass: Optional[float] = None, *, stream: Any = None) -> CdfTables:
    """:meth:`featcodec.CdfTables.logistic` built on the GPU (equal tables)."""
    return _parametric(Family.LOGISTIC, scales, precision, tail_mass, stream)


def tables_from_pmf(
    pmf: Any,
    offsets: np.ndarray,
    lengths: np.ndarray,
    precision: int = 16,
    *,
    support: str = "optimal",
    stream: Any = None,
) -> CdfTables:
    """:meth:`featcodec.CdfTables.from_pmf` on the GPU, one thread per row.

    pmf: (n_tables, L) float64, on the device or the host; ``lengths`` (the
    columns of each row) is required here.  ``support`` as for from_pmf.
    Equal to the CPU tables.
    """
    module = _require()
    precision = check_precision(precision, low=1)
    if support not in SUPPORTS:
        raise ValueError(f"support must be one of {SUPPORTS}, got {support!r}")
    if not _on_device(pmf):
        pmf = np.ascontiguousarray(pmf, dtype=np.float64)
    offsets = as_int32(offsets, "offsets")
    lengths = np.asarray(lengths, dtype=np.int64)
    if offsets.shape != lengths.shape:
        raise ValueError(f"offsets {offsets.shape} and lengths {lengths.shape} must have one entry per row")
    if (offsets.astype(np.int64) + lengths - 1 > np.iinfo(np.int32).max).any():
        raise ValueError("a row's offset + length - 1 exceeds int32")
    first, count, freqs = module.pmf_tables(pmf, lengths.astype(np.uint32), precision, support == "optimal",
                                            _stream(stream, pmf))
    from . import _core

    return CdfTables(_core.Tables.from_freqs(precision, (offsets + first).astype(np.int32), count.astype(np.uint32),
                                             freqs))
