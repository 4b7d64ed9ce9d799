"""CompressAI zoo architectures with and without featcodec.compat.compressai.accelerate, side by side.

    python benchmarks/compressai_models.py [--repeat 3] [--replay 15] [--quality 4] [--json out.json]

For each architecture (bmshj2018-factorized, bmshj2018-hyperprior,
mbt2018-mean; random weights, seeded, ``update()``d) and each input
(1 x 3 x 256 x 256 and 1 x 3 x 512 x 768, uniform noise), ``compress`` and
``decompress`` run as a CompressAI user calls them, once on the plain model
and once on ``accelerate(model)`` (tables="compressai", the default, and
tables="featcodec").  Each call's time is split into

- entropy coding: the time inside the entropy modules' ``compress``,
  ``decompress`` and ``build_indexes`` (CompressAI's quantization and list
  conversions included, as its users pay them), and
- network: the rest (the transforms, h_s, clamping).

Every accelerated ``x_hat`` is checked equal (torch.equal) to the plain
model's; bytes are the sum of all strings ("without checksums": the same
with ``accelerate(checksum=False)``).  One thread for torch and for
featcodec's coder.  Network times are the best of ``--repeat`` runs; each
entropy-coding call of a run is replayed ``--replay`` times and its best
counted (the calls depend on their arguments only).  Target: the entropy
coding part >= 10x faster for every model and size, bytes within 0.1 % of
CompressAI's (or smaller).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit.script, imported by CompressAI

from compressai.entropy_models import EntropyBottleneck, GaussianConditional  # noqa: E402
from compressai.zoo import bmshj2018_factorized, bmshj2018_hyperprior, mbt2018_mean  # noqa: E402

from featcodec.compat.compressai import accelerate  # noqa: E402

ARCHITECTURES: dict[str, Callable[..., torch.nn.Module]] = {
    "bmshj2018-factorized": bmshj2018_factorized,
    "bmshj2018-hyperprior": bmshj2018_hyperprior,
    "mbt2018-mean": mbt2018_mean,
}
SIZES = [(256, 256), (512, 768)]
TARGET = 10.0
BYTES_TOLERANCE = 0.001
CODING_METHODS = ("compress", "decompress", "build_indexes")


class CodingClock:
    """Times the calls of a model's entropy modules' coding methods, and keeps the last run's calls."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls: list[tuple[Callable, tuple, dict]] = []

    @contextmanager
    def attached(self, model: torch.nn.Module) -> Iterator[None]:
        patched = []
        for module in model.modules():
            if isinstance(module, (EntropyBottleneck, GaussianConditional)):
                for name in CODING_METHODS:
                    if hasattr(module, name):
                        module.__dict__[name] = self._timed(getattr(module, name))
                        patched.append((module, name))
        try:
            yield
        finally:
            for module, name in patched:
                del module.__dict__[name]

    def _timed(self, method: Callable) -> Callable:
        def timed(*args, **kwargs):
            self.calls.append((method, args, kwargs))
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


def measure(model: torch.nn.Module, fn: Callable, repeat: int, replay: int) -> tuple[float, float, object]:
    """(network seconds, entropy-coding seconds, result) of ``fn()``.

    fn runs ``repeat`` times; network is the best of its total minus the time
    inside the coding methods.  The coding calls of the last run are then
    replayed ``replay`` times each (they depend on their arguments only), and
    entropy coding is the sum of each call's best: a short call measured
    inside a long network pass on a busy machine is mostly noise.
    """
    best_network, result = math.inf, None
    clock = CodingClock()
    with clock.attached(model), torch.no_grad():
        for _ in range(repeat):
            clock.seconds, clock.calls = 0.0, []
            start = time.perf_counter()
            result = fn()
            best_network = min(best_network, time.perf_counter() - start - clock.seconds)
    coding = 0.0
    with torch.no_grad():
        for method, args, kwargs in clock.calls:
            best = math.inf
            for _ in range(replay):
                start = time.perf_counter()
                method(*args, **kwargs)
                best = min(best, time.perf_counter() - start)
            coding += best
    return best_network, coding, result


