"""Training loops for models whose tail is tuned (Matsubara et al., WACV 2022), with the papers' presets.

:class:`StageConfig` holds one stage's optimizer, schedule and loss weights;
:class:`StageTrainer` runs it on any parameters of a model with a loss
function of the batch, checkpointing after every epoch (atomically) and
resuming from the checkpoint, with tqdm bars, like
:class:`featcodec.split.train.Trainer` (which trains a bottleneck unit with
the network frozen).  The recipes built on them are in
:mod:`featcodec.split.recipes`.

Schedules: ``"step"`` multiplies the learning rate by ``gamma`` after each
epoch in ``milestones`` (PyTorch's MultiStepLR); ``"poly"`` is DeepLab's
``lr0 * (1 - iteration / iterations) ** 0.9``, stepped every batch;
``"cosine"`` decays to zero over the epochs (Loshchilov and Hutter), per epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

PathLike = Union[str, "os.PathLike[str]"]
LossFn = Callable[[Any], Tuple[torch.Tensor, Dict[str, float]]]

SCHEDULES = ("step", "poly", "cosine", "constant")


@dataclass
class StageConfig:
    """One training stage.  Loss weights are read by the recipe that uses them.

    ``beta``: weight of the rate (bits per image) against the distortion or
    task loss; ``alpha``, ``temperature``: knowledge distillation (see
    :func:`featcodec.split.recipes.kd_loss`); ``distill_points``: the
    modules whose outputs a distillation stage matches; ``aux_lr_factor``
    and ``aux_weight``: DeepLab's auxiliary head (its learning rate factor and
    loss weight); ``batch_size`` is what the paper used, for whoever builds
    the loader.
    """

    epochs: int = 10
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "step"
    milestones: Tuple[int, ...] = ()
    gamma: float = 0.1
    batch_size: int = 64
    beta: float = 1.0
    alpha: float = 0.5
    temperature: float = 1.0
    distill_points: Tuple[str, ...] = ()
    train_encoder: bool = True
    aux_lr_factor: float = 1.0
    aux_weight: float = 0.5
    ignore_index: int = 255
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.epochs < 0 or self.lr <= 0 or self.batch_size < 1:
            raise ValueError(f"epochs >= 0, lr > 0 and batch_size >= 1 needed, got {self.epochs}, {self.lr}, "
                             f"{self.batch_size}")
        if not 0 <= self.alpha <= 1 or self.temperature <= 0:
            raise ValueError(f"alpha must be in [0, 1] and temperature > 0, got {self.alpha}, {self.temperature}")
        self.milestones = tuple(int(m) for m in self.milestones)
        self.distill_points = tuple(self.distill_points)

    def replace(self, **changes: Any) -> "StageConfig":
        return dataclasses.replace(self, **changes)


# --- the papers' settings -------------------------------------------------------------------------
# Matsubara et al., WACV 2022, supplementary sections 4.2, 5.2 and 5.3.  Where
# the supplementary is silent the value is marked, with its source.

def student_stage1(task: str = "classification", beta: float = 1.28, **changes: Any) -> StageConfig:
    """Entropic student, stage 1: the decoder (and encoder) mimic the teacher's first residual stage.

    Classification: Adam 1e-3, 10 epochs, x0.1 after epochs 5 and 8, batch 64.
    Segmentation: the encoder is the one trained on ImageNet and stays fixed
    (``train_encoder=False``): the decoder trains 5 epochs, Adam 1e-3, 1e-4
    after epoch 3, batch 8.  ``beta`` weighs the bits against the summed
    squared error (sc2bench's configurations use 0.08 to 5.12).
    """
    presets = {
        "classification": StageConfig(epochs=10, optimizer="adam", lr=1e-3, milestones=(5, 8), batch_size=64),
        "segmentation": StageConfig(epochs=5, optimizer="adam", lr=1e-3, milestones=(3,), batch_size=8,
                                    train_encoder=False),
    }
    return _preset(presets, task).replace(beta=beta, **changes)


def student_stage2(task: str = "classification", **changes: Any) -> StageConfig:
    """Entropic student, stage 2: encoder and prior frozen, the decoder and all later layers tuned.

    Classification: L = alpha CE + (1 - alpha) tau^2 KL, alpha 0.5, tau 1;
    SGD 1e-3, momentum 0.9, weight decay 5e-4, x0.1 after epoch 5, batch 128;
    10 epochs (the supplementary gives no count; sc2bench's configuration).
    Segmentation: cross-entropy, SGD 2.5e-3 (the auxiliary head 2.5e-2),
    poly schedule, 5 epochs; momentum 0.9, weight decay 1e-4 and batch 8 are
    torchvision's segmentation reference (not in the supplementary).
    """
    presets = {
        "classification": StageConfig(epochs=10, optimizer="sgd", lr=1e-3, momentum=0.9, weight_decay=5e-4,
                                      milestones=(5,), batch_size=128, alpha=0.5, temperature=1.0),
        "segmentation": StageConfig(epochs=5, optimizer="sgd", lr=2.5e-3, momentum=0.9, weight_decay=1e-4,
                                    schedule="poly", batch_size=8, aux_lr_factor=10.0, alpha=1.0),
    }
    return _preset(presets, task).replace(**changes)


def cr_bq(task: str = "classification", **changes: Any) -> StageConfig:
    """Channel reduction + bottleneck quantization: generalized head-network distillation.

    Sum of squared errors to the teacher's last three residual stages
    (layer2, layer3, layer4); Adam 1e-3, 20 epochs; classification batch 32,
    x0.1 after epochs 5, 10, 15; segmentation batch 8, x0.1 after 5 and 15.
    """
    points = {"classification": ("layer2", "layer3", "layer4"),
              "segmentation": ("backbone.layer2", "backbone.layer3", "backbone.layer4")}
    presets = {
        "classification": StageConfig(epochs=20, optimizer="adam", lr=1e-3, milestones=(5, 10, 15), batch_size=32,
                                      distill_points=points["classification"]),
        "segmentation": StageConfig(epochs=20, optimizer="adam", lr=1e-3, milestones=(5, 15), batch_size=8,
                                    distill_points=points["segmentation"]),
    }
    return _preset(presets, task).replace(**changes)


def end_to_end(task: str = "classification", beta: float = 1e-4, **changes: Any) -> StageConfig:
    """End-to-end training of the student from scratch (Singh et al., ICIP 2020): CE + beta * bits.

    Classification: Adam 1e-3, cosine decay, weight decay 1e-4, 60 epochs,
    batch 256.  Segmentation (fine-tuning the classification model): SGD
    0.01, momentum 0.9, weight decay 1e-3, poly schedule, 30 epochs, batch 16.
    ``beta`` is the rate knob (per image bits against the mean CE; the
    supplementary gives no value).
    """
    presets = {
        "classification": StageConfig(epochs=60, optimizer="adam", lr=1e-3, weight_decay=1e-4, schedule="cosine",
                                      batch_size=256),
        "segmentation": StageConfig(epochs=30, optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=1e-3,
                                    schedule="poly", batch_size=16),
    }
    return _preset(presets, task).replace(beta=beta, **changes)


def input_codec(lam: float = 0.01, **changes: Any) -> StageConfig:
    """Neural input-image codecs: Adam 1e-4 (the supplementary: 900k steps, then 1e-5 for 100k).

    Loss: bits per pixel + ``lam`` * 255^2 * MSE (``beta`` carries lam here).
    """
    return StageConfig(epochs=10, optimizer="adam", lr=1e-4, milestones=(9,), batch_size=8).replace(
        beta=lam, **changes)


def _preset(presets: Dict[str, StageConfig], task: str) -> StageConfig:
    if task not in presets:
        raise ValueError(f"task must be one of {sorted(presets)}, got {task!r}")
    return presets[task]


# --- the loop -------------------------------------------------------------------------------------

@dataclass
class StageEpoch:
    epoch: int
    loss: float
    terms: Dict[str, float] = field(default_factory=dict)


class StageTrainer:
    """Trains ``parameters`` of ``model`` by ``loss_fn(batch) -> (loss, {name: value})``.

    ``modes(model)`` puts the modules in the modes the stage needs (called
    at the start of every epoch instead of ``model.train()``; default
    ``model.train()``).  ``checkpoint``: a path written after every epoch
    (model state, optimizer, scheduler, epoch) and resumed from when it
    exists.  Epoch e reseeds torch and the loader's generator from (seed, e),
    so a resumed run equals an uninterrupted one.
    ``param_groups``: optional ``[(parameters, lr_factor), ...]`` instead of
    ``parameters``.
    """

    def __init__(self, model: nn.Module, parameters: Iterable[nn.Parameter], loss_fn: LossFn, config: StageConfig,
                 *, checkpoint: Optional[PathLike] = None, modes: Optional[Callable[[nn.Module], object]] = None,
                 param_groups: Optional[Sequence[Tuple[Iterable[nn.Parameter], float]]] = None,
                 name: str = "stage") -> None:
        self.model, self.loss_fn, self.config, self.name = model, loss_fn, config, name
        self.modes = modes or (lambda m: m.train())
        groups = param_groups if param_groups is not None else [(parameters, 1.0)]
        self.groups = [{"params": [p for p in ps if p.requires_grad], "lr": config.lr * factor}
                       for ps, factor in groups]
        self.groups = [g for g in self.groups if g["params"]]
        if not self.groups:
            raise ValueError(f"{name}: no trainable parameters")
        self.optimizer = self._make_optimizer()
        self.scheduler: Optional[torch.optim.lr_scheduler.LRScheduler] = None
        self.iterations_per_epoch: Optional[int] = None
        self.epoch = 0
        self.checkpoint = pathlib.Path(checkpoint) if checkpoint is not None else None
        self._pending_state: Optional[Dict[str, Any]] = None
        if self.checkpoint is not None and self.checkpoint.exists():
            self.load(self.checkpoint)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        if c.optimizer == "sgd":
            return torch.optim.SGD(self.groups, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        return torch.optim.Adam(self.groups, lr=c.lr, weight_decay=c.weight_decay)

    def _make_scheduler(self, iterations_per_epoch: int) -> Optional[torch.optim.lr_scheduler.LRScheduler]:
        c = self.config
        if c.schedule == "step" and c.milestones:
            return torch.optim.lr_scheduler.MultiStepLR(self.optimizer, list(c.milestones), c.gamma)
        if c.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, max(c.epochs, 1))
        if c.schedule == "poly":
            total = max(c.epochs * iterations_per_epoch, 1)
            return torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, lambda step: max(0.0, 1.0 - min(step, total) / total) ** 0.9)
        return None

    # --- checkpoints ---------------------------------------------------------------

    def state_dict(self) -> Dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None, "epoch": self.epoch,
                "config": dataclasses.asdict(self.config), "name": self.name}

    def save(self, path: PathLike) -> None:
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        torch.save(self.state_dict(), partial)
        os.replace(partial, path)

    def load(self, path: PathLike) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("name") != self.name:
            raise ValueError(f"{path} is a checkpoint of {state.get('name')!r}, not of {self.name!r}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])
        self._pending_state = state["scheduler"]

    # --- training -------------------------------------------------------------------

    def fit(self, loader: Iterable, epochs: Optional[int] = None) -> List[StageEpoch]:
        """Trains until ``epochs`` (default ``config.epochs``) epochs are done in all."""
        target = self.config.epochs if epochs is None else epochs
        if self.scheduler is None:
            self.iterations_per_epoch = len(loader)  # type: ignore[arg-type]
            self.scheduler = self._make_scheduler(self.iterations_per_epoch)
            if self.scheduler is not None and self._pending_state is not None:
                self.scheduler.load_state_dict(self._pending_state)
        history = []
        while self.epoch < target:
            self._reseed(loader)
            history.append(self._train_epoch(loader))
            if self.scheduler is not None and self.config.schedule != "poly":
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

    def _train_epoch(self, loader: Iterable) -> StageEpoch:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]

        self.modes(self.model)
        totals: Dict[str, float] = {}
        batches = 0
        bar = tqdm(loader, desc=f"{self.name} epoch {self.epoch + 1}/{self.config.epochs}", leave=False,
                   disable=not self.config.progress)
        for batch in bar:
            loss, terms = self.loss_fn(batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.scheduler is not None and self.config.schedule == "poly":
                self.scheduler.step()
            for key, value in {"loss": float(loss.detach()), **terms}.items():
                totals[key] = totals.get(key, 0.0) + value
            batches += 1
            bar.set_postfix(loss=f"{totals['loss'] / batches:.4g}")
        batches = max(batches, 1)
        means = {k: v / batches for k, v in totals.items()}
        return StageEpoch(self.epoch + 1, means.pop("loss", 0.0), means)


@contextlib.contextmanager
def taps(model: nn.Module, names: Sequence[str]) -> Iterator[Dict[str, torch.Tensor]]:
    """Collects the outputs of ``model``'s submodules ``names`` during the block (forward hooks)."""
    outputs: Dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise ValueError(f"{type(model).__name__} has no submodules {missing}")
    handles = []
    for name in names:
        def hook(module: nn.Module, inputs: Any, output: Any, name: str = name) -> None:
            outputs[name] = output
        handles.append(modules[name].register_forward_hook(hook))
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


class _Enough(Exception):
    """Raised by a hook of :func:`outputs_until` once every wanted output is in."""


def outputs_until(model: nn.Module, names: Sequence[str], *inputs: Any) -> Dict[str, torch.Tensor]:
    """``model(*inputs)``, stopped as soon as the submodules ``names`` have all given their outputs.

    What a distillation to early layers needs without paying for the rest of
    the network: the outputs keep their autograd graphs.  ValueError if the
    pass ends without one of them.
    """
    wanted = set(names)
    with taps(model, list(wanted)) as outputs:
        def check(module: nn.Module, args: Any, output: Any) -> None:
            if wanted <= outputs.keys():
                raise _Enough
        handles = [m.register_forward_hook(check) for n, m in model.named_modules() if n in wanted]
        try:
            model(*inputs)
        except _Enough:
            pass
        finally:
            for handle in handles:
                handle.remove()
    missing = wanted - outputs.keys()
    if missing:
        raise ValueError(f"{type(model).__name__}'s forward did not run {sorted(missing)}")
    return dict(outputs)


__all__ = ["SCHEDULES", "outputs_until", "StageConfig", "StageEpoch", "StageTrainer", "cr_bq", "end_to_end", "input_codec",
           "student_stage1", "student_stage2", "taps"]
