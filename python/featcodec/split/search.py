"""Random search over (C_r, S, lambda, Q) and the Pareto frontier of (metric, bpp).

The ranges of :data:`CLASSIFICATION` and :data:`SEGMENTATION` are Ahuja et al.'s (CVPR 2023).
Their lambda exponents assume Ahuja et al.'s (CVPR 2023) loss scaling; with
``L_rate`` in bits per pixel (:mod:`featcodec.split.train`) the useful range
is different, so pass ``log10_lambda`` for your own setup.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple


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

    def sample(self, rng: random.Random) -> SearchPoint:
        return SearchPoint(
            channels=rng.choice(self.channels),
            stride=rng.choice(self.strides),
            lam=10.0 ** rng.uniform(*self.log10_lambda),
            q_step=rng.uniform(*self.q_step),
        )


CLASSIFICATION = SearchSpace(channels=(32, 64, 96, 128), q_step=(0.5, 10.0), log10_lambda=(-9.0, -6.0))
"""Ahuja et al.'s (CVPR 2023) classification space (supervised lambda range; unsupervised: (-11, -7))."""
SEGMENTATION = SearchSpace(channels=(2, 4, 8, 16, 32, 48, 64), q_step=(0.5, 6.0), log10_lambda=(-4.0, -1.0))
"""Ahuja et al.'s (CVPR 2023) segmentation space (supervised lambda range; unsupervised: (-16, -6))."""


@dataclass
class SearchResult:
    point: SearchPoint
    metric: float          # higher is better (accuracy, mIoU)
    bpp: float             # lower is better
    extra: Dict[str, float] = field(default_factory=dict)


def random_search(space: SearchSpace, trials: int, evaluate: Callable[[SearchPoint], Tuple[float, float]],
                  seed: int = 0) -> List[SearchResult]:
    """Draws ``trials`` points and evaluates each: ``evaluate(point) -> (metric, bpp)``."""
    rng = random.Random(seed)
    results = []
    for _ in range(trials):
        point = space.sample(rng)
        metric, bpp = evaluate(point)
        results.append(SearchResult(point, float(metric), float(bpp)))
    return results


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
