"""Adapters that run PEER entropy coders on the featcodec benchmark workloads.

Environment (the recipe that worked, python 3.11, pip 26.3; local wheels via the
machine's pip config, pip constraints cap torch<=2.14.1 / torchvision<=0.29.1):

    python3.11 -m venv /work/venv-bench
    /work/venv-bench/bin/pip install --upgrade pip
    /work/venv-bench/bin/pip install torch==2.14.1 torchvision==0.29.1 \
        compressai==1.2.8 constriction==0.5.0 numpy scipy

No dependency conflict: no --no-deps was needed.  Resolved versions: torch
2.14.1+cu130, torchvision 0.29.1, compressai 1.2.8, constriction 0.5.0, numpy
1.26.4, scipy 1.17.1 (compressai also pulls matplotlib, pandas,
torch-geometric, pytorch-msssim, einops; none are used here).

Peers and what exactly is compared
----------------------------------
CompressAI 1.2.8 (``compressai.ans`` rANS coder, C++ behind pybind11, 16-bit
precision, values outside a table's support are escape-coded with bypass bits):

* ``compressai_w1``: W1 through ``GaussianConditional(table_scales)``, i.e. the
  high-level ``compress(inputs, indexes)`` / ``decompress(strings, indexes)``
  path a hyperprior codec uses, on (1, 1, n) float tensors equal to the
  integer symbols (``means=None`` -> ``compress`` just rounds them).  Its CDF
  tables are CompressAI's own discretised Gaussians for the same 64 scales.
* ``compressai_w2_entropy_bottleneck``: W2 through ``EntropyBottleneck(C)``.
  Its density is a *learned* non-parametric model, so it cannot be made equal
  to our per-channel Laplace.  This adapter therefore compares SPEED only: it
  codes the very same symbols with the bottleneck's own, untrained tables
  (``update(force=True)``).  With ``fit_range=True`` (default) the bottleneck's
  quantiles are first widened to each channel's observed [min, max] so no
  symbol needs the slow escape path (a trained model's tails would cover the
  data too); with ``fit_range=False`` the untrained +-10 support is kept and
  wide channels escape a lot.  Its byte counts are not a rate comparison.
* ``compressai_ans_lowlevel`` (+ ``compressai_w1_lowlevel`` /
  ``compressai_w2_lowlevel``): the apples-to-apples MODEL comparison.  Calls
  ``compressai.ans.RansEncoder().encode_with_indexes`` /
  ``RansDecoder().decode_with_indexes`` directly with caller-supplied quantised
  CDF tables in CompressAI's convention (see below).  The timed encode/decode
  include every ``.tolist()`` conversion (symbols, indexes, the whole CDF
  matrix, lengths, offsets) and the list->numpy conversion of decoded
  symbols, because that is what CompressAI users pay on every call (its own
  ``EntropyModel.compress`` does the same conversions).

constriction 0.5.0 (Rust ANS coder, ``constriction.stream.stack.AnsCoder``,
32-bit words, 24-bit probability precision by default; no escape mechanism,
so every symbol must lie inside the model's support):

* ``constriction_w1``: ``QuantizedGaussian(min_symbol, max_symbol)`` model
  family with per-symbol ``means`` (zeros) and ``stds`` = the TABLE scale of
  each symbol (``table_scales[indexes]``, computed once outside the timed
  region).  The support defaults to the observed [min, max] of the symbols
  (reported in ``info['support']``).
* ``constriction_w2``: one concrete ``Categorical(pmf, perfect=False)`` model
  per channel over the channel's observed range (Laplace(0, b_c) pmf unless the
  caller passes pmfs), and one ``encode_reverse(channel_symbols - lo_c,
  model_c)`` call per channel (channels pushed in reverse so that decoding
  pops them in forward order with ``decode(model_c, length)``).  Models are
  built outside the timed region unless ``include_model_build=True``.

CompressAI CDF-table convention (used by the low-level path)
------------------------------------------------------------
``cdf``: int32 (n_tables, max_len); row ``t`` holds ``cdf_lengths[t]`` valid
entries (the rest is padding), starts at 0, is non-decreasing, and ends with
``2**16`` at position ``cdf_lengths[t] - 1``.  Row ``t`` models
``cdf_lengths[t] - 1`` coded values: the ``cdf_lengths[t] - 2`` in-support
symbols ``offsets[t] + k`` (k = 0 .. len-3) and, last, the escape/overflow
symbol (index ``cdf_lengths[t] - 2``), whose frequency must be >= 1.  Symbols
outside the support are escape-coded (Elias-gamma-like bypass nibbles).
``symbols`` passed to ``encode_with_indexes`` are the raw integer values;
the coder subtracts ``offsets[index]`` itself.

API notes verified in the venv (help()/signatures):

* ``GaussianConditional(scale_table, *, scale_bound=0.11, tail_mass=1e-9)``;
  ``.update()`` / ``.update_scale_table(scale_table, force=False)``;
  ``.compress(inputs, indexes, means=None) -> list[bytes]`` (one per batch
  item); ``.decompress(strings, indexes, dtype=torch.float32, means=None)``.
* ``EntropyBottleneck(channels, *, tail_mass=1e-9, init_scale=10,
  filters=(3,3,3,3))``; ``.update(force=False, update_quantiles=False)``;
  ``.compress(x) -> list[bytes]``; ``.decompress(strings, size)`` where
  ``size`` is the spatial shape (here ``(length,)`` for x of shape (1, C, L)).
* ``RansEncoder.encode_with_indexes(list[int] symbols, list[int] indexes,
  list[list[int]] cdfs, list[int] cdf_lengths, list[int] offsets) -> bytes``;
  ``RansDecoder.decode_with_indexes(bytes, indexes, cdfs, cdf_lengths,
  offsets) -> list[int]``.
* ``constriction.stream.stack.AnsCoder(compressed: uint32 array = None)``;
  ``.encode_reverse(symbols, model)`` or ``.encode_reverse(symbols, family,
  *param_arrays)``; ``.decode(model, amt)`` or ``.decode(family,
  *param_arrays)`` -> int32 array; ``.get_compressed()`` -> uint32 array.
  Symbols must be int32 (int64 raises TypeError); out-of-support symbols raise
  KeyError.  Note: ``constriction.stream`` is a native submodule, reach it as
  ``import constriction; constriction.stream.stack`` (``import
  constriction.stream`` fails).
* ``QuantizedGaussian(min_symbol_inclusive, max_symbol_inclusive[, mean,
  std])``: float32 and float64 parameter arrays both accepted.
* ``Categorical(probabilities=None, *, lazy=..., perfect=...)``: 0.5.0 still
  warns (and defaults to perfect=True) when neither is given, so we always
  pass ``perfect=False`` explicitly.

Torch is imported lazily inside the CompressAI functions, so importing this
module (and ``workloads``) needs only numpy/scipy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

try:  # package-style import (benchmarks.peers) or script-style (peers)
    from . import workloads as _wl
except ImportError:  # pragma: no cover
    import workloads as _wl  # type: ignore[no-redef]

__all__ = [
    "PeerCodec",
    "quantize_pmf_to_cdf",
    "build_cdf_tables",
    "gaussian_cdf_tables",
    "laplace_cdf_tables",
    "laplace_pmf",
    "check_compressai_cdf_tables",
    "compressai_w1",
    "compressai_w2_entropy_bottleneck",
    "compressai_ans_lowlevel",
    "compressai_w1_lowlevel",
    "compressai_w2_lowlevel",
    "constriction_w1",
    "constriction_w2",
]

PRECISION = 16  # CompressAI's rANS precision (fixed in its C++ code)


# --------------------------------------------------------------------------
# Common container
# --------------------------------------------------------------------------


@dataclass
class PeerCodec:
    """One peer configured on one workload.

    ``encode()`` -> compressed object; ``decode(compressed)`` -> numpy int
    array shaped like ``expected``; ``nbytes(compressed)`` -> compressed size
    in bytes.  Iterating yields ``(encode, decode, nbytes)`` so
    ``enc, dec, size = adapter(...)`` works.
    """

    name: str
    encode: Callable[[], Any]
    decode: Callable[[Any], np.ndarray]
    nbytes: Callable[[Any], int]
    expected: np.ndarray
    info: dict = field(default_factory=dict)

    def __iter__(self):
        yield self.encode
        yield self.decode
        yield self.nbytes

    @property
    def n_symbols(self) -> int:
        return int(self.expected.size)

    def verify(self) -> int:
        """Encode, decode, assert exact round trip; return compressed bytes."""
        comp = self.encode()
        out = self.decode(comp)
        out = np.asarray(out)
        if out.shape != self.expected.shape or not np.array_equal(out, self.expected):
            bad = int(np.count_nonzero(out.reshape(-1) != self.expected.reshape(-1))) if out.size == self.expected.size else -1
            raise AssertionError(
                f"{self.name}: round trip mismatch (shape {out.shape} vs "
                f"{self.expected.shape}, {bad} differing symbols)"
            )
        return int(self.nbytes(comp))


def _bytes_of_strings(strings: Sequence[bytes]) -> int:
    return int(sum(len(s) for s in strings))


# --------------------------------------------------------------------------
# CDF tables in CompressAI's convention (numpy/scipy, no torch)
# --------------------------------------------------------------------------


def quantize_pmf_to_cdf(pmf: np.ndarray, precision: int = PRECISION) -> np.ndarray:
    """Quantise a pmf (last entry = escape mass) to an exact ``2**precision`` CDF.

    Every entry gets frequency >= 1 (1 reserved per entry, the remaining
    ``2**precision - len`` distributed proportionally, leftovers by the
    largest-remainder rule).  Returns int32 ``[0, c1, ..., 2**precision]`` of
    length ``len(pmf) + 1``.
    """
    p = np.asarray(pmf, dtype=np.float64)
    if p.ndim != 1 or p.size < 1 or not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError("pmf must be a finite, non-negative 1-D array")
    total = 1 << precision
    k = p.size
    if k > total:
        raise ValueError("pmf longer than 2**precision")
    s = p.sum()
    p = p / s if s > 0 else np.full(k, 1.0 / k)
    budget = total - k
    scaled = p * budget
    f = np.floor(scaled).astype(np.int64)
    rem = budget - int(f.sum())
    if rem > 0:
        order = np.argsort(-(scaled - f), kind="stable")
        f[order[:rem]] += 1
    f += 1
    assert int(f.sum()) == total
    cdf = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(f, out=cdf[1:])
    return cdf.astype(np.int32)


def build_cdf_tables(
    pmfs: Sequence[np.ndarray], offsets: Sequence[int], precision: int = PRECISION
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack per-table pmfs (each WITH a trailing escape entry) into CompressAI tables.

    Returns ``(cdf int32 (T, max_len), cdf_lengths int32 (T,), offsets int32 (T,))``.
    """
    rows = [quantize_pmf_to_cdf(p, precision) for p in pmfs]
    lengths = np.array([r.size for r in rows], dtype=np.int32)
    cdf = np.zeros((len(rows), int(lengths.max())), dtype=np.int32)
    for t, r in enumerate(rows):
        cdf[t, : r.size] = r
    return cdf, lengths, np.asarray(offsets, dtype=np.int32).copy()


