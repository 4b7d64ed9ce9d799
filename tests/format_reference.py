"""A pure-Python model of the message format of docs/format.md (version 3).

Written from the spec alone, independently of src/cpp, and slow: it is for
small messages in tests.  ``encode`` must produce exactly the library's
bytes, and ``decode`` must accept exactly the library's messages (and reject
what docs/format.md says a decoder rejects, raising ``FormatError``).

Tables are used only through ``CdfTables.precision``, ``offsets``,
``lengths`` and ``freqs(i)``.
"""

from __future__ import annotations

import struct
from typing import Optional

import numpy as np

VERSION = 3
VERSION_MARK = 0xC0  # header bits 7-6: a full header
COMPACT_MARK = 0x80  # header bits 7-6: a compact header (one chunk, one lane)
ESCAPES_BIT = 0x08
COMPACT_STATE_BITS = 3
STATE_LOW = 1 << 31
ESCAPE_LENGTH_BITS = 6
MAX_ESCAPE_BITS = 33
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
MASK64 = (1 << 64) - 1
HASH_MUL = 0x9E3779B97F4A7C15


class FormatError(ValueError):
    """What docs/format.md says a decoder rejects."""


# --- bytes ---------------------------------------------------------------------------------


def varint(v: int) -> bytes:
    """Unsigned LEB128."""
    assert v >= 0
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


# A varint longer than the largest legal value needs is rejected: 5 bytes for
# a chunk length in the directory and an escape stream's size.
COUNT_VARINT_BYTES = 5
# The lane head: the start-up counts' width, and a lane state's bit length
# (less 32 once the lane is past its start-up phase).
COUNT_WIDTH_BITS = 5
STATE_LENGTH_BITS = 5


def read_varint(data: bytes, pos: int, max_bytes: int = COUNT_VARINT_BYTES) -> tuple[int, int]:
    """Reads a varint in its shortest form (a padded one is a FormatError)."""
    value = 0
    for i in range(max_bytes):
        if pos >= len(data):
            raise FormatError("truncated varint")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << (7 * i)
        if b < 0x80:
            if b == 0 and i > 0:
                raise FormatError("padded varint")
            return value, pos
    raise FormatError("varint too long")


def fast_lanes(symbols_per_chunk: int) -> int:
    """The lane count for chunks of this many symbols, unless one lane is chosen."""
    n = symbols_per_chunk
    return 1 if n <= 16384 else 4 if n <= 65536 else 8


def single_lane_limit(fast: int) -> int:
    """One lane when every chunk's one-lane encoding is shorter than this."""
    return 4096 * (fast - 1)


def lane_margin(fast: int) -> int:
    """A many-lane message with every chunk under limit + margin is checked by re-encoding."""
    return 32 * fast


CHECKSUM_CODES = {0: 0, 1: 1, 2: 2, 4: 3}


def header_byte(checksum_bytes: int, chunked: bool, lanes: int, escapes: bool = False) -> int:
    return (VERSION_MARK | CHECKSUM_CODES[checksum_bytes] << 4 | int(escapes) << 3 | int(chunked) << 2
            | (lanes.bit_length() - 1))


def parse_header(b: int) -> dict:
    """Full: bits 7-6 = 11 | 5-4 checksum size code | 3 escapes | 2 chunked | 1-0 log2(lanes).
    Compact: bits 7-6 = 10 | 5-4 checksum size code | 3 escapes | 2-0 lane 0's
    state above its tail bytes (a message of one chunk and one lane)."""
    code = (b >> 4) & 3
    if b & 0xC0 == COMPACT_MARK:
        return dict(version=VERSION, compact=True, checksum=(0, 1, 2, 4)[code], escapes=bool(b & ESCAPES_BIT),
                    chunked=False, lanes=1, high=b & ((1 << COMPACT_STATE_BITS) - 1))
    if b & 0xC0 != VERSION_MARK:
        raise FormatError("version 2 message" if b >> 5 == 2 else "not a format 3 message")
    return dict(version=VERSION, compact=False, checksum=(0, 1, 2, 4)[code], escapes=bool(b & ESCAPES_BIT),
                chunked=bool(b & 4), lanes=1 << (b & 3), high=None)


def is_compact(n: int, chunked: bool, lanes: int) -> bool:
    """Whether a message has the compact header: one chunk, one lane."""
    return n > 0 and not chunked and lanes == 1


