"""The vector kernels (avx2: the x86-64-v3 build's AVX2 round decoder;
avx512: the x86-64-v4 build's AVX-512 one) against the generic kernels.

select_kernels() switches the chunk coders in-process, so one run decodes a
fixed set of messages (8-lane chunks: 200k+ symbols) and corrupted copies of
them with every kernel the CPU has, and records one outcome per decode.  The
tests check that every intact message decodes to its input with every
kernel, that every outcome (values, or the DecodeError and its message) is
identical across kernels, and that corrupt bytes give DecodeError or, at
worst with the checksum off, some values - never a crash.  Further tests
code random data at every lane count, with escapes, per-element indexes and
int32 extremes, and require the same bytes from every kernel.  Kernels this
build or CPU lacks are skipped with the reason (pytest -rs lists them; the
report header says which ran).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import featcodec as fc
from format_reference import parse_header
from isa_kernels import KERNELS, VECTOR_KERNELS, kernel_params, missing_reason, using

N_UNIFORM = (50, 4567)  # 228,350 symbols: blocks straddle channels, a ragged tail
N_MIXED = 262_147


def _random_pmf_tables(fc, rng, precision, n_rows, max_len):
    """Rows of random support length; some with a dominant symbol and a long
    tail of tiny probabilities, so that many buckets hold several symbol
    boundaries (the vector decoder's slow path)."""
    max_len = min(max_len, (1 << precision) - 1)
    lengths = rng.integers(1, max_len + 1, size=n_rows)
    pmf = np.zeros((n_rows, int(lengths.max())))
    for i, n in enumerate(lengths):
        kind = i % 3
        if kind == 0:
            p = rng.dirichlet(np.full(n, 0.3))
        elif kind == 1:
            p = np.exp(-np.abs(np.arange(n) - rng.integers(0, n)) / rng.uniform(0.5, 40))
        else:
            p = rng.random(n) ** 8
            p[rng.integers(0, n)] += p.sum() * 20
        pmf[i, :n] = p / p.sum() * rng.uniform(0.97, 1.0)  # the rest: the escape
    offsets = rng.integers(-(max_len // 2) - 5, 5, size=n_rows)
    return fc.CdfTables.from_pmf(pmf, lengths=lengths, offsets=offsets, precision=precision)


def _sample(tables, rng, rows, escape_rate):
    """Values drawn from each element's row, plus escapes of every size."""
    m = 1 << tables.precision
    lengths = tables.lengths
    # All rows' CDFs in one increasing array: row r shifted by r * (m + 1).
    cdfs = [np.concatenate(([0], np.cumsum(tables.freqs(r)))) + r * (m + 1) for r in range(len(tables))]
    starts = np.cumsum([0] + [len(c) for c in cdfs])[:-1]
    slots = rng.integers(0, m, size=rows.shape) + rows * (m + 1)
    s = np.searchsorted(np.concatenate(cdfs), slots, side="right") - 1 - starts[rows]
    offsets = tables.offsets[rows].astype(np.int64)
    values = offsets + s
    escaped = (s >= lengths[rows]) | (rng.random(rows.shape) < escape_rate)
    big = rng.choice([1, 7, 1000, 1 << 20, 1 << 30], size=rows.shape)
    below = offsets - 1 - rng.integers(0, big)
    above = offsets + lengths[rows] + rng.integers(0, big)
    values = np.where(escaped, np.where(rng.random(rows.shape) < 0.5, below, above), values)
    values = np.clip(values, np.iinfo(np.int32).min, np.iinfo(np.int32).max).astype(np.int32)
    values.flat[0] = np.iinfo(np.int32).min
    values.flat[1] = np.iinfo(np.int32).max
    return values


def _cases(fc):
    """(name, tables, symbols, indexes, encode options), all deterministic."""
    cases = []
    for precision in range(8, 17):
        rng = np.random.default_rng(1000 + precision)
        gauss = fc.CdfTables.gaussian(np.exp(rng.uniform(np.log(0.1), np.log(300.0), 40)), precision=precision)
        pmfs = _random_pmf_tables(fc, rng, precision, 37, 3000 if precision >= 14 else 300)
        for label, tables in (("gaussian", gauss), ("pmf", pmfs)):
            n_rows = len(tables)
            channels = rng.integers(0, n_rows, size=(N_UNIFORM[0], 1)).astype(np.int32)
            rows = np.broadcast_to(channels, N_UNIFORM)
            escape_rate = [0.0, 1e-4, 0.02][precision % 3]
            symbols = _sample(tables, rng, rows, escape_rate)
            checksum = bool(precision % 2)
            cases.append((f"p{precision}-{label}-uniform", tables, symbols, channels, dict(checksum=checksum)))
            mixed = rng.integers(0, n_rows, size=N_MIXED).astype(np.int32)
            mixed[: 4096 * 3] = mixed[0]  # some uniform blocks inside a per-element index array
            symbols = _sample(tables, rng, mixed, escape_rate)
            cases.append((f"p{precision}-{label}-mixed", tables, symbols, mixed, dict(checksum=not checksum)))
    rng = np.random.default_rng(7)
    # Several 8-lane chunks; and one table of 2**16 - 1 tiny symbols, where
    # nearly every bucket holds several boundaries.
    t = fc.CdfTables.laplace(np.exp(rng.uniform(np.log(0.3), np.log(8.0), 16)))
    rows = np.arange(16, dtype=np.int32)[:, None]
    cases.append(("chunks", t, _sample(t, rng, np.broadcast_to(rows, (16, 40_000)), 1e-3), rows,
                  dict(chunk_size=1 << 17)))
    wide = np.full((1, (1 << 16) - 1), 1.0)
    t = fc.CdfTables.from_pmf(wide, lengths=[(1 << 16) - 1], offsets=[0], precision=16)
    rows = np.zeros(200_000, dtype=np.int32)
    cases.append(("wide-row", t, _sample(t, rng, rows, 1e-3), rows, {}))
    # More rows than the vector decoder takes (it keeps to scalar then).
    t = fc.CdfTables.gaussian(np.exp(rng.uniform(np.log(0.2), np.log(20.0), 9000)), precision=12)
    rows = rng.integers(0, 9000, size=200_000).astype(np.int32)
    cases.append(("many-rows", t, _sample(t, rng, rows, 1e-3), rows, {}))
    return cases


def _corruptions(data: bytes, rng):
    """Corrupted copies of a message: bit flips, truncations, extensions."""
    n = len(data)
    out = []
    for _ in range(6):
        b = bytearray(data)
        for pos in rng.integers(0, n, size=rng.integers(1, 4)):
            b[pos] ^= 1 << int(rng.integers(0, 8))
        out.append(bytes(b))
    b = bytearray(data)  # a flip near the end: the words' overrun checks
    b[n - 1 - int(rng.integers(0, 16))] ^= 0x40
    out.append(bytes(b))
    for cut in (1, 3, 4, 8, 64, n // 2, n - 1):
        out.append(data[: n - cut])
    out.append(data + b"\0\0\0\0")
    out.append(data[:-4] + bytes(rng.integers(0, 256, 8, dtype=np.uint8)))
    out.append(bytes(rng.integers(0, 256, n, dtype=np.uint8)))
    return out


def _outcome(fc, data, tables, indexes, shape, original, threads=1):
    try:
        values = fc.decode(data, tables, indexes, shape=shape, threads=threads)
    except fc.DecodeError as e:
        assert isinstance(e, ValueError)
        return f"DecodeError: {e}"
    if np.array_equal(values, original):
        return "original"
    return "values " + hashlib.sha1(values.tobytes()).hexdigest()


def _collect() -> dict:
    results = {}
    for name, tables, symbols, indexes, options in _cases(fc):
        data = fc.encode(symbols, tables, indexes, threads=1, **options)
        rng = np.random.default_rng(int.from_bytes(hashlib.sha1(name.encode()).digest()[:4], "little"))
        results[name] = {
            "checksum": options.get("checksum", True),
            "message": hashlib.sha1(data).hexdigest(),
            "intact": _outcome(fc, data, tables, indexes, symbols.shape, symbols),
            "threads": _outcome(fc, data, tables, indexes, symbols.shape, symbols, threads=3),
            "corrupt": [_outcome(fc, c, tables, indexes, symbols.shape, symbols) for c in _corruptions(data, rng)],
        }
    return results


@pytest.fixture(scope="module")
def outcomes():
    """Outcomes per kernel (None where this build or CPU lacks it)."""
    results = {}
    for isa in KERNELS:
        results[isa] = None
        if missing_reason(isa) is None:
            with using(isa):
                results[isa] = _collect()
    return results


@pytest.mark.parametrize("isa", kernel_params())
def test_intact_messages_decode_to_their_input(outcomes, isa):
    for name, case in outcomes[isa].items():
        assert case["intact"] == "original", (isa, name, case["intact"])
        assert case["threads"] == "original", (isa, name, case["threads"])  # chunks decoded in parallel


@pytest.mark.parametrize("isa", kernel_params(VECTOR_KERNELS))
def test_kernels_agree_with_generic_on_every_outcome(outcomes, isa):
    reference, other = outcomes["generic"], outcomes[isa]
    assert reference.keys() == other.keys()
    for name in reference:
        assert reference[name]["message"] == other[name]["message"], name  # same bytes from every encoder
        assert len(reference[name]["corrupt"]) == len(other[name]["corrupt"])
        for k, (a, b) in enumerate(zip(reference[name]["corrupt"], other[name]["corrupt"])):
            assert a == b, (isa, name, k, a, b)


@pytest.mark.parametrize("isa", kernel_params())
def test_corrupt_messages_fail_cleanly(outcomes, isa):
    cases = outcomes[isa]
    for name, case in cases.items():
        for k, result in enumerate(case["corrupt"]):
            if case["checksum"]:
                assert result == "original" or result.startswith("DecodeError"), (isa, name, k, result)
            else:
                assert result == "original" or result.startswith(("DecodeError", "values")), (isa, name, k)
    assert sum(r.startswith("DecodeError") for case in cases.values() for r in case["corrupt"]) > 0


def _laplace_message():
    """An 8-lane message of one uniform channel, without checksum."""
    rng = np.random.default_rng(5)
    t = fc.CdfTables.laplace(np.array([3.0]))
    rows = np.zeros((1, 1), dtype=np.int32)
    symbols = rng.laplace(0, 3.0, size=(1, 300_000)).round().astype(np.int32)
    return t, rows, symbols, fc.encode(symbols, t, rows, threads=1, checksum=False)


def _word_flip_outcomes(t, rows, symbols, data) -> list:
    rng = np.random.default_rng(11)
    got = []
    for k in range(40):
        b = bytearray(data)
        pos = 64 + int(rng.integers(0, len(data) - 128))
        b[pos] ^= 1 << int(rng.integers(0, 8)) if k % 2 else 0xFF
        got.append(_outcome(fc, bytes(b), t, rows, symbols.shape, symbols))
    return got


@pytest.mark.parametrize("isa", kernel_params(VECTOR_KERNELS))
def test_word_flips_give_the_same_outcome_as_generic(isa):
    """Flips in the words region (checksum off, so the coder's own checks
    decide): the vector kernels give the generic kernels' outcome."""
    t, rows, symbols, data = _laplace_message()
    with using("generic"):
        reference = _word_flip_outcomes(t, rows, symbols, data)
    with using(isa):
        assert _word_flip_outcomes(t, rows, symbols, data) == reference
    assert sum(r.startswith("DecodeError") for r in reference) > 0


# --- random data at every lane count ----------------------------------------------

INT32_MIN, INT32_MAX = np.iinfo(np.int32).min, np.iinfo(np.int32).max


def _random_message_case(seed: int, n: int, chunk_size: int, per_element: bool, escape_rate: float):
    """Tables, values and indexes (per element, or one row per channel of a
    (channels, n / channels) array) with escapes of every size and int32's
    extremes at random places."""
    rng = np.random.default_rng(seed)
    precision = int(rng.integers(8, 17))
    tables = (_random_pmf_tables(fc, rng, precision, int(rng.integers(1, 12)), 400) if seed % 2 else
              fc.CdfTables.laplace(np.exp(rng.uniform(np.log(0.2), np.log(40.0), int(rng.integers(1, 12)))),
                                   precision=precision))
    if per_element:
        indexes = rng.integers(0, len(tables), size=n).astype(np.int32)
        rows = indexes
    else:
        channels = max(1, min(int(rng.integers(1, 9)), n))
        n = n // channels * channels
        indexes = rng.integers(0, len(tables), size=(channels, 1)).astype(np.int32)
        rows = np.broadcast_to(indexes, (channels, n // channels))
    values = _sample(tables, rng, rows, escape_rate) if n >= 2 else np.zeros(rows.shape, np.int32)
    extremes = rng.random(rows.shape) < 0.002
    values[extremes] = rng.choice([INT32_MIN, INT32_MAX, INT32_MIN + 1, INT32_MAX - 1], size=int(extremes.sum()))
    return tables, values, indexes, dict(chunk_size=chunk_size, checksum=bool(seed % 3))


def _agree(isa: str, tables, values, indexes, options) -> bytes:
    """Encodes with generic and `isa`: the same bytes, each decoding the
    other's message, and the same outcome for a few corruptions."""
    with using("generic"):
        reference = fc.encode(values, tables, indexes, threads=1, **options)
    with using(isa):
        mine = fc.encode(values, tables, indexes, threads=1, **options)
        assert mine == reference, (isa, len(mine), len(reference))
        np.testing.assert_array_equal(fc.decode(reference, tables, indexes, shape=values.shape), values)
    rng = np.random.default_rng(len(reference))
    corrupt = _corruptions(reference, rng)[:8] if len(reference) > 16 else []
    outcomes = {}
    for kernels in ("generic", isa):
        with using(kernels):
            outcomes[kernels] = [_outcome(fc, c, tables, indexes, values.shape, values) for c in corrupt]
    assert outcomes["generic"] == outcomes[isa], isa
    return reference


# Symbol counts per chunk across the encoder's choices of lane count
# (docs/format.md: 1 to 8 lanes by the chunk's size), with ragged ends.
LANE_SIZES = (1, 7, 1000, 1500, 16_000, 16_385, 20_001, 65_537, 70_003)


@pytest.mark.parametrize("isa", kernel_params(VECTOR_KERNELS))
def test_same_bytes_at_every_lane_count(isa):
    lanes = set()
    for k, n in enumerate(LANE_SIZES):
        for per_element in (False, True):
            for escape_rate in (0.0, 0.01):
                case = _random_message_case(100 * k + 2 * per_element + int(escape_rate > 0), n, 1 << 19,
                                            per_element, escape_rate)
                lanes.add(parse_header(_agree(isa, *case)[0])["lanes"])
    assert {1, 8} <= lanes and len(lanes) >= 3, lanes  # the vector decoders take 8-lane chunks


@pytest.mark.parametrize("isa", kernel_params(VECTOR_KERNELS))
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 90_000), chunk_size=st.sampled_from([1 << 10, 1 << 14, 1 << 19]),
       per_element=st.booleans(), escape_rate=st.sampled_from([0.0, 1e-4, 0.05]))
def test_same_bytes_for_random_messages(isa, seed, n, chunk_size, per_element, escape_rate):
    _agree(isa, *_random_message_case(seed, n, chunk_size, per_element, escape_rate))
