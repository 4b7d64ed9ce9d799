"""Random search and the Pareto frontier of (metric, bpp)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

import optuna
import pytest

from featcodec.split import CLASSIFICATION, PRESETS, SEGMENTATION, SearchSpace, pareto_frontier
from featcodec.split.search import frontier_of


def _dominates(a, b):
    return a[0] >= b[0] and a[1] <= b[1] and a != b


values = st.floats(0, 1, allow_nan=False) | st.sampled_from([0.0, 0.25, 0.5, 1.0])


@given(st.lists(st.tuples(values, values), max_size=30))
def test_frontier_is_exactly_the_non_dominated_points(points):
    frontier = pareto_frontier(points)
    for i in frontier:
        assert not any(_dominates(p, points[i]) for p in points)
    for i, point in enumerate(points):
        if i not in frontier:
            assert any(_dominates(points[j], point) or points[j] == point for j in frontier)
    assert [points[i][1] for i in frontier] == sorted(points[i][1] for i in frontier)
    assert len({points[i] for i in frontier}) == len(frontier)  # duplicates kept once


def test_frontier_example():
    points = [(0.7, 0.2), (0.6, 0.3), (0.8, 0.5), (0.75, 0.1), (0.8, 0.6)]
    assert pareto_frontier(points) == [3, 2]


def test_suggest_draws_from_the_space():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    points = [CLASSIFICATION.suggest(study.ask()) for _ in range(30)]
    for p in points:
        assert p.channels in CLASSIFICATION.channels and p.stride in (2, 4, 6)
        assert 0.5 <= p.q_step <= 10 and 1e-9 <= p.lam <= 1e-6
    assert len({p.channels for p in points}) > 1 and len({p.stride for p in points}) > 1
    trial = study.trials[0]
    assert set(trial.params) == {"channels", "stride", "log10_lambda", "q_step"}
    assert points[0].lam == pytest.approx(10 ** trial.params["log10_lambda"], rel=1e-12)
    segmentation = SEGMENTATION.sample(random.Random(0))
    assert segmentation.channels in (2, 4, 8, 16, 32, 48, 64) and segmentation.q_step <= 6


def test_presets_are_the_papers_ranges():
    assert PRESETS["cvpr2023-classification-supervised"] == CLASSIFICATION
    assert PRESETS["cvpr2023-classification-distillation"].log10_lambda == (-11.0, -7.0)
    assert PRESETS["cvpr2023-segmentation-supervised"] == SEGMENTATION
    assert PRESETS["cvpr2023-segmentation-distillation"].log10_lambda == (-16.0, -6.0)
    assert SEGMENTATION.q_step == (0.5, 6.0) and SEGMENTATION.strides == (2, 4, 6)


def test_bad_spaces_are_refused():
    with pytest.raises(ValueError, match="at least one"):
        SearchSpace(channels=())
    with pytest.raises(ValueError, match="low <= high"):
        SearchSpace(channels=(4,), q_step=(2.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        SearchSpace(channels=(4,), q_step=(0.0, 1.0))
