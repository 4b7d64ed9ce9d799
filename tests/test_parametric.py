"""CPU references of the CUDA kernels: per-element parametric intervals
(kernel 2) and scale -> table index (kernel 3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import featcodec as fc
from strategies import FAMILIES, reference_sf

means = st.one_of(st.floats(-50, 50), st.floats(-(2.0**30), 2.0**30), st.sampled_from([0.0, 0.5, -0.5, 2.0**30]))
scales = st.one_of(st.floats(0.05, 300), st.floats(2.0**-20, 2.0**20), st.sampled_from([2.0**-20, 2.0**20, 1.0]))
precisions = st.integers(2, 16)


def reference_cdf(family: str, t: float) -> float:
    return reference_sf(family, -t) if t < 0 else 1.0 - reference_sf(family, t)


@given(st.sampled_from(FAMILIES), means, scales, precisions)
def test_element_cdf_invariants(family, mean, scale, precision):
    k_min, cdf = fc.element_cdf(family, mean, scale, precision)
    m = 1 << precision
    n = cdf.size - 2
    assert n % 2 == 1 and n <= m // 2
    assert k_min == math.floor(mean + 0.5) - n // 2
    assert cdf[0] == 0 and cdf[-1] == m
    assert (np.diff(cdf) >= 1).all(), "monotone, every symbol and the escape codable"


@given(st.sampled_from(FAMILIES), means, scales, precisions, st.data())
def test_intervals_agree_with_element_cdf(family, mean, scale, precision, data):
    k_min, cdf = fc.element_cdf(family, mean, scale, precision)
    n = cdf.size - 2
    inside = data.draw(st.lists(st.integers(k_min, k_min + n - 1), max_size=20))
    outside = data.draw(st.lists(st.one_of(st.integers(-(2**31), k_min - 1), st.integers(k_min + n, 2**31 - 1)),
                                 max_size=5))
    values = np.array(inside + outside, dtype=np.int64)
    start, freq = fc.parametric_intervals(values, family, mean, scale, precision)
    for v, s, f in zip(values, start, freq):
        j = v - k_min if k_min <= v < k_min + n else n
        assert (s, s + f) == (cdf[j], cdf[j + 1])


@given(st.sampled_from(FAMILIES), st.floats(-100, 100), st.floats(0.2, 200), st.integers(12, 16))
def test_element_model_matches_float_model(family, mean, scale, precision):
    """Each interval is the float model's mass, up to the quantization error:
    |f - R p| <= 2 with R = 2**P - n - 1 (floor on both ends, plus the 1 every symbol gets)."""
    k_min, cdf = fc.element_cdf(family, mean, scale, precision)
    n = cdf.size - 2
    r = (1 << precision) - n - 1
    freq = np.diff(cdf)[:n]
    for j in range(0, n, max(1, n // 40)):
        k = k_min + j
        p = reference_cdf(family, (k + 0.5 - mean) / scale) - reference_cdf(family, (k - 0.5 - mean) / scale)
        assert abs(freq[j] - 1 - r * p) <= 1 + 1e-6 * r


@given(st.sampled_from(FAMILIES), means, scales, precisions)
def test_element_model_is_deterministic(family, mean, scale, precision):
    a = fc.element_cdf(family, mean, scale, precision)
    b = fc.element_cdf(family, mean, scale, precision)
    assert a[0] == b[0] and np.array_equal(a[1], b[1])


def test_intervals_broadcast_and_shape():
    values = np.arange(-6, 6, dtype=np.int32).reshape(3, 4)
    start, freq = fc.parametric_intervals(values, "laplace", means=np.zeros((3, 1)), scales=2.0)
    assert start.shape == freq.shape == (3, 4) and start.dtype == np.uint32
    row, _ = fc.parametric_intervals(values[0], "laplace", 0.0, 2.0)
    np.testing.assert_array_equal(start[0], row)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(means=np.nan), "mean"),
        (dict(means=2.0**31), "mean"),
        (dict(scales=0.0), "scale"),
        (dict(scales=2.0**21), "scale"),
        (dict(scales=np.inf), "scale"),
        (dict(precision=1), "precision"),
        (dict(precision=17), "precision"),
        (dict(family="cauchy"), "family"),
    ],
)
def test_intervals_reject_bad_arguments(kwargs, fragment):
    args = dict(values=[0, 1], family="gaussian", means=0.0, scales=1.0) | kwargs
    with pytest.raises(ValueError, match=fragment):
        fc.parametric_intervals(**args)


# --- scale -> index -------------------------------------------------------------

table_scales = st.lists(st.floats(1e-3, 1e3), min_size=1, max_size=70, unique=True).map(sorted)


@given(table_scales, st.lists(st.one_of(st.floats(0, 2e3), st.floats(allow_nan=False)), max_size=50),
       st.sampled_from([np.float32, np.float64]))
def test_scale_index_is_the_smallest_table_not_below(table, scales, dtype):
    table = np.array(table)
    with np.errstate(over="ignore"):  # huge floats become float32 inf: still defined
        s = np.array(scales, dtype=dtype)
    idx = fc.scale_index(s, table)
    assert idx.dtype == np.int32 and idx.shape == s.shape
    for v, i in zip(s.astype(np.float64), idx):
        expect = next((j for j, t in enumerate(table) if t >= v), len(table) - 1)
        assert i == expect


@given(table_scales, st.lists(st.floats(1e-4, 2e3), min_size=2, max_size=30))
def test_scale_index_is_monotone(table, scales):
    s = np.sort(np.array(scales))
    assert (np.diff(fc.scale_index(s, np.array(table))) >= 0).all()


def test_scale_index_errors():
    with pytest.raises(ValueError, match="NaN"):
        fc.scale_index([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="increasing"):
        fc.scale_index([1.0], [2.0, 1.0])
    with pytest.raises(ValueError, match="non-empty"):
        fc.scale_index([1.0], [])


@given(st.data())
def test_scale_index_fast_path_matches_the_lower_bound(data):
    """The bucketed host path equals a plain lower bound, on any table, float32 and float64."""
    n = data.draw(st.integers(1, 300))
    spread = data.draw(st.sampled_from([1e-3, 1.0, 50.0, 600.0]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    table = np.unique(np.exp(rng.uniform(-spread, spread, n)))
    probes = np.concatenate([
        table, np.nextafter(table, 0), np.nextafter(table, np.inf),
        np.exp(rng.uniform(-spread - 1, spread + 1, 500)), [0.0, -0.0, -1.0, -np.inf, np.inf, 5e-324, 1.7e308],
    ])
    expected = np.minimum(np.searchsorted(table, probes, side="left"), len(table) - 1)
    assert np.array_equal(fc.scale_index(probes, table), expected)
    with np.errstate(over="ignore"):  # 1.7e308 becomes inf in float32, as intended
        narrow = probes.astype(np.float32)
    expected = np.minimum(np.searchsorted(table, narrow.astype(np.float64), side="left"), len(table) - 1)
    assert np.array_equal(fc.scale_index(narrow, table), expected)
