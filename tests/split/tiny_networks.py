"""Small random-weight networks with torchvision's ResNet and DeepLabv3 structure, for fast training tests.

They keep what the WACV 2022 models rely on (the stem conv1/bn1/relu/maxpool,
the stages layer1-layer4 under the same names, DeepLab's backbone, head and
auxiliary head) with one basic block per stage, so a training step costs a
small fraction of ResNet-50's.  The shape tests still use the real
ResNet-50 and DeepLabv3-ResNet50 (conftest.py).
"""

from __future__ import annotations

import torch
from torchvision.models import ResNet
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.resnet import BasicBlock
from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3
from torchvision.models.segmentation.fcn import FCNHead


def tiny_resnet(num_classes: int = 10, seed: int = 0) -> ResNet:
    """A ResNet with one basic block per stage (64, 128, 256, 512 channels), in eval mode."""
    torch.manual_seed(seed)
    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=num_classes).eval()


def tiny_deeplab(num_classes: int = 5, seed: int = 0, aux: bool = True) -> DeepLabV3:
    """DeepLabv3 on :func:`tiny_resnet`'s stages (``backbone.layer1`` ...), with an auxiliary head."""
    torch.manual_seed(seed)
    backbone = ResNet(BasicBlock, [1, 1, 1, 1])
    layers = {"layer4": "out", "layer3": "aux"} if aux else {"layer4": "out"}
    return DeepLabV3(IntermediateLayerGetter(backbone, layers), DeepLabHead(512, num_classes),
                     FCNHead(256, num_classes) if aux else None).eval()
