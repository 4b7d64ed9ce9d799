"""``featcodec demo``: the comparisons of Ahuja et al., CVPR 2023 on scikit-learn's digits, through the runner.

Every number comes from :mod:`featcodec.split.runner`, as ``featcodec
search`` and ``featcodec train`` compute it: units trained with the network
frozen, a FactorizedPrior fitted to each unit's code, the validation images
coded one message per image, and the true bpp counted from those messages'
bytes (header, payload, checksum) over the input pixels.

1. The 8x8 digits, upscaled to 32x32 and 3 channels, split 80/20; a small
   CNN classifier, trained once and cached; the cut at ``features.block2``
   (64 x 8 x 8).
2. Three random searches of equal budget over (C_r, S, lambda, Q) (the same
   draws for each): supervised with the neural rate estimator (the
   hyperprior), supervised with the L1 proxy (Datta et al., ICPR 2022), and
   distillation (MAE to the network's logits, no labels) with the neural
   estimator.  Each keeps its study's Pareto frontier.
3. The four bottleneck topologies trained at one point (C_r, S, lambda, Q).
4. JPEG, WebP and AVIF at a sweep of qualities, the network unchanged.
5. A PNG of the frontiers, the baselines and the estimated against the true
   bpp, and a Markdown summary with the frontiers' key points.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from .cut import feature_of, split

IMAGE_SIZE = 32
SPLIT_POINT = "features.block2"
CLASSIFIER_VERSION = "digits-cnn-v1"


# --- the data and the network (also the runner's "digits") -----------------------------------------------------


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


# --- what the demo runs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """One search of the demo: its name, objective, task loss and rate term."""

    name: str
    objective: str   # "supervised" or "distillation"
    loss: str        # "cross_entropy", or "mae" / "mse" for distillation
    rate: str        # "neural" or "l1"
    label: str


SEARCHES = (
    Comparison("neural", "supervised", "cross_entropy", "neural", "supervised, neural estimator"),
    Comparison("l1", "supervised", "cross_entropy", "l1", "supervised, L1 proxy"),
    Comparison("distillation", "distillation", "mae", "neural", "distillation (MAE), neural estimator"),
)
TOPOLOGIES = ("conv", "dws", "conv2", "dws2")


@dataclass
class DemoSettings:
    """What one demo run trains; every search gets the same budget (trials x epochs)."""

    trials: int = 8                   # per search
    epochs: int = 6                   # per unit
    prior_epochs: int = 3
    classifier_epochs: int = 12
    batch_size: int = 64
    lr: float = 3e-3
    limit_train: int = 0              # 0: all 1437 training images
    limit_val: int = 0                # 0: all 360 test images
    topology_point: Tuple[int, int, float, float] = (8, 2, 1.0, 1.0)   # (C_r, S, lambda, Q)
    codecs: Tuple[str, ...] = ("jpeg", "webp", "avif")
    qualities: Tuple[int, ...] = (1, 5, 10, 20, 40, 70, 95)
    seed: int = 0

    @classmethod
    def quick(cls) -> "DemoSettings":
        """A smoke run: 2 trials per search, one epoch, a few hundred images."""
        return cls(trials=2, epochs=1, prior_epochs=1, classifier_epochs=2, limit_train=192, limit_val=48,
                   codecs=("jpeg",), qualities=(10, 60))

    @classmethod
    def full(cls) -> "DemoSettings":
        """Longer searches and training (about four times the default's time)."""
        return cls(trials=20, epochs=10, prior_epochs=4)


def demo_config(settings: DemoSettings, comparison: Comparison, unit: str = "dws") -> Any:
    """The run config (:class:`featcodec.split.config.RunConfig`) of one comparison."""
    from .config import parse_config

    channels, stride, lam, q_step = settings.topology_point
    return parse_config({
        "network": {"name": "digits", "split": SPLIT_POINT, "kwargs": {"epochs": settings.classifier_epochs}},
        "data": {"kind": "digits", "limit_train": settings.limit_train, "limit_val": settings.limit_val},
        "train": {"objective": comparison.objective, "loss": comparison.loss, "rate": comparison.rate, "unit": unit,
                  "channels": channels, "stride": stride, "lam": lam, "q_step": q_step, "optimizer": "adam",
                  "lr": settings.lr, "step_size": max(1, (2 * settings.epochs) // 3), "gamma": 0.2,
                  "epochs": settings.epochs, "batch_size": settings.batch_size,
                  "prior_epochs": settings.prior_epochs, "device": "cpu", "seed": settings.seed},
        "search": {"preset": "digits", "trials": settings.trials, "sampler": "random", "seed": settings.seed},
        "baselines": {"codecs": list(settings.codecs), "qualities": list(settings.qualities)},
    })


def build_run(settings: DemoSettings, cache_dir: pathlib.Path, progress: bool) -> Any:
    """The runner's :class:`~featcodec.split.runner.Run` on the digits, the classifier from ``cache_dir``."""
    from .distributed import Distributed
    from .runner import Run, build_data

    config = demo_config(settings, SEARCHES[0])
    data = build_data(config)
    network = trained_classifier(digits_datasets()[0], cache_dir, settings.classifier_epochs, progress)
    head, tail = split(network, SPLIT_POINT, single_tensor=True)
    with torch.no_grad():
        shape = tuple(feature_of(head(data.val[0][0].unsqueeze(0))).shape[1:])
    return Run(config, Distributed(), network, head, tail, data, shape, progress)  # type: ignore[arg-type]


@dataclass
class DemoResult:
    reference: float                                  # the network's accuracy on the same images
    val_images: int                                   # the test images coded, one message each
    trials: Dict[str, List[Dict[str, Any]]]           # per search: every trial's row
    frontiers: Dict[str, List[Dict[str, Any]]]        # per search: its study's Pareto frontier, by bpp
    topologies: List[Dict[str, Any]]                  # one row per unit kind, at settings.topology_point
    baselines: List[Dict[str, Any]]                   # image codecs
    seconds: float


def run(settings: DemoSettings, cache_dir: pathlib.Path, out_dir: pathlib.Path, progress: bool = True) -> DemoResult:
    """Runs the searches, the topologies and the baselines into ``out_dir``; writes the PNG and summary."""
    from . import runner
    from .train import evaluate

    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    base = build_run(settings, cache_dir, progress)
    reference = evaluate(base.network, base.val_loader())["accuracy"]
    trials, frontiers = {}, {}
    for comparison in SEARCHES:
        config = demo_config(settings, comparison)
        study = runner.search(config, out_dir / comparison.name, storage="memory", baselines=False,
                              run=dataclasses.replace(base, config=config))
        trials[comparison.name] = runner.trial_rows(study, config.train.method)
        frontiers[comparison.name] = runner.frontier_rows(study, config.train.method)
        _log(progress, f"{comparison.label}: {len(trials[comparison.name])} trials, "
                       f"{time.perf_counter() - started:.0f} s")
    topologies = []
    for unit in TOPOLOGIES:
        config = demo_config(settings, SEARCHES[0], unit)
        folder = out_dir / "topologies" / unit
        if (folder / "unit" / "train.pt").exists():
            (folder / "unit" / "train.pt").unlink()  # a previous demo's checkpoint: train afresh
        row = runner.train(config, folder, run=dataclasses.replace(base, config=config))
        assert row is not None  # one process: rank 0
        topologies.append({**row, "unit": unit})
    _log(progress, f"topologies: {time.perf_counter() - started:.0f} s")
    cached = out_dir / "baselines.csv"
    if cached.exists():
        cached.unlink()  # the sweep of this run's settings, not a previous one's
    baselines = runner.baseline_rows(base, out_dir)
    result = DemoResult(reference, len(base.data.val), trials, frontiers, topologies, baselines,
                        time.perf_counter() - started)
    plot(result, settings, out_dir / "demo.png")
    summary = format_summary(result, settings)
    (out_dir / "summary.md").write_text(summary + "\n", encoding="utf-8")
    (out_dir / "demo.json").write_text(json.dumps(dataclasses.asdict(result), indent=1, default=str))
    print(summary)
    print(f"\nwrote {out_dir / 'demo.png'} and {out_dir / 'summary.md'}; {result.seconds:.0f} s")
    return result


def _log(progress: bool, message: str) -> None:
    if progress:
        print(message, flush=True)


# --- the summary -------------------------------------------------------------------------------------------------


def _f(row: Dict[str, Any], key: str) -> Optional[float]:
    value = row.get(key)
    return None if value in (None, "") else float(value)


def cheapest_within(rows: Sequence[Dict[str, Any]], reference: float, drop: float) -> Optional[Dict[str, Any]]:
    """The lowest-bpp row whose metric is at least ``reference - drop``; None if none is."""
    good = [r for r in rows if float(r["metric"]) >= reference - drop]
    return min(good, key=lambda r: float(r["true_bpp"])) if good else None


def fixed_cost_bytes(rows: Sequence[Dict[str, Any]]) -> List[float]:
    """Per row, the bytes per message beyond the coding prior's information content."""
    pixels = IMAGE_SIZE * IMAGE_SIZE
    return [(float(r["true_bpp"]) - float(r["prior_bpp"])) * pixels / 8 for r in rows
            if _f(r, "prior_bpp") is not None]


def _cell(row: Optional[Dict[str, Any]]) -> str:
    return "none" if row is None else f"{float(row['true_bpp']):.4f} bpp ({float(row['metric']):.4f})"


def format_summary(result: DemoResult, settings: DemoSettings) -> str:
    """Markdown: the frontiers, their key points, the topologies, the baselines and the fixed cost."""
    ref = result.reference
    lines = [f"Digits {IMAGE_SIZE}x{IMAGE_SIZE}, cut at `{SPLIT_POINT}`; network accuracy {ref:.4f} on "
             f"{result.val_images} test images. Searches: {settings.trials} trials x {settings.epochs} epochs each, "
             f"the same (C_r, S, lambda, Q) draws; true bpp = bytes of one message per image x 8 / "
             f"{IMAGE_SIZE * IMAGE_SIZE} pixels.", ""]
    labels = {c.name: c.label for c in SEARCHES}
    lines += ["| search | frontier points | peak accuracy | lowest bpp within 0.01 | within 0.03 | within 0.10 |",
              "|---|---|---|---|---|---|"]
    groups = [(labels[name], rows) for name, rows in result.frontiers.items()]
    for codec in sorted({r["codec"] for r in result.baselines}):
        groups.append((codec.upper(), [r for r in result.baselines if r["codec"] == codec]))
    for label, rows in groups:
        peak = max(rows, key=lambda r: (float(r["metric"]), -float(r["true_bpp"]))) if rows else None
        lines.append(f"| {label} | {len(rows)} | {_cell(peak)} | " + " | ".join(
            _cell(cheapest_within(rows, ref, d)) for d in (0.01, 0.03, 0.10)) + " |")
    lines += ["", "Frontiers (each study's Pareto-optimal trials):", ""]
    lines += ["| search | trial | C_r | S | lambda | Q | accuracy | true bpp | prior bpp | estimator bpp |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name, rows in result.frontiers.items():
        for r in rows:
            est = _f(r, "estimated_bpp")
            lines.append(f"| {labels[name]} | {r['trial']} | {r['channels']} | {r['stride']} | "
                         f"{float(r['lam']):.3g} | {float(r['q_step']):.2f} | {float(r['metric']):.4f} | "
                         f"{float(r['true_bpp']):.4f} | {float(r['prior_bpp']):.4f} | "
                         f"{'-' if est is None else format(est, '.4f')} |")
    channels, stride, lam, q_step = settings.topology_point
    lines += ["", f"Topologies at C_r={channels}, S={stride}, lambda={lam:g}, Q={q_step:g} "
                  "(supervised, neural estimator):", "",
              "| unit | parameters | accuracy | true bpp |", "|---|---|---|---|"]
    for r in result.topologies:
        lines.append(f"| {r['unit']} | {int(float(r['parameters']))} | {float(r['metric']):.4f} | "
                     f"{float(r['true_bpp']):.4f} |")
    every = [r for rows in result.trials.values() for r in rows] + list(result.topologies)
    cost = fixed_cost_bytes(every)
    neural = [r for r in every if _f(r, "estimated_bpp") is not None]
    ratios = [float(r["estimated_bpp"]) / float(r["true_bpp"]) for r in neural]
    lines += ["", "Estimated against true bpp, over all trained units:", ""]
    if cost:
        lines.append(f"- true minus the coding prior's estimate: {min(cost):.1f} to {max(cost):.1f} bytes per "
                     f"message (mean {sum(cost) / len(cost):.1f}), i.e. "
                     f"{min(cost) * 8 / IMAGE_SIZE ** 2:.4f} to {max(cost) * 8 / IMAGE_SIZE ** 2:.4f} bpp;")
    if ratios:
        lines.append(f"- the neural estimator's training estimate over the true bpp: {min(ratios):.2f} to "
                     f"{max(ratios):.2f} (it includes the hyperprior's side information, which the coded "
                     "messages do not carry).")
    return "\n".join(lines)


# --- the plot ----------------------------------------------------------------------------------------------------


def plot(result: DemoResult, settings: DemoSettings, path: pathlib.Path) -> None:
    """Four panels: rate terms, objectives, topologies, estimated against true bpp."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    labels = {c.name: c.label for c in SEARCHES}
    for ax, names, title in ((axes[0, 0], ("neural", "l1"), "neural rate estimator vs L1 proxy"),
                             (axes[0, 1], ("neural", "distillation"), "supervised vs distillation")):
        for index, name in enumerate(names):
            color = f"C{index}"
            rows = result.trials[name]
            ax.scatter([float(r["true_bpp"]) for r in rows], [float(r["metric"]) for r in rows], s=12,
                       color=color, alpha=0.35)
            front = result.frontiers[name]
            ax.plot([float(r["true_bpp"]) for r in front], [float(r["metric"]) for r in front], "o-", color=color,
                    label=f"{labels[name]} (frontier)")
        _baselines(ax, result)
        ax.set_title(title)
    ax = axes[1, 0]
    for index, r in enumerate(result.topologies):
        ax.scatter([float(r["true_bpp"])], [float(r["metric"])], s=40, color=f"C{index}",
                   label=f"{r['unit']}: {int(float(r['parameters']))} parameters")
    ax.axhline(result.reference, color="k", linestyle=":", label="network")
    channels, stride, lam, q_step = settings.topology_point
    ax.set_title(f"topologies at C_r={channels}, S={stride}, lambda={lam:g}, Q={q_step:g}")
    ax.set_xlabel("true bpp")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=7)
    ax = axes[1, 1]
    every = [r for rows in result.trials.values() for r in rows] + list(result.topologies)
    true = [float(r["true_bpp"]) for r in every]
    ax.scatter([float(r["prior_bpp"]) for r in every], true, s=14, label="coding prior's estimate")
    neural = [r for r in every if _f(r, "estimated_bpp") is not None]
    ax.scatter([float(r["estimated_bpp"]) for r in neural], [float(r["true_bpp"]) for r in neural], s=14,
               marker="x", label="neural estimator (training)")
    top = max(true + [float(r["estimated_bpp"]) for r in neural]) * 1.05
    ax.plot([0, top], [0, top], color="0.5", linestyle="--", label="true = estimate")
    ax.set_xlabel("estimated bpp")
    ax.set_ylabel("true bpp (one message per image)")
    ax.set_title("estimated vs true bpp: the gap is the per-message cost")
    ax.legend(fontsize=7)
    figure.suptitle(f"digits {IMAGE_SIZE}x{IMAGE_SIZE}, bottleneck at {SPLIT_POINT}; Ahuja et al., CVPR 2023 "
                    "comparisons", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _baselines(ax: Any, result: DemoResult) -> None:
    for index, codec in enumerate(sorted({r["codec"] for r in result.baselines})):
        points = sorted((float(r["true_bpp"]), float(r["metric"])) for r in result.baselines
                        if r["codec"] == codec)
        ax.plot([p[0] for p in points], [p[1] for p in points], "s--", markersize=3, color=f"C{index + 3}",
                label=codec.upper())
    ax.axhline(result.reference, color="k", linestyle=":", label="network")
    ax.set_xscale("log")
    ax.set_xlabel("true bpp (one message or file per image)")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=7)


# --- the command -------------------------------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="featcodec demo", description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a smoke run (2 trials per search, one epoch, few images)")
    size.add_argument("--full", action="store_true", help="longer searches and training (about 4x the time)")
    parser.add_argument("--trials", type=int, default=None, help="trials per search (default: 8; --full: 20)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per unit (default: 6; --full: 10)")
    parser.add_argument("--cache-dir", type=pathlib.Path, default=None, help="where the classifier is cached")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("demo_out"),
                        help="run folder: demo.png, summary.md, the searches' folders")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = DemoSettings.quick() if args.quick else DemoSettings.full() if args.full else DemoSettings()
    if args.trials is not None:
        settings.trials = args.trials
    if args.epochs is not None:
        settings.epochs = args.epochs
    run(settings, args.cache_dir or default_cache_dir(), args.out, progress=not args.no_progress)
    return 0
