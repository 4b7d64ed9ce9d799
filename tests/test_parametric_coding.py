"""Coding with per-element parametric models: fc.encode_parametric and
fc.decode_parametric (the v1 message layout, intervals from table_math.h)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import featcodec as fc
from isa_kernels import VECTOR_KERNELS, kernel_params, using
from strategies import FAMILIES, INT32_MAX, INT32_MIN

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=7)
precisions = st.integers(8, 16)
# (mean, scale) regimes: ordinary, documented extremes, anything in range.
regimes = st.sampled_from(["ordinary", "tiny", "huge", "far", "any"])


def element_params(rng: np.random.Generator, regime: str, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    if regime == "ordinary":
        return rng.normal(0, 20, shape), rng.uniform(0.05, 50, shape)
    if regime == "tiny":
        return rng.choice([0.0, 0.5, -0.5, 3.49], shape), np.full(shape, 2.0**-20)
    if regime == "huge":
        return rng.normal(0, 1e6, shape), rng.choice([2.0**20, 1e5, 2.0**19], shape)
    if regime == "far":
        return rng.choice([2.0**30, -(2.0**30), 2.0**30 - 0.5], shape), rng.uniform(0.1, 4.0, shape)
    return rng.uniform(-(2.0**30), 2.0**30, shape), 2.0 ** rng.uniform(-20, 20, shape)


def sample_values(rng: np.random.Generator, means: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Mostly likely values, some far outside the support, and the int32 ends."""
    x = np.rint(means + scales * rng.standard_normal(means.shape))
    wild = rng.random(means.shape)
    x = np.where(wild < 0.05, rng.integers(INT32_MIN, INT32_MAX, means.shape, endpoint=True), x)
    x = np.where((wild >= 0.05) & (wild < 0.08), rng.choice([INT32_MIN, INT32_MAX], means.shape), x)
    return np.clip(x, INT32_MIN, INT32_MAX).astype(np.int32)


def ideal_bits(x: np.ndarray, family: str, means, scales, precision: int) -> float:
    """-log2 of every interval's probability, plus 6 + nb raw bits per escape."""
    start, freq = fc.parametric_intervals(x, family, means, scales, precision)
    bits = float(np.sum(precision - np.log2(freq.astype(np.float64))))
    escaped = (start + freq == 1 << precision).ravel()  # only the escape's interval ends at M
    for v, mu, s in zip(*(a.ravel()[escaped] for a in np.broadcast_arrays(x, means, scales))):
        k_min, cdf = fc.element_cdf(family, mu, s, precision)
        hi = k_min + cdf.size - 2
        if not k_min <= v < hi:
            u = 2 * (int(v) - hi) if v >= hi else 2 * (k_min - 1 - int(v)) + 1
            bits += 6 + (u + 1).bit_length() - 1
    return bits


@given(st.sampled_from(FAMILIES), shapes, precisions, regimes, st.integers(0, 2**32 - 1),
       st.sampled_from([16, 64, 1 << 19]), st.booleans())
def test_round_trip(family, shape, precision, regime, seed, chunk_size, checksum):
    rng = np.random.default_rng(seed)
    mu, s = element_params(rng, regime, shape)
    x = sample_values(rng, mu, s)
    data = fc.encode_parametric(x, family, mu, s, precision=precision, chunk_size=chunk_size, checksum=checksum)
    out = fc.decode_parametric(data, family, mu, s, precision=precision)
    assert out.dtype == np.int32 and out.shape == x.shape
    np.testing.assert_array_equal(out, x)


@given(st.sampled_from(FAMILIES), shapes, precisions, regimes, st.integers(0, 2**32 - 1))
def test_precomputed_intervals_give_the_same_bytes(family, shape, precision, regime, seed):
    rng = np.random.default_rng(seed)
    mu, s = element_params(rng, regime, shape)
    x = sample_values(rng, mu, s)
    data = fc.encode_parametric(x, family, mu, s, precision=precision, chunk_size=16)
    start, freq = fc.parametric_intervals(x, family, mu, s, precision)
    assert fc.encode_parametric(x, family, mu, s, precision=precision, chunk_size=16,
                                intervals=(start, freq)) == data
    packed = start | freq << 16  # as featcodec.cuda.parametric_intervals returns them
    assert fc.encode_parametric(x, family, mu, s, precision=precision, chunk_size=16, intervals=packed) == data


