"""On the demo's digits: the CVPR 2023 bottleneck (network frozen) against the entropic student
(tail tuned, Matsubara et al., WACV 2022) and CR+BQ, at one split point and equal training epochs.

    python examples/wacv_digits.py [--epochs 6] [--out docs]

A ResNet-18 (10 classes) is trained on the digits at 32 x 32 (cached), then
each method is cut at the end of layer1 (64 x 8 x 8):

* CVPR bottleneck: a depthwise-separable unit (C_r = 8, S = 2) trained on CE
  + the hyperprior's rate with the network frozen, coded with a factorized
  prior fitted to its code; lambda swept;
* entropic student: the stem replaced by the GDN encoder/decoder (N = 24),
  stage 1 for half the epochs, stage 2 for the other half; beta swept;
* CR+BQ: the ICPR 2020 layer1 bottleneck with 1, 2 and 4 channels, head
  network distillation, 8-bit code sent raw.

Every test image is its own message; bpp = all bytes x 8 / (32 x 32).
Writes wacv_digits.csv and wacv_digits.png under --out, and prints the table,
the frontiers and a latency breakdown at 37.5 kbit/s for one image.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import pathlib
import time
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from featcodec.codec import FeatureCodec, fit_prior
from featcodec.split import (SplitModel, TrainConfig, Trainer, cr_bq_student, entropic_student, evaluate,
                             hyperprior_rate, latency_report, make_unit, pareto_frontier, split, stages)
from featcodec.split.demo import default_cache_dir, digits_datasets
from featcodec.split.recipes import train_cr_bq, train_student_stage1, train_student_stage2

SIZE = 32
PIXELS = SIZE * SIZE
Row = Tuple[str, str, float, float]  # method, setting, accuracy, true bpp


def teacher_network(train: TensorDataset, epochs: int = 8) -> torch.nn.Module:
    import torchvision

    key = hashlib.sha256(f"wacv-digits-resnet18-v1-{epochs}-{SIZE}".encode()).hexdigest()[:12]
    path = default_cache_dir() / f"digits_resnet18_{key}.pt"
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    torch.manual_seed(0)
    loader = DataLoader(train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(epochs):
        for images, labels in loader:
            shifted = torch.roll(images, shifts=tuple(torch.randint(-2, 3, (2,)).tolist()), dims=(2, 3))
            loss = F.cross_entropy(model(shifted), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path.with_suffix(".partial"))
    os.replace(path.with_suffix(".partial"), path)
    return model.eval()


def loader_of(data: TensorDataset, batch: int = 64) -> DataLoader:
    return DataLoader(data, batch_size=batch, shuffle=True, generator=torch.Generator())


@torch.no_grad()
def coded(client, server, test: TensorDataset) -> Tuple[float, float]:
    """(accuracy, true bpp) with one message per test image."""
    bits = correct = 0
    for image, label in zip(test.tensors[0].split(1), test.tensors[1]):
        data = client(image)
        bits += 8 * len(data)
        correct += int(server(data).argmax(1).item() == int(label))
    return correct / len(test), bits / (len(test) * PIXELS)


def cvpr_bottleneck(teacher, train, test, epochs: int, lam: float) -> Row:
    head, tail = split(teacher, "layer1")
    with torch.no_grad():
        features = TensorDataset(torch.cat([head(b) for b in train.tensors[0].split(256)]), train.tensors[1])
    torch.manual_seed(0)
    unit = make_unit("dws", 64, 8, 2)
    model = SplitModel(torch.nn.Identity(), unit, hyperprior_rate(8), tail, q_step=1.0)
    config = TrainConfig(lam=lam, optimizer="adam", lr=3e-3, epochs=epochs, step_size=max(1, 2 * epochs // 3),
                         gamma=0.2, progress=False)
    Trainer(model, config, pixels_per_item=PIXELS).fit(loader_of(features))
    model.eval()
    prior = fit_prior(unit, features.tensors[0], 1.0, epochs=4, progress=False)
    codec = FeatureCodec(unit.encoder, unit.decoder, prior, 1.0)
    accuracy, bpp = coded(lambda x: codec.encode(head(x)), lambda d: tail(codec.decode(d)), test)
    return "CVPR bottleneck (frozen)", f"lambda={lam:g}", accuracy, bpp


def student_point(teacher, train, test, epochs: int, beta: float):
    torch.manual_seed(0)
    student = entropic_student(teacher)
    first = max(1, epochs // 2)
    train_student_stage1(student, teacher, loader_of(train), stages.student_stage1(
        beta=beta, epochs=first, milestones=(max(1, first - 1),), progress=False))
    train_student_stage2(student, teacher, loader_of(train), stages.student_stage2(
        epochs=epochs - first, milestones=(), lr=1e-2, progress=False))
    student.eval()
    codec = student.codec()
    accuracy, bpp = coded(lambda x: student.client(x, codec), lambda d: student.server(d, codec), test)
    return ("entropic student (tuned)", f"beta={beta:g}", accuracy, bpp), student, codec


def cr_bq_point(teacher, train, test, epochs: int, channels: int) -> Row:
    torch.manual_seed(0)
    student = cr_bq_student(teacher, channels)
    train_cr_bq(student, teacher, loader_of(train), stages.cr_bq(epochs=epochs, milestones=(max(1, epochs - 1),),
                                                                  progress=False))
    student.eval()
    codec = student.codec()
    accuracy, bpp = coded(codec.encode, codec.decode, test)
    return "CR+BQ (8-bit)", f"channels={channels}", accuracy, bpp


def plot(rows: List[Row], baseline: float, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.5, 4.2))
    for method in dict.fromkeys(r[0] for r in rows):
        points = sorted((r[3], r[2]) for r in rows if r[0] == method)
        axes.plot([p[0] for p in points], [p[1] for p in points], "o-", label=method)
    axes.axhline(baseline, color="gray", linestyle="--", label=f"ResNet-18 uncompressed ({baseline:.3f})")
    axes.set_xscale("log")
    axes.set_xlabel("true bpp (one message per image)")
    axes.set_ylabel("test accuracy")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def report(rows: List[Row], baseline: float, out: pathlib.Path) -> None:
    """Writes wacv_digits.csv and wacv_digits.png under ``out`` and prints the table with each method's frontier."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "wacv_digits.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "setting", "accuracy", "true_bpp"])
        writer.writerows([(m, s, f"{a:.4f}", f"{b:.4f}") for m, s, a, b in rows])
    plot(rows, baseline, out / "wacv_digits.png")
    print("\n| method | setting | accuracy | true bpp | on its frontier |\n|---|---|---|---|---|")
    for method in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == method]
        front = set(pareto_frontier([(r[2], r[3]) for r in mine]))
        for i, r in enumerate(mine):
            print(f"| {r[0]} | {r[1]} | {r[2]:.4f} | {r[3]:.4f} | {'yes' if i in front else ''} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=6, help="training epochs per method and point")
    parser.add_argument("--teacher-epochs", type=int, default=6, help="epochs training the ResNet-18 (cached)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("docs"))
    parser.add_argument("--lambdas", type=float, nargs="*", default=[0.01, 0.1, 1.0, 10.0])
    parser.add_argument("--betas", type=float, nargs="*", default=[0.3, 3.0, 30.0, 300.0])
    parser.add_argument("--channels", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--merge", type=pathlib.Path, nargs="*", default=None,
                        help="instead of training: tabulate and plot the rows of these wacv_digits.csv files "
                             "(from runs that each trained some of the methods, e.g. in parallel)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    started = time.perf_counter()
    train, test = digits_datasets(SIZE)
    teacher = teacher_network(train, args.teacher_epochs)
    baseline = evaluate(teacher, DataLoader(test, batch_size=256))["accuracy"]
    print(f"ResNet-18 on digits {SIZE}x{SIZE}: test accuracy {baseline:.4f} ({time.perf_counter() - started:.0f} s)")
    if args.merge is not None:
        rows = [(r["method"], r["setting"], float(r["accuracy"]), float(r["true_bpp"]))
                for path in args.merge for r in csv.DictReader(open(path))]
        report(rows, baseline, args.out)
        return
    rows: List[Row] = []
    for lam in args.lambdas:
        rows.append(cvpr_bottleneck(teacher, train, test, args.epochs, lam))
        print(rows[-1], f"{time.perf_counter() - started:.0f} s", flush=True)
    kept = None
    for beta in args.betas:
        row, student, codec = student_point(teacher, train, test, args.epochs, beta)
        rows.append(row)
        kept = kept or (student, codec)
        print(rows[-1], f"{time.perf_counter() - started:.0f} s", flush=True)
    for channels in args.channels:
        rows.append(cr_bq_point(teacher, train, test, args.epochs, channels))
        print(rows[-1], f"{time.perf_counter() - started:.0f} s", flush=True)

    report(rows, baseline, args.out)
    if kept is not None:
        student, codec = kept
        images = list(test.tensors[0][:20])
        latency = latency_report(lambda x: student.client(x, codec), lambda d: student.server(d, codec), images)
        print("\nentropic student (first beta), " + latency.format())
    print(f"\n{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
