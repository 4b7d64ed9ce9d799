"""Fixed cost of a per-image bank message at ResNet-50 layer4.2, against its rate.

    python benchmarks/message_cost.py [--images 64] [--json out.json]

The setting of the papers' classification split (Ahuja et al., CVPR 2023;
Datta et al., ICPR 2022): features 2048 x 7 x 7 (224 x 224 input), a dws
unit with C_r = 64 and S = 2, so 64 x 4 x 4 = 1024 symbols per image.  The
unit has random weights (nothing is downloaded) and the features are
post-ReLU Gaussians; the rate is set by Q, and a FactorizedPrior is fitted
to the unit's code for every Q (featcodec.codec.fit_prior).

For each Q, every test image is coded alone through a RateBank (fixed
feature shape: a one-byte header) with the checksum off, 2 bytes and 4
bytes.  Fixed cost = the message's bytes less the information content of
its symbols under the tables (featcodec.information_content): header,
coder flush and start-up slack, checksum.  Printed: the mean rate (bpp =
bits / (224 * 224)), the mean fixed cost in bytes and its share of the
message.  Target: at most 3 bytes with the checksum off.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

import featcodec as fc
from featcodec.bank import RateBank
from featcodec.codec import FeatureCodec, fit_prior
from featcodec.split.units import make_unit

FEATURES = (2048, 7, 7)
PIXELS = 224 * 224
Q_STEPS = (0.6, 0.4, 0.25, 0.15, 0.1, 0.06, 0.035, 0.02, 0.012, 0.006)
CHECKSUMS = (0, 2, 4)
TARGET_BYTES = 3.0


def unit_and_features(images: int, seed: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    unit = make_unit("dws", FEATURES[0], 64, 2).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    train = torch.relu(torch.randn(2 * images, *FEATURES, generator=generator))
    test = torch.relu(torch.randn(images, *FEATURES, generator=generator))
    return unit, train, test


def measure(unit: torch.nn.Module, train: torch.Tensor, test: torch.Tensor, q_step: float, epochs: int) -> dict:
    prior = fit_prior(unit, train, q_step, epochs=epochs, batch_size=64, progress=False)
    codec = FeatureCodec(unit.encoder, unit.decoder, prior, q_step)
    with torch.no_grad():
        symbols = torch.round(unit.encoder(test) / q_step).to(torch.int32).numpy()
    indexes = np.arange(64, dtype=np.int32).reshape(1, 64, 1, 1)
    information = np.array([fc.information_content(symbols[i : i + 1], prior.tables, indexes)
                            for i in range(len(test))]) / 8
    row: dict = {"q_step": q_step, "bpp": None, "fixed_bytes": {}, "fixed_share": {}}
    for checksum in CHECKSUMS:
        bank = RateBank(FEATURES, split="layer4.2", network="resnet50", checksum=checksum)
        bank.add(codec, bpp=1.0)
        sizes = np.array([len(bank.encode(test[i : i + 1], unit=0)) for i in range(len(test))], dtype=np.float64)
        fixed = sizes - information
        if checksum == 0:
            row["bpp"] = float(np.mean(sizes) * 8 / PIXELS)
            row["message_bytes"] = float(np.mean(sizes))
            row["fixed_max_bytes"] = float(np.max(fixed))
        row["fixed_bytes"][checksum] = float(np.mean(fixed))
        row["fixed_share"][checksum] = float(np.mean(fixed / sizes))
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="test images per rate (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prior-epochs", type=int, default=300, help="epochs of fit_prior (default 300)")
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    unit, train, test = unit_and_features(args.images, args.seed)
    rows = [measure(unit, train, test, q, args.prior_epochs) for q in Q_STEPS]
    print(f"per-image message at layer4.2 (dws, C_r 64, S 2: 1024 symbols), {args.images} images per rate")
    print(f"{'Q':>6} {'bpp':>8} {'bytes':>7} | fixed bytes (share): {'no checksum':>18} {'2-byte':>16} "
          f"{'4-byte':>16} | max, none")
    for r in rows:
        cells = " ".join(f"{r['fixed_bytes'][c]:8.2f} ({100 * r['fixed_share'][c]:5.1f} %)" for c in CHECKSUMS)
        print(f"{r['q_step']:6.3f} {r['bpp']:8.4f} {r['message_bytes']:7.1f} | {'':21}{cells} | "
              f"{r['fixed_max_bytes']:5.2f}")
    worst = max(r["fixed_bytes"][0] for r in rows)
    print(f"largest mean fixed cost without checksum: {worst:.2f} bytes (target <= {TARGET_BYTES})")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"rows": rows, "target_bytes": TARGET_BYTES}, file, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
