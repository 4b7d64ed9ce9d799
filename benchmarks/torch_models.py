"""compress/decompress of featcodec's torch entropy models against CompressAI's, side by side.

    python benchmarks/torch_models.py [--repeat 7] [--json out.json]

Shapes (8, 128, 16, 16) and (1, 192, 64, 64), float32 CPU tensors, one thread
for everyone (torch and featcodec's coder).  Target: featcodec >= 10x
CompressAI in both directions.

- Factorized: featcodec FactorizedPrior vs CompressAI EntropyBottleneck.  y
  is per-channel Laplace(0, b_c), b_c log-uniform in [0.3, 8].  Both models
  are untrained with init_scale=64, so both supports cover the data and
  neither spends its time on escapes; the bytes are not a rate comparison.
- Conditional: featcodec GaussianConditional vs CompressAI's, both with the
  same 64-scale table (0.11 to 256).  y ~ N(0, s) with s log-uniform in
  [0.11, 64] per element and the scales given.  Both timings include turning
  the scales into table indexes (CompressAI's build_indexes).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Callable

import torch

from featcodec.entropy import FactorizedPrior, GaussianConditional

SHAPES = [(8, 128, 16, 16), (1, 192, 64, 64)]
TARGET = 10.0


def best_time(fn: Callable, repeat: int) -> tuple[float, object]:
    best, result = math.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def factorized_case(shape, generator):
    channels = shape[1]
    spread = torch.exp(torch.empty(channels).uniform_(math.log(0.3), math.log(8.0), generator=generator))
    laplace = torch.distributions.Laplace(0.0, 1.0)
    torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
    return laplace.sample(shape) * spread.view(1, -1, 1, 1)


def conditional_case(shape, generator):
    scales = torch.exp(torch.empty(shape).uniform_(math.log(0.11), math.log(64.0), generator=generator))
    return torch.randn(shape, generator=generator) * scales, scales


def bench_factorized(shape, repeat, generator):
    from compressai.entropy_models import EntropyBottleneck

    y = factorized_case(shape, generator)
    ours = FactorizedPrior(shape[1], init_scale=64).eval()
    ours.update_tables()
    theirs = EntropyBottleneck(shape[1], init_scale=64).eval()
    theirs.update(force=True)
    t_enc, data = best_time(lambda: ours.compress(y, threads=1), repeat)
    t_dec, y_hat = best_time(lambda: ours.decompress(data, y.shape, threads=1), repeat)
    assert torch.equal(y_hat, ours(y)[0])
    c_enc, strings = best_time(lambda: theirs.compress(y), repeat)
    c_dec, c_hat = best_time(lambda: theirs.decompress(strings, y.shape[2:]), repeat)
    return dict(ours=(t_enc, t_dec, len(data)), theirs=(c_enc, c_dec, sum(map(len, strings))))


def bench_conditional(shape, repeat, generator):
    from compressai.entropy_models import GaussianConditional as CompressAIGaussian

    y, scales = conditional_case(shape, generator)
    ours = GaussianConditional().eval()
    ours.update_tables()
    theirs = CompressAIGaussian(ours.scale_table.float().tolist()).eval()
    theirs.update()
    t_enc, data = best_time(lambda: ours.compress(y, scales, threads=1), repeat)
    t_dec, y_hat = best_time(lambda: ours.decompress(data, scales, threads=1), repeat)
    assert torch.equal(y_hat, ours(y, scales)[0])

    def their_compress():
        return theirs.compress(y, theirs.build_indexes(scales))

    def their_decompress():
        return theirs.decompress(strings, theirs.build_indexes(scales))

    c_enc, strings = best_time(their_compress, repeat)
    c_dec, _ = best_time(their_decompress, repeat)
    return dict(ours=(t_enc, t_dec, len(data)), theirs=(c_enc, c_dec, sum(map(len, strings))))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(2026)
    rows, results = [], {}
    for label, bench in (("FactorizedPrior vs EntropyBottleneck", bench_factorized),
                         ("GaussianConditional vs GaussianConditional", bench_conditional)):
        for shape in SHAPES:
            figures = bench(shape, args.repeat, generator)
            (t_enc, t_dec, size), (c_enc, c_dec, c_size) = figures["ours"], figures["theirs"]
            key = f"{label.split()[0]} {'x'.join(map(str, shape))}"
            results[key] = dict(featcodec_ms=(1e3 * t_enc, 1e3 * t_dec), compressai_ms=(1e3 * c_enc, 1e3 * c_dec),
                                speedup=(c_enc / t_enc, c_dec / t_dec), bytes=(size, c_size))
            rows.append((key, t_enc, t_dec, c_enc, c_dec, size, c_size))
    print(f"{'model, shape':<34} {'featcodec ms enc/dec':>22} {'CompressAI ms enc/dec':>23} "
          f"{'speedup enc/dec':>17} {'target':>7} {'bytes (fc / CAI)':>18}")
    met = True
    for key, t_enc, t_dec, c_enc, c_dec, size, c_size in rows:
        s_enc, s_dec = c_enc / t_enc, c_dec / t_dec
        met &= min(s_enc, s_dec) >= TARGET
        print(f"{key:<34} {1e3 * t_enc:10.2f} /{1e3 * t_dec:9.2f} {1e3 * c_enc:11.2f} /{1e3 * c_dec:9.2f} "
              f"{s_enc:8.1f}x /{s_dec:6.1f}x {'>=10x':>7} {size:>9} / {c_size}")
    print(f"target (>= {TARGET:.0f}x both directions, every row): {'met' if met else 'NOT met'}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
