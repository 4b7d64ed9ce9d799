"""``featcodec demo``: the whole method on scikit-learn's digits, no download.

1. The 8x8 digits, upscaled to 32x32 and 3 channels, split 80/20.
2. A small CNN classifier, trained once and cached.
3. A bottleneck unit inserted at ``features.block2`` (64 x 8 x 8), trained
   supervised and unsupervised, with the L1 proxy and with the neural rate
   estimator (the hyperprior), at several (lambda, Q).
4. For each unit, a FactorizedPrior fitted to its code; the test set is
   coded image by image into real bitstreams, decoded, and classified.
5. A table of accuracy, true bpp and estimated bpp, and a PNG of accuracy
   against true bpp.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import pathlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from .cut import split

if TYPE_CHECKING:
    from ..codec import FeatureCodec
    from ..entropy import FactorizedPrior
from .model import SplitModel
from .rate import make_rate
from .search import PRESETS, SearchPoint, SearchResult
from .train import TrainConfig, Trainer, evaluate
from .units import make_unit

IMAGE_SIZE = 32
SPLIT_POINT = "features.block2"
CLASSIFIER_VERSION = "digits-cnn-v1"


@dataclass(frozen=True)
class DemoPoint:
    """One trained unit: objective, rate term, lambda, Q."""

    objective: str
    rate: str
    lam: float
    q_step: float

    @property
    def label(self) -> str:
        return f"{self.objective}/{self.rate}"


@dataclass
class DemoSettings:
    code_channels: int = 8
    stride: int = 2
    unit_epochs: int = 12
    prior_epochs: int = 6
    classifier_epochs: int = 12
    batch_size: int = 64
    points: Tuple[Tuple[float, float], ...] = ((0.01, 1.0), (0.1, 1.0), (1.0, 1.0), (10.0, 0.5))  # (lambda, Q)
    unsupervised_lambda_scale: float = 1.0
    distill_loss: str = "mse"
    seed: int = 0

    @classmethod
    def quick(cls) -> "DemoSettings":
        return cls(unit_epochs=1, prior_epochs=1, classifier_epochs=1, points=((1.0, 1.0),))


def digits_datasets(size: int = IMAGE_SIZE) -> Tuple[TensorDataset, TensorDataset]:
    """The digits as (N, 3, size, size) tensors in [-1, 1], 80 % train, 20 % test (fixed)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images).float().unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = (images.repeat(1, 3, 1, 1) - 0.5) / 0.5
    labels = torch.from_numpy(digits.target).long()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * len(labels))
    train, test = order[:cut], order[cut:]
    return TensorDataset(images[train], labels[train]), TensorDataset(images[test], labels[test])


