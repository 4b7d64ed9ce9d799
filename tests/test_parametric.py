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


# --- an independent model of docs/format.md, "Per-element parametric models" ---------
#
# Written from the spec with the stdlib's erfc/exp: T, h, k_min, n and R are
# integers or exact dyadics, so they must equal the library's exactly; C(k)
# takes a floor of R F(t), which the two implementations of F (detmath.h's
# and the stdlib's, both within about 1e-13) can only split when R F lies
# within that error of an integer.


def model_cutoff(family: str, precision: int) -> float:
    """T: the smallest j / 16 with 2 sf(j / 16) <= 2^(1 - P)."""
    j = 0
    while 2.0 * reference_sf(family, j / 16.0) > 2.0 ** (1 - precision):
        j += 1
    return j / 16.0


def model_element(family: str, mean: float, scale: float, precision: int):
    """(k_min, C(k) for k = k_min .. k_min + n, R F(t) at each k) of the spec."""
    m = 1 << precision
    h = min(2 ** (precision - 2) - 1, math.ceil(model_cutoff(family, precision) * scale))
    k_min = math.floor(mean + 0.5) - h
    n = 2 * h + 1
    r = m - n - 1
    ks = range(k_min, k_min + n + 1)
    scaled = [r * reference_cdf(family, ((k - 0.5) - mean) / scale) for k in ks]
    q = [math.floor(x) for x in scaled]
    return k_min, [(k - k_min) + qk - q[0] for k, qk in zip(ks, q)], scaled


@pytest.mark.parametrize("family", FAMILIES)
def test_cutoff_matches_the_model(family):
    from featcodec import _core

    for precision in range(2, 17):
        assert _core.element_cutoff(int(fc.Family.of(family)), precision) == model_cutoff(family, precision)


@given(st.sampled_from(FAMILIES), means, st.one_of(st.floats(0.05, 300), st.floats(2.0**-20, 2.0**12)), precisions)
def test_element_cdf_matches_the_model(family, mean, scale, precision):
    k_min, cdf = fc.element_cdf(family, mean, scale, precision)
    want_k_min, want, scaled = model_element(family, mean, scale, precision)
    assert k_min == want_k_min and cdf.size == len(want) + 1, "T, h and the support follow the spec exactly"
    assert cdf[-1] == 1 << precision
    ambiguous = [abs(x - round(x)) <= 1e-12 * (1 << precision) + 1e-300 for x in scaled]
    for j, (got, expect) in enumerate(zip(cdf[:-1].tolist(), want)):
        if got != expect:
            assert (ambiguous[j] or ambiguous[0]) and abs(got - expect) <= 2, (j, got, expect)



# --- bit for bit: detmath.h's exp, replayed in Python ------------------------------
#
# docs/format.md takes F as src/cpp/tables/detmath.h computes it, not only
# to 1e-13: messages coded on one machine decode on another only if every
# build computes the same q(k).  det_exp is made of IEEE basic operations in a fixed order
# (Cody-Waite reduction by ln 2, a degree-13 Taylor polynomial, a scale by
# 2^n), which Python's floats perform identically, so for the Laplace
# family (F from exp alone) the model below must equal the library exactly.

_LN2_HI, _LN2_LO, _INV_LN2 = 6.93147180369123816490e-01, 1.90821492927058770002e-10, 1.44269504088896338700e00


def replayed_exp(x: float, degree: int = 13) -> float:
    if not x > -745.0:
        return 0.0
    if x > 709.0:
        return math.inf
    n = math.floor(x * _INV_LN2 + 0.5)
    r = (x - n * _LN2_HI) - n * _LN2_LO
    p = 1.0
    for k in range(degree, 0, -1):
        p = 1.0 + p * r / k
    return math.ldexp(p, n)


def replayed_laplace_cdf(mean: float, scale: float, k_min: int, n: int, precision: int, degree: int = 13) -> list:
    """C(k) for k in [k_min, k_min + n], then 2^P, with F(t) from replayed_exp."""
    r = (1 << precision) - n - 1
    q = []
    for k in range(k_min, k_min + n + 1):
        t = ((k - 0.5) - mean) / scale
        f = 0.5 * replayed_exp(t, degree) if t < 0.0 else 1.0 - 0.5 * replayed_exp(-t, degree)
        q.append(math.floor(r * f))
    return [j + qk - q[0] for j, qk in enumerate(q)] + [1 << precision]


# A mean that puts R F((3 - 1/2 - mean) / 1) within 1e-8 of an integer (found
# by bisection on this model): an exp accurate to 1e-11 instead of 1e-17
# (a degree-9 polynomial) moves q(3) by one here.
LAPLACE_ROUNDING_EDGE = 4.972407245502518


@pytest.mark.parametrize("mean, scale, precision", [
    (LAPLACE_ROUNDING_EDGE, 1.0, 16), (0.0, 1.0, 16), (-3.25, 0.11, 12), (17.75, 42.0, 16), (2.0**30, 300.0, 14),
    (0.49999999999999994, 2.0**-20, 8),
])
def test_laplace_element_cdf_is_detmath_bit_for_bit(mean, scale, precision):
    k_min, cdf = fc.element_cdf("laplace", mean, scale, precision)
    assert cdf.tolist() == replayed_laplace_cdf(mean, scale, k_min, cdf.size - 2, precision)


