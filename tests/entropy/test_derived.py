"""Derived: a cached value recomputed exactly when one of its tensors (or settings) changes."""

from __future__ import annotations

import torch

from featcodec.entropy._derived import Derived, module_tensors


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return self.calls


def test_the_value_is_reused_while_nothing_changes():
    layer, compute, cache = torch.nn.Linear(3, 2), Counting(), Derived()
    assert [cache.get(layer.parameters(), "s", compute) for _ in range(3)] == [1, 1, 1]


def test_every_kind_of_change_recomputes():
    layer, compute, cache = torch.nn.Linear(3, 2), Counting(), Derived()
    assert cache.get(layer.parameters(), "s", compute) == 1
    with torch.no_grad():
        layer.bias.add_(1)  # in place: the version counter moves
    assert cache.get(layer.parameters(), "s", compute) == 2
    layer.load_state_dict(torch.nn.Linear(3, 2).state_dict())
    assert cache.get(layer.parameters(), "s", compute) == 3
    layer.weight.data = torch.zeros(2, 3)  # the same object, another storage
    assert cache.get(layer.parameters(), "s", compute) == 4
    layer.weight = torch.nn.Parameter(layer.weight.detach().clone())  # another object
    assert cache.get(layer.parameters(), "s", compute) == 5
    assert cache.get(layer.parameters(), "other settings", compute) == 6
    assert cache.get(list(layer.parameters())[:1], "other settings", compute) == 7  # fewer tensors
    assert cache.get(layer.parameters(), "other settings", compute) == 8


def test_a_replaced_tensor_is_not_mistaken_for_its_successor():
    # The entry holds the tensors it saw, so a successor cannot land in the same memory with the
    # same version and be taken for the original.
    cache, compute = Derived(), Counting()
    first = torch.zeros(1000)
    cache.get([first], None, compute)
    address = first.data_ptr()
    del first
    second = torch.ones(1000)
    assert second.data_ptr() != address
    assert cache.get([second], None, compute) == 2


def test_inference_tensors_are_never_cached():
    with torch.inference_mode():
        layer = torch.nn.Linear(3, 2)
    compute, cache = Counting(), Derived()
    assert [cache.get(layer.parameters(), None, compute) for _ in range(2)] == [1, 2]


def test_module_tensors_lists_parameters_and_buffers_of_every_submodule():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    net.register_buffer("scratch", torch.zeros(1), persistent=False)
    found = {id(t) for t in module_tensors(net)}
    expected = {id(t) for t in (*net.parameters(), *net.buffers())}
    assert found == expected and len(expected) == 8
