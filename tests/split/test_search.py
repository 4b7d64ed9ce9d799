"""Random search and the Pareto frontier of (metric, bpp)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from featcodec.split import CLASSIFICATION, SEGMENTATION, pareto_frontier, random_search
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


def test_random_search_draws_from_the_space_and_is_seeded():
    seen = []

    def evaluate(point):
        seen.append(point)
        return point.channels / 128, point.q_step

    results = random_search(CLASSIFICATION, 20, evaluate, seed=3)
    assert [r.point for r in results] == seen
    assert [r.point for r in random_search(CLASSIFICATION, 20, evaluate, seed=3)] == seen[:20]
    assert [r.point for r in random_search(CLASSIFICATION, 20, evaluate, seed=4)] != seen[:20]
    seen = seen[:20]
    for p in seen:
        assert p.channels in CLASSIFICATION.channels and p.stride in (2, 4, 6)
        assert 0.5 <= p.q_step <= 10 and 1e-9 <= p.lam <= 1e-6
    frontier = frontier_of(results)
    assert all(not any(_dominates((r.metric, r.bpp), (f.metric, f.bpp)) for r in results) for f in frontier)
    segmentation = SEGMENTATION.sample(random.Random(0))
    assert segmentation.channels in (2, 4, 8, 16, 32, 48, 64) and segmentation.q_step <= 6