@given(st.sampled_from(FAMILIES), st.integers(0, 300), precisions, regimes, st.integers(0, 2**32 - 1))
def test_size_is_the_information_content_plus_a_few_bytes(family, n, precision, regime, seed):
    rng = np.random.default_rng(seed)
    mu, s = element_params(rng, regime, (n,))
    x = sample_values(rng, mu, s)
    data = fc.encode_parametric(x, family, mu, s, precision=precision, checksum=False)
    bits = ideal_bits(x, family, mu, s, precision)
    # docs/format.md, "Cost of a message": one lane here (n < 1024).
    assert 8 * len(data) <= bits + 8 * (6 + 3)
    # No lower bound for a single message: the start-up map codes the most
    # probable symbol from state 0 to state 0, so a trailing run of it (here
    # escapes of huge scales at low precision) costs nothing.


@pytest.mark.parametrize("n", [1023, 1024, 20000, 70000])
@pytest.mark.parametrize("family", FAMILIES)
def test_lanes_chunks_and_threads(family, n):
    rng = np.random.default_rng(n)
    mu, s = rng.normal(0, 30, n), 2.0 ** rng.uniform(-3, 6, n)
    x = sample_values(rng, mu, s)
    data = fc.encode_parametric(x, family, mu, s, threads=1)
    assert fc.encode_parametric(x, family, mu, s, threads=2, chunk_size=1 << 14) != data or n <= 1 << 14
    for chunk_size in (1 << 19, 1 << 14, 1 << 10):
        coded = fc.encode_parametric(x, family, mu, s, threads=2, chunk_size=chunk_size)
        np.testing.assert_array_equal(fc.decode_parametric(coded, family, mu, s, threads=2), x)
    # Up to 8 lanes, each with a state, a start-up count and start-up slack.
    assert len(data) <= ideal_bits(x, family, mu, s, 16) / 8 + 4 + 8 + 8 * 6


@pytest.mark.parametrize("isa", kernel_params(VECTOR_KERNELS))
def test_same_bytes_whatever_the_kernels(isa):
    rng = np.random.default_rng(3)
    mu, s = rng.normal(0, 5, 70000), rng.uniform(0.2, 9, 70000)
    x = sample_values(rng, mu, s)
    results = {}
    for kernels in ("generic", isa):
        with using(kernels):
            results[kernels] = fc.encode_parametric(x, "laplace", mu, s)
            np.testing.assert_array_equal(fc.decode_parametric(results["generic"], "laplace", mu, s), x)
    assert results["generic"] == results[isa]


def test_broadcast_parameters():
    x = np.arange(24).reshape(2, 3, 4) - 12
    mu, s = np.linspace(-3, 3, 3).reshape(1, 3, 1), 4.0
    data = fc.encode_parametric(x, "logistic", mu, s)
    full = np.broadcast_to(mu, x.shape), np.full(x.shape, s)
    assert fc.encode_parametric(x, "logistic", *full) == data
    np.testing.assert_array_equal(fc.decode_parametric(data, "logistic", mu, s, shape=x.shape), x)
    np.testing.assert_array_equal(fc.decode_parametric(data, "logistic", *full), x)


@pytest.mark.parametrize("change", ["mean", "scale", "family", "precision"])
def test_other_models_are_detected_by_the_checksum(change):
    rng = np.random.default_rng(5)
    mu, s = rng.normal(0, 10, 500), rng.uniform(0.5, 20, 500)
    x = sample_values(rng, mu, s)
    data = fc.encode_parametric(x, "gaussian", mu, s, precision=14)
    args = {"family": "gaussian", "means": mu, "scales": s, "precision": 14}
    if change == "mean":
        args["means"] = mu + np.where(np.arange(500) == 250, 0.75, 0.0)
    elif change == "scale":
        args["scales"] = s * np.where(np.arange(500) == 7, 1.5, 1.0)
    elif change == "family":
        args["family"] = "laplace"
    else:
        args["precision"] = 15
    with pytest.raises(fc.DecodeError):
        fc.decode_parametric(data, **args)


