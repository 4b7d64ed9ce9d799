"""Cost of table supports: wide pmf rows built with CdfTables.from_pmf, and the
W1/W2 parametric tables, measured as ideal bits under the quantized tables
(featcodec.information_content, escapes' raw bits included) over the exact
model's information content.

The wide rows are W2's Laplace(0, b_c) pmfs (b from 0.3 to 8, 128 channels of
8192 symbols) given over [-200, 200] and over [-1000, 1000]: every column of
the pmf, most of them far below one frequency unit.  constriction's
quantizer is measured on the same rows when it is installed.

Usage: python benchmarks/table_support.py [--seed N]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Optional

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import featcodec as fc  # noqa: E402
import workloads  # noqa: E402
from throughput import exact_bits_w1, exact_bits_w2  # noqa: E402


def laplace_pmf_rows(b: np.ndarray, half_width: int) -> np.ndarray:
    """Laplace(0, b_c) discretized on the integers -half_width .. half_width."""
    k = np.arange(-half_width, half_width + 1, dtype=np.float64)
    upper = np.abs(k) + 0.5
    lower = np.maximum(np.abs(k) - 0.5, 0.0)
    bb = b[:, None]
    return 0.5 * (np.exp(-lower / bb) - np.exp(-upper / bb)) * np.where(k == 0, 2.0, 1.0)


def constriction_bits(w: workloads.FactorizedWorkload, pmf: np.ndarray, half_width: int) -> Optional[float]:
    """Size of constriction's coding of the same rows (Categorical(pmf,
    perfect=False), all channels on one ANS stack, so its flush is paid once),
    in bits; None without constriction or for symbols outside the rows."""
    try:
        import constriction
    except ImportError:
        return None
    if np.abs(w.symbols).max() > half_width:
        return None
    coder = constriction.stream.stack.AnsCoder()
    for c in reversed(range(w.channels)):
        model = constriction.stream.model.Categorical(pmf[c] / pmf[c].sum(), perfect=False)
        coder.encode_reverse((w.symbols[c] + half_width).astype(np.int32), model)
    return float(coder.num_bits())


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    w2 = workloads.factorized(args.seed)
    exact2 = exact_bits_w2(w2)
    channel = np.arange(w2.channels, dtype=np.int32)[:, None]
    print(f"featcodec {fc.__version__}; W2 symbols: {w2.n:,}, exact model {exact2 / 8:,.0f} bytes")
    print(f"  {'tables':<44} {'support':>10} {'over exact':>11}")
    for half_width in (200, 1000):
        pmf = laplace_pmf_rows(w2.b, half_width)
        offsets = np.full(w2.channels, -half_width, dtype=np.int32)
        for support in ("optimal", "given"):
            tables = fc.CdfTables.from_pmf(pmf, offsets, support=support)
            bits = fc.information_content(w2.symbols, tables, channel)
            print(f"  {f'from_pmf over [-{half_width}, {half_width}]':<44} {support:>10} "
                  f"{100 * (bits / exact2 - 1):+10.4f}%  (mean length {tables.lengths.mean():.0f})")
        theirs = constriction_bits(w2, pmf, half_width)
        if theirs is not None:
            print(f"  {'  constriction, coded':<44} {'':>10} "
                  f"{100 * (theirs / exact2 - 1):+10.4f}%")
    tables = fc.CdfTables.laplace(w2.b)
    bits = fc.information_content(w2.symbols, tables, channel)
    print(f"  {'W2: CdfTables.laplace(b)':<44} {'':>10} {100 * (bits / exact2 - 1):+10.4f}%")
    w1 = workloads.hyperprior(args.seed)
    exact1 = exact_bits_w1(w1)
    tables = fc.CdfTables.gaussian(w1.table_scales)
    bits = fc.information_content(w1.symbols, tables, w1.indexes)
    print(f"  {'W1: CdfTables.gaussian(table_scales)':<44} {'':>10} {100 * (bits / exact1 - 1):+10.4f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
