"""Per-element table build for 1M elements: GPU (featcodec.cuda) against one
CPU core (the native CPU reference), and a check that both agree bit for bit.

    python benchmarks/cuda_tables.py [--elements 1000000] [--repeat 5]

Measures featcodec.parametric_intervals (kernel 2: per-element mean and
scale -> the (start, freq) each symbol is coded with) and scale_index
(kernel 3).  GPU times are for device-resident inputs and output when torch
with CUDA is installed (else they include the host <-> device copies, and say so).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import featcodec as fc
import featcodec.cuda as fcc


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n = args.elements
    rng = np.random.default_rng(0)
    scales = np.exp(rng.uniform(np.log(0.11), np.log(256), n))
    means = rng.normal(0, 4, n)
    values = np.round(means + rng.normal(0, 1, n) * scales).astype(np.int32)
    table = np.exp(np.linspace(np.log(0.11), np.log(256), 64))

    cpu_iv = best_of(lambda: fc.parametric_intervals(values, "gaussian", means, scales), args.repeat)
    cpu_ix = best_of(lambda: fc.scale_index(scales, table), args.repeat)
    print(f"{n} elements, Gaussian, precision 16")
    print(f"CPU (one core): intervals {cpu_iv * 1e3:9.2f} ms   scale_index {cpu_ix * 1e3:8.2f} ms")
    if not fcc.is_available():
        print(f"GPU: not measured ({fcc.unavailable_reason()})")
        return
    print(f"GPU: {fcc.device_name()}")
    start, freq = fc.parametric_intervals(values, "gaussian", means, scales)
    assert np.array_equal(fcc.parametric_intervals(values, "gaussian", means, scales), start | freq << 16)
    assert np.array_equal(fcc.scale_index(scales, table), fc.scale_index(scales, table))
    try:
        import torch

        if not torch.cuda.is_available():
            raise ImportError
        dv, dm, ds = (torch.from_numpy(a).cuda() for a in (values, means, scales))
        out_iv = torch.empty(n, dtype=torch.int32, device="cuda").view(torch.uint32)
        out_ix = torch.empty(n, dtype=torch.int32, device="cuda")

        def gpu_iv():
            fcc.parametric_intervals(dv, "gaussian", dm, ds, out=out_iv)
            torch.cuda.synchronize()

        def gpu_ix():
            fcc.scale_index(ds, table, out=out_ix)
            torch.cuda.synchronize()

        where = "device-resident"
    except ImportError:
        def gpu_iv():
            fcc.parametric_intervals(values, "gaussian", means, scales)

        def gpu_ix():
            fcc.scale_index(scales, table)

        where = "with host<->device copies (no torch CUDA)"
    gpu_iv()
    gpu_ix()
    g_iv, g_ix = best_of(gpu_iv, args.repeat), best_of(gpu_ix, args.repeat)
    print(f"GPU ({where}): intervals {g_iv * 1e3:9.3f} ms ({cpu_iv / g_iv:6.1f}x)   "
          f"scale_index {g_ix * 1e3:8.3f} ms ({cpu_ix / g_ix:6.1f}x)   target >= 50x")


if __name__ == "__main__":
    main()
