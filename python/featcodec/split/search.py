"""The search space over (C_r, S, lambda, Q), the papers' ranges, and the Pareto frontier of (metric, bpp).

The ranges of :data:`PRESETS` are those of Ahuja et al., CVPR 2023 (table I
and its supplementary), per task and objective.  Their lambda exponents
assume the paper's loss scaling (a rate term in bits); with ``L_rate`` in
bits per pixel (:mod:`featcodec.split.train`) the useful range moves, so a
config may override ``log10_lambda``.  The search itself runs on Optuna
(:mod:`featcodec.split.runner`): :meth:`SearchSpace.suggest` draws one point
from a trial.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class SearchPoint:
    """One bottleneck configuration: C_r channels, stride S, lambda, quantizer step Q."""

    channels: int
    stride: int
    lam: float
    q_step: float


@dataclass(frozen=True)
class SearchSpace:
    """Where random search draws from: C_r and S from sets, Q uniform, lambda = 10^U(range)."""

    channels: Tuple[int, ...]
    strides: Tuple[int, ...] = (2, 4, 6)
    q_step: Tuple[float, float] = (0.5, 10.0)
    log10_lambda: Tuple[float, float] = (-9.0, -6.0)

    def __post_init__(self) -> None:
        if not self.channels or not self.strides:
            raise ValueError("a search space needs at least one C_r and one S")
        if min(self.channels) < 1 or min(self.strides) < 1:
            raise ValueError(f"C_r and S must be positive, got {self.channels}, {self.strides}")
        for name in ("q_step", "log10_lambda"):
            low, high = getattr(self, name)
            if not low <= high:
                raise ValueError(f"{name} range must be (low, high) with low <= high, got {(low, high)}")
        if self.q_step[0] <= 0:
            raise ValueError(f"Q must be positive, got the range {self.q_step}")

    def suggest(self, trial: "optuna.trial.BaseTrial") -> SearchPoint:
        """One point drawn by an Optuna trial (lambda log-uniform, Q uniform, C_r and S categorical)."""
        return SearchPoint(
            channels=int(trial.suggest_categorical("channels", list(self.channels))),
            stride=int(trial.suggest_categorical("stride", list(self.strides))),
            lam=10.0 ** trial.suggest_float("log10_lambda", *self.log10_lambda),
            q_step=trial.suggest_float("q_step", *self.q_step),
        )

    def sample(self, rng: random.Random) -> SearchPoint:
        return SearchPoint(
            channels=rng.choice(self.channels),
            stride=rng.choice(self.strides),
            lam=10.0 ** rng.uniform(*self.log10_lambda),
            q_step=rng.uniform(*self.q_step),
        )


CLASSIFICATION = SearchSpace(channels=(32, 64, 96, 128), q_step=(0.5, 10.0), log10_lambda=(-9.0, -6.0))
"""Ahuja et al., CVPR 2023: the classification space (supervised lambda range; distillation: (-11, -7))."""
SEGMENTATION = SearchSpace(channels=(2, 4, 8, 16, 32, 48, 64), q_step=(0.5, 6.0), log10_lambda=(-4.0, -1.0))
"""Ahuja et al., CVPR 2023: the segmentation space (supervised lambda range; distillation: (-16, -6))."""

PRESETS: Dict[str, SearchSpace] = {
    "cvpr2023-classification-supervised": CLASSIFICATION,
    "cvpr2023-classification-distillation": dataclasses.replace(CLASSIFICATION, log10_lambda=(-11.0, -7.0)),
    "cvpr2023-segmentation-supervised": SEGMENTATION,
    "cvpr2023-segmentation-distillation": dataclasses.replace(SEGMENTATION, log10_lambda=(-16.0, -6.0)),
    # Digits at 32x32 with L_rate in bits per pixel (featcodec's scaling): the useful range is near 1.
    "digits": SearchSpace(channels=(4, 8, 16), strides=(1, 2), q_step=(0.5, 2.0), log10_lambda=(-2.0, 1.0)),
}
"""Search spaces by name, for configs (``[search] preset = ...``)."""


@dataclass
class SearchResult:
    point: SearchPoint
    metric: float          # higher is better (accuracy, mIoU)
    bpp: float             # lower is better
    extra: Dict[str, float] = field(default_factory=dict)


def pareto_frontier(points: Sequence[Tuple[float, float]]) -> List[int]:
    """Indexes of the (metric, bpp) points no other point dominates, by increasing bpp.

    A point dominates another when its metric is >= and its bpp <=, one of
    them strictly.  Of equal points the first is kept.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0], i))
    frontier: List[int] = []
    best_metric: Optional[float] = None
    for i in order:
        metric, bpp = points[i]
        if best_metric is None or metric > best_metric:
            frontier.append(i)
            best_metric = metric
    return frontier


def frontier_of(results: Sequence[SearchResult]) -> List[SearchResult]:
    """The Pareto-optimal results, by increasing bpp."""
    return [results[i] for i in pareto_frontier([(r.metric, r.bpp) for r in results])]
