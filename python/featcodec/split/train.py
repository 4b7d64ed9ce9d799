"""Training a bottleneck unit with the pretrained network frozen.

The loss is ``L = L_rate + lambda * L_task + aux``:

* ``L_rate`` is the rate term's value per input pixel (bits per pixel for a
  neural estimator, the L1 proxy per pixel otherwise), so that lambda does
  not depend on the batch or image size;
* ``L_task`` is cross-entropy against labels (``objective="supervised"``;
  per pixel with ``ignore_index`` for segmentation) or, without labels
  (``"unsupervised"``), the MSE or MAE between the split network's and the
  original network's last layer (the logits);
* ``aux`` is the entropy model's auxiliary loss (its tail quantiles), as is.

Runs are reproducible: epoch ``e`` reseeds torch's RNG and the loader's
generator from ``(seed, e)``, so stopping after any epoch and resuming from
the checkpoint gives the same parameters as an uninterrupted run.  Give the
loader its own generator (``DataLoader(..., shuffle=True,
generator=torch.Generator())``) for a reproducible shuffle.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .model import SplitModel

if TYPE_CHECKING:
    from .distributed import Distributed

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (defaults: Ahuja et al.'s (CVPR 2023) classification setup)."""

    objective: str = "supervised"      # "supervised" (labels) or "unsupervised" (distillation)
    distill_loss: str = "mse"          # "mse" or "mae", for the unsupervised objective
    lam: float = 1.0                   # lambda: weight of the task loss
    epochs: int = 30
    optimizer: str = "sgd"             # "sgd" or "adam"
    lr: float = 0.5
    momentum: float = 0.9              # SGD momentum: the papers give only the lr; 0.9 is our choice
    weight_decay: float = 0.0
    step_size: Optional[int] = 15      # StepLR period in epochs; None: constant lr
    gamma: float = 0.1
    ignore_index: int = 255            # segmentation labels to ignore
    seed: int = 0
    progress: bool = True              # tqdm bars

    def __post_init__(self) -> None:
        if self.objective not in ("supervised", "unsupervised"):
            raise ValueError(f"objective must be 'supervised' or 'unsupervised', got {self.objective!r}")
        if self.distill_loss not in ("mse", "mae"):
            raise ValueError(f"distill_loss must be 'mse' or 'mae', got {self.distill_loss!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")

    @classmethod
    def classification(cls, **overrides: Any) -> "TrainConfig":
        """Ahuja et al.'s (CVPR 2023) classification defaults: SGD lr 0.5, lr x 0.1 every 15 epochs."""
        return cls(**{**dict(optimizer="sgd", lr=0.5, step_size=15, gamma=0.1), **overrides})

    @classmethod
    def segmentation(cls, **overrides: Any) -> "TrainConfig":
        """Ahuja et al.'s (CVPR 2023) segmentation defaults: Adam lr 1e-3, constant."""
        return cls(**{**dict(optimizer="adam", lr=1e-3, step_size=None), **overrides})


def logits_of(output: Any) -> torch.Tensor:
    """The last layer's output: a tensor as is, DeepLab's dict by its ``"out"``."""
    return output["out"] if isinstance(output, dict) else output


def task_loss(config: TrainConfig, output: Any, target: Optional[torch.Tensor], reference: Any) -> torch.Tensor:
    """Cross-entropy against ``target`` or distillation against ``reference``."""
    logits = logits_of(output)
    if config.objective == "supervised":
        if target is None:
            raise ValueError("the supervised objective needs labels")
        return F.cross_entropy(logits, target, ignore_index=config.ignore_index)
    teacher = logits_of(reference)
    return F.mse_loss(logits, teacher) if config.distill_loss == "mse" else F.l1_loss(logits, teacher)


def split_batch(batch: Any) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(images, labels) from a loader's batch; labels None for image-only batches."""
    if isinstance(batch, (list, tuple)):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    return batch, None


