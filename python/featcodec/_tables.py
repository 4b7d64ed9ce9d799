"""Quantized CDF tables: the probability models the coder codes against."""

from __future__ import annotations

from typing import Optional

import numpy as np

from . import _core
from ._arrays import as_int32, check_precision
from ._family import Family


def default_tail_mass(precision: int) -> float:
    """Outside mass of a parametric table's support by default: 2 / 2**precision.

    A wider support is not cheaper: a far-tail symbol keeps a frequency of at
    least 1 / 2**precision, paid for by the likely symbols, while an escaped
    one costs its escape plus a few raw bits.  Around probability 2 / 2**P the
    two balance (about +-4.2 sigma for a Gaussian at 16 bits; measured on the
    benchmark workloads, 1e-9 costs 0.027 % over the exact model, this 0.005 %).
    """
    return 2.0 ** (1 - precision)


SUPPORTS = ("optimal", "given")


class CdfTables:
    """A family of quantized CDF tables, one per row, sharing one precision.

    Row ``i`` codes the values ``offsets[i] .. offsets[i] + lengths[i] - 1``
    with their own frequencies; any other int32 value is coded as the row's
    escape symbol followed by a variable-length code, so every value
    round-trips.  Frequencies are integers summing to ``2**precision``, each at
    least 1, built by a deterministic integer algorithm: the same arguments
    give the same tables on every machine.

    >>> import numpy as np, featcodec as fc
    >>> t = fc.CdfTables.from_pmf(np.array([[0.25, 0.5, 0.25]]), offsets=[-1])
    >>> t.freqs(0)  # three symbols and the escape
    array([16384, 32767, 16384,     1], dtype=uint32)
    >>> fc.CdfTables.from_bytes(t.to_bytes()) == t
    True
    """

    __slots__ = ("_core",)

    def __init__(self, core: "_core.Tables") -> None:
        if not isinstance(core, _core.Tables):
            raise TypeError("use CdfTables.from_pmf, .from_cdf, .gaussian, .laplace, .logistic or .from_bytes")
        self._core = core

    # --- builders ---------------------------------------------------------------

    @classmethod
    def from_pmf(
        cls,
        pmf: np.ndarray,
        offsets: np.ndarray,
        lengths: Optional[np.ndarray] = None,
        precision: int = 16,
        *,
        support: str = "optimal",
    ) -> "CdfTables":
        """Tables from probability rows, quantized rate-optimally.

        pmf: (n_tables, L) non-negative floats; row i gives the probabilities
        of the values offsets[i], offsets[i] + 1, ...  The escape gets the mass
        a row is missing from 1 (a row summing to 1 or more is normalized and
        its escape gets the minimum frequency).  lengths: the number of
        columns of each row to use; by default each row up to its last
        nonzero entry.

        support: ``"optimal"`` (default) keeps, per row, the contiguous run of
        columns that minimizes the row's expected code length, counting what
        an escaped value costs (the escape's code and its raw bits): far-tail
        columns too rare to be worth a frequency unit are left to the escape,
        so the table's offsets and lengths may be narrower than the pmf's.
        ``"given"`` keeps exactly ``offsets[i] .. offsets[i] + lengths[i] - 1``.
        Either way the result is deterministic and integer-built.
        """
        pmf = np.asarray(pmf)
        if pmf.dtype.kind not in "fiu":
            raise TypeError(f"pmf must be a float array, got dtype {pmf.dtype}")
        if pmf.ndim != 2:
            raise ValueError(f"pmf must be 2-D (n_tables, L), got shape {pmf.shape}")
        if pmf.shape[0] and not pmf.shape[1]:
            raise ValueError(f"pmf rows must have at least one column, got shape {pmf.shape}")
        if support not in SUPPORTS:
            raise ValueError(f"support must be one of {SUPPORTS}, got {support!r}")
        offsets = as_int32(offsets, "offsets")
        if offsets.shape != (pmf.shape[0],):
            raise ValueError(f"offsets must have shape ({pmf.shape[0]},), got {offsets.shape}")
        if lengths is None and not pmf.shape[0]:
            lengths = np.zeros(0, np.int64)
        elif lengths is None:
            nonzero = pmf != 0
            lengths = np.where(nonzero.any(axis=1), pmf.shape[1] - np.argmax(nonzero[:, ::-1], axis=1), 0)
            empty = np.flatnonzero(lengths == 0)
            if empty.size:
                raise ValueError(f"row {empty[0]}: pmf is all zero")
        lengths = np.asarray(lengths)
        if lengths.dtype.kind not in "iu" or lengths.shape != (pmf.shape[0],):
            raise ValueError(f"lengths must be an integer array of shape ({pmf.shape[0]},)")
        bad = np.flatnonzero((lengths < 1) | (lengths > pmf.shape[1]))
        if bad.size:
            raise ValueError(f"row {bad[0]}: length {lengths[bad[0]]} must be in [1, {pmf.shape[1]}]")
        precision = check_precision(precision, low=1)
        return cls(_core.Tables.from_pmf(pmf.astype(np.float64), offsets, lengths.astype(np.uint32), precision,
                                         support == "optimal"))

    @classmethod
    def gaussian(
        cls, scales: np.ndarray, precision: int = 16, tail_mass: Optional[float] = None
    ) -> "CdfTables":
        """One discretized zero-mean Gaussian per scale (standard deviation).

        p(k) = Phi((k + 1/2) / s) - Phi((k - 1/2) / s) on the smallest symmetric
        support whose outside mass is at most ``tail_mass`` (default:
        :func:`default_tail_mass`); values outside are escaped.
        """
        return cls._parametric(Family.GAUSSIAN, scales, precision, tail_mass)

    @classmethod
    def laplace(cls, scales: np.ndarray, precision: int = 16, tail_mass: Optional[float] = None) -> "CdfTables":
        """One discretized zero-mean Laplace distribution per scale b (density exp(-|x|/b) / 2b)."""
        return cls._parametric(Family.LAPLACE, scales, precision, tail_mass)

    @classmethod
    def logistic(cls, scales: np.ndarray, precision: int = 16, tail_mass: Optional[float] = None) -> "CdfTables":
        """One discretized zero-mean logistic distribution per scale s (CDF 1 / (1 + exp(-x/s)))."""
        return cls._parametric(Family.LOGISTIC, scales, precision, tail_mass)

    @classmethod
    def _parametric(cls, family: Family, scales: np.ndarray, precision: int, tail_mass: Optional[float]) -> "CdfTables":
        scales = np.asarray(scales)
        if scales.dtype.kind not in "fiu":
            raise TypeError(f"scales must be a float array, got dtype {scales.dtype}")
        if scales.ndim != 1:
            raise ValueError(f"scales must be 1-D, got shape {scales.shape}")
        precision = check_precision(precision, low=2)
        tail_mass = default_tail_mass(precision) if tail_mass is None else float(tail_mass)
        return cls(_core.Tables.parametric(int(family), scales.astype(np.float64), precision, tail_mass))

    @classmethod
    def from_cdf(
        cls, cdf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, precision: int = 16
    ) -> "CdfTables":
        """Tables from quantized CDFs as they are, without requantizing: the inverse of :meth:`cdf`.

        cdf: (n_tables, >= max(lengths) + 2) integers; row i starts with 0,
        then the cumulative frequencies of its ``lengths[i]`` symbols and of
        the escape, ending at ``2**precision``; entries after that are ignored
        (padding).  Every frequency must be at least 1.  This is the layout
        other coders store (CompressAI's ``_quantized_cdf`` with
        ``_cdf_length - 2`` symbols and ``_offset``), so their integer tables
        code here unchanged.
        """
        cdf = np.asarray(cdf)
        if cdf.dtype.kind not in "iu":
            raise TypeError(f"cdf must be an integer array, got dtype {cdf.dtype}")
        if cdf.ndim != 2:
            raise ValueError(f"cdf must be 2-D (n_tables, L), got shape {cdf.shape}")
        offsets = as_int32(offsets, "offsets")
        lengths = np.asarray(lengths)
        rows = cdf.shape[0]
        if offsets.shape != (rows,) or lengths.shape != (rows,) or lengths.dtype.kind not in "iu":
            raise ValueError(f"offsets and lengths must be integer arrays of shape ({rows},)")
        precision = check_precision(precision, low=1)
        bad = np.flatnonzero((lengths < 1) | (lengths + 2 > cdf.shape[1]))
        if bad.size:
            raise ValueError(f"row {bad[0]}: length {lengths[bad[0]]} must be in [1, {cdf.shape[1] - 2}]")
        if np.any(cdf[:, 0] != 0):
            raise ValueError(f"row {np.flatnonzero(cdf[:, 0] != 0)[0]}: a CDF must start at 0")
        used = np.arange(1, cdf.shape[1])[None, :] < lengths[:, None] + 2  # the steps of each row's CDF
        steps = np.diff(cdf.astype(np.int64), axis=1)
        bad = np.flatnonzero((used & (steps < 1)).any(axis=1))
        if bad.size:
            raise ValueError(f"row {bad[0]}: every frequency must be at least 1 (the CDF must increase)")
        ends = cdf[np.arange(rows), lengths + 1]
        bad = np.flatnonzero(ends != 1 << precision)
        if bad.size:
            raise ValueError(f"row {bad[0]}: the CDF must end at 2**precision = {1 << precision}, got {ends[bad[0]]}")
        freqs = steps[used]  # each in [1, 2**precision) now
        return cls(_core.Tables.from_freqs(precision, offsets, lengths.astype(np.uint32), freqs.astype(np.uint32)))

    @classmethod
    def from_bytes(cls, blob: bytes) -> "CdfTables":
        """Tables from :meth:`to_bytes`; a ValueError if the blob is not valid."""
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise TypeError(f"blob must be bytes, got {type(blob).__name__}")
        return cls(_core.Tables.deserialize(bytes(blob)))

    # --- views ------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """A versioned, checksummed serialization (docs/format.md); bit-exact."""
        return self._core.serialize()

    @property
    def precision(self) -> int:
        return self._core.precision

    @property
    def offsets(self) -> np.ndarray:
        """Value of each row's first symbol (int32)."""
        return self._core.offsets.astype(np.int32)

    @property
    def lengths(self) -> np.ndarray:
        """Number of symbols in each row's support, the escape excluded."""
        return self._core.lengths.astype(np.int64)

    def freqs(self, row: int) -> np.ndarray:
        """Frequencies of row ``row``: its support's symbols, then the escape."""
        return self._core.freqs(row).astype(np.uint32)

    def cdf(self) -> np.ndarray:
        """All CDFs as an (n_tables, max_length + 2) int64 array, padded with 2**precision.

        Row i holds 0, then the cumulative frequencies of its symbols and escape.
        """
        lengths = self.lengths
        out = np.full((len(self), int(lengths.max(initial=0)) + 2), 1 << self.precision, dtype=np.int64)
        for i, length in enumerate(lengths):
            out[i, 0] = 0
            out[i, 1 : length + 2] = np.cumsum(self.freqs(i))
        return out

    def __len__(self) -> int:
        return len(self._core)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CdfTables) and self._core == other._core

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CdfTables(n_tables={len(self)}, precision={self.precision})"