def gaussian_cdf_tables(
    table_scales: np.ndarray, tail_mass: float = 1e-9, precision: int = PRECISION
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zero-mean discretised Gaussian per table scale, support +-ceil(s*z(tail)).

    The escape entry gets the probability mass outside the support.
    """
    from scipy.special import ndtr, ndtri

    z = -ndtri(tail_mass / 2.0)
    pmfs, offs = [], []
    for s in np.asarray(table_scales, dtype=np.float64):
        half = max(1, int(np.ceil(s * z)))
        k = np.arange(-half, half + 1, dtype=np.float64)
        pmf = ndtr((k + 0.5) / s) - ndtr((k - 0.5) / s)
        esc = max(0.0, 1.0 - float(pmf.sum()))
        pmfs.append(np.append(pmf, esc))
        offs.append(-half)
    return build_cdf_tables(pmfs, offs, precision)


def laplace_pmf(b: float, lo: int, hi: int) -> np.ndarray:
    """P(round(Laplace(0, b)) = k) for k = lo..hi (not renormalised)."""
    k = np.arange(lo, hi + 1, dtype=np.float64)

    def cdf(x):
        return np.where(x < 0, 0.5 * np.exp(np.minimum(x, 0) / b), 1.0 - 0.5 * np.exp(-np.maximum(x, 0) / b))

    return cdf(k + 0.5) - cdf(k - 0.5)


def laplace_cdf_tables(
    b: np.ndarray, tail_mass: float = 1e-9, precision: int = PRECISION
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Discretised Laplace(0, b_c) per channel, support +-ceil(b*ln(1/tail)), plus escape."""
    pmfs, offs = [], []
    for bc in np.asarray(b, dtype=np.float64):
        half = max(1, int(np.ceil(bc * np.log(1.0 / tail_mass))))
        pmf = laplace_pmf(bc, -half, half)
        esc = max(0.0, 1.0 - float(pmf.sum()))
        pmfs.append(np.append(pmf, esc))
        offs.append(-half)
    return build_cdf_tables(pmfs, offs, precision)


def check_compressai_cdf_tables(
    cdf: np.ndarray, cdf_lengths: np.ndarray, offsets: np.ndarray, precision: int = PRECISION
) -> None:
    """Raise ValueError unless the tables follow CompressAI's convention.

    (CompressAI's C++ only ``assert``s, so bad tables could crash the process.)
    """
    cdf = np.asarray(cdf)
    cdf_lengths = np.asarray(cdf_lengths)
    offsets = np.asarray(offsets)
    if cdf.ndim != 2:
        raise ValueError("cdf must be 2-D (n_tables, max_len)")
    t = cdf.shape[0]
    if cdf_lengths.shape != (t,) or offsets.shape != (t,):
        raise ValueError("cdf_lengths and offsets must have shape (n_tables,)")
    if np.any(cdf_lengths < 3) or np.any(cdf_lengths > cdf.shape[1]):
        raise ValueError("each cdf_length must be in [3, max_len]")
    top = 1 << precision
    for r in range(t):
        row = cdf[r, : int(cdf_lengths[r])].astype(np.int64)
        if row[0] != 0 or row[-1] != top:
            raise ValueError(f"cdf row {r} must start at 0 and end at 2**{precision}")
        if np.any(np.diff(row) <= 0):
            raise ValueError(f"cdf row {r} must be strictly increasing (every frequency >= 1)")


# --------------------------------------------------------------------------
# CompressAI
# --------------------------------------------------------------------------


def compressai_w1(wl: "_wl.HyperpriorWorkload", shape: tuple[int, ...] | None = None) -> PeerCodec:
    """W1 through ``compressai.entropy_models.GaussianConditional`` (high-level API).

    ``shape`` is the tensor layout fed to compress (default ``(1, 1, n)``; any
    shape with a leading batch dim of 1, e.g. ``(1, 1, 1024, 1024)``, works).
    """
    import torch
    from compressai.entropy_models import GaussianConditional

    n = wl.n
    if shape is None:
        shape = (1, 1, n)
    if int(np.prod(shape)) != n or shape[0] != 1:
        raise ValueError(f"shape {shape} must have batch 1 and {n} elements")

    gc = GaussianConditional([float(s) for s in wl.table_scales])
    gc.eval()
    gc.update_scale_table(torch.tensor(wl.table_scales, dtype=torch.float32), force=True)
    gc.update()  # (update_scale_table already calls it; harmless, makes the intent explicit)

    inputs = torch.from_numpy(wl.symbols.astype(np.float32)).reshape(shape)
    indexes = torch.from_numpy(wl.indexes.astype(np.int32)).reshape(shape)

    def encode():
        with torch.no_grad():
            return gc.compress(inputs, indexes)

    def decode(strings):
        with torch.no_grad():
            out = gc.decompress(strings, indexes, dtype=torch.float32)
        return out.numpy().reshape(n).astype(np.int32)

    return PeerCodec(
        name="compressai.GaussianConditional",
        encode=encode,
        decode=decode,
        nbytes=_bytes_of_strings,
        expected=wl.symbols,
        info={
            "shape": tuple(shape),
            "n_tables": int(gc._quantized_cdf.shape[0]),
            "max_cdf_len": int(gc._quantized_cdf.shape[1]),
            "torch_threads": torch.get_num_threads(),
        },
    )


def compressai_w2_entropy_bottleneck(
    wl: "_wl.FactorizedWorkload", fit_range: bool = True, seed: int = 0
) -> PeerCodec:
    """W2 through ``compressai.entropy_models.EntropyBottleneck(C)`` — SPEED only.

    The bottleneck's learned density cannot be set to a Laplace, so the model
    (and thus the byte count) differs from ours; it codes exactly the same
    symbols with its own untrained tables.  ``fit_range=True`` widens each
    channel's quantiles to the observed [min, max] before ``update(force=True)``
    so nothing is escape-coded; ``fit_range=False`` keeps the untrained +-10
    support (many escapes on wide channels).
    """
    import torch
    from compressai.entropy_models import EntropyBottleneck

    torch.manual_seed(seed)  # EntropyBottleneck's factor params are random-initialised
    c, length = wl.symbols.shape
    eb = EntropyBottleneck(c)
    eb.eval()
    lo = wl.symbols.min(axis=1).astype(np.float32)
    hi = wl.symbols.max(axis=1).astype(np.float32)
    with torch.no_grad():
        if fit_range:
            q = eb.quantiles.data  # (C, 1, 3): lower, median, upper
            q[:, 0, 0] = torch.from_numpy(np.minimum(lo, -1.0))
            q[:, 0, 1] = 0.0
            q[:, 0, 2] = torch.from_numpy(np.maximum(hi, 1.0))
        eb.update(force=True)
        medians = eb._get_medians().detach().reshape(-1).numpy().astype(np.float64)

    # compress() codes round(x - median); decompress() returns that + median.
    # Feed x = symbols + median and undo it after decoding, so the round trip is
    # exact for any median (it is 0 for the untrained/fit-range model: no-op).
    zero_med = bool(np.all(medians == 0.0))
    x_np = wl.symbols.astype(np.float32)
    if not zero_med:
        x_np = x_np + medians.astype(np.float32)[:, None]
    x = torch.from_numpy(x_np).reshape(1, c, length)
    med_col = medians.astype(np.float32)[:, None]

    def encode():
        with torch.no_grad():
            return eb.compress(x)

    def decode(strings):
        with torch.no_grad():
            out = eb.decompress(strings, (length,)).numpy().reshape(c, length)
        if not zero_med:
            out = np.rint(out - med_col)
        return out.astype(np.int32)

    cdf_len = eb._cdf_length.numpy()
    offs = eb._offset.numpy()
    n_escaped = int(
        np.count_nonzero(
            (wl.symbols < offs[:, None]) | (wl.symbols >= (offs + cdf_len - 2)[:, None])
        )
    )
    return PeerCodec(
        name=f"compressai.EntropyBottleneck(fit_range={fit_range})",
        encode=encode,
        decode=decode,
        nbytes=_bytes_of_strings,
        expected=wl.symbols,
        info={
            "fit_range": fit_range,
            "max_cdf_len": int(cdf_len.max()),
            "escaped_symbols": n_escaped,
            "note": "untrained learned density: speed comparison only, bytes are not comparable",
            "torch_threads": torch.get_num_threads(),
        },
    )


def compressai_ans_lowlevel(
    symbols: np.ndarray,
    indexes: np.ndarray,
    cdf: np.ndarray,
    cdf_lengths: np.ndarray,
    offsets: np.ndarray,
    name: str = "compressai.ans(lowlevel)",
    validate: bool = True,
) -> PeerCodec:
    """Direct ``compressai.ans`` rANS with caller-supplied CompressAI-convention tables.

    ``symbols``/``indexes``: int arrays of equal size (any shape; flattened in C
    order, decode returns the original shape).  ``cdf`` int32 (T, max_len),
    ``cdf_lengths`` int32 (T,), ``offsets`` int32 (T,) — see module docstring.
    Timed encode/decode include all ``.tolist()`` conversions.
    """
    from compressai.ans import RansDecoder, RansEncoder

    symbols = np.ascontiguousarray(symbols, dtype=np.int32)
    indexes = np.ascontiguousarray(indexes, dtype=np.int32)
    if symbols.shape != indexes.shape:
        raise ValueError("symbols and indexes must have the same shape")
    cdf = np.ascontiguousarray(cdf, dtype=np.int32)
    cdf_lengths = np.ascontiguousarray(cdf_lengths, dtype=np.int32)
    offsets = np.ascontiguousarray(offsets, dtype=np.int32)
    if validate:
        check_compressai_cdf_tables(cdf, cdf_lengths, offsets)
        if indexes.size and (indexes.min() < 0 or indexes.max() >= cdf.shape[0]):
            raise ValueError("indexes out of range of the cdf tables")
    shape = symbols.shape
    flat_sym = symbols.reshape(-1)
    flat_idx = indexes.reshape(-1)

    def encode() -> bytes:
        return RansEncoder().encode_with_indexes(
            flat_sym.tolist(), flat_idx.tolist(), cdf.tolist(), cdf_lengths.tolist(), offsets.tolist()
        )

    def decode(data: bytes) -> np.ndarray:
        out = RansDecoder().decode_with_indexes(
            data, flat_idx.tolist(), cdf.tolist(), cdf_lengths.tolist(), offsets.tolist()
        )
        return np.asarray(out, dtype=np.int32).reshape(shape)

    lo = offsets[flat_idx]
    hi = lo + cdf_lengths[flat_idx] - 2  # exclusive: escape index
    n_escaped = int(np.count_nonzero((flat_sym < lo) | (flat_sym >= hi)))
    return PeerCodec(
        name=name,
        encode=encode,
        decode=decode,
        nbytes=len,
        expected=symbols,
        info={"n_tables": int(cdf.shape[0]), "max_cdf_len": int(cdf.shape[1]), "escaped_symbols": n_escaped},
    )


def compressai_w1_lowlevel(
    wl: "_wl.HyperpriorWorkload",
    tables: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> PeerCodec:
    """W1 on ``compressai.ans`` directly; ``tables`` = (cdf, cdf_lengths, offsets)
    indexed by ``wl.indexes`` (default: ``gaussian_cdf_tables(wl.table_scales)``)."""
    if tables is None:
        tables = gaussian_cdf_tables(wl.table_scales)
    return compressai_ans_lowlevel(wl.symbols, wl.indexes, *tables, name="compressai.ans(lowlevel) W1")


def compressai_w2_lowlevel(
    wl: "_wl.FactorizedWorkload",
    tables: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> PeerCodec:
    """W2 on ``compressai.ans`` directly, table c for channel c; ``tables`` =
    (cdf, cdf_lengths, offsets) (default: ``laplace_cdf_tables(wl.b)``)."""
    if tables is None:
        tables = laplace_cdf_tables(wl.b)
    c, length = wl.symbols.shape
    indexes = np.broadcast_to(np.arange(c, dtype=np.int32)[:, None], (c, length))
    return compressai_ans_lowlevel(wl.symbols, indexes, *tables, name="compressai.ans(lowlevel) W2")


# --------------------------------------------------------------------------
# constriction
# --------------------------------------------------------------------------


def _constriction():
    import constriction

    return constriction.stream.stack.AnsCoder, constriction.stream.model


def constriction_w1(
    wl: "_wl.HyperpriorWorkload", support: tuple[int, int] | None = None
) -> PeerCodec:
    """W1 with ``AnsCoder`` + ``QuantizedGaussian(lo, hi)`` family, means 0,
    stds = ``table_scales[indexes]``.  ``support`` defaults to the data's
    [min, max] (constriction has no escape; reported in ``info['support']``)."""
    AnsCoder, model = _constriction()
    symbols = np.ascontiguousarray(wl.symbols, dtype=np.int32)
    if support is None:
        support = (int(symbols.min()), int(symbols.max()))
    lo, hi = int(support[0]), int(support[1])
    if symbols.size and (symbols.min() < lo or symbols.max() > hi):
        raise ValueError(f"support {support} does not cover the symbols")
    family = model.QuantizedGaussian(lo, hi)
    means = np.zeros(symbols.shape[0], dtype=np.float64)
    stds = np.ascontiguousarray(wl.table_scales[wl.indexes], dtype=np.float64)

    def encode() -> np.ndarray:
        coder = AnsCoder()
        coder.encode_reverse(symbols, family, means, stds)
        return coder.get_compressed()

    def decode(compressed: np.ndarray) -> np.ndarray:
        return AnsCoder(compressed).decode(family, means, stds)

    return PeerCodec(
        name="constriction.QuantizedGaussian",
        encode=encode,
        decode=decode,
        nbytes=lambda comp: int(comp.nbytes),
        expected=symbols,
        info={"support": (lo, hi)},
    )


def constriction_w2(
    wl: "_wl.FactorizedWorkload",
    pmfs: Sequence[np.ndarray] | None = None,
    offsets: Sequence[int] | None = None,
    include_model_build: bool = False,
) -> PeerCodec:
    """W2 with ``AnsCoder`` + one ``Categorical(pmf, perfect=False)`` per channel.

    Default pmf for channel c: Laplace(0, b_c) over the observed range
    [min_c, max_c].  Or pass ``pmfs`` (one 1-D array per channel) and
    ``offsets`` (symbol value of each pmf's entry 0); every symbol must fall
    inside its channel's pmf.  Models are built once outside the timed
    functions unless ``include_model_build=True`` (then encode and decode each
    rebuild them).
    """
    AnsCoder, model = _constriction()
    symbols = np.ascontiguousarray(wl.symbols, dtype=np.int32)
    c, length = symbols.shape
    if pmfs is None:
        lo_arr = symbols.min(axis=1).astype(np.int64)
        hi_arr = symbols.max(axis=1).astype(np.int64)
        pmfs = [laplace_pmf(float(wl.b[i]), int(lo_arr[i]), int(hi_arr[i])) for i in range(c)]
        offsets = lo_arr
    else:
        if offsets is None or len(pmfs) != c or len(offsets) != c:
            raise ValueError("pass one pmf and one offset per channel")
        offsets = np.asarray(offsets, dtype=np.int64)
    pmfs = [np.ascontiguousarray(p, dtype=np.float64) for p in pmfs]
    offsets = [int(o) for o in offsets]
    for i in range(c):
        if symbols[i].min() < offsets[i] or symbols[i].max() >= offsets[i] + pmfs[i].size:
            raise ValueError(f"channel {i}: symbols fall outside the pmf's support")
    shifted = [np.ascontiguousarray(symbols[i] - offsets[i], dtype=np.int32) for i in range(c)]

    def build():
        return [model.Categorical(p, perfect=False) for p in pmfs]

    prebuilt = None if include_model_build else build()

    def encode() -> np.ndarray:
        models = build() if prebuilt is None else prebuilt
        coder = AnsCoder()
        for i in range(c - 1, -1, -1):  # stack: push last channel first
            coder.encode_reverse(shifted[i], models[i])
        return coder.get_compressed()

    def decode(compressed: np.ndarray) -> np.ndarray:
        models = build() if prebuilt is None else prebuilt
        coder = AnsCoder(compressed)
        out = np.empty((c, length), dtype=np.int32)
        for i in range(c):
            out[i] = coder.decode(models[i], length)
            out[i] += offsets[i]
        return out

    return PeerCodec(
        name=f"constriction.Categorical(per-channel{', +build' if include_model_build else ''})",
        encode=encode,
        decode=decode,
        nbytes=lambda comp: int(comp.nbytes),
        expected=symbols,
        info={"max_alphabet": int(max(p.size for p in pmfs)), "include_model_build": include_model_build},
    )