@pytest.mark.parametrize(
    "means, scales, match",
    [
        (np.nan, 1.0, "mean of element 0"),
        (2.0**30 + 1, 1.0, "mean of element 0"),
        ([0.0, -np.inf], 1.0, "mean of element 1"),
        (0.0, 2.0**-21, "scale of element 0"),
        (0.0, [1.0, 2.0**20 * 1.01], "scale of element 1"),
        (0.0, 0.0, "scale of element 0"),
        (0.0, np.nan, "scale of element 0"),
    ],
)
def test_parameters_out_of_range(means, scales, match):
    with pytest.raises(ValueError, match=match):
        fc.encode_parametric([1, 2], "gaussian", means, scales)
    data = fc.encode_parametric([1, 2], "gaussian", 0.0, 1.0)
    with pytest.raises(ValueError, match=match):
        fc.decode_parametric(data, "gaussian", means, scales, shape=(2,))


def test_argument_errors():
    with pytest.raises(ValueError, match="family"):
        fc.encode_parametric([1], "cauchy", 0.0, 1.0)
    for p in (1, 17):
        with pytest.raises(ValueError, match="precision"):
            fc.encode_parametric([1], "gaussian", 0.0, 1.0, precision=p)
    for p in (8.0, True):  # the one precision check of every builder and coder: a non-integer is a TypeError
        with pytest.raises(TypeError, match="precision must be an integer"):
            fc.encode_parametric([1], "gaussian", 0.0, 1.0, precision=p)
    with pytest.raises(ValueError, match="broadcast"):
        fc.encode_parametric([1, 2, 3], "gaussian", [0.0, 1.0], 1.0)
    with pytest.raises(TypeError, match="symbols"):
        fc.encode_parametric([1.5], "gaussian", 0.0, 1.0)
    with pytest.raises(ValueError, match="intervals"):
        fc.encode_parametric([1, 2], "gaussian", 0.0, 1.0, intervals=np.zeros(3, np.uint32))
    with pytest.raises(ValueError, match="interval of element 1"):  # freq 0
        fc.encode_parametric([1, 2], "gaussian", 0.0, 1.0, intervals=([0, 5], [3, 0]))
    with pytest.raises(ValueError, match="interval of element 0"):  # past 2**precision
        fc.encode_parametric([1], "gaussian", 0.0, 1.0, precision=8, intervals=([250], [7]))
    with pytest.raises(TypeError, match="bytes"):
        fc.decode_parametric("abc", "gaussian", 0.0, 1.0)


def test_wrong_shape_is_rejected():
    data = fc.encode_parametric(np.zeros(2000, np.int32), "gaussian", 0.0, 1.0)
    for n in (0, 1, 1999, 3000, 20000):
        with pytest.raises(fc.DecodeError):
            fc.decode_parametric(data, "gaussian", 0.0, 1.0, shape=(n,))


# --- corrupt, truncated and random bytes (in a subprocess: a crash must fail the test) ---------

FUZZ_SCRIPT = textwrap.dedent(
    r"""
    import numpy as np, featcodec as fc
    rng = np.random.default_rng(17)
    cases = []
    for family, n, chunk, checksum in [("gaussian", 300, 1 << 19, True), ("laplace", 3000, 1024, False),
                                       ("logistic", 20000, 1 << 19, True), ("gaussian", 70, 16, False)]:
        mu, s = rng.normal(0, 50, n), 2.0 ** rng.uniform(-20, 20, n)
        x = np.rint(mu + s * rng.standard_normal(n)).clip(-2**31, 2**31 - 1).astype(np.int32)
        x[rng.random(n) < 0.05] = rng.integers(-2**31, 2**31 - 1, n)[:1]
        cases.append((family, mu, s, checksum, fc.encode_parametric(x, family, mu, s, precision=12,
                                                                    chunk_size=chunk, checksum=checksum)))
    # Without the checksum, a flip in the words may well decode to other
    # values (rANS words are near-random); with it, nothing may pass.
    accepted = {True: 0, False: 0}
    def attempt(data, family, mu, s):
        try:
            out = fc.decode_parametric(bytes(data), family, mu, s, precision=12)
            assert out.shape == mu.shape and out.dtype == np.int32
            accepted[checksum] += 1
        except fc.DecodeError:
            pass
    for family, mu, s, checksum, data in cases:
        for _ in range(120):
            b = bytearray(data)
            for _ in range(rng.integers(1, 4)):
                b[rng.integers(len(b))] ^= 1 << int(rng.integers(8))
            attempt(b, family, mu, s)
        for cut in sorted(set(rng.integers(0, len(data), 30).tolist())):
            attempt(data[:cut], family, mu, s)
        attempt(data + b"\0", family, mu, s)
        for _ in range(20):
            attempt(rng.integers(0, 256, rng.integers(0, 2 * len(data))).astype(np.uint8).tobytes(), family, mu, s)
    print(accepted[True], accepted[False])
    """
)


