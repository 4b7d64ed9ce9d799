"""SplitModel: only the unit and the rate term train; the backbone never moves."""

from __future__ import annotations

import copy

import pytest
import torch

from featcodec.split import L1Rate, SplitModel, TrainConfig, Trainer, make_unit, split


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _train_a_few_steps(network, name, images, targets, objective, steps=3):
    head, tail = split(network, name)
    feature = head(images[:1])
    channels = (feature[0] if isinstance(feature, tuple) else feature).shape[1]
    model = SplitModel(head, make_unit("dws", channels, 8, 2), L1Rate(), tail, q_step=0.5)
    trainer = Trainer(model, TrainConfig.classification(objective=objective, lam=1.0, lr=0.05, progress=False))
    loader = [(images, targets)] * steps
    trainer.fit(loader, epochs=1)
    return model


@pytest.mark.parametrize("objective", ["supervised", "unsupervised"])
def test_resnet_backbone_is_frozen(resnet50, resnet_input, objective):
    network = copy.deepcopy(resnet50)
    before = _snapshot(network)
    model = _train_a_few_steps(network, "layer4.2", resnet_input, torch.tensor([3, 7]), objective)
    after = _snapshot(network)
    assert before.keys() == after.keys()
    for key in before:  # parameters and buffers: batch-norm running statistics and counters too
        assert torch.equal(before[key], after[key]), key
    assert not network.training and not model.head.training and not model.tail.training
    assert all(not p.requires_grad for p in network.parameters())
    unit_state = model.unit.state_dict()
    fresh = make_unit("dws", 2048, 8, 2).state_dict()
    changed = [k for k in unit_state if not torch.equal(unit_state[k], fresh[k])]
    assert any("conv.weight" in k for k in changed) and any("running_mean" in k for k in changed)


def test_deeplab_backbone_is_frozen_at_the_aspp_branch(deeplab, deeplab_input):
    network = copy.deepcopy(deeplab)
    before = _snapshot(network)
    targets = torch.randint(0, 21, (1, 57, 49), generator=torch.Generator().manual_seed(3))
    targets[0, :5] = 255
    _train_a_few_steps(network, "classifier.0.convs.1", deeplab_input, targets, "supervised", steps=2)
    after = _snapshot(network)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_train_mode_keeps_the_backbone_in_eval(resnet50):
    head, tail = split(copy.deepcopy(resnet50), "layer4.0")
    model = SplitModel(head, make_unit("dws", 2048, 4, 2), L1Rate(), tail).train()
    assert model.unit.training and model.rate.training
    assert not any(m.training for m in model.head.modules()) and not any(m.training for m in model.tail.modules())
    trainable = list(model.trainable_parameters())
    assert {id(p) for p in trainable} == {id(p) for p in model.unit.parameters()}


def test_forward_reports_rate_code_and_reference(resnet50, resnet_input):
    head, tail = split(resnet50, "layer4.2")
    model = SplitModel(head, make_unit("dws", 2048, 8, 2), L1Rate(), tail, q_step=0.25).eval()
    with torch.no_grad():
        out = model(resnet_input, with_reference=True)
        assert out.code.shape == (2, 8, 1, 1)
        assert torch.equal(out.rate, out.code.abs().sum() / 0.25)
        assert torch.equal(out.reference, resnet50(resnet_input))
        assert out.output.shape == (2, 1000)