def _conv_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DigitsNet(nn.Module):
    """A small CNN: 32x32 -> 16x16 -> 8x8 (64 channels, the split point) -> 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(OrderedDict(
            stem=_conv_block(3, 32, 1), block1=_conv_block(32, 32, 2), block2=_conv_block(32, 64, 2),
            block3=_conv_block(64, 64, 1)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def default_cache_dir() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "featcodec"


def trained_classifier(train: TensorDataset, cache_dir: pathlib.Path, epochs: int, progress: bool) -> DigitsNet:
    """The classifier, from the cache if trained before with the same recipe."""
    from tqdm.auto import tqdm

    key = hashlib.sha256(f"{CLASSIFIER_VERSION}-{epochs}-{IMAGE_SIZE}".encode()).hexdigest()[:12]
    path = cache_dir / f"digits_cnn_{key}.pt"
    model = DigitsNet()
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    torch.manual_seed(0)
    loader = DataLoader(train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for epoch in tqdm(range(epochs), desc="classifier", disable=not progress):
        for images, labels in loader:
            shifted = torch.roll(images, shifts=tuple(torch.randint(-2, 3, (2,)).tolist()), dims=(2, 3))
            loss = F.cross_entropy(model(shifted), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(model.state_dict(), partial)
    os.replace(partial, path)
    return model.eval()


@torch.no_grad()
def head_features(head: nn.Module, dataset: TensorDataset) -> TensorDataset:
    """The split point's features of a whole dataset, with its labels.

    The head is frozen and deterministic, so the demo computes it once and
    trains every unit on the stored features: the same training as through
    the full network, several times faster.
    """
    images, labels = dataset.tensors
    return TensorDataset(torch.cat([head(batch) for batch in images.split(256)]), labels)


def train_unit(tail: nn.Module, point: DemoPoint, train_features: TensorDataset, settings: DemoSettings,
               progress: bool) -> SplitModel:
    """A fresh unit at the split point, trained for ``point`` on the head's features."""
    torch.manual_seed(settings.seed)
    unit = make_unit("dws", 64, settings.code_channels, settings.stride)
    model = SplitModel(nn.Identity(), unit, make_rate(point.rate, settings.code_channels), tail,
                       q_step=point.q_step)
    lam = point.lam * (settings.unsupervised_lambda_scale if point.objective == "unsupervised" else 1.0)
    config = TrainConfig(objective=point.objective, lam=lam, optimizer="adam", lr=3e-3, distill_loss=settings.distill_loss,
                         step_size=max(1, (2 * settings.unit_epochs) // 3), gamma=0.2,
                         epochs=settings.unit_epochs, seed=settings.seed, progress=progress)
    loader = DataLoader(train_features, batch_size=settings.batch_size, shuffle=True, generator=torch.Generator())
    Trainer(model, config, pixels_per_item=IMAGE_SIZE * IMAGE_SIZE).fit(loader)
    return model.eval()


@dataclass
class PointResult:
    point: DemoPoint
    accuracy: float                   # test accuracy through the unit (quantized, decoded)
    estimator_bpp: Optional[float]    # the training rate estimator's bpp (None for the L1 proxy)
    true_bpp: Optional[float] = None  # bits of the real bitstreams / pixels
    prior_bpp: Optional[float] = None  # the coding prior's estimate
    coded_accuracy: Optional[float] = None  # accuracy after decoding the bitstreams
    hyper_true_bpp: Optional[float] = None  # true bpp when coding with the hyperprior and its side info
    one_message_bpp: Optional[float] = None  # true bpp of the whole test set in one message


def fit_coding_prior(unit: nn.Module, train_features: TensorDataset, q_step: float, settings: DemoSettings,
                     progress: bool) -> "FactorizedPrior":
    """A FactorizedPrior fitted to the trained unit's code, with its coding tables built."""
    from tqdm.auto import tqdm

    from ..entropy import FactorizedPrior, estimate_bits

    with torch.no_grad():
        codes = torch.cat([unit.encode(batch) for batch in train_features.tensors[0].split(256)])
    torch.manual_seed(settings.seed)
    prior = FactorizedPrior(codes.shape[1]).train()
    # The tail quantiles only bound the tables' support; a larger step settles them in few epochs.
    density = [p for n, p in prior.named_parameters() if n != "quantiles"]
    optimizer = torch.optim.Adam([{"params": density, "lr": 1e-2}, {"params": [prior.quantiles], "lr": 0.1}])
    loader = DataLoader(TensorDataset(codes), batch_size=settings.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(settings.seed))
    for _ in tqdm(range(settings.prior_epochs), desc="coding prior", leave=False, disable=not progress):
        for (batch,) in loader:
            _, likelihoods = prior(batch, q_step=q_step)
            loss = estimate_bits(likelihoods) / batch.numel() + prior.aux_loss()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    prior.eval().update_tables()
    return prior


@torch.no_grad()
def code_test_set(codec: "FeatureCodec", tail: nn.Module, test_features: TensorDataset) -> Tuple[float, float]:
    """Codes every test image into its own bitstream, decodes and classifies it.

    Returns (accuracy on the decoded features, true bpp: all bytes, headers
    included, over all input pixels).
    """
    features, labels = test_features.tensors
    bits, correct = 0, 0
    for feature, label in zip(features.split(1), labels):
        data = codec.encode(feature)
        bits += 8 * len(data)
        correct += int(tail(codec.decode(data)).argmax(1).item() == int(label))
    return correct / len(labels), bits / (len(labels) * IMAGE_SIZE * IMAGE_SIZE)


def run_point(tail: nn.Module, point: DemoPoint, train: TensorDataset, test: TensorDataset,
              settings: DemoSettings, progress: bool) -> PointResult:
    """Trains a unit for ``point`` on the features ``train``, fits its coding prior,
    and codes the features ``test`` into real bitstreams."""
    from ..codec import FeatureCodec
    from ..entropy import estimate_bits

    model = train_unit(tail, point, train, settings, progress)
    pixels = IMAGE_SIZE * IMAGE_SIZE
    metrics = evaluate(model, DataLoader(test, batch_size=256), pixels_per_item=pixels)
    estimator = metrics.get("rate_per_pixel") if model.rate.in_bits else None
    prior = fit_coding_prior(model.unit, train, point.q_step, settings, progress)
    with torch.no_grad():
        prior_bits = float(estimate_bits(prior(model.unit.encode(test.tensors[0]), q_step=point.q_step)[1]))
    codec = FeatureCodec(model.unit.encoder, model.unit.decoder, prior, point.q_step)
    coded_accuracy, true_bpp = code_test_set(codec, tail, test)
    one_message_bpp = 8 * len(codec.encode(test.tensors[0])) / (len(test) * pixels)
    hyper_bpp = None
    if point.rate == "hyperprior":  # the option: code with the estimator's own side information
        hyperprior = model.rate.entropy_model
        hyperprior.update_tables()
        _, hyper_bpp = code_test_set(FeatureCodec(model.unit.encoder, model.unit.decoder, hyperprior, point.q_step),
                                     tail, test)
    return PointResult(point, metrics["accuracy"], estimator, true_bpp, prior_bits / (len(test) * pixels),
                       coded_accuracy, hyper_bpp, one_message_bpp)


DEMO_SEARCH_SPACE = PRESETS["digits"]
"""Where ``--search`` draws (C_r, S, lambda, Q) from (lambda for rate in bits per pixel)."""


def search(settings: DemoSettings, tail: nn.Module, train: TensorDataset, test: TensorDataset, trials: int,
           progress: bool) -> List[SearchResult]:
    """Random search (an Optuna study) over (C_r, S, lambda, Q), supervised with the hyperprior;
    prints the study's Pareto frontier."""
    import optuna

    from .runner import TrialSeededRandomSampler

    def measure(point: SearchPoint) -> Tuple[float, float]:
        local = dataclasses.replace(settings, code_channels=point.channels, stride=point.stride)
        result = run_point(tail, DemoPoint("supervised", "hyperprior", point.lam, point.q_step), train, test,
                           local, progress)
        return result.coded_accuracy, result.true_bpp

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=TrialSeededRandomSampler(settings.seed))
    results = []
    for _ in range(trials):
        trial = study.ask()
        point = DEMO_SEARCH_SPACE.suggest(trial)
        metric, bpp = measure(point)
        study.tell(trial, [metric, bpp])
        results.append(SearchResult(point, float(metric), float(bpp)))
    frontier = [results[t.number] for t in study.best_trials]
    print(f"random search, {trials} trials (supervised, hyperprior); Pareto frontier of (accuracy, true bpp):")
    for r in results:
        mark = "*" if any(r is f for f in frontier) else " "
        print(f" {mark} C_r={r.point.channels:<3d} S={r.point.stride} lambda={r.point.lam:<8.3g} "
              f"Q={r.point.q_step:<5.2f} accuracy={r.metric:.4f} bpp={r.bpp:.4f}")
    return results