def test_corrupt_truncated_and_random_bytes_never_crash(tmp_path):
    env = dict(os.environ)
    try:
        result = subprocess.run([sys.executable, "-c", FUZZ_SCRIPT], capture_output=True, text=True, cwd=tmp_path,
                                timeout=300, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("decoding corrupt messages took too long (possible hang)")
    assert result.returncode == 0, (
        f"decoder process died (exit {result.returncode}; a negative value is a signal)\n{result.stderr[-3000:]}"
    )
    accepted_with_checksum, _ = map(int, result.stdout.split())
    assert accepted_with_checksum == 0


# Fixed bytes of format version 3 for per-element models: a change in the
# models (the cutoff T, the half width h, the quantized C(k)) or in the
# message layer changes them.  Compact header b8 / 88 (one chunk, one lane;
# 4-byte checksum or none; escapes: the int32 extremes) plus lane 0's state
# bits above its tail.
PARAMETRIC_GOLDEN = {
    ("gaussian", True): "bf0bda371761046676a4c0f7f9ffff079900000000e0d4",
    ("gaussian", False): "880b7555d82bc0f7f9ffff0799000000001aac09",
    ("laplace", True): "b80a8106b161d876798a5fe3ffff1f5402000000b069",
    ("laplace", False): "880ac838b6e85fe3ffff1f54020000005b93",
    ("logistic", True): "b90a8ec8bf7f51b9cfa0dfe2ffff1f54020000005a81",
    ("logistic", False): "8a0a95c62f6fdfe2ffff1f5402000000230b",
}


@pytest.mark.parametrize("family, checksum", list(PARAMETRIC_GOLDEN))
def test_parametric_golden_messages(family, checksum):
    x = np.array([[0, 3, -2, 1, 0], [40, 41, 2**31 - 1, 39, -(2**31)]])
    mu, s = np.array([[0.2], [40.0]]), np.array([1.5, 0.5, 2.0, 7.0, 0.3])
    golden = bytes.fromhex(PARAMETRIC_GOLDEN[family, checksum])
    assert fc.encode_parametric(x, family, mu, s, checksum=checksum, precision=12) == golden
    np.testing.assert_array_equal(fc.decode_parametric(golden, family, mu, s, precision=12, shape=x.shape), x)
    intervals = fc.parametric_intervals(x, family, mu, s, precision=12)
    assert fc.encode_parametric(x, family, mu, s, checksum=checksum, precision=12, intervals=intervals) == golden


def test_threads_none_codes_on_every_core(monkeypatch):
    from featcodec import _parametric
    from native_spy import NativeCallSpy, available_cores, differing_int_argument

    cores = available_cores()
    if cores == 1:
        pytest.skip("one core: threads=None and threads=1 are the same request")
    rng = np.random.default_rng(3)
    x = rng.integers(-20, 20, 3000).astype(np.int32)
    mu, s = np.zeros(3000), np.full(3000, 8.0)
    runs = {}
    for threads in (1, None):
        spy = NativeCallSpy(_parametric._core, ["encode_elements", "decode_elements"])
        monkeypatch.setattr(_parametric, "_core", spy)
        data = fc.encode_parametric(x, "laplace", mu, s, chunk_size=256, threads=threads)
        np.testing.assert_array_equal(fc.decode_parametric(data, "laplace", mu, s, threads=threads), x)
        monkeypatch.undo()
        runs[threads] = spy.calls
    assert differing_int_argument(runs[1], runs[None]) == cores
