"""Deterministic benchmark workloads (numpy only).

W1 "hyperprior": scale-indexed discretized Gaussians, as in a mean-scale
hyperprior image codec.  W2 "factorized": per-channel i.i.d. discretized
Laplace symbols, as in a factorized-prior (EntropyBottleneck) codec.

Every generator takes ``seed`` plus optional size overrides so tests can use
small instances; the same arguments always give bit-identical arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "HyperpriorWorkload",
    "FactorizedWorkload",
    "hyperprior_table_scales",
    "hyperprior",
    "factorized",
    "W1_N",
    "W2_CHANNELS",
    "W2_LENGTH",
]

W1_N = 1 << 20
W1_SCALE_MIN = 0.11
W1_SCALE_MAX = 64.0
W1_TABLE_MIN = 0.11
W1_TABLE_MAX = 256.0
W1_TABLE_LEN = 64

W2_CHANNELS = 128
W2_LENGTH = 8192
W2_B_MIN = 0.3
W2_B_MAX = 8.0


@dataclass(frozen=True)
class HyperpriorWorkload:
    """W1: ``symbols[i] = round(N(0, true_scales[i]))``.

    ``indexes[i]`` is the index of the smallest entry of ``table_scales`` that
    is >= ``true_scales[i]``, so ``table_scales[indexes]`` is the (rounded up)
    scale a table-driven coder models symbol ``i`` with.
    """

    symbols: np.ndarray  # int32, (n,)
    true_scales: np.ndarray  # float64, (n,)
    table_scales: np.ndarray  # float64, (64,)
    indexes: np.ndarray  # int32, (n,)

    @property
    def n(self) -> int:
        return int(self.symbols.shape[0])

    @property
    def model_scales(self) -> np.ndarray:
        """Per-symbol scale actually modelled: ``table_scales[indexes]`` (float64)."""
        return self.table_scales[self.indexes]


@dataclass(frozen=True)
class FactorizedWorkload:
    """W2: ``symbols[c, j] = round(Laplace(0, b[c]))``, shape (channels, length)."""

    symbols: np.ndarray  # int32, (channels, length)
    b: np.ndarray  # float64, (channels,)

    @property
    def channels(self) -> int:
        return int(self.symbols.shape[0])

    @property
    def length(self) -> int:
        return int(self.symbols.shape[1])

    @property
    def n(self) -> int:
        return int(self.symbols.size)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, size) -> np.ndarray:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size=size))


def hyperprior_table_scales(
    n_scales: int = W1_TABLE_LEN, lo: float = W1_TABLE_MIN, hi: float = W1_TABLE_MAX
) -> np.ndarray:
    """``exp(linspace(log lo, log hi, n_scales))`` as float64."""
    return np.exp(np.linspace(np.log(lo), np.log(hi), n_scales))


def hyperprior(
    seed: int = 0,
    n: int = W1_N,
    scale_min: float = W1_SCALE_MIN,
    scale_max: float = W1_SCALE_MAX,
    table_scales: np.ndarray | None = None,
) -> HyperpriorWorkload:
    """Generate W1 (default n = 1,048,576)."""
    if table_scales is None:
        table_scales = hyperprior_table_scales()
    table_scales = np.ascontiguousarray(table_scales, dtype=np.float64)
    if scale_max > table_scales[-1]:
        raise ValueError("scale_max must not exceed the largest table scale")
    rng = np.random.default_rng(seed)
    true_scales = _log_uniform(rng, scale_min, scale_max, n)
    symbols = np.rint(rng.normal(0.0, true_scales)).astype(np.int32)
    indexes = np.searchsorted(table_scales, true_scales, side="left")
    # Guard against float round-off at the very top of the table.
    indexes = np.minimum(indexes, len(table_scales) - 1).astype(np.int32)
    return HyperpriorWorkload(
        symbols=symbols,
        true_scales=true_scales,
        table_scales=table_scales,
        indexes=indexes,
    )


def factorized(
    seed: int = 0,
    channels: int = W2_CHANNELS,
    length: int = W2_LENGTH,
    b_min: float = W2_B_MIN,
    b_max: float = W2_B_MAX,
) -> FactorizedWorkload:
    """Generate W2 (default 128 channels x 8192 symbols)."""
    rng = np.random.default_rng(seed)
    b = _log_uniform(rng, b_min, b_max, channels)
    symbols = np.rint(rng.laplace(0.0, b[:, None], size=(channels, length))).astype(np.int32)
    return FactorizedWorkload(symbols=symbols, b=b)