def test_the_rounding_edge_case_is_sensitive():
    k_min, cdf = fc.element_cdf("laplace", LAPLACE_ROUNDING_EDGE, 1.0, 16)
    exact = replayed_laplace_cdf(LAPLACE_ROUNDING_EDGE, 1.0, k_min, cdf.size - 2, 16)
    assert replayed_laplace_cdf(LAPLACE_ROUNDING_EDGE, 1.0, k_min, cdf.size - 2, 16, degree=9) != exact


@given(st.floats(-1000, 1000), st.floats(0.05, 300), st.integers(8, 16))
def test_laplace_element_cdf_is_detmath_bit_for_bit_anywhere(mean, scale, precision):
    k_min, cdf = fc.element_cdf("laplace", mean, scale, precision)
    assert cdf.tolist() == replayed_laplace_cdf(mean, scale, k_min, cdf.size - 2, precision)


# Per-element intervals for fixed arguments, as bytes: encoder and decoder
# compute them independently, so a change here means messages coded with one
# build no longer decode with another.
GOLDEN_ELEMENT_INTERVALS = {
    "gaussian 16": "f4a9f77391bb02632375715b0552dd76",
    "gaussian 8": "58d8197e73e5e93856a0be6675894980",
    "gaussian 2": "1a3994c489b4e171f7cdfab4ac92c036",
    "laplace 16": "08402b47eba0e7c81377b24098c440c4",
    "laplace 8": "935c24fc38882b853a08a5973cfe9246",
    "laplace 2": "1cfe120deadcae0c8d6d5e67492243ba",
    "logistic 16": "8313f54c67e4552937c3d63159e500b1",
    "logistic 8": "b600140d8c2c801d38077a29c66246e7",
    "logistic 2": "1cfe120deadcae0c8d6d5e67492243ba",
}


def golden_element_intervals() -> dict:
    import hashlib

    means = np.array([0.0, 0.5, -0.5, 0.49999999999999994, -3.25, 17.75, 1000.1, -(2.0**30), 2.0**30])
    scales = np.array([2.0**-20, 0.11, 0.5, 1.0, 2.7, 42.0, 1e3, 2.0**20])
    mu, s = (a.ravel() for a in np.meshgrid(means, scales, indexing="ij"))
    offsets = np.array([-(2**31), -70000, -100, -6, -2, -1, 0, 1, 2, 3, 7, 40, 100, 3000, 2**31 - 1], np.int64)
    values = (np.floor(mu + 0.5).astype(np.int64)[:, None] + offsets[None]).clip(-(2**31), 2**31 - 1)
    mu, s = (np.broadcast_to(a[:, None], values.shape) for a in (mu, s))
    out = {}
    for family in FAMILIES:
        for precision in (16, 8, 2):
            start, freq = fc.parametric_intervals(values, family, mu, s, precision)
            packed = (start | freq << 16).astype("<u4").tobytes()
            out[f"{family} {precision}"] = hashlib.sha256(packed).hexdigest()[:32]
    return out


def test_element_intervals_match_golden_hashes():
    assert golden_element_intervals() == GOLDEN_ELEMENT_INTERVALS, "per-element models changed"


def test_family_names_and_values():
    assert [f.name for f in fc.Family] == ["GAUSSIAN", "LAPLACE", "LOGISTIC"]
    for name in FAMILIES:
        family = fc.Family.of(name)
        assert fc.Family.of(family) is family and family.name.lower() == name
        a = fc.parametric_intervals([0, 3, 99], name, 0.2, 1.5, 12)
        b = fc.parametric_intervals([0, 3, 99], family, 0.2, 1.5, 12)
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
        assert np.array_equal(fc.element_cdf(name, 0.2, 1.5)[1], fc.element_cdf(family, 0.2, 1.5)[1])
    for bad in ("Gaussian", "cauchy", 0, 1, None, "GAUSSIAN"):
        with pytest.raises(ValueError, match="family must be a featcodec.Family or one of"):
            fc.Family.of(bad)
        with pytest.raises(ValueError, match="family must be"):
            fc.parametric_intervals([0], bad, 0.0, 1.0)


def test_precision_errors_are_shared():
    for call in (lambda p: fc.parametric_intervals([0], "gaussian", 0.0, 1.0, p),
                 lambda p: fc.element_cdf("gaussian", 0.0, 1.0, p),
                 lambda p: fc.CdfTables.gaussian([1.0], precision=p)):
        with pytest.raises(ValueError, match=r"precision must be in \[2, 16\], got 1"):
            call(1)
        with pytest.raises(TypeError, match="precision must be an integer, got 2.0"):
            call(2.0)
        with pytest.raises(ValueError, match=r"precision must be in \[2, 16\], got 1099511627776"):
            call(2**40)


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