def run(settings: DemoSettings, cache_dir: pathlib.Path, out_dir: pathlib.Path, progress: bool = True,
        search_trials: int = 0) -> List[PointResult]:
    """Runs the demo; returns one result per trained unit and writes the PNG.

    ``search_trials`` > 0 adds a random search over (C_r, S, lambda, Q).
    """
    started = time.perf_counter()
    train, test = digits_datasets()
    classifier = trained_classifier(train, cache_dir, settings.classifier_epochs, progress)
    baseline = evaluate(classifier, DataLoader(test, batch_size=256))["accuracy"]
    points = [DemoPoint(objective, rate, lam, q)
              for objective in ("supervised", "unsupervised") for rate in ("l1", "hyperprior")
              for lam, q in settings.points]
    head, tail = split(classifier, SPLIT_POINT)
    train_features, test_features = head_features(head, train), head_features(head, test)
    results = [run_point(tail, p, train_features, test_features, settings, progress) for p in points]
    print(format_table(results, baseline, IMAGE_SIZE))
    if search_trials:
        search(settings, tail, train_features, test_features, search_trials, progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot(results, baseline, out_dir / "demo_accuracy_vs_bpp.png")
    print(f"wrote {out_dir / 'demo_accuracy_vs_bpp.png'}; {time.perf_counter() - started:.0f} s")
    return results


def _fmt(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(results: Sequence[PointResult], baseline: float, size: int) -> str:
    header = (f"digits {size}x{size}, split at {SPLIT_POINT}; classifier accuracy {baseline:.4f}\n"
              f"{'objective':<13}{'rate':<12}{'lambda':>8}{'Q':>6}{'accuracy':>10}{'true bpp':>10}"
              f"{'1 message':>11}{'prior est':>11}{'train est':>11}{'hyper true':>12}")
    rows = [f"{r.point.objective:<13}{r.point.rate:<12}{r.point.lam:>8.3g}{r.point.q_step:>6.2g}"
            f"{_fmt(r.coded_accuracy, '.4f'):>10}{_fmt(r.true_bpp, '.4f'):>10}{_fmt(r.one_message_bpp, '.4f'):>11}"
            f"{_fmt(r.prior_bpp, '.4f'):>11}"
            f"{_fmt(r.estimator_bpp, '.4f'):>11}{_fmt(r.hyper_true_bpp, '.4f'):>12}" for r in results]
    legend = ("accuracy: test set decoded from the bitstreams; true bpp: their bytes (one message per image, "
              "header included) / pixels;\n1 message: the whole test set coded as one message; prior est: the coding FactorizedPrior's -log2 likelihood; train est: "
              "the hyperprior's estimate (L1 has none);\nhyper true: coded with the hyperprior and its side "
              "information instead")
    return "\n".join([header] + rows + [legend])


def plot(results: Sequence[PointResult], baseline: float, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for label in sorted({r.point.label for r in results}):
        chosen = sorted((r for r in results if r.point.label == label), key=_bpp_of)
        axes.plot([_bpp_of(r) for r in chosen], [_accuracy_of(r) for r in chosen], marker="o", label=label)
    axes.axhline(baseline, color="gray", linestyle="--", label="original network")
    axes.set_xlabel("true bpp (one message per image)" if all(r.true_bpp is not None for r in results)
                    else "estimated bpp")
    axes.set_ylabel("test accuracy")
    axes.set_title(f"digits, bottleneck at {SPLIT_POINT}")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _accuracy_of(result: PointResult) -> float:
    return result.coded_accuracy if result.coded_accuracy is not None else result.accuracy


def _bpp_of(result: PointResult) -> float:
    for value in (result.true_bpp, result.prior_bpp, result.estimator_bpp):
        if value is not None:
            return value
    return math.nan


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="featcodec demo", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (one epoch, one point)")
    parser.add_argument("--cache-dir", type=pathlib.Path, default=None, help="where the classifier is cached")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("."), help="where the PNG goes")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--search", type=int, default=0, metavar="N",
                        help="also run a random search of N trials over (C_r, S, lambda, Q)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = DemoSettings.quick() if args.quick else DemoSettings()
    run(settings, args.cache_dir or default_cache_dir(), args.out, progress=not args.no_progress,
        search_trials=args.search)
    return 0