# --- tables ---------------------------------------------------------------------------------


class Rows:
    """Per-row (offset, length, freqs, cdf) taken from a CdfTables."""

    def __init__(self, tables):
        self.precision = int(tables.precision)
        self.offset = [int(v) for v in tables.offsets]
        self.length = [int(v) for v in tables.lengths]
        self.freq = [[int(f) for f in tables.freqs(i)] for i in range(len(tables))]
        self.cdf = []
        for f in self.freq:
            c = [0]
            for v in f:
                c.append(c[-1] + v)
            assert c[-1] == 1 << self.precision
            self.cdf.append(c)

        self._start_maps: dict = {}

    def start_map(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """The start-up map of a row as a permutation of the slots [0, M):
        slot c + k of symbol s (k < f) goes to its rank among all slots when
        ordered by (2k + 1) / (2 f), ties by s.  Returns (rank of slot,
        slot of rank).  The keys are exact as doubles: distinct ones differ
        by at least 2^-34, equal ones are equal quotients of integers."""
        if row not in self._start_maps:
            f = np.array(self.freq[row], dtype=np.int64)
            symbol = np.repeat(np.arange(len(f)), f)
            k = np.arange(1 << self.precision) - np.array(self.cdf[row][:-1], dtype=np.int64)[symbol]
            key = (2 * k + 1) / (2 * f[symbol]).astype(np.float64)
            slot_of_rank = np.lexsort((symbol, key))
            rank_of_slot = np.empty_like(slot_of_rank)
            rank_of_slot[slot_of_rank] = np.arange(len(slot_of_rank))
            self._start_maps[row] = rank_of_slot, slot_of_rank
        return self._start_maps[row]

    def symbol(self, row: int, v: int) -> int:
        """Symbol index of value v: v - offset in the support, else the escape (= length)."""
        s = v - self.offset[row]
        return s if 0 <= s < self.length[row] else self.length[row]


# --- escape stream ----------------------------------------------------------------------------


def escape_code(v: int, lo: int, hi: int) -> int:
    """e = u + 1 for a value outside [lo, hi)."""
    u = 2 * (v - hi) if v >= hi else 2 * (lo - 1 - v) + 1
    return u + 1


def escape_value(e: int, lo: int, hi: int) -> int:
    u = e - 1
    return lo - 1 - (u >> 1) if u & 1 else hi + (u >> 1)


class BitWriter:
    def __init__(self):
        self.bits: list[int] = []

    def put(self, v: int, k: int) -> None:
        self.bits.extend((v >> i) & 1 for i in range(k))  # LSB first

    def to_bytes(self) -> bytes:
        out = bytearray((len(self.bits) + 7) // 8)
        for i, bit in enumerate(self.bits):
            out[i // 8] |= bit << (i % 8)
        return bytes(out)


class BitReader:
    """Reads what BitWriter writes; `what` names the stream in errors."""

    def __init__(self, data: bytes, what: str):
        self.data, self.what, self.pos = data, what, 0

    def get(self, k: int) -> int:
        v = 0
        for i in range(k):
            if self.pos >= 8 * len(self.data):
                raise FormatError(f"{self.what} runs past its end")
            v |= ((self.data[self.pos >> 3] >> (self.pos & 7)) & 1) << i
            self.pos += 1
        return v

    def bytes_used(self) -> int:
        """Bytes begun, after checking the last one's padding bits are zero."""
        if self.pos % 8 and self.data[self.pos >> 3] >> (self.pos % 8):
            raise FormatError(f"{self.what} padding bits are not zero")
        return (self.pos + 7) // 8


def escape_entry(bits: BitWriter, e: int) -> None:
    nb = e.bit_length() - 1
    assert 0 <= nb <= MAX_ESCAPE_BITS
    bits.put(nb, ESCAPE_LENGTH_BITS)
    bits.put(e & ((1 << nb) - 1), nb)


def escape_stream(entries: list[int]) -> bytes:
    """The escape stream of the codes e, in decoding order (stored as is, forward)."""
    bits = BitWriter()
    for e in entries:
        escape_entry(bits, e)
    return bits.to_bytes()


# --- one chunk ---------------------------------------------------------------------------------


class EncodedChunk:
    """A chunk's parts; its bytes depend on the message's escapes bit."""

    def __init__(self, symbols, states, startup, flushed, words, stream):
        self.symbols = symbols
        self.states, self.startup, self.flushed = states, startup, flushed
        self.words, self.stream = words, stream

    def to_bytes(self, escapes: bool, compact: bool = False) -> bytes:
        """The chunk's bytes; with ``compact``, lane 0's state above its tail
        bytes is left out (``self.high``: it goes in the header)."""
        head = self.lane_head() if len(self.states) > 1 else b""  # a single lane stores no head
        if escapes:
            head += varint(len(self.stream))
        elif self.stream:
            raise AssertionError("escapes in a message without the escapes bit")
        x = self.states[0]
        assert x < STATE_LOW
        if compact:
            t = max(1, -(-(x.bit_length() - COMPACT_STATE_BITS) // 8))
            tail, self.high = (x & ((1 << (8 * t)) - 1)).to_bytes(t, "little"), x >> (8 * t)
        else:
            tail = x.to_bytes(max(1, (x.bit_length() + 7) // 8), "little")
        return head + self.words + self.stream + tail

    def lane_head(self) -> bytes:
        lanes, n = len(self.states), self.symbols
        width = max(k.bit_length() for k in self.startup)
        bits = BitWriter()
        bits.put(width, COUNT_WIDTH_BITS)
        bits.put(int(self.flushed), 1)
        for k in self.startup:
            bits.put(k, width)
        for lane in range(1, lanes):
            x, b = self.states[lane], self.states[lane].bit_length()
            if self.startup[lane] < len(range(lane, n, lanes)):  # past its start-up phase: x >= 2^31
                assert 32 <= b <= 63
                bits.put(b - 32, STATE_LENGTH_BITS)
            else:
                bits.put(b, STATE_LENGTH_BITS + 1)
            bits.put(x, max(b - 1, 0))  # below its leading one
        return bits.to_bytes()


def encode_chunk(values: list[int], indexes: list[int], rows: Rows, lanes: int, lane0_start: int = 0) -> EncodedChunk:
    P = rows.precision
    M = 1 << P
    state = [0] * lanes
    state[0] = lane0_start
    startup = [0] * lanes
    words: list[bytes] = []  # in encoding order; the decoder reads them reversed
    escapes: list[int] = []  # in encoding order
    for j in reversed(range(len(values))):
        lane, row, v = j % lanes, indexes[j], values[j]
        s = rows.symbol(row, v)
        if s == rows.length[row]:
            escapes.append(escape_code(v, rows.offset[row], rows.offset[row] + rows.length[row]))
        f, c = rows.freq[row][s], rows.cdf[row][s]
        x = state[lane]
        if x < STATE_LOW:
            startup[lane] += 1
        if x < f:  # the start-up map: slot c + x goes to its rank
            x = int(rows.start_map(row)[0][c + x])
        else:
            if x >= f << (63 - P):
                words.append(struct.pack("<I", x & 0xFFFFFFFF))
                x >>= 32
            x = (x // f) * M + (x % f) + c
        assert x < 1 << 63
        state[lane] = x
    flushed = state[0] >= STATE_LOW  # lane 0 brought below 2^31 by one more word
    if flushed:
        words.append(struct.pack("<I", state[0] & 0xFFFFFFFF))
        state[0] >>= 32
    return EncodedChunk(len(values), state, startup, flushed, b"".join(reversed(words)), escape_stream(escapes[::-1]))


def compact_message(chunk: bytes, escapes: bool) -> bytes:
    """A one-lane chunk with a full header's tail (no checksum) as a stand-alone
    message: the compact header and lane 0's state split between it and the tail."""
    pos = 0
    escape_size = 0
    if escapes:
        escape_size, pos = read_varint(chunk, 0)
    tail = (len(chunk) - pos - escape_size - 1) % 4 + 1
    x = int.from_bytes(chunk[len(chunk) - tail:], "little")
    t = max(1, -(-(x.bit_length() - COMPACT_STATE_BITS) // 8))
    header = COMPACT_MARK | (ESCAPES_BIT if escapes else 0) | x >> (8 * t)
    return bytes([header]) + chunk[:len(chunk) - tail] + (x & ((1 << (8 * t)) - 1)).to_bytes(t, "little")


def read_lane_head(data: bytes, n: int, lanes: int) -> tuple[bool, list[int], list[int], int]:
    """The lane head of a chunk of n symbols: lane 0's flush bit, the start-up
    counts, the states of lanes 1 .. K-1, and the position after the head."""
    head = BitReader(data, "lane head")
    get = head.get
    width = get(COUNT_WIDTH_BITS)
    flushed = bool(get(1))
    counts = [get(width) for _ in range(lanes)]
    if max(k.bit_length() for k in counts) != width:
        raise FormatError("start-up counts wider than they need")
    states = []
    for lane in range(lanes):
        n_lane = len(range(lane, n, lanes))
        if counts[lane] > n_lane:
            raise FormatError("start-up count larger than the lane's symbol count")
        if lane == 0:
            continue
        b = get(STATE_LENGTH_BITS) + 32 if counts[lane] < n_lane else get(STATE_LENGTH_BITS + 1)  # <= 63
        states.append(0 if b == 0 else 1 << (b - 1) | get(b - 1))
    return flushed, counts, states, head.bytes_used()


def decode_chunk(data: bytes, indexes: list[int], rows: Rows, lanes: int, escapes: bool,
                 high: Optional[int] = None) -> tuple[list[int], int, bool]:
    """Decodes one chunk of len(indexes) symbols with every check of docs/format.md.

    Returns the values, lane 0's final state and whether the chunk has escapes."""
    P = rows.precision
    M = 1 << P
    n = len(indexes)
    pos = 0
    state = [0] * lanes
    startup_begin = [n] * lanes  # a single lane: no count (its phase is where its words are used up)
    flushed = False
    if lanes > 1:
        flushed, counts, state[1:], pos = read_lane_head(data, n, lanes)
        startup_begin = [len(range(lane, n, lanes)) - counts[lane] for lane in range(lanes)]
    escape_size = 0
    if escapes:
        escape_size, pos = read_varint(data, pos)
    rest = len(data) - pos
    if escape_size >= rest:
        raise FormatError("escape stream and final state larger than the chunk")
    tail = (rest - escape_size - 1) % 4 + 1
    n_words = rest - escape_size - tail
    words = data[pos:pos + n_words]
    stream = data[pos + n_words:pos + n_words + escape_size]
    tail_bytes = data[len(data) - tail:]
    x0 = int.from_bytes(tail_bytes, "little")
    if high is None:
        if tail > 1 and tail_bytes[-1] == 0:
            raise FormatError("final state not in its shortest form")
    else:  # the compact header's bits above the tail bytes
        x0 |= high << (8 * tail)
        if tail > 1 and x0 >> (8 * tail - 8 + COMPACT_STATE_BITS) == 0:
            raise FormatError("final state not in its shortest form")
    if x0 >= STATE_LOW:
        raise FormatError("final state >= 2^31")
    word_pos = 0
    if lanes == 1:
        flushed = n_words > 0
    if flushed:
        if n_words < 4:
            raise FormatError("no word for the flushed state")
        x0 = x0 << 32 | struct.unpack_from("<I", words, 0)[0]
        word_pos = 4
        if x0 < STATE_LOW:
            raise FormatError("flushed state below 2^31")
    state[0] = x0
    escape_bits = BitReader(stream, "escape stream")
    get_bits = escape_bits.get

    out = []
    for j in range(n):
        lane, row = j % lanes, indexes[j]
        x = state[lane]
        if x < M:  # the start-up map: rank x is a slot of the plain step
            x = int(rows.start_map(row)[1][x])
        slot = x % M
        cdf = rows.cdf[row]
        s = next(s for s in range(len(cdf) - 1) if cdf[s] <= slot < cdf[s + 1])
        x = rows.freq[row][s] * (x >> P) + slot - cdf[s]
        if lanes == 1:
            read = x < STATE_LOW and word_pos + 4 <= len(words)
        else:
            read = x < STATE_LOW and j // lanes < startup_begin[lane]
            if read and word_pos + 4 > len(words):
                raise FormatError("words run past the chunk")
            if j // lanes == startup_begin[lane] and x >= STATE_LOW:
                raise FormatError("start-up count larger than the encoder's")
        if read:
            # An emitted word always leaves x >= f * 2^(31 - P): a read below is corrupt.
            if x < rows.freq[row][s] << (31 - P):
                raise FormatError("a word read while x < f * 2^(31 - P)")
            x = x << 32 | struct.unpack_from("<I", words, word_pos)[0]
            word_pos += 4
        state[lane] = x
        lo, length = rows.offset[row], rows.length[row]
        if s < length:
            out.append(lo + s)
        else:
            nb = get_bits(ESCAPE_LENGTH_BITS)
            if nb > MAX_ESCAPE_BITS:
                raise FormatError("escape length > 33")
            v = escape_value(1 << nb | get_bits(nb), lo, lo + length)
            if not INT32_MIN <= v <= INT32_MAX:
                raise FormatError("escaped value outside int32")
            out.append(v)
    if word_pos != len(words):
        raise FormatError("words left unread")
    if escape_bits.bytes_used() != len(stream):
        raise FormatError("escape bytes left unread")
    if any(state[1:]):
        raise FormatError("a lane does not end at state 0")
    return out, state[0], escape_size > 0


# --- checksum -----------------------------------------------------------------------------------


def _fmix64(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & MASK64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & MASK64
    k ^= k >> 33
    return k


def chunk_hash(values) -> int:
    u = [int(v) & 0xFFFFFFFF for v in values]
    if len(u) % 2:
        u.append(0)
    acc = [((j + 1) * HASH_MUL) & MASK64 for j in range(16)]
    for k in range(len(u) // 2):
        a = ((acc[k % 16] ^ (u[2 * k] | u[2 * k + 1] << 32)) * HASH_MUL) & MASK64
        acc[k % 16] = ((a << 29) | (a >> 35)) & MASK64
    h = _fmix64((len(values) * HASH_MUL) & MASK64)
    for a in acc:
        h = _fmix64(h ^ a)
    return h


def checksum(values, chunk_size: int, header: int, chunk_bits: int = 0, context: bytes = b"", size: int = 4) -> int:
    """The checksum of docs/format.md over values in C order, chunk by chunk."""
    values = [int(v) for v in np.asarray(values).ravel()]
    h = _fmix64(0x452821E638D01377 ^ (header & ~ESCAPES_BIT) ^ chunk_bits << 8 ^ len(context) << 16)
    for i in range(0, len(context), 8):
        h = _fmix64(h ^ int.from_bytes(context[i:i + 8], "little"))
    for begin in range(0, len(values), chunk_size):
        h = _fmix64(h ^ chunk_hash(values[begin:begin + chunk_size]))
    return h & ((1 << (8 * size)) - 1)


# --- messages -----------------------------------------------------------------------------------


def checksum_bytes(checksum_on) -> int:
    return 4 if checksum_on is True else 0 if checksum_on is False else int(checksum_on)


def encode(values, tables, indexes, checksum_on=True, chunk_size: int = 2**19, context: bytes = b"",
           lanes: Optional[int] = None) -> bytes:
    """The message for ``values`` (any shape, C order); ``indexes`` broadcast to it.
    checksum_on: True (4 bytes), False, or a size of 1, 2 or 4 bytes.  ``lanes``
    forces a lane count instead of the encoder's choice (for tests of the
    decoder's check: such a message need not be canonical)."""
    size = checksum_bytes(checksum_on)
    values = np.asarray(values)
    idx = [int(i) for i in np.broadcast_to(np.asarray(indexes), values.shape).ravel()]
    vals = [int(v) for v in values.ravel()]
    n = len(vals)
    rows = Rows(tables)
    chunk_bits = chunk_size.bit_length() - 1
    assert chunk_size == 1 << chunk_bits and 4 <= chunk_bits <= 30
    n_chunks = -(-n // chunk_size)
    chunked = n_chunks > 1
    fast = fast_lanes(min(n, chunk_size))

    def code(lanes):
        header = header_byte(size, chunked, lanes)
        check = checksum(vals, chunk_size, header, chunk_bits if chunked else 0, context, size) if size else 0
        compact = is_compact(n, chunked, lanes)
        parts = [encode_chunk(vals[b:b + chunk_size], idx[b:b + chunk_size], rows, lanes, check if b == 0 else 0)
                 for b in range(0, n, chunk_size)]
        escapes = any(p.stream for p in parts)  # the escapes bit: any chunk has an escape
        chunks = [p.to_bytes(escapes, compact) for p in parts]
        if compact:  # the full header's checksum size and escapes bits, and lane 0's state bits
            header = COMPACT_MARK | header & 0x30 | parts[0].high
        if escapes:
            header |= ESCAPES_BIT
        return header, check, escapes, chunks

    header, check, escapes, chunks = code(lanes or fast)
    if lanes is None and fast > 1 and all(len(c) < single_lane_limit(fast) + lane_margin(fast) for c in chunks):
        single = code(1)
        if all(len(c) < single_lane_limit(fast) for c in single[3]):
            header, check, escapes, chunks = single
    out = bytearray([header])
    if chunked:
        out.append(chunk_bits)
        for c in chunks[:-1]:
            out += varint(len(c))
    if n == 0:
        out += check.to_bytes(size, "little")
    for c in chunks:
        out += c
    return bytes(out)


def decode(data: bytes, tables, indexes, shape=None, context: bytes = b"", min_checksum: int = 0) -> np.ndarray:
    """Decodes a message for ``shape`` (default: the indexes' shape), with every
    check of docs/format.md; raises FormatError."""
    shape = tuple(np.shape(indexes) if shape is None else shape)
    idx = [int(i) for i in np.broadcast_to(np.asarray(indexes), shape).ravel()]
    n = len(idx)
    rows = Rows(tables)
    if not data:
        raise FormatError("empty message")
    h = parse_header(data[0])

    if h["checksum"] < min_checksum:
        raise FormatError("checksum shorter than required")
    if context and not h["checksum"]:
        raise FormatError("a context, and no checksum to verify it")
    if h["compact"] and n == 0:
        raise FormatError("a compact header for an empty shape")
    pos = 1
    chunk_size = max(n, 1)
    chunk_bits = 0
    if h["chunked"]:
        if pos >= len(data):
            raise FormatError("truncated header")
        chunk_bits = data[pos]
        pos += 1
        if not 4 <= chunk_bits <= 30:
            raise FormatError("chunk_bits out of range")
        chunk_size = 1 << chunk_bits
    n_chunks = -(-n // chunk_size)
    fast = fast_lanes(min(n, chunk_size))
    if h["lanes"] not in (1, fast):
        raise FormatError("lane count is not the encoder's for this symbol count")
    if h["chunked"] and n_chunks < 2:
        raise FormatError("chunked message for a single chunk")
    if not h["compact"] and is_compact(n, h["chunked"], h["lanes"]):
        raise FormatError("a full header where the compact one belongs")
    lengths = []
    for _ in range(max(n_chunks - 1, 0)):
        length, pos = read_varint(data, pos)
        if length == 0:
            raise FormatError("empty chunk")
        lengths.append(length)
    remaining = len(data) - pos
    stored = 0
    if n == 0:
        if remaining != h["checksum"]:
            raise FormatError("data for an empty shape")
        stored = int.from_bytes(data[pos:], "little")
    else:
        if sum(lengths) >= remaining:
            raise FormatError("chunks shorter than listed")
        lengths.append(remaining - sum(lengths))
    if h["lanes"] < fast and not all(length < single_lane_limit(fast) for length in lengths):
        raise FormatError("one lane for a chunk this long")
    out = []
    any_escapes = False
    for c, length in enumerate(lengths):
        begin = c * chunk_size
        values, lane0_end, chunk_escapes = decode_chunk(data[pos:pos + length], idx[begin:begin + chunk_size],
                                                        rows, h["lanes"], h["escapes"], h["high"] if c == 0 else None)
        out += values
        any_escapes |= chunk_escapes
        if c == 0:
            stored = lane0_end
        elif lane0_end:
            raise FormatError("lane 0 of a chunk after the first does not end at state 0")
        pos += length
    if h["escapes"] and not any_escapes:
        raise FormatError("escapes bit set, and no chunk has escapes")
    full = header_byte(h["checksum"], h["chunked"], h["lanes"])  # the seed's, also for a compact header
    expected = checksum(out, chunk_size, full, chunk_bits, context, h["checksum"]) if h["checksum"] else 0
    if stored != expected:
        raise FormatError("checksum mismatch" if h["checksum"] else "lane 0 does not end at state 0")
    if h["lanes"] > 1 and all(length < single_lane_limit(fast) + lane_margin(fast) for length in lengths):
        single = header_byte(h["checksum"], h["chunked"], 1)
        check = checksum(out, chunk_size, single, chunk_bits, context, h["checksum"]) if h["checksum"] else 0
        compact = is_compact(n, h["chunked"], 1)
        if all(len(encode_chunk(out[b:b + chunk_size], idx[b:b + chunk_size], rows, 1, check if b == 0 else 0)
                   .to_bytes(h["escapes"], compact)) < single_lane_limit(fast) for b in range(0, n, chunk_size)):
            raise FormatError("several lanes where the encoder uses one")
    return np.array(out, dtype=np.int64).reshape(shape)
