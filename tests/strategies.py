"""Hypothesis strategies and array helpers shared by the featcodec tests."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import featcodec as fc

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

SYMBOL_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
LAYOUTS = ["c", "fortran", "step", "negative", "transpose"]
FAMILIES = ["gaussian", "laplace", "logistic"]


# --- tables ------------------------------------------------------------------------


def _offset_strategy(length: int) -> st.SearchStrategy[int]:
    """Offsets with offset + length - 1 <= INT32_MAX, biased to both int32 ends."""
    top = INT32_MAX - length + 1
    return st.one_of(
        st.integers(-64, 64),
        st.integers(INT32_MIN, INT32_MIN + 64),
        st.integers(top - 64, top),
        st.just(INT32_MIN),
        st.just(top),
        st.integers(INT32_MIN, top),
    )


@st.composite
def pmf_rows(draw, precision: int, max_tables: int = 4, max_width: int = 40):
    """(pmf, lengths or None): rows with zeros inside and trailing zeros.

    Row sums vary: well below 1 (a likely escape), about 1, and above 1
    (normalized, minimal escape).
    """
    width = draw(st.integers(1, min(max_width, 2**precision - 1)))
    n_tables = draw(st.integers(1, max_tables))
    element = st.one_of(st.just(0.0), st.floats(1e-12, 1.0), st.floats(1e-3, 1.0))
    pmf = draw(hnp.arrays(np.float64, (n_tables, width), elements=element))
    explicit = draw(st.booleans())
    lengths = []
    for i in range(n_tables):
        if explicit:
            length = draw(st.integers(1, width))
        else:
            length = width
        if not pmf[i, :length].any():
            pmf[i, draw(st.integers(0, length - 1))] = draw(st.floats(1e-6, 1.0))
        total = draw(st.sampled_from([None, 0.25, 0.9, 0.999, 1.0, 1.5]))
        if total is not None:
            pmf[i] *= total / pmf[i, :length].sum()
        lengths.append(length)
    return pmf, (np.array(lengths) if explicit else None)


def effective_lengths(pmf: np.ndarray, lengths) -> list[int]:
    """The lengths from_pmf is documented to use: given, or up to the last nonzero."""
    if lengths is not None:
        return [int(v) for v in lengths]
    return [int(np.flatnonzero(row)[-1]) + 1 for row in pmf]


@st.composite
def pmf_tables(draw, precisions=st.integers(1, 16), max_tables: int = 4, max_width: int = 40):
    """(tables, pmf, offsets, lengths-argument, support) for CdfTables.from_pmf."""
    precision = draw(precisions)
    pmf, lengths = draw(pmf_rows(precision, max_tables=max_tables, max_width=max_width))
    offsets = np.array([draw(_offset_strategy(n)) for n in effective_lengths(pmf, lengths)], dtype=np.int64)
    support = draw(st.sampled_from(["optimal", "given"]))
    tables = fc.CdfTables.from_pmf(pmf, offsets, lengths=lengths, precision=precision, support=support)
    return tables, pmf, offsets, lengths, support


@st.composite
def wide_pmf_rows(draw, max_tables: int = 3, max_width: int = 300):
    """(pmf, offsets, precision): rows wider than the precision allows with
    their escape, heavy and light tails, unimodal or not."""
    precision = draw(st.integers(1, 10))
    width = draw(st.integers(1, max_width))
    n_tables = draw(st.integers(1, max_tables))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["laplace", "random", "spiky"]))
    k = np.arange(width) - draw(st.integers(0, width - 1))
    if kind == "laplace":
        b = np.exp(rng.uniform(np.log(0.05), np.log(200.0), (n_tables, 1)))
        pmf = np.exp(-np.abs(k) / b)
    elif kind == "random":
        pmf = rng.random((n_tables, width)) ** rng.uniform(1, 20)
    else:
        pmf = (rng.random((n_tables, width)) < 0.05) * rng.random((n_tables, width))
        pmf[:, rng.integers(0, width)] = 1.0
    pmf = pmf * draw(st.sampled_from([1.0, 0.5, 0.99, 3.0])) / pmf.sum(axis=1, keepdims=True)
    offsets = np.array([draw(_offset_strategy(width)) for _ in range(n_tables)], dtype=np.int64)
    return pmf, offsets, precision


@st.composite
def parametric_args(draw, precisions=st.integers(2, 16), max_tables: int = 4):
    family = draw(st.sampled_from(FAMILIES))
    precision = draw(precisions)
    scales = draw(
        st.lists(
            st.one_of(st.floats(0.01, 5.0), st.floats(5.0, 2000.0), st.sampled_from([1e-300, 1e-3, 1e6])),
            min_size=1,
            max_size=max_tables,
        )
    )
    tail_mass = draw(st.sampled_from([None, 1e-5, 1e-12, 1e-3, 0.1, 0.5]))  # None: the default
    return family, np.array(scales), precision, tail_mass


def build_parametric(family, scales, precision, tail_mass):
    return getattr(fc.CdfTables, family)(scales, precision=precision, tail_mass=tail_mass)


def any_tables(precisions=st.integers(1, 16)):
    """Random from_pmf or parametric tables."""
    return st.one_of(
        pmf_tables(precisions=precisions).map(lambda r: r[0]),
        wide_pmf_rows().map(lambda r: fc.CdfTables.from_pmf(r[0], r[1], precision=r[2])),
        parametric_args(precisions=precisions.map(lambda p: max(p, 2))).map(lambda a: build_parametric(*a)),
    )


# --- symbols and indexes -------------------------------------------------------------

# Sizes whose chunks take each lane count (1 up to 16384 symbols a chunk, 4
# up to 65536, 8 beyond): with the default chunk size these reach 4 and 8.
LANE_SHAPES = [(16385,), (40000,), (65537,), (70001,), (2, 35000)]

symbol_shapes = st.one_of(
    hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=9),
    st.sampled_from([(), (0,), (3, 0, 2), (1,), (1, 1, 1), (2, 3, 1, 5)]),
    st.sampled_from(LANE_SHAPES),
    st.integers(0, 3000).map(lambda n: (n,)),
    st.tuples(st.integers(1, 3), st.integers(1, 16), st.integers(1, 12), st.integers(1, 12)),  # (B, C, H, W)
)


@st.composite
def index_arrays(draw, shape: tuple, n_tables: int):
    """(small, full): table indexes broadcastable to ``shape`` and their broadcast copy.

    ``small`` is the full per-element array, a (1, C, 1, 1)-style array with
    some dimensions kept and others 1, or one with leading dimensions dropped.
    """
    mode = draw(st.sampled_from(["full", "broadcast", "leading-dropped"]))
    if mode == "full":
        small_shape = shape
    else:
        small_shape = tuple(d if draw(st.booleans()) else 1 for d in shape)
        if mode == "leading-dropped":
            small_shape = small_shape[draw(st.integers(0, len(small_shape))) :]
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if draw(st.booleans()):
        small = rng.integers(0, n_tables, small_shape).astype(np.int64)
    else:  # all one table: runs of identical indexes
        small = np.full(small_shape, draw(st.integers(0, n_tables - 1)), dtype=np.int64)
    dtype = draw(st.sampled_from([np.int32, np.int64, np.uint8, np.int16]))
    small = small.astype(dtype)
    full = np.ascontiguousarray(np.broadcast_to(small, shape)).astype(np.int32)
    return small, full


@st.composite
def bad_index_arrays(draw, shape: tuple, n_tables: int):
    """Indexes broadcastable to a nonempty ``shape`` with one out-of-range
    entry anywhere in the (possibly broadcast) array: in any outer run, not
    just the first."""
    small_shape = tuple(d if draw(st.booleans()) else 1 for d in shape)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    small = rng.integers(0, n_tables, small_shape).astype(np.int64)
    bad = draw(st.sampled_from([n_tables, n_tables + 1, -1, INT32_MAX, INT32_MIN]))
    position = tuple(draw(st.integers(0, d - 1)) for d in small_shape)
    small[position] = bad
    return small.astype(np.int32 if draw(st.booleans()) else np.int64), bad


def make_symbols(rng: np.random.Generator, tables, full_indexes: np.ndarray, dtype) -> np.ndarray:
    """Symbols for the given per-element tables: mostly in support, some at the
    support's edges, some anywhere in int32, and the int32 extremes; clipped
    to what ``dtype`` holds (and to int32), returned as ``dtype``."""
    offsets = tables.offsets.astype(np.int64)[full_indexes]
    lengths = tables.lengths.astype(np.int64)[full_indexes]
    n = full_indexes.size
    shape = full_indexes.shape
    kind = rng.choice(5, size=shape, p=[0.7, 0.12, 0.1, 0.04, 0.04])
    inside = offsets + (rng.random(shape) * lengths).astype(np.int64)
    edge = offsets + rng.integers(-4, 5, shape) + np.where(rng.random(shape) < 0.5, 0, lengths)
    anywhere = rng.integers(INT32_MIN, INT32_MAX, shape, endpoint=True) if n else np.zeros(shape, np.int64)
    values = np.choose(kind, [inside, edge, anywhere, np.full(shape, INT32_MIN), np.full(shape, INT32_MAX)])
    info = np.iinfo(dtype)
    values = np.clip(values, max(info.min, INT32_MIN), min(info.max, INT32_MAX))
    return values.astype(dtype)


def with_layout(array: np.ndarray, layout: str) -> np.ndarray:
    """An array equal to ``array`` whose memory layout is ``layout``."""
    array = np.asarray(array)
    if array.ndim == 0:
        return array
    if layout == "c":
        return np.ascontiguousarray(array)
    if layout == "fortran":
        return np.asfortranarray(array)
    if layout == "step":  # every other element of a larger buffer, in every dimension
        big = np.zeros(tuple(2 * d + 1 for d in array.shape), dtype=array.dtype)
        view = big[tuple(slice(1, None, 2) for _ in array.shape)]
        view[...] = array
        return view
    if layout == "negative":  # negative strides in every dimension
        flipped = np.ascontiguousarray(array[tuple(slice(None, None, -1) for _ in array.shape)])
        return flipped[tuple(slice(None, None, -1) for _ in array.shape)]
    if layout == "transpose":  # axes of a C array reversed
        return np.ascontiguousarray(array.T).T
    raise AssertionError(layout)


# --- reference math ------------------------------------------------------------------


def reference_sf(family: str, t: float) -> float:
    """Upper tail P(X > t) of the standardized family, from the stdlib."""
    if family == "gaussian":
        return 0.5 * math.erfc(t / math.sqrt(2.0))
    if family == "laplace":
        return 0.5 * math.exp(-t) if t >= 0 else 1.0 - 0.5 * math.exp(t)
    if t > 700:
        return 0.0
    return 1.0 / (1.0 + math.exp(t))


def reference_mass(family: str, a: float, b: float) -> float:
    """P(a < X <= b), computed on the side away from the centre."""
    if a >= 0:
        return reference_sf(family, a) - reference_sf(family, b)
    if b <= 0:
        return reference_sf(family, -b) - reference_sf(family, -a)
    return 1.0 - reference_sf(family, -a) - reference_sf(family, b)


def bits_of(tables, values: np.ndarray, full_indexes: np.ndarray) -> float:
    """Sum of -log2(freq / 2^P) of in-support values, computed from t.freqs in Python."""
    m = float(1 << tables.precision)
    freqs = [tables.freqs(i) for i in range(len(tables))]
    total = 0.0
    for v, i in zip(np.asarray(values, dtype=np.int64).ravel(), full_indexes.ravel()):
        s = int(v) - int(tables.offsets[i])
        assert 0 <= s < tables.lengths[i], "bits_of is for in-support values"
        total += -math.log2(float(freqs[i][s]) / m)
    return total