def run_model(model: torch.nn.Module, x: torch.Tensor, repeat: int, replay: int) -> dict:
    enc_net, enc_coding, out = measure(model, lambda: model.compress(x), repeat, replay)
    dec_net, dec_coding, dec = measure(model, lambda: model.decompress(out["strings"], out["shape"]), repeat, replay)
    size = sum(len(s) for strings in out["strings"] for s in strings)
    return dict(enc_net=enc_net, enc_coding=enc_coding, dec_net=dec_net, dec_coding=dec_coding,
                bytes=size, x_hat=dec["x_hat"])


def bench(name: str, height: int, width: int, quality: int, repeat: int, replay: int) -> dict:
    torch.manual_seed(0)
    model = ARCHITECTURES[name](quality=quality, pretrained=False).eval()
    model.update(force=True)
    x = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(1))
    rows = {"compressai": run_model(model, x, repeat, replay)}
    for tables in ("compressai", "featcodec"):
        fast = accelerate(model, tables=tables, threads=1)
        row = run_model(fast, x, repeat, replay)
        if not torch.equal(row["x_hat"], rows["compressai"]["x_hat"]):
            raise AssertionError(f"{name} {height}x{width} tables={tables}: x_hat differs from CompressAI's")
        with torch.no_grad():
            unchecked = accelerate(model, tables=tables, checksum=False, threads=1).compress(x)
        row["bytes_no_checksum"] = sum(len(s) for strings in unchecked["strings"] for s in strings)
        rows[f"featcodec/{tables}"] = row
    for row in rows.values():
        del row["x_hat"]
    return rows


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each compress / decompress")
    parser.add_argument("--replay", type=int, default=15, help="replays of each entropy-coding call")
    parser.add_argument("--quality", type=int, default=4, help="zoo quality (sets N and M; weights stay random)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    print("times in ms, one thread; entropy: coding inside the entropy modules (best of %d replays per call); "
          "net: the rest (best of %d runs)" % (args.replay, args.repeat))
    print("| model | input | coder | compress net | compress entropy | decompress net | decompress entropy "
          "| bytes | entropy speed-up (enc / dec) | bytes vs CompressAI | without checksums |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    results, ok = {}, True
    for name in ARCHITECTURES:
        for height, width in SIZES:
            rows = bench(name, height, width, args.quality, args.repeat, args.replay)
            results[f"{name} {width}x{height}"] = rows
            base = rows["compressai"]
            for coder, row in rows.items():
                enc_ratio = base["enc_coding"] / row["enc_coding"]
                dec_ratio = base["dec_coding"] / row["dec_coding"]
                extra = row["bytes"] / base["bytes"] - 1
                speed, size, unchecked = "", "", ""
                if coder != "compressai":
                    speed = f"{enc_ratio:.1f}x / {dec_ratio:.1f}x"
                    size = f"{extra * 100:+.3f} %"
                    unchecked = f"{row['bytes_no_checksum']:,} ({(row['bytes_no_checksum'] / base['bytes'] - 1) * 100:+.3f} %)"
                    ok &= min(enc_ratio, dec_ratio) >= TARGET and extra <= BYTES_TOLERANCE
                print(f"| {name} | {width}x{height} | {coder} | {ms(row['enc_net'])} "
                      f"| {ms(row['enc_coding'])} | {ms(row['dec_net'])} "
                      f"| {ms(row['dec_coding'])} | {row['bytes']:,} | {speed} | {size} | {unchecked} |", flush=True)
    print("every x_hat identical to CompressAI's; targets (entropy >= %.0fx, bytes <= +%.1f %%): %s"
          % (TARGET, BYTES_TOLERANCE * 100, "met" if ok else "NOT met"))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
