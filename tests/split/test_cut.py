"""Cutting networks: shapes, what crosses, and tail(head(x)) == model(x)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from featcodec.split import IdentityUnit, RateTerm, SplitModel, split
from featcodec.split.cut import FEATURE, SIZE, TENSOR

from .conftest import DEEPLAB_POINTS, RESNET_POINTS

RESNET_SHAPES = {"layer4.2": (2048, 2, 2), "layer4.1": (2048, 2, 2), "layer4.0": (2048, 2, 2),
                 "layer3.4": (1024, 4, 4)}
DEEPLAB_SHAPES = {"backbone.layer4.1": (2048, 8, 7), "backbone.layer3.5": (1024, 8, 7),
                  "classifier.0.convs.1": (256, 8, 7)}


@pytest.mark.parametrize("name", RESNET_POINTS)
def test_resnet_cut_is_one_tensor_and_exact(resnet50, resnet_input, name):
    head, tail = split(resnet50, name, single_tensor=True)
    with torch.no_grad():
        feature = head(resnet_input)
        assert isinstance(feature, torch.Tensor)
        assert tuple(feature.shape) == (2,) + RESNET_SHAPES[name]
        assert torch.equal(tail(feature), resnet50(resnet_input))
    assert [c.kind for c in head.crossing] == [FEATURE]
    assert head.crossing[0].producer == name


@pytest.mark.parametrize("name", DEEPLAB_POINTS)
def test_deeplab_cut_is_exact_and_keeps_the_dict_output(deeplab, deeplab_input, name):
    head, tail = split(deeplab, name)
    with torch.no_grad():
        crossing = head(deeplab_input)
        out = tail(crossing)
        reference = deeplab(deeplab_input)
    assert isinstance(out, dict) and set(out) == {"out"}
    assert out["out"].shape == (1, 21, 57, 49)  # the final interpolation to the input size is in the tail
    assert torch.equal(out["out"], reference["out"])
    assert tuple(crossing[0].shape) == (1,) + DEEPLAB_SHAPES[name]
    size = next(value for value, c in zip(crossing, head.crossing) if c.kind == SIZE)
    assert tuple(size) == (57, 49)


@pytest.mark.parametrize("name", ["backbone.layer4.1", "backbone.layer3.5"])
def test_deeplab_backbone_cut_sends_the_feature_and_the_input_size(deeplab, name):
    head, _ = split(deeplab, name, single_tensor=True)
    assert [(c.kind, c.producer) for c in head.crossing] == [(FEATURE, name), (SIZE, "input.shape[-2:]")]


def test_aspp_branch_cut_is_defined_and_documented(deeplab, deeplab_input):
    name = "classifier.0.convs.1"
    head, tail = split(deeplab, name)
    kinds = [(c.kind, c.producer) for c in head.crossing]
    # The branch's output, the input size, and the ASPP input (the backbone's last ReLU) that
    # the four other branches need: exactly these cross, nothing else.
    assert kinds == [(FEATURE, name), (SIZE, "input.shape[-2:]"), (TENSOR, "backbone.layer4.2.relu")]
    with torch.no_grad():
        branch, size, aspp_input = head(deeplab_input)
        backbone_out = deeplab.backbone(deeplab_input)["out"]
        assert torch.equal(aspp_input, backbone_out)
        assert torch.equal(branch, deeplab.classifier[0].convs[1](backbone_out))
        # The tail really uses the transmitted branch output: change it and the output changes.
        assert not torch.equal(tail((branch + 1, size, aspp_input))["out"], tail((branch, size, aspp_input))["out"])
    with pytest.raises(ValueError, match="not a single-tensor cut"):
        split(deeplab, name, single_tensor=True)


def test_head_computes_only_what_it_must(resnet50):
    head, tail = split(resnet50, "layer3.4")
    head_modules = {n.target for n in head.graph.nodes if n.op == "call_module"}
    tail_modules = {n.target for n in tail.graph.nodes if n.op == "call_module"}
    assert "layer3.4" in head_modules and not any(m.startswith("layer4") or m == "fc" for m in head_modules)
    assert {"fc", "layer3.5.conv1"} <= tail_modules
    assert not any(m.startswith(("layer1", "layer2", "layer3.0", "layer3.4")) for m in tail_modules)


def test_head_and_tail_share_the_parameters(resnet50):
    head, tail = split(resnet50, "layer4.2")
    assert head.get_submodule("conv1").weight is resnet50.conv1.weight
    assert tail.get_submodule("fc").weight is resnet50.fc.weight


def test_inside_a_residual_block_the_skip_connection_crosses(resnet50, resnet_input):
    head, tail = split(resnet50, "layer4.2.conv2")
    assert [c.kind for c in head.crossing] == [FEATURE, TENSOR]
    with torch.no_grad():
        assert torch.equal(tail(head(resnet_input)), resnet50(resnet_input))


@pytest.mark.parametrize("bad", ["", "layer9", "conv1.weight"])
def test_unknown_names_are_refused(resnet50, bad):
    with pytest.raises(ValueError, match="no submodule"):
        split(resnet50, bad)


def test_a_module_called_twice_is_refused():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            return self.conv(self.conv(x))

    with pytest.raises(ValueError, match="called 2 times"):
        split(Twice(), "conv")


def test_any_module_with_a_single_path():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU()), nn.Flatten())
    head, tail = split(net, "2")
    x = torch.randn(1, 3, 6, 6)
    assert torch.equal(tail(head(x)), net(x))
    assert head(x).shape == (1, 4, 4, 4)


class _PassThrough(RateTerm):
    """A rate term that changes nothing (no quantization at all), so the split model must be the network."""

    def forward(self, y, q_step=1.0):
        return y, torch.zeros(())


@pytest.mark.parametrize("name", RESNET_POINTS)
def test_identity_unit_split_model_equals_resnet(resnet50, resnet_input, name):
    head, tail = split(resnet50, name)
    model = SplitModel(head, IdentityUnit(), _PassThrough(), tail).eval()
    with torch.no_grad():
        assert torch.equal(model(resnet_input).output, resnet50(resnet_input))


@pytest.mark.parametrize("name", DEEPLAB_POINTS)
def test_identity_unit_split_model_equals_deeplab(deeplab, deeplab_input, name):
    head, tail = split(deeplab, name)
    model = SplitModel(head, IdentityUnit(), _PassThrough(), tail).eval()
    with torch.no_grad():
        assert torch.equal(model(deeplab_input).output["out"], deeplab(deeplab_input)["out"])