def pixels_of(images: torch.Tensor, pixels_per_item: Optional[int] = None) -> int:
    """N x H x W: the denominator of bits per pixel for a batch.

    ``pixels_per_item`` overrides H x W when the batch is not the input
    images (e.g. stored head features).
    """
    per_item = pixels_per_item if pixels_per_item is not None else images.shape[-2] * images.shape[-1]
    return images.shape[0] * per_item


@dataclass
class EpochStats:
    epoch: int
    loss: float
    rate_per_pixel: float
    task: float


class Trainer:
    """Trains ``model``'s unit and rate term; checkpoints after every epoch when given a path.

    ``Trainer(model, config, checkpoint="run.pt")`` resumes from ``run.pt``
    if it exists; ``fit(loader)`` trains up to ``config.epochs`` epochs.
    ``pixels_per_item``: the input's H x W when the loader yields something
    else than input images (see :func:`pixels_of`).

    ``distributed`` (from :func:`featcodec.split.distributed.init_from_env`)
    with several processes: the forward runs through DistributedDataParallel,
    the unit's batch norms normalize over the global batch, and only rank 0
    writes the checkpoint (every rank resumes from it).  Its loader must
    give each rank its share of the global batch (a ``DistributedSampler``,
    whose epoch is set here).
    """

    def __init__(self, model: SplitModel, config: TrainConfig, checkpoint: Optional[PathLike] = None,
                 device: Union[str, torch.device] = "cpu", pixels_per_item: Optional[int] = None,
                 distributed: Optional["Distributed"] = None) -> None:
        self.model, self.config, self.device = model.to(device), config, torch.device(device)
        self.pixels_per_item = pixels_per_item
        self.distributed = distributed
        self.forward_model: nn.Module = model
        if distributed is not None and distributed.active:
            from .distributed import global_batch_norm

            global_batch_norm(model.unit)
            global_batch_norm(model.rate)
            # Running statistics are the same on every rank (global batch norm), so no buffer broadcast.
            self.forward_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False)
        self.checkpoint = pathlib.Path(checkpoint) if checkpoint is not None else None
        self.optimizer = self._make_optimizer()
        self.scheduler = (torch.optim.lr_scheduler.StepLR(self.optimizer, config.step_size, config.gamma)
                          if config.step_size else None)
        self.epoch = 0  # epochs completed
        if self.checkpoint is not None and self.checkpoint.exists():
            self.load(self.checkpoint)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.trainable_parameters() if p.requires_grad]
        if self.config.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.config.lr, momentum=self.config.momentum,
                                   weight_decay=self.config.weight_decay)
        return torch.optim.Adam(params, lr=self.config.lr, weight_decay=self.config.weight_decay)

    def state_dict(self) -> Dict[str, Any]:
        return {
            "unit": self.model.unit.state_dict(),
            "rate": self.model.rate.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "epoch": self.epoch,
            "config": dataclasses.asdict(self.config),
            "q_step": self.model.q_step,
        }

    def save(self, path: PathLike) -> None:
        """Writes the checkpoint atomically (a crash never leaves half a file); rank 0 only."""
        if self.distributed is not None and not self.distributed.is_main:
            return
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        torch.save(self.state_dict(), partial)
        os.replace(partial, path)

    def load(self, path: PathLike) -> None:
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.model.unit.load_state_dict(state["unit"])
        self.model.rate.load_state_dict(state["rate"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])

    def fit(self, loader: Iterable, epochs: Optional[int] = None) -> List[EpochStats]:
        """Trains until ``epochs`` (default ``config.epochs``) epochs are done in all."""
        target_epochs = self.config.epochs if epochs is None else epochs
        history = []
        while self.epoch < target_epochs:
            self._reseed(loader)
            history.append(self.train_epoch(loader))
            if self.scheduler is not None:
                self.scheduler.step()
            self.epoch += 1
            if self.checkpoint is not None:
                self.save(self.checkpoint)
        return history

    def _reseed(self, loader: Iterable) -> None:
        seed = self.config.seed * 1_000_003 + self.epoch
        torch.manual_seed(seed)
        generator = getattr(loader, "generator", None)
        if generator is not None:
            generator.manual_seed(seed)
        set_epoch = getattr(getattr(loader, "sampler", None), "set_epoch", None)
        if set_epoch is not None:
            set_epoch(seed)

    def train_epoch(self, loader: Iterable) -> EpochStats:
        from tqdm.auto import tqdm

        self.model.train()
        unsupervised = self.config.objective == "unsupervised"
        totals, batches = [0.0, 0.0, 0.0], 0
        bar = tqdm(loader, desc=f"epoch {self.epoch + 1}/{self.config.epochs}", leave=False,
                   disable=not self.config.progress)
        for batch in bar:
            images, target = split_batch(batch)
            images = images.to(self.device)
            target = target.to(self.device) if target is not None else None
            out = self.forward_model(images, with_reference=unsupervised)
            rate = out.rate / pixels_of(images, self.pixels_per_item)
            task = task_loss(self.config, out.output, target, out.reference)
            loss = rate + self.config.lam * task + self.model.rate.aux_loss()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            for i, value in enumerate((loss, rate, task)):
                totals[i] += float(value.detach())
            batches += 1
            bar.set_postfix(loss=f"{totals[0] / batches:.4g}", rate=f"{totals[1] / batches:.4g}")
        batches = max(batches, 1)
        return EpochStats(self.epoch + 1, totals[0] / batches, totals[1] / batches, totals[2] / batches)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, *, num_classes: Optional[int] = None, ignore_index: int = 255,
             progress: bool = False, device: Union[str, torch.device] = "cpu",
             pixels_per_item: Optional[int] = None) -> Dict[str, float]:
    """Task metric and rate of ``model`` (a SplitModel or a plain network) in eval mode.

    Classification (labels of shape (N,)): ``accuracy``.  Segmentation
    (labels (N, H, W)): ``miou`` over ``num_classes`` (classes absent from
    both prediction and labels are left out) and ``pixel_accuracy``.
    A SplitModel adds ``rate_per_pixel`` (estimated bpp for a neural rate term).
    """
    from tqdm.auto import tqdm

    model.eval()
    correct = counted = 0
    rate_sum, pixels = 0.0, 0
    confusion: Optional[torch.Tensor] = None
    for batch in tqdm(loader, desc="evaluate", leave=False, disable=not progress):
        images, labels = split_batch(batch)
        if labels is None:
            raise ValueError("evaluation needs labelled batches (images, targets)")
        images, target = images.to(device), labels.to(device)
        out = model(images)
        if isinstance(out, torch.Tensor) or isinstance(out, dict):
            logits = logits_of(out)
        else:
            logits = logits_of(out.output)
            rate_sum += float(out.rate)
            pixels += pixels_of(images, pixels_per_item)
        prediction = logits.argmax(1)
        valid = target != ignore_index
        correct += int((prediction[valid] == target[valid]).sum())
        counted += int(valid.sum())
        if target.dim() == 3:
            classes = num_classes or logits.shape[1]
            update = torch.bincount(target[valid] * classes + prediction[valid], minlength=classes * classes)
            update = update.reshape(classes, classes).cpu()
            confusion = update if confusion is None else confusion + update
    result = {"accuracy" if confusion is None else "pixel_accuracy": correct / max(counted, 1)}
    if confusion is not None:
        result["miou"] = mean_iou(confusion)
    if pixels:
        result["rate_per_pixel"] = rate_sum / pixels
    return result


def mean_iou(confusion: torch.Tensor) -> float:
    """Mean intersection-over-union from a (labels x predictions) confusion matrix."""
    intersection = confusion.diag().double()
    union = confusion.sum(0).double() + confusion.sum(1).double() - intersection
    present = union > 0
    return float((intersection[present] / union[present]).mean()) if bool(present.any()) else 0.0
