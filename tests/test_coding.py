"""encode / decode round trips, message layout, and information_content."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import featcodec as fc
import format_reference as ref
from isa_kernels import VECTOR_KERNELS, kernel_params, using
from strategies import (
    INT32_MAX,
    INT32_MIN,
    LAYOUTS,
    SYMBOL_DTYPES,
    any_tables,
    bad_index_arrays,
    bits_of,
    index_arrays,
    make_symbols,
    symbol_shapes,
    with_layout,
)

CHUNK_SIZES = [16, 16, 64, 1024, fc.DEFAULT_CHUNK_SIZE]  # small chunks weighted up


def header(message: bytes) -> dict:
    """The first byte (docs/format.md): 0b11 (format 3) | checksum size |
    escapes | chunked | log2(lanes) (bits 1-0)."""
    return ref.parse_header(message[0])


def allowed_lanes(n: int, chunk_size: int) -> tuple:
    """The chunk size's lane count, or one (chosen by the chunks' sizes)."""
    return (1, ref.fast_lanes(min(n, chunk_size)))


def has_escape(tables, x, full) -> bool:
    s = np.asarray(x).astype(np.int64) - tables.offsets.astype(np.int64)[full]
    return bool(((s < 0) | (s >= tables.lengths[full])).any())


def check_header(message: bytes, n: int, chunk_size: int, checksum: bool, escapes: bool) -> None:
    """escapes: whether any value lies outside its row's support (header bit 4
    is set exactly then: the chunks carry an escape stream)."""
    h = header(message)
    assert h["version"] == fc.FORMAT_VERSION
    assert h["escapes"] == escapes, "header bit 3 (escapes) must be set exactly when a value is escaped"
    assert h["checksum"] == ref.checksum_bytes(checksum)
    assert h["compact"] == (n > 0 and not h["chunked"] and h["lanes"] == 1)
    assert h["chunked"] == (n > chunk_size)
    assert h["lanes"] in allowed_lanes(n, chunk_size)
    if h["chunked"]:
        assert message[1] == chunk_size.bit_length() - 1


# --- round trips --------------------------------------------------------------------------


@given(st.data())
def test_round_trip(data):
    tables = data.draw(any_tables(), label="tables")
    shape = data.draw(symbol_shapes, label="shape")
    small, full = data.draw(index_arrays(shape, len(tables)), label="indexes")
    dtype = data.draw(st.sampled_from(SYMBOL_DTYPES), label="dtype")
    x = make_symbols(np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))), tables, full, dtype)
    checksum = data.draw(st.booleans(), label="checksum")
    chunk_size = data.draw(st.sampled_from(CHUNK_SIZES), label="chunk_size")
    symbols_in = with_layout(x, data.draw(st.sampled_from(LAYOUTS), label="symbol layout"))
    indexes_in = with_layout(small, data.draw(st.sampled_from(LAYOUTS), label="index layout"))

    message = fc.encode(symbols_in, tables, indexes_in, checksum=checksum,
                        threads=data.draw(st.sampled_from([1, 2])), chunk_size=chunk_size)
    assert isinstance(message, bytes)
    escapes = has_escape(tables, x, full)
    check_header(message, x.size, chunk_size, checksum, escapes)
    h = header(message)
    event(f"lanes={h['lanes']} chunked={h['chunked']}")
    event(f"escapes={escapes}")

    shape_arg = None if small.shape == shape and data.draw(st.booleans()) else shape
    indexes_out = with_layout(small, data.draw(st.sampled_from(LAYOUTS), label="decode index layout"))
    out = fc.decode(message, tables, indexes_out, shape=shape_arg, threads=data.draw(st.sampled_from([1, 2])))
    assert isinstance(out, np.ndarray) and out.dtype == np.int32 and out.shape == shape
    np.testing.assert_array_equal(out.astype(np.int64), x.astype(np.int64))


@given(st.data())
def test_out_of_range_indexes_anywhere_in_a_broadcast_are_value_errors(data):
    tables = fc.CdfTables.gaussian([1.0, 2.0, 3.0])
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6), label="shape")
    small, bad = data.draw(bad_index_arrays(shape, len(tables)), label="indexes")
    x = np.zeros(shape, np.int32)
    with pytest.raises(ValueError, match="index|int32"):
        fc.encode(x, tables, small)
    with pytest.raises(ValueError, match="index|int32"):
        fc.decode(b"\xc0\x00", tables, small, shape=shape)
    with pytest.raises(ValueError, match="index|int32"):
        fc.information_content(x, tables, small)


def test_out_of_range_index_in_a_later_outer_run():
    # Index 3 for 3 tables in shape (3, 1, 4) broadcast to (3, 5, 4): only a
    # check of every outer run finds it.
    tables = fc.CdfTables.gaussian([1.0, 2.0, 3.0])
    for position in [(0, 0, 0), (1, 0, 2), (2, 0, 3)]:
        idx = np.zeros((3, 1, 4), np.int32)
        idx[position] = 3
        with pytest.raises(ValueError, match="index 3 is out of range for 3 tables"):
            fc.encode(np.zeros((3, 5, 4), np.int32), tables, idx)
        with pytest.raises(ValueError, match="index 3 is out of range for 3 tables"):
            fc.decode(b"\xc0\x00", tables, idx, shape=(3, 5, 4))


@given(st.data())
def test_message_depends_only_on_the_values(data):
    """The same values and tables give the same bytes whatever the dtype, the
    memory layout, the thread count, or whether indexes are broadcast."""
    tables = data.draw(any_tables(), label="tables")
    shape = data.draw(symbol_shapes, label="shape")
    small, full = data.draw(index_arrays(shape, len(tables)), label="indexes")
    dtype = data.draw(st.sampled_from(SYMBOL_DTYPES), label="dtype")
    x = make_symbols(np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))), tables, full, dtype)
    chunk_size = data.draw(st.sampled_from(CHUNK_SIZES))
    checksum = data.draw(st.booleans())
    reference = fc.encode(x.astype(np.int32), tables, full, checksum=checksum, threads=1, chunk_size=chunk_size)
    other = fc.encode(with_layout(x, data.draw(st.sampled_from(LAYOUTS))), tables,
                      with_layout(small, data.draw(st.sampled_from(LAYOUTS))),
                      checksum=checksum, threads=2, chunk_size=chunk_size)
    assert other == reference
    a = fc.decode(reference, tables, full, threads=2)
    b = fc.decode(reference, tables, small, shape=shape, threads=1)
    np.testing.assert_array_equal(a, b)


# Every lane count, with and without chunking; the lane count is chosen from
# the symbols per chunk.  Sizes straddle the thresholds and are not multiples
# of the lane count.
LANE_CASES = [
    # n, chunk_size
    (1, fc.DEFAULT_CHUNK_SIZE),
    (2, fc.DEFAULT_CHUNK_SIZE),
    (1023, fc.DEFAULT_CHUNK_SIZE),
    (1024, fc.DEFAULT_CHUNK_SIZE),
    (1027, fc.DEFAULT_CHUNK_SIZE),
    (16383, fc.DEFAULT_CHUNK_SIZE),
    (16384, fc.DEFAULT_CHUNK_SIZE),
    (16387, fc.DEFAULT_CHUNK_SIZE),
    (65535, fc.DEFAULT_CHUNK_SIZE),
    (65536, fc.DEFAULT_CHUNK_SIZE),
    (65541, fc.DEFAULT_CHUNK_SIZE),
    (140003, 65536),
    (16, 16),
    (17, 16),
    (1000, 16),
    (1030, 64),
    (5003, 1024),
    (5003, 512),
    (2048, 1024),
    (40001, 16384),
    (40001, 4096),
    (12289, 8192),  # chunks span the coder's 4096-symbol index blocks
    (1025, 1024),  # a last chunk with fewer symbols than lanes: idle lanes
    (16385, 16384),
    (16387, 16384),
    (65539, 65536),
    (131077, 65536),
]


@pytest.mark.parametrize("n, chunk_size", LANE_CASES)
@pytest.mark.parametrize("checksum", [True, False])
def test_lanes_and_chunks(n, chunk_size, checksum):
    rng = np.random.default_rng(n + chunk_size)
    t = fc.CdfTables.gaussian([0.3, 2.0, 25.0, 800.0], precision=13)
    idx = rng.integers(0, 4, n).astype(np.int32)
    x = np.rint(rng.normal(0, 1, n) * np.array([0.3, 2.0, 25.0, 800.0])[idx] * 1.3).astype(np.int64)
    far = rng.random(n) < 0.01
    x[far] = rng.integers(INT32_MIN, INT32_MAX, int(far.sum()), endpoint=True)
    x[:: max(1, n // 7)] = INT32_MAX
    x[-1] = INT32_MIN
    messages = {threads: fc.encode(x, t, idx, checksum=checksum, threads=threads, chunk_size=chunk_size)
                for threads in (1, 2)}
    assert messages[1] == messages[2], "the thread count must not change the bytes"
    check_header(messages[1], n, chunk_size, checksum, escapes=True)
    for threads in (1, 2):
        out = fc.decode(messages[1], t, idx, threads=threads)
        np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("threads", [1, 2])
def test_large_factorized_tensor(threads):
    """A (B, C, H, W) tensor of 300k symbols with per-channel tables (1, C, 1, 1)."""
    b, c, h, w = 2, 48, 56, 56
    scales = np.geomspace(0.1, 60.0, c)
    t = fc.CdfTables.gaussian(scales)
    rng = np.random.default_rng(7)
    x = np.rint(rng.normal(0, 1, (b, c, h, w)) * scales[None, :, None, None] * 1.2).astype(np.int32)
    x[0, 0, 0, :6] = [INT32_MIN, INT32_MAX, 10**6, -(10**6), 0, 1]
    x[1, c - 1, h - 1, -3:] = [INT32_MAX, INT32_MIN, 12345]
    idx = np.arange(c, dtype=np.int32).reshape(1, c, 1, 1)
    message = fc.encode(x, t, idx, threads=threads)
    check_header(message, x.size, fc.DEFAULT_CHUNK_SIZE, True, escapes=True)
    np.testing.assert_array_equal(fc.decode(message, t, idx, shape=x.shape, threads=threads), x)
    # Broadcast and materialized indexes code the same bytes.
    assert fc.encode(x, t, np.broadcast_to(idx, x.shape).copy(), threads=threads) == message
    # Close to the ideal size: a factorized Gaussian model costs little overhead.
    bits = fc.information_content(x, t, idx)
    assert (bits - 8 * START_UP_BITS) / 8 <= len(message) <= bits / 8 * 1.001 + 64

    # Non-contiguous symbols (channels-last view) with many small chunks:
    # chunk boundaries fall inside channels and inside index blocks.
    y = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    assert not y.flags.c_contiguous
    small_chunks = fc.encode(y, t, idx, threads=threads, chunk_size=16384)
    check_header(small_chunks, x.size, 16384, True, escapes=True)
    np.testing.assert_array_equal(fc.decode(small_chunks, t, idx, shape=x.shape, threads=3 - threads), x)


@pytest.mark.parametrize(
    "shape, index_shape",
    [
        ((3, 5, 7, 9), (1, 5, 1, 1)),  # runs of 63 equal indexes: block and chunk edges fall inside them
        ((3, 5, 7, 9), (3, 1, 1, 1)),
        ((3, 5, 7, 9), (1, 5, 7, 1)),
        ((3, 5, 7, 9), (1, 1, 1, 9)),
        ((3, 5, 7, 9), (3, 1, 7, 1)),
        ((3, 5, 7, 9), (5, 1, 1)),
        ((2, 3, 4099), (1, 3, 1)),  # runs longer than the coder's 4096-symbol blocks
        ((5, 8193), (5, 1)),
        ((70000,), (1,)),
    ],
)
@pytest.mark.parametrize("chunk_size", [16, 64, 1024, 4096, fc.DEFAULT_CHUNK_SIZE])
def test_broadcast_indexes_code_like_materialized_ones(shape, index_shape, chunk_size):
    """Runs of equal indexes (from zero strides) may take a faster path; the
    bytes must be those of the materialized index array."""
    rng = np.random.default_rng(len(shape) * 1000 + chunk_size)
    n_tables = 9
    t = fc.CdfTables.from_pmf(rng.random((n_tables, 12)) ** 4, rng.integers(-20, 20, n_tables), precision=12)
    small = rng.permutation(np.arange(int(np.prod(index_shape))) % n_tables).reshape(index_shape).astype(np.int32)
    full = np.ascontiguousarray(np.broadcast_to(small, shape))
    x = (t.offsets[full] + rng.integers(0, 12, shape)).astype(np.int32)
    reference = fc.encode(x, t, full, chunk_size=chunk_size, threads=1)
    assert fc.encode(x, t, small, chunk_size=chunk_size, threads=2) == reference
    np.testing.assert_array_equal(fc.decode(reference, t, small, shape=shape), x)
    np.testing.assert_array_equal(fc.decode(reference, t, full), x)
    assert fc.information_content(x, t, small) == pytest.approx(fc.information_content(x, t, full), rel=1e-12)


def test_int32_extremes_with_extreme_offsets():
    lengths = [1, 3, 200, 1]
    pmf = np.zeros((4, 200))
    for i, n in enumerate(lengths):
        pmf[i, :n] = 1.0 / n
    offsets = [INT32_MIN, INT32_MAX - 2, 0, INT32_MAX]
    t = fc.CdfTables.from_pmf(pmf, offsets, lengths=lengths, precision=10)
    interesting = sorted({INT32_MIN, INT32_MIN + 1, INT32_MIN + 2, -2, -1, 0, 1, 199, 200, 201,
                          INT32_MAX - 3, INT32_MAX - 2, INT32_MAX - 1, INT32_MAX, 2**30, -(2**30)})
    values = np.array(interesting * 4, dtype=np.int64)
    idx = np.repeat(np.arange(4, dtype=np.int32), len(interesting))
    for checksum in (True, False):
        for chunk_size in (16, fc.DEFAULT_CHUNK_SIZE):
            message = fc.encode(values, t, idx, checksum=checksum, chunk_size=chunk_size)
            np.testing.assert_array_equal(fc.decode(message, t, idx), values)


@pytest.mark.parametrize("dtype", SYMBOL_DTYPES)
def test_every_dtype_at_its_limits(dtype):
    info = np.iinfo(dtype)
    lo, hi = max(info.min, INT32_MIN), min(info.max, INT32_MAX)
    x = np.array([lo, hi, 0, 1, lo + 1, hi - 1, 7, lo, hi], dtype=dtype)
    t = fc.CdfTables.laplace([1.0, 100.0])
    idx = np.array([0, 1, 0])
    message = fc.encode(x.reshape(3, 3), t, idx)
    out = fc.decode(message, t, idx, shape=(3, 3))
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out.ravel().astype(np.int64), x.astype(np.int64))


@pytest.mark.parametrize(
    "shape, index_shape",
    [((0,), (0,)), ((0,), (1,)), ((3, 0, 2), (1, 0, 1)), ((3, 0, 2), (3, 1, 2)), ((0, 5), (5,)), ((2, 0), (2, 1))],
)
@pytest.mark.parametrize("checksum", [True, False])
def test_empty_arrays(shape, index_shape, checksum):
    t = fc.CdfTables.gaussian([1.0, 2.0, 3.0])
    x = np.zeros(shape, dtype=np.int16)
    idx = np.ones(index_shape, dtype=np.int32)
    message = fc.encode(x, t, idx, checksum=checksum, chunk_size=16)
    assert len(message) == 1 + 4 * checksum
    check_header(message, 0, 16, checksum, escapes=False)
    out = fc.decode(message, t, idx, shape=shape)
    assert out.shape == shape and out.dtype == np.int32
    assert fc.information_content(x, t, idx) == 0.0


def test_empty_float_list_is_an_empty_symbol_array():
    t = fc.CdfTables.gaussian([1.0])
    message = fc.encode([], t, [0])
    assert fc.decode(message, t, [0], shape=(0,)).shape == (0,)


def test_python_sequences_and_bytes_like_messages():
    t = fc.CdfTables.gaussian([1.0, 4.0])
    x = [[0, -3, 1], [7, 2, -100000]]
    message = fc.encode(x, t, [[0], [1]])
    for data in (message, bytearray(message), memoryview(message)):
        np.testing.assert_array_equal(fc.decode(data, t, [[0], [1]], shape=(2, 3)), x)
    # A scalar index broadcasts to every symbol.
    assert fc.encode(x, t, 1) == fc.encode(x, t, [[1, 1, 1], [1, 1, 1]])


def test_zero_dimensional_round_trip():
    # REGRESSION (failed on 340fa22, fixed in 30662ff): encode accepted a 0-d
    # symbol array (as_int32 used np.ascontiguousarray, which turns shape ()
    # into (1,)), but decode could not produce shape (): "indexes of shape
    # (1,) do not broadcast to shape ()".
    t = fc.CdfTables.gaussian([1.0, 4.0])
    x = np.array(-3, dtype=np.int32)
    message = fc.encode(x, t, np.array(1))
    out = fc.decode(message, t, np.array(1), shape=x.shape)
    assert out.shape == () and out.dtype == np.int32 and int(out) == -3
    # Other dtypes and a default shape (the indexes' shape, ()) as well.
    for dtype in (np.int64, np.uint8, np.int16):
        message = fc.encode(np.array(7, dtype=dtype), t, 0)
        out = fc.decode(message, t, np.array(0))
        assert out.shape == () and int(out) == 7
    assert fc.encode(np.array(-3, np.int32), t, 1) == fc.encode([-3], t, [1])


# --- the byte format (docs/format.md) -------------------------------------------------------
#
# tests/format_reference.py is a pure-Python model of docs/format.md, written
# from the spec: the golden bytes below are checked against it as well as
# against the library.

# Fixed bytes of format version 3: a change means old messages no longer decode.
GOLDEN_SYMBOLS = np.array([0, 1, -1, 2, -3, 0, 5, -40, 100, 2**31 - 1, -(2**31), 7, 0, 0, 1, -2, 3, 0, -1, 12] * 2,
                          dtype=np.int32)
GOLDEN_INDEXES = np.tile(np.arange(3, dtype=np.int32), 14)[:40]
GOLDEN_MESSAGES = {
    # Compact header b8: format 3, one chunk and one lane, 4-byte checksum,
    # escapes, lane 0's state bits above its tail 0; the escape stream's
    # size 1a (26 bytes); 9 words (the first lane 0's flush word); the
    # stream, forward; lane 0's state 0b06 (2 bytes: the length leaves 2).
    # The checksum is lane 0's initial state: no bytes of its own.
    (True, fc.DEFAULT_CHUNK_SIZE): "b81a5523f399cf4b490576ffffdfff7f0f99830029b926e03f6df51edebaffffff1f26bf0a39471c"
                                   "99b7c1c27ef7ffffffcffcffff6f2847ebdbf4ffff7ffaffff7f2200060b",
    # Header cc: no checksum, escapes, chunked, 1 lane; chunk_bits 04;
    # directory 1c (28 bytes), 1f (31 bytes); each chunk: escape stream size,
    # words, stream, lane 0's state.
    (False, 16): "cc041c1f0c9526fc19ffffffdf747fdbb6c1c27ef7ffffffcffcffff0f958c110d5037ccb64de0e1a68e9406b1ffffffff86"
                 "72b4be4dffffffa7ffffff07010212a0788e440054c012",
    # Compact header ac: a 2-byte checksum, escapes, one chunk of at most 64,
    # lane 0's state bits 100 above its tail c87cca (the state 0x04ca7cc8).
    (2, 64): "ac1a641dc48effbfdcffffffffffaaa45317ac85d0973461a4b4ffffff2fffffdf6f39e9bc55c1c27ef7ffffffcffcffff6f2847"
             "ebdbf4ffff7ffaffff7f2200c87cca",
}
GOLDEN_TABLES_ARGS = dict(scales=[0.7, 3.0, 40.0], precision=14, tail_mass=1e-5)


def golden_tables():
    a = GOLDEN_TABLES_ARGS
    return fc.CdfTables.gaussian(a["scales"], precision=a["precision"], tail_mass=a["tail_mass"])


@pytest.mark.parametrize("checksum, chunk_size", list(GOLDEN_MESSAGES))
def test_golden_messages(checksum, chunk_size):
    t = golden_tables()
    golden = bytes.fromhex(GOLDEN_MESSAGES[checksum, chunk_size])
    assert fc.decode(golden, t, GOLDEN_INDEXES).tolist() == GOLDEN_SYMBOLS.tolist()
    assert fc.encode(GOLDEN_SYMBOLS, t, GOLDEN_INDEXES, checksum=checksum, chunk_size=chunk_size) == golden
    # Independently: the spec's model produces and accepts the same bytes.
    assert ref.encode(GOLDEN_SYMBOLS, t, GOLDEN_INDEXES, checksum, chunk_size) == golden
    assert ref.decode(golden, t, GOLDEN_INDEXES).tolist() == GOLDEN_SYMBOLS.tolist()


def golden_lane_symbols(n: int):
    """Deterministic symbols (integer arithmetic only) and their indexes
    (k mod 3), with escapes to both int32 ends."""
    k = np.arange(n, dtype=np.int64)
    h = (k * 2654435761) % 2**32
    x = ((h >> 8) % 9 - 4) * (1 + (k % 3) * 7)
    x[k % 97 == 5] = h[k % 97 == 5] - 2**31
    x[k % 89 == 0] = 2**31 - 1
    return x, (k % 3).astype(np.int32)


# Multi-lane messages, pinned by length and SHA-256 (the bytes are long).
GOLDEN_LANE_MESSAGES = {
    # n, chunk_size: header, length, sha256[:32]
    (3000, fc.DEFAULT_CHUNK_SIZE): (0xB8, 4646, "b314d575f698f98869a4746e92ea696d"),  # 1 lane, compact header
    (20000, 16384): (0xFC, 30837, "2a81c14a9435a98684b1746ce4fe498e"),  # 1 lane, 2 chunks
    (40000, fc.DEFAULT_CHUNK_SIZE): (0xFA, 61600, "e18f7399a6356b538eb8fbe3cadc40ef"),  # 4 lanes
    (70001, fc.DEFAULT_CHUNK_SIZE): (0xFB, 107811, "6fc1f883fb98e28069ce039b4a23d8ba"),  # 8 lanes, odd n
}


@pytest.mark.parametrize("n, chunk_size", list(GOLDEN_LANE_MESSAGES))
def test_golden_multi_lane_messages(n, chunk_size):
    import hashlib

    t = golden_tables()
    x, idx = golden_lane_symbols(n)
    message = fc.encode(x, t, idx, chunk_size=chunk_size)
    first, length, digest = GOLDEN_LANE_MESSAGES[n, chunk_size]
    assert (message[0], len(message), hashlib.sha256(message).hexdigest()[:32]) == (first, length, digest)
    assert ref.encode(x, t, idx, True, chunk_size) == message
    np.testing.assert_array_equal(fc.decode(message, t, idx), x)


@pytest.mark.parametrize("isa", kernel_params())
def test_lanes_that_never_leave_their_start_up_phase(isa):
    """Lanes 1 .. 7 code only their row's most frequent symbol from state 0,
    which costs nothing: they end at state 0 with their whole lane as the
    start-up phase (the lane head's 6-bit state length), while lane 0's
    wide values make the chunk long enough for 8 lanes."""
    t = fc.CdfTables.gaussian([0.3, 40.0], precision=12)
    n = 1 << 18
    rng = np.random.default_rng(5)
    idx = (np.arange(n) % 8 != 0).astype(np.int32) ^ 1
    x = np.where(idx == 1, np.round(rng.normal(0, 40.0, n)), 0).astype(np.int32)
    with using(isa):
        message = fc.encode(x, t, idx, checksum=False)
        np.testing.assert_array_equal(fc.decode(message, t, idx), x)
    assert ref.parse_header(message[0])["lanes"] == 8
    assert ref.encode(x, t, idx, False) == message
    _, counts, states, _ = ref.read_lane_head(message[1:], n, 8)
    assert states == [0] * 7 and counts[1:] == [n // 8] * 7
    np.testing.assert_array_equal(ref.decode(message, t, idx), x)


def test_message_layout_by_hand():
    """Messages worked out by hand from docs/format.md."""
    t = fc.CdfTables.from_pmf(np.array([[0.5, 0.5]]), [0], precision=8)
    assert t.freqs(0).tolist() == [128, 127, 1]  # cdf 0, 128, 255, 256
    # Values at the offset (start 0) keep the single lane at state 0: the
    # compact header 80 (format 3, one chunk and one lane, no checksum, no
    # escapes, lane 0's state bits above its tail 0), lane 0's state 00 (one
    # byte: the chunk's length leaves 1); a single lane stores no start-up count.
    assert fc.encode(np.zeros(100, np.int32), t, 0, checksum=False) == bytes([0x80, 0x00])
    # One escape: v = 5 above [0, 2): u = 6, e = 7, nb = 2.  The lane codes the
    # escape symbol (f = 1, start 255) from state 0 < f, so by the start-up
    # map: slot 255's key (2 * 0 + 1) / (2 * 1) = 1/2 has 128 keys below it or
    # equal to it from a lower symbol (64 of symbol 0's (2k + 1) / 256, 63 of
    # symbol 1's (2k + 1) / 254, and symbol 1's 127 / 254): final state 128
    # (below 2^31: no flush).  Header 88 (compact, escapes; 128 < 2^11 fits
    # the tail byte and the header's 3 state bits, which are 0); the escape
    # stream's size 01; no words; the stream: nb = 2 in 6 bits then e's 2 low
    # bits (11), LSB first; then the state, 80: of the 2 bytes after the
    # size, 1 is the stream, so the state has 1 (2 - 1 = 1 modulo 4).
    assert fc.encode([5], t, 0, checksum=False) == bytes([0x88, 0x01, 0b11000010, 0x80])
    assert fc.decode(bytes([0x88, 0x01, 0b11000010, 0x80]), t, [0]).tolist() == [5]
    # The plain step's final state 255 (slot 255 without the map) decodes
    # through the map to slot 127 of symbol 0, ending at state 127, not 0: refused.
    with pytest.raises(fc.DecodeError):
        fc.decode(bytes([0x88, 0x01, 0b11000010, 0xFF]), t, [0])
    # The same below the support: v = -3: u = 2 * (0 - 1 + 3) + 1 = 5, e = 6 = 0b110, nb = 2, low bits 10.
    assert fc.encode([-3], t, 0, checksum=False) == bytes([0x88, 0x01, 0b10000010, 0x80])
    # Two escapes, [5, -3]: coded backwards from state 0, 0 -> 128 (the map)
    # -> 128 * 256 + 255 = 33023 = ff 80 (little-endian: 2 bytes, as 33023
    # >= 2^11, and the header's bits 0); escape stream size 02; the stream in
    # decoding order is c2 82 (5's entry, then -3's), stored forward.
    two = bytes([0x88, 0x02, 0xC2, 0x82, 0xFF, 0x80])
    assert fc.encode([5, -3], t, 0, checksum=False) == two
    assert fc.decode(two, t, np.zeros(2, np.int32)).tolist() == [5, -3]
    # Reversed, the stream reads -3's entry first.
    assert fc.decode(bytes([0x88, 0x02, 0x82, 0xC2, 0xFF, 0x80]), t, np.zeros(2, np.int32)).tolist() == [-3, 5]
    # Words.  Eight escapes (f = 1, start 255): backwards from 0 the state
    # goes 128 (the map), then 2^7 * 256^k + 256^k - 1 for k = 1..6.  Before
    # the 8th symbol coded (j = 0), 2^55 + 2^48 - 1 >= f * 2^(63 - 8) emits
    # its low word ff ff ff ff and leaves 2^23 + 2^16 - 1, and coding j = 0
    # gives 0x80ffffff >= 2^31: the flush emits it as a word (ff ff ff 80)
    # and leaves 0.  The decoder reads the flush word first (state
    # 0x80ffffff), the other after j = 0 (x = 2^23 + 2^16 - 1: below 2^31, at
    # least 2^15, a word left); for the last symbols the words are used up
    # (the lane's start-up phase).  Escape stream: 5 (c2, 8 bits), six 2s
    # (u = 0, e = 1, nb = 0: 36 zero bits), then -3 (nb = 2 at bit 44: bit
    # 45; low bits 10 at bits 50-51: bit 51): c2 00 00 00 00 20 08, 52 bits
    # and 4 zero padding bits: size 07; lane 0's state 00 at the end.
    x = [5, 2, 2, 2, 2, 2, 2, -3]
    eight = bytes.fromhex("88" "07" "ffffff80" "ffffffff" "c200000000 2008" "00")
    assert fc.encode(x, t, 0, checksum=False) == eight
    assert fc.decode(eight, t, np.zeros(8, np.int32)).tolist() == x
    assert ref.encode(x, t, 0, False) == eight and ref.decode(eight, t, np.zeros(8, np.int32)).tolist() == x
    # Longer messages without escapes: 32-bit words, then lane 0's state
    # (no start-up count, no escape stream size).
    x = np.tile([1, 0, 0, 1], 40)
    message = fc.encode(x, t, 0, checksum=False)
    assert message[0] & 0xF8 == 0x80 and len(message) > 5
    # With a 1-byte checksum c (seeded with the full header d0 of a 1-byte
    # checksum): header 98 | state bits, and lane 0 starts at c instead of 0
    # (c >= f = 1: no start-up map):
    # c -> 256 c + 255 -> x = 65536 c + 65535, stored as the fewest
    # bytes (2 or 3) whose 8 t + 3 bits hold x, the bits above in the header.
    c = ref.checksum([5, -3], fc.DEFAULT_CHUNK_SIZE, header=0xD0, size=1)
    assert c > 0
    x = 65536 * c + 65535
    tail = 2 if x < 1 << 19 else 3
    with_checksum = bytes([0x98 | x >> (8 * tail), 0x02, 0xC2, 0x82]) + (x % (1 << 8 * tail)).to_bytes(tail, "little")
    assert fc.encode([5, -3], t, 0, checksum=1) == with_checksum
    assert ref.decode(with_checksum, t, np.zeros(2, np.int32)).tolist() == [5, -3]
    # A full header where the compact one belongs is refused.
    with pytest.raises(fc.DecodeError, match="compact"):
        fc.decode(bytes([0xC8, 0x02, 0xC2, 0x82, 0xFF, 0xFF]), t, np.zeros(2, np.int32))


def test_escape_stream_ends_the_chunk_forward():
    """With the escapes bit set, each chunk gives its escape stream's size
    after the lane states (and start-up counts), and ends with the stream,
    stored forward: a message with words and escapes has the stream as its
    last bytes, and each chunk of a chunked message ends with its own (a
    chunk without escapes with an empty one, size 0)."""
    t = fc.CdfTables.from_pmf(np.array([[0.25, 0.25, 0.25, 0.25]]), [0], precision=12)
    x = np.tile([0, 1, 2, 3, 4, -1], 50)  # two escapes in every 6 symbols
    x[64:128] = 2  # the second chunk of 64 has none
    single = fc.encode(x, t, 0, checksum=False)
    assert ref.encode(x, t, 0, False) == single
    assert header(single)["escapes"] and header(single)["lanes"] == 1
    stream = ref.escape_stream([ref.escape_code(int(v), 0, 4) for v in x if not 0 <= v < 4])
    size, pos = ref.read_varint(single, 1)
    tail = (len(single) - pos - size - 1) % 4 + 1  # lane 0's state, after the stream
    assert size == len(stream) and single[len(single) - tail - size:len(single) - tail] == stream
    chunked = fc.encode(x, t, 0, checksum=False, chunk_size=64)
    h = header(chunked)
    assert h["chunked"] and h["escapes"] and h["lanes"] == 1 and chunked[1] == 6
    pos, lengths = 2, []
    for _ in range(-(-x.size // 64) - 1):
        length, pos = ref.read_varint(chunked, pos)
        lengths.append(length)
    lengths.append(len(chunked) - pos - sum(lengths))
    for c, length in enumerate(lengths):
        chunk = chunked[pos:pos + length]
        values = x[64 * c:64 * (c + 1)]
        stream = ref.escape_stream([ref.escape_code(int(v), 0, 4) for v in values if not 0 <= v < 4])
        assert (len(stream) == 0) == (c == 1)
        size, at = ref.read_varint(chunk, 0)
        tail = (length - at - size - 1) % 4 + 1
        assert size == len(stream) and chunk[length - tail - size:length - tail] == stream, c
        pos += length
    # Without escapes, no size: a single lane's chunk is its words, then its state.
    y = np.tile([0, 1, 2, 3], 50)
    bare = fc.encode(y, t, 0, checksum=False)
    assert not header(bare)["escapes"]
    assert 1 <= (len(bare) - 1 - 1) % 4 + 1 <= 4 and len(bare) > 5


@given(st.data())
def test_library_matches_the_format_model(data):
    """The library's bytes are those of the Python model of docs/format.md,
    and the model decodes them (all its checks passing): every lane count,
    chunked or not, with and without checksum, escapes anywhere in int32."""
    tables = data.draw(any_tables(), label="tables")
    kind = data.draw(st.sampled_from(["small", "small", "lanes"]), label="kind")
    if kind == "small":
        n = data.draw(st.integers(0, 300), label="n")
        chunk_size = data.draw(st.sampled_from([16, 64, fc.DEFAULT_CHUNK_SIZE]), label="chunk_size")
    else:  # 2, 4 or 8 lanes: chunks of 1024 or more symbols
        n = data.draw(st.integers(1024, 2300), label="n")
        chunk_size = data.draw(st.sampled_from([1024, 2048, fc.DEFAULT_CHUNK_SIZE]), label="chunk_size")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    full = rng.integers(0, len(tables), n).astype(np.int32)
    x = make_symbols(rng, tables, full, np.int32)
    checksum = data.draw(st.booleans(), label="checksum")
    message = fc.encode(x, tables, full, checksum=checksum, chunk_size=chunk_size)
    event(f"lanes={header(message)['lanes']} chunked={header(message)['chunked']}")
    assert header(message)["escapes"] == has_escape(tables, x, full)
    assert ref.encode(x, tables, full, checksum, chunk_size) == message
    assert ref.decode(message, tables, full).tolist() == x.tolist()


@pytest.mark.parametrize("channel_length", [300, 3000, 7500, 22500])
def test_factorized_blocks_match_the_format_model(channel_length):
    """Broadcast (1, C, 1) indexes: the encoder codes a block within one
    channel with one row, without a per-symbol support test when the block
    has no escape, and a block across channels row by row.  Every lane count
    (1 to 8 lanes), blocks clean and with escapes: the model's bytes."""
    t = fc.CdfTables.laplace([0.5, 2.0, 9.0])
    rng = np.random.default_rng(channel_length)
    x = np.rint(rng.laplace(0, 2.0, (1, 3, channel_length))).astype(np.int32)
    x[0, 0, channel_length // 3] = 2**31 - 1  # channel 0: one escape
    x[0, 2, -3:] = [-40000, INT32_MIN, 100]  # channel 2: escapes at its end
    idx = np.arange(3, dtype=np.int32).reshape(1, 3, 1)
    message = fc.encode(x, t, idx)
    assert message == ref.encode(x, t, idx, True)
    np.testing.assert_array_equal(fc.decode(message, t, idx, shape=x.shape), x)


def test_format_model_rejects_what_the_library_rejects():
    """On corrupt bytes the model and the library agree: both raise, or both
    decode the same values (so that agreement above means something).  Every
    bit flip, truncation and a few appended bytes of a message with words,
    escapes and two lanes or one."""
    t = fc.CdfTables.gaussian([0.5, 3.0], precision=10)
    rng = np.random.default_rng(4)
    for n in (200, 1100):
        idx = rng.integers(0, 2, n).astype(np.int32)
        x = np.rint(rng.normal(0, 2, n)).astype(np.int32)
        x[::17] = rng.integers(INT32_MIN, INT32_MAX, len(x[::17]))
        message = fc.encode(x, t, idx, checksum=False)
        variants = [message[:k] for k in range(len(message))]
        variants += [message + extra for extra in (b"\x00", bytes(4), b"\x80", b"\x01\x00\x00\x00")]
        for k in range(8 * min(len(message), 120)):  # the head, the words, and the escape stream's end
            bit = k if k < 480 else 8 * len(message) - 1 - (k - 480)
            mutated = bytearray(message)
            mutated[bit // 8] ^= 1 << (bit % 8)
            variants.append(bytes(mutated))
        rejected = 0
        for data in variants:
            try:
                mine = ref.decode(data, t, idx).tolist()
            except ref.FormatError:
                mine = None
            try:
                theirs = fc.decode(data, t, idx).tolist()
            except fc.DecodeError:
                theirs = None
            assert mine == theirs, f"model {'rejects' if mine is None else 'accepts'} {data.hex()}"
            rejected += mine is None
        assert rejected > 0.5 * len(variants)  # not vacuous: most corruptions are caught


@pytest.mark.parametrize("n, chunk_size", [(0, 16), (1, 16), (37, 1024), (1000, 64), (5000, 1024), (3, 16),
                                           (2100, 1024), (3000, 2048)])
def test_checksum_and_directory_follow_the_spec(n, chunk_size):
    rng = np.random.default_rng(n)
    t = fc.CdfTables.laplace([0.5, 2.0, 9.0])
    x = rng.integers(-20, 20, n)
    x[::97] = INT32_MIN
    idx = rng.integers(0, 3, n).astype(np.int32)
    message = fc.encode(x, t, idx, chunk_size=chunk_size)
    h = header(message)
    assert h["escapes"] == (n > 0)  # INT32_MIN at 0, 97, ... is escaped
    pos = 1
    chunks = max(1, -(-n // chunk_size)) if n else 0
    lengths = []
    if h["chunked"]:
        assert message[1] == chunk_size.bit_length() - 1
        pos = 2
        for _ in range(chunks - 1):
            length, pos = ref.read_varint(message, pos)
            lengths.append(length)
    chunk_bits = chunk_size.bit_length() - 1 if h["chunked"] else 0
    full = ref.header_byte(4, h["chunked"], h["lanes"])  # the seed's, also for a compact header
    expected_checksum = ref.checksum(x, chunk_size, full, chunk_bits)
    if n == 0:  # no chunk: the checksum follows the header
        assert message[pos:] == expected_checksum.to_bytes(4, "little")
        return
    # The listed chunks fit in what remains, and the last chunk is not empty.
    assert sum(lengths) < len(message) - pos or n == 0
    rows = ref.Rows(t)
    # Each chunk decodes on its own: cut the message into single-chunk messages,
    # and decode each chunk with the Python model.
    # The checksum is chunk 0's lane 0's final state; the other chunks end at 0.
    for c, length in enumerate(lengths + [len(message) - pos - sum(lengths)]):
        begin, end = c * chunk_size, min(n, (c + 1) * chunk_size)
        chunk = message[pos:pos + length]
        values, lane0_end, _ = ref.decode_chunk(chunk, idx[begin:end].tolist(), rows, h["lanes"], h["escapes"],
                                                h["high"] if c == 0 else None)
        assert values == x[begin:end].tolist()
        assert lane0_end == (expected_checksum if c == 0 else 0)
        if c > 0 and h["escapes"] == has_escape(t, x[begin:end], idx[begin:end]):
            # Without a checksum, a later chunk is a stand-alone message.
            part = (ref.compact_message(chunk, h["escapes"]) if h["lanes"] == 1
                    else bytes([message[0] & ~0x34 & ~0x04]) + chunk)
            assert fc.decode(part, t, idx[begin:end]).tolist() == x[begin:end].tolist()
        pos += length


# --- information content -------------------------------------------------------------------


def sample_from_tables(rng, tables, full):
    """Symbols drawn from the quantized tables themselves (escapes included)."""
    m = 1 << tables.precision
    cdf = tables.cdf()[full]
    u = rng.integers(0, m, full.shape)
    s = (cdf <= u[..., None]).sum(-1) - 1
    offsets = tables.offsets.astype(np.int64)[full]
    lengths = tables.lengths[full]
    distance = rng.integers(0, 2 ** rng.integers(0, 33, full.shape), dtype=np.int64)
    below = rng.random(full.shape) < 0.5
    below = np.where(offsets == INT32_MIN, False, np.where(offsets + lengths - 1 == INT32_MAX, True, below))
    escaped = np.where(below, np.maximum(offsets - 1 - distance, INT32_MIN),
                       np.minimum(offsets + lengths + distance, INT32_MAX))
    return np.where(s < lengths, offsets + s, escaped)


def free_tail_bits(tables, x, full, lanes=1, chunk_size=None):
    """Bits of each lane's trailing run of values equal to their row's offset.

    Every lane starts its coder at state 0, where a symbol with cumulative
    start 0 costs nothing: such a trailing run is free (the decoder knows the
    symbol count), so the message may be shorter than the ideal information
    content by that much.
    """
    flat_x, flat_i = np.asarray(x).ravel(), np.asarray(full).ravel()
    m = 1 << tables.precision
    chunk_size = chunk_size or max(1, flat_x.size)
    bits = 0.0
    for begin in range(0, flat_x.size, chunk_size):
        end = min(flat_x.size, begin + chunk_size)
        for lane in range(lanes):
            for k in range(begin + lane + (end - begin - 1 - lane) // lanes * lanes, begin - 1, -lanes):
                row = int(flat_i[k])
                if int(flat_x[k]) != int(tables.offsets[row]):
                    break
                bits += -math.log2(int(tables.freqs(row)[0]) / m)
    return bits


@given(st.data())
def test_information_content_matches_python(data):
    tables = data.draw(any_tables(), label="tables")
    shape = data.draw(symbol_shapes, label="shape")
    small, full = data.draw(index_arrays(shape, len(tables)), label="indexes")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    offsets = tables.offsets.astype(np.int64)[full]
    x = offsets + (rng.random(shape) * tables.lengths[full]).astype(np.int64)  # in support
    expected = bits_of(tables, x, full)
    got = fc.information_content(with_layout(x, data.draw(st.sampled_from(LAYOUTS))), tables,
                                 with_layout(small, data.draw(st.sampled_from(LAYOUTS))))
    assert isinstance(got, float)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_information_content_of_escapes():
    """An escape costs its own -log2 p, a 6-bit length and the value code's bits:
    u = 2 (v - end) above the support, 2 (offset - 1 - v) + 1 below, and
    bit_length(u + 1) - 1 bits."""
    t = fc.CdfTables.gaussian([2.0], precision=12)
    offset, end = int(t.offsets[0]), int(t.offsets[0] + t.lengths[0])
    escape_bits = -math.log2(int(t.freqs(0)[-1]) / 4096)
    for v in [end, end + 1, end + 2, end + 1000, offset - 1, offset - 2, offset - 1000, INT32_MAX, INT32_MIN]:
        u = 2 * (v - end) if v >= end else 2 * (offset - 1 - v) + 1
        expected = escape_bits + 6 + (u + 1).bit_length() - 1
        assert fc.information_content([v], t, [0]) == pytest.approx(expected, rel=1e-12), v
    # Costs add up, and more distant values never cost less.
    far = [fc.information_content([end + d], t, [0]) for d in range(0, 5000, 37)]
    assert all(a <= b for a, b in zip(far, far[1:]))
    both = fc.information_content([end, 0, offset - 7], t, [0])
    assert both == pytest.approx(sum(fc.information_content([v], t, [0]) for v in [end, 0, offset - 7]))


# Besides a free trailing run, a lane starting at state 0 codes a few bits
# for free, or pays a few extra, while its state is still below 2^precision.
START_UP_BITS = 24

# docs/format.md: "A single-lane message without escapes and without a
# checksum costs at most 4 bytes" beyond the information content (escapes'
# raw bits included); "Escapes add their stream's size and padding: 1 to 3
# bytes", so 7 with escapes.
SINGLE_LANE_MAX_OVERHEAD = 4
SINGLE_LANE_MAX_OVERHEAD_WITH_ESCAPES = 7


def single_lane_bound(message: bytes) -> int:
    return SINGLE_LANE_MAX_OVERHEAD_WITH_ESCAPES if header(message)["escapes"] else SINGLE_LANE_MAX_OVERHEAD


@given(st.data())
def test_single_lane_message_size(data):
    """One chunk of fewer than 1024 symbols: the message is at least the
    information content (less the start-up allowance) and at most 6 bytes more
    without escapes, 7 with (docs/format.md); the checksum adds at most 4."""
    tables = data.draw(any_tables(), label="tables")
    n = data.draw(st.integers(1, 1023), label="n")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    full = rng.integers(0, len(tables), n).astype(np.int32)
    x = sample_from_tables(rng, tables, full)
    bare = fc.encode(x, tables, full, checksum=False)
    assert header(bare)["lanes"] == 1 and not header(bare)["chunked"]
    assert header(bare)["escapes"] == has_escape(tables, x, full)
    event(f"escapes={header(bare)['escapes']}")
    bits = fc.information_content(x, tables, full)
    # The checksum is lane 0's initial state: it costs about its 4 bytes
    # (less the start-up slack it takes the place of; the rounding of lane
    # 0's state to bytes differs by up to one), and carries 32 bits.
    with_checksum = len(fc.encode(x, tables, full, checksum=True))
    assert len(bare) <= with_checksum <= len(bare) + 5 and 8 * with_checksum >= bits + 32 - START_UP_BITS
    assert 8 * len(bare) >= bits - free_tail_bits(tables, x, full) - START_UP_BITS, (len(bare), bits)
    assert len(bare) - bits / 8 <= single_lane_bound(bare), (len(bare), bits / 8, bare.hex()[:80])


@given(st.data())
def test_single_lane_message_size_without_escapes(data):
    """The strict 6-byte bound, on messages drawn without escapes (the
    property above sees fewer of them)."""
    tables = data.draw(any_tables(), label="tables")
    n = data.draw(st.integers(1, 1023), label="n")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    full = rng.integers(0, len(tables), n).astype(np.int32)
    cdf = tables.cdf().astype(np.int64)[full]
    lengths = tables.lengths.astype(np.int64)[full]
    u = rng.integers(0, cdf[np.arange(n), lengths])  # below the escape's start: a symbol of the support
    x = tables.offsets.astype(np.int64)[full] + (cdf <= u[:, None]).sum(-1) - 1
    assert not has_escape(tables, x, full)
    bare = fc.encode(x, tables, full, checksum=False)
    assert header(bare)["lanes"] == 1 and not header(bare)["escapes"]
    bits = fc.information_content(x, tables, full)
    assert len(bare) - bits / 8 <= SINGLE_LANE_MAX_OVERHEAD, (len(bare), bits / 8, bare.hex()[:80])


def test_single_lane_overhead_with_escapes():
    # REGRESSION (failed from 25dcf44, "escapes in a side bit stream", until
    # 30662ff): a single-lane message cost more than its bound over its
    # information content when it held 128+ bytes of escapes.  Since 98cf60e
    # the stream's size is given (a 2-byte varint here) and the bound with
    # escapes is 9 bytes: this message costs 7.
    t = fc.CdfTables.from_pmf(np.array([[0.5]]), [0], precision=16)  # value 0 or an escape, 1 bit each
    x = np.tile([0, 1], 511)  # 1022 symbols: a single lane; 511 escapes of 6 bits
    bare = fc.encode(x, t, 0, checksum=False)
    assert header(bare)["lanes"] == 1 and header(bare)["escapes"]
    overhead = len(bare) - fc.information_content(x, t, 0) / 8
    assert overhead <= SINGLE_LANE_MAX_OVERHEAD_WITH_ESCAPES, (
        f"{len(bare)} bytes for {fc.information_content(x, t, 0) / 8} bytes")


def test_single_lane_overhead_within_the_documented_bound():
    # REGRESSION (failed on 30662ff, fixed in 98cf60e): a single lane stored
    # its start-up count, 2 bytes once 128 or more symbols are coded while
    # the state is below 2^31; a likely symbol with a nonzero start keeps the
    # state low for long: 300 of them, no escapes, cost 6.28 bytes over their
    # information.  A single lane now stores no count, and (format 3) its
    # state without varint padding, its top bits in the compact header.
    # Since the start-up map, the run of likely symbols coded from state 0
    # keeps it at 0 (their slot 0 has rank 0): 2 bytes in all.  With escapes (bound 9): one escape in front, and the escape
    # stream's padding on top of the varint padding and start-up slack.
    cases = [
        (fc.CdfTables.from_pmf(np.array([[0.1, 0.9]]), [0], precision=12), [1] * 300, False),
        (fc.CdfTables.from_pmf(np.array([[0.1, 0.9]]), [0], precision=12), [5] + [1] * 300, True),
        (fc.CdfTables.from_pmf(np.array([[0.05, 0.95]]), [0], precision=16), [2**20] + [1] * 768, True),
        (fc.CdfTables.laplace([2.0], precision=16, tail_mass=0.5), [0, 0, 61, 69], True),
    ]
    failures = []
    for t, x, escapes in cases:
        bare = fc.encode(x, t, 0, checksum=False)
        assert header(bare)["lanes"] == 1 and header(bare)["escapes"] == escapes
        np.testing.assert_array_equal(fc.decode(bare, t, np.zeros(len(x), np.int32)), x)
        bits = fc.information_content(x, t, 0)
        if len(bare) - bits / 8 > single_lane_bound(bare):
            failures.append(f"{len(x)} symbols: {len(bare)} bytes ({bare.hex()[:40]}) for {bits / 8:.2f} bytes")
    assert not failures, "; ".join(failures)
    t, x, _ = cases[0]
    bare = fc.encode(x, t, 0, checksum=False)
    assert bare == bytes([0x80, 0x00])


def test_start_up_is_free_at_state_zero():
    # The allowance in the size tests: 1000 symbols at the table's offset
    # code to a bare header and a zero state: the single lane stores no
    # start-up count (all 1000 symbols were coded below 2^31, no words).
    t = fc.CdfTables.from_pmf(np.array([[0.9, 0.1]]), [3], precision=8)
    x = np.full(1000, 3)
    assert fc.encode(x, t, 0, checksum=False) == bytes([0x80, 0x00])
    assert fc.information_content(x, t, 0) > 100
    np.testing.assert_array_equal(fc.decode(bytes([0x80, 0x00]), t, np.zeros(1000, np.int32)), x)
    # Anything after the state is rejected: an old-style start-up count, or
    # a word read at state 0 (< 2^15, a read no encoder makes).
    for extra in (ref.varint(1000), ref.varint(0), bytes(4), b"\x01\x00\x00\x00", bytes(8)):
        with pytest.raises(fc.DecodeError):
            fc.decode(bytes([0x80, 0x00]) + extra, t, np.zeros(1000, np.int32))


@pytest.mark.parametrize("n, chunk_size", [(1024, fc.DEFAULT_CHUNK_SIZE), (5000, fc.DEFAULT_CHUNK_SIZE),
                                           (20000, fc.DEFAULT_CHUNK_SIZE), (70000, fc.DEFAULT_CHUNK_SIZE),
                                           (20000, 2048), (3000, 64)])
def test_message_size_bounds(n, chunk_size):
    """Every lane's flush and start-up count, and each chunk's directory entry,
    escape stream size and escape stream padding, cost a few bytes; the message is never much shorter
    than the information content."""
    rng = np.random.default_rng(n)
    for tables in (fc.CdfTables.gaussian([0.4, 3.0, 90.0], precision=11),
                   fc.CdfTables.from_pmf(rng.random((2, 30)), [INT32_MIN, 40], precision=16),
                   fc.CdfTables.from_pmf(rng.random((2, 30)) / 40, [-15, 40], precision=12)):  # many escapes
        full = rng.integers(0, len(tables), n).astype(np.int32)
        x = sample_from_tables(rng, tables, full)
        bare = fc.encode(x, tables, full, checksum=False, chunk_size=chunk_size)
        # The checksum lengthens chunk 0 (and maybe its directory entry).
        assert len(bare) <= len(fc.encode(x, tables, full, chunk_size=chunk_size)) <= len(bare) + 5 + (n > chunk_size)
        bits = fc.information_content(x, tables, full)
        lanes = header(bare)["lanes"]
        chunks = -(-n // chunk_size)
        free = free_tail_bits(tables, x, full, lanes, chunk_size)
        assert 8 * len(bare) >= bits - free - chunks * lanes * START_UP_BITS, (len(bare), bits / 8)
        overhead = len(bare) - bits / 8
        assert overhead <= 2 + chunks * (5 * lanes + 10) + 1e-4 * bits / 8, overhead


# --- concurrency ----------------------------------------------------------------------------


def test_concurrent_calls_from_python_threads():
    """The GIL is released in native code: calls from several Python threads
    on shared tables give the same results as serial calls."""
    from concurrent.futures import ThreadPoolExecutor

    scales = np.geomspace(0.2, 100.0, 16)
    t = fc.CdfTables.gaussian(scales)
    idx = np.arange(16, dtype=np.int32).reshape(16, 1)
    rng = np.random.default_rng(3)
    arrays = [np.rint(rng.normal(0, 1, (16, 3000)) * scales[:, None]).astype(np.int32) for _ in range(6)]
    expected = [fc.encode(a, t, idx, threads=1, chunk_size=1024) for a in arrays]

    def job(k):
        a = arrays[k % len(arrays)]
        message = fc.encode(a, t, idx, threads=2, chunk_size=1024)
        return k, message, fc.decode(message, t, idx, shape=a.shape, threads=2), fc.information_content(a, t, idx)

    with ThreadPoolExecutor(4) as pool:
        for k, message, out, bits in pool.map(job, range(24)):
            assert message == expected[k % len(arrays)]
            np.testing.assert_array_equal(out, arrays[k % len(arrays)])
            assert bits == fc.information_content(arrays[k % len(arrays)], t, idx)

    builders = [(family, tuple(np.geomspace(0.1 + k, 50.0 + k, 8))) for k in range(4) for family in
                ("gaussian", "laplace", "logistic")]
    serial = [getattr(fc.CdfTables, f)(list(s)).to_bytes() for f, s in builders]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda b: getattr(fc.CdfTables, b[0])(list(b[1])).to_bytes(), builders * 2))
    assert parallel == serial * 2


# --- instruction sets ----------------------------------------------------------------------

ISA_CASES = '''
def build_cases():
    import numpy as np, featcodec as fc
    rng = np.random.default_rng(99)
    t = fc.CdfTables.gaussian([0.3, 2.0, 25.0, 700.0], precision=12)
    u = fc.CdfTables.from_pmf(rng.random((3, 40)) ** 3, [-(2**31), 5, 2**31 - 40], precision=16)
    cases = []
    for n, chunk_size, tables in [(7, 2**19, t), (1000, 2**19, t), (5000, 2**19, u), (20000, 2**19, t),
                                  (70000, 2**19, t), (70000, 2**14, u), (3000, 64, u), (0, 16, t)]:
        idx = rng.integers(0, len(tables), n).astype(np.int32)
        off = tables.offsets.astype(np.int64)[idx]
        x = off + (rng.random(n) * tables.lengths[idx]).astype(np.int64)
        far = rng.random(n) < 0.02
        x[far] = rng.integers(-(2**31), 2**31, int(far.sum()))
        cases.append((tables, x, idx, chunk_size))
    idx = np.arange(4, dtype=np.int32).reshape(1, 4, 1, 1)  # uniform blocks
    x = np.rint(rng.normal(0, 1, (2, 4, 90, 90)) * np.array([0.3, 2.0, 25.0, 700.0])[None, :, None, None])
    cases.append((t, x.astype(np.int64), idx, 2**12))
    return cases
'''

ISA_CHILD = ISA_CASES + '''
import json, sys
import numpy as np, featcodec as fc
parent = json.load(open(sys.argv[1]))
report = {"isa": fc._core.kernel_isa(), "same_bytes": [], "decodes_parent": []}
report["available"] = fc._core.select_kernels(sys.argv[2])  # the same kernels, if the CPU has them
for (tables, x, idx, chunk_size), message in zip(build_cases(), parent):
    mine = fc.encode(x, tables, idx, chunk_size=chunk_size, threads=2)
    report["same_bytes"].append(mine.hex() == message)
    out = fc.decode(bytes.fromhex(message), tables, idx, shape=x.shape, threads=2)
    report["decodes_parent"].append(bool(np.array_equal(out, x)))
print(json.dumps(report))
'''


@pytest.mark.parametrize("isa", kernel_params())
def test_instruction_set_kernels_agree(tmp_path, isa):
    """The chunk coders are built per instruction set and picked at run time
    (FEATCODEC_ISA caps the level): a process started with FEATCODEC_ISA=isa
    codes with those kernels and produces and accepts this process's bytes."""
    import json
    import os
    import subprocess
    import sys

    namespace: dict = {}
    exec(ISA_CASES, namespace)
    cases = namespace["build_cases"]()
    messages = [fc.encode(x, t, idx, chunk_size=chunk_size, threads=1) for t, x, idx, chunk_size in cases]
    path = tmp_path / "messages.json"
    path.write_text(json.dumps([m.hex() for m in messages]))
    env = dict(os.environ, FEATCODEC_ISA=isa)
    result = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", ISA_CHILD, str(path), isa],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["isa"] == isa and report["available"], f"FEATCODEC_ISA={isa} selected {report['isa']}"
    assert all(report["same_bytes"]), (report["isa"], report["same_bytes"])
    assert all(report["decodes_parent"]), (report["isa"], report["decodes_parent"])


def test_unknown_isa_name_is_an_error_at_import(tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, FEATCODEC_ISA="avx3")
    result = subprocess.run([sys.executable, "-c", "import featcodec"], capture_output=True, text=True,
                            cwd=tmp_path, env=env, timeout=60)
    assert result.returncode != 0
    assert "FEATCODEC_ISA='avx3' is not one of generic, avx2, avx512" in result.stderr


def test_isa_the_cpu_lacks_falls_back_with_a_warning(monkeypatch):
    from featcodec import _kernels

    monkeypatch.setenv("FEATCODEC_ISA", "avx512")
    monkeypatch.setattr(_kernels._core, "kernel_isa", lambda: "avx2")
    monkeypatch.setattr(_kernels._core, "available_kernels", lambda: ["generic", "avx2"])
    with pytest.warns(RuntimeWarning, match="FEATCODEC_ISA=avx512: this CPU or build lacks those kernels "
                                            r"\(available: generic, avx2\); using avx2"):
        _kernels.check_requested_kernels()


@pytest.mark.parametrize("isa", kernel_params(VECTOR_KERNELS))
@given(st.data())
def test_kernels_agree_on_random_inputs(isa, data):
    """Every vector build this CPU can run codes the generic build's bytes and
    decodes its messages, and the other way round (switched in-process)."""
    tables = data.draw(any_tables(), label="tables")
    shape = data.draw(symbol_shapes, label="shape")
    small, full = data.draw(index_arrays(shape, len(tables)), label="indexes")
    x = make_symbols(np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))), tables, full, np.int32)
    chunk_size = data.draw(st.sampled_from(CHUNK_SIZES + [1 << 16]))
    checksum = data.draw(st.booleans())
    messages = {}
    for kernels in ("generic", isa):
        with using(kernels):
            messages[kernels] = fc.encode(x, tables, small, checksum=checksum, chunk_size=chunk_size, threads=2)
    assert messages["generic"] == messages[isa], {k: v.hex()[:80] for k, v in messages.items()}
    for kernels, other in (("generic", isa), (isa, "generic")):
        with using(kernels):
            np.testing.assert_array_equal(fc.decode(messages[other], tables, small, shape=shape), x)


# --- threads=None --------------------------------------------------------------------------


def test_threads_none_codes_on_every_core(monkeypatch):
    # threads=None must hand the native layer the number of available cores
    # (the native layer caps it at the chunk count), not 1.
    from featcodec import _coding
    from native_spy import NativeCallSpy, available_cores, differing_int_argument

    cores = available_cores()
    if cores == 1:
        pytest.skip("one core: threads=None and threads=1 are the same request")
    t = fc.CdfTables.gaussian([1.0, 4.0])
    x = (np.arange(5000) % 11 - 5).astype(np.int32)
    runs = {}
    for threads in (1, None):
        spy = NativeCallSpy(_coding._core, ["encode", "decode"])
        monkeypatch.setattr(_coding, "_core", spy)
        message = fc.encode(x, t, 1, chunk_size=64, threads=threads)
        np.testing.assert_array_equal(fc.decode(message, t, 1, shape=x.shape, threads=threads), x)
        monkeypatch.undo()
        runs[threads] = spy.calls
    assert differing_int_argument(runs[1], runs[None]) == cores


# --- the start-up map (docs/format.md, "The coder") ---------------------------------------


def tables_of_frequencies(rows, precision):
    """CdfTables with these exact frequencies per row (the support's, then the escape's)."""
    width = max(len(f) for f in rows) + 1
    cdf = np.zeros((len(rows), width), np.int64)
    for i, f in enumerate(rows):
        c = np.concatenate([[0], np.cumsum(f)])
        cdf[i, :len(c)], cdf[i, len(c):] = c, c[-1]
    lengths = np.array([len(f) - 1 for f in rows])
    return fc.CdfTables.from_cdf(cdf, np.zeros(len(rows), np.int32), lengths, precision=precision)


def start_map_rows(precision):
    """Rows that reach every path of the decoder's search: a flat row (every
    key equal: the general search), a peak over a long flat tail, a peaked
    row, a two-symbol row and random rows."""
    m = 1 << precision
    rng = np.random.default_rng(precision)
    rows = [[1] * m, [m // 2] + [1] * (m // 2), [m - 40] + [1] * 40, [m - 1, 1], [m // 2 + 1, m // 2 - 1]]
    for size in (3, 17, min(200, m // 2)):
        f = 1 + rng.multinomial(m - size, rng.dirichlet(np.full(size, 0.3)))
        rows.append([int(v) for v in f])
    return rows


@pytest.mark.parametrize("precision", [6, 12])
def test_start_map_states_decode_as_the_format_model_says(precision):
    """Every state below M, as a one-lane message of 1 to 3 symbols without
    words: the library and the format model (which builds the map as a sort
    of all M slots) accept the same ones and decode them to the same values,
    and what is accepted re-encodes to the same bytes."""
    rows = start_map_rows(precision)
    t = tables_of_frequencies(rows, precision)
    rng = np.random.default_rng(1)
    m = 1 << precision
    for row in range(len(rows)):
        for n in (1, 2, 3):
            idx = np.full(n, row, np.int32)
            states = range(m) if m <= 64 else rng.choice(m, 300, replace=False)
            accepted = 0
            for y in states:
                y = int(y)
                message = ref.compact_message(y.to_bytes(max(1, (y.bit_length() + 7) // 8), "little"), False)
                try:
                    got = fc.decode(message, t, idx).tolist()
                except fc.DecodeError:
                    got = None
                try:
                    want = ref.decode(message, t, idx).tolist()
                except ref.FormatError:
                    want = None
                assert got == want, (row, n, y)
                if got is not None:
                    accepted += 1
                    assert fc.encode(got, t, idx, checksum=False) == message
            assert accepted > 0 or n > 1 or m > 64, (row, n)  # exhaustive at M = 64: some 1-symbol states decode


@pytest.mark.parametrize("precision", [6, 12, 16])
def test_start_map_messages_match_the_format_model(precision):
    """Short messages of every row above, drawn from the row and uniformly
    over its support, with and without escapes: the library's bytes are
    the format model's, and they decode back."""
    rows = start_map_rows(precision)
    t = tables_of_frequencies(rows, precision)
    rng = np.random.default_rng(2)
    for row, f in enumerate(rows):
        p = np.array(f[:-1], np.float64) / sum(f[:-1])
        for n in (1, 2, 5, 40):
            for x in (rng.choice(len(p), n, p=p), rng.integers(0, len(p), n), rng.integers(-3, len(p) + 3, n)):
                x, idx = x.astype(np.int32), np.full(n, row, np.int32)
                message = fc.encode(x, t, idx, checksum=False)
                assert ref.encode(x, t, idx, False) == message, (row, n)
                np.testing.assert_array_equal(fc.decode(message, t, idx), x)


def test_a_run_of_the_most_frequent_symbol_from_state_zero_is_free():
    """Its slot 0 has rank 0: coded from state 0 the lane stays at 0, so a
    tensor of that symbol costs the header and a zero byte at any size."""
    t = fc.CdfTables.from_pmf(np.array([[0.2, 0.6, 0.2]]), [-1], precision=16)
    for n in (1, 1000, 300_000):
        x = np.zeros(n, np.int32)
        assert fc.encode(x, t, np.zeros(n, np.int32), checksum=False) == bytes([0x80, 0x00])
        np.testing.assert_array_equal(fc.decode(bytes([0x80, 0x00]), t, np.zeros(n, np.int32)), x)
