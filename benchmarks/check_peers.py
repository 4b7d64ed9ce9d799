"""Self-check and baseline timing for the peer adapters in peers.py.

Run in the benchmark venv:   /work/venv-bench/bin/python benchmarks/check_peers.py
(options: --small-only, --repeat N, --seed S)

For every peer: round trip asserted on small and full workloads, then encode
and decode throughput (best of --repeat, time.perf_counter) in Msym/s and the
compressed size.  "model bytes" is the ideal code length of the workload's
own model (W1: zero-mean Gaussian at the table scale; W2: Laplace(0, b_c)),
for reference.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peers  # noqa: E402
import workloads  # noqa: E402


def best_time(fn, *args, repeat: int = 3):
    best = float("inf")
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn(*args)
        dt = time.perf_counter() - t0
        best = min(best, dt)
    return best, result


def model_bytes_w1(wl) -> float:
    from scipy.special import log_ndtr

    s = wl.model_scales
    x = np.abs(wl.symbols.astype(np.float64))
    # P(k) = Phi((|k|+.5)/s) - Phi((|k|-.5)/s), computed in the upper tail for accuracy
    hi = log_ndtr(-(x - 0.5) / s)
    lo = log_ndtr(-(x + 0.5) / s)
    logp = hi + np.log1p(-np.exp(lo - hi))
    return float(-logp.sum() / np.log(2) / 8)


def model_bytes_w2(wl) -> float:
    total = 0.0
    for c in range(wl.channels):
        p = peers.laplace_pmf(float(wl.b[c]), int(wl.symbols[c].min()), int(wl.symbols[c].max()))
        k = wl.symbols[c] - wl.symbols[c].min()
        total += -np.log2(p[k]).sum()
    return total / 8


def run(codec: peers.PeerCodec, repeat: int, timing: bool) -> None:
    nbytes = codec.verify()
    n = codec.n_symbols
    line = f"  {codec.name:<52s} n={n:>8d}  bytes={nbytes:>9d} ({8 * nbytes / n:6.3f} b/sym)"
    if timing:
        t_enc, comp = best_time(codec.encode, repeat=repeat)
        t_dec, out = best_time(codec.decode, comp, repeat=repeat)
        assert np.array_equal(out, codec.expected), codec.name
        line += f"  enc {n / t_enc / 1e6:7.2f} Msym/s  dec {n / t_dec / 1e6:7.2f} Msym/s"
    print(line, flush=True)
    extra = {k: v for k, v in codec.info.items() if k != "note"}
    if extra:
        print(f"      info: {extra}", flush=True)


def suite(w1, w2, repeat: int, timing: bool) -> None:
    print(f" W1 hyperprior: n={w1.n}, symbols in [{w1.symbols.min()}, {w1.symbols.max()}], "
          f"model bytes {model_bytes_w1(w1):.0f}")
    for make in (peers.compressai_w1, peers.compressai_w1_lowlevel, peers.constriction_w1):
        run(make(w1), repeat, timing)
    print(f" W2 factorized: {w2.channels}x{w2.length}, symbols in [{w2.symbols.min()}, {w2.symbols.max()}], "
          f"model bytes {model_bytes_w2(w2):.0f}")
    run(peers.compressai_w2_lowlevel(w2), repeat, timing)
    run(peers.compressai_w2_entropy_bottleneck(w2, fit_range=True), repeat, timing)
    run(peers.compressai_w2_entropy_bottleneck(w2, fit_range=False), repeat, timing)
    run(peers.constriction_w2(w2), repeat, timing)
    run(peers.constriction_w2(w2, include_model_build=True), repeat, timing)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small-only", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    import compressai
    import constriction  # noqa: F401
    from importlib.metadata import version

    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), compressai {compressai.__version__}, "
          f"constriction {version('constriction')}")

    print("== small workloads (round trip only) ==")
    for seed in (args.seed, args.seed + 1):
        suite(workloads.hyperprior(seed, n=4096), workloads.factorized(seed, channels=8, length=512),
              args.repeat, timing=False)
    # edge case: a few symbols, one channel
    suite(workloads.hyperprior(args.seed, n=7), workloads.factorized(args.seed, channels=1, length=3),
          args.repeat, timing=False)
    if args.small_only:
        return 0
    print(f"== full workloads (best of {args.repeat}) ==")
    suite(workloads.hyperprior(args.seed), workloads.factorized(args.seed), args.repeat, timing=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
