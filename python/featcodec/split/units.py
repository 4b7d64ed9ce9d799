"""Bottleneck units: a small encoder that squeezes a split point's feature
tensor (C x H x W) into C_r x H/S x W/S, and the decoder that mirrors it.

Every unit kind is a stack of convolution *stages*; the decoder runs the
stages backwards as transposed convolutions.  The decoder is told the target
spatial size (the receiver knows the split point's feature shape, or reads it
from the codec header), so it restores exactly H x W for any H, W and S:
nothing about the input has to be remembered by the encoder.

Kinds (see :data:`UNIT_KINDS`):

``"dws"`` (Ahuja et al.'s (CVPR 2023) default)
    depthwise 3x3 stride S (groups = C), then pointwise 1x1 C -> C_r.
``"conv"``
    one 3x3 convolution C -> C_r with stride S.
``"conv2"``
    two 3x3 convolutions: C -> C_r with stride S, then C_r -> C_r.
``"dws2"``
    two depthwise-separable layers: the default, then depthwise 3x3 and
    pointwise 1x1 on C_r channels.

Batch norm and ReLU follow every convolution, in the encoder and in the
decoder (Ahuja et al.'s (CVPR 2023) design; every split point of interest is post-ReLU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import torch
from torch import nn


@dataclass(frozen=True)
class Stage:
    """One convolution of an encoder: ``in_channels -> out_channels``, square kernel."""

    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    groups: int = 1

    @property
    def padding(self) -> int:
        return self.kernel // 2

    def output_length(self, length: int) -> int:
        """Spatial length after this stage's convolution (PyTorch's formula)."""
        return (length + 2 * self.padding - self.kernel) // self.stride + 1


class _ConvBnRelu(nn.Module):
    def __init__(self, stage: Stage) -> None:
        super().__init__()
        self.conv = nn.Conv2d(stage.in_channels, stage.out_channels, stage.kernel, stage.stride,
                              stage.padding, groups=stage.groups, bias=False)
        self.bn = nn.BatchNorm2d(stage.out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class _DeconvBnRelu(nn.Module):
    """The transpose of one encoder stage; the target size fixes the output padding."""

    def __init__(self, stage: Stage) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(stage.out_channels, stage.in_channels, stage.kernel, stage.stride,
                                       stage.padding, groups=stage.groups, bias=False)
        self.bn = nn.BatchNorm2d(stage.in_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, y: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        return self.relu(self.bn(self.conv(y, output_size=list(size))))


class BottleneckEncoder(nn.Module):
    """The sender's half: ``(N, C, H, W) -> (N, C_r, h, w)``."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        super().__init__()
        self.stages = tuple(stages)
        self.layers = nn.ModuleList(_ConvBnRelu(s) for s in self.stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class BottleneckDecoder(nn.Module):
    """The receiver's half: ``(N, C_r, h, w), output_size=(H, W) -> (N, C, H, W)``.

    The argument is called ``output_size`` as in ``ConvTranspose2d`` (and as
    :class:`featcodec.codec.FeatureCodec` passes the size from its header).
    """

    def __init__(self, stages: Sequence[Stage]) -> None:
        super().__init__()
        self.stages = tuple(stages)
        self.layers = nn.ModuleList(_DeconvBnRelu(s) for s in reversed(self.stages))

    def forward(self, y: torch.Tensor, output_size: Sequence[int]) -> torch.Tensor:
        for layer, target in zip(self.layers, reversed(intermediate_sizes(self.stages, output_size))):
            y = layer(y, target)
        return y


def intermediate_sizes(stages: Sequence[Stage], size: Sequence[int]) -> List[Tuple[int, int]]:
    """The (H, W) entering each stage of the encoder, for an input of ``size``."""
    height, width = int(size[-2]), int(size[-1])
    sizes = []
    for stage in stages:
        sizes.append((height, width))
        height, width = stage.output_length(height), stage.output_length(width)
    return sizes


class BottleneckUnit(nn.Module):
    """An encoder/decoder pair inserted at a split point.

    ``unit.encode(x)`` gives the tensor to quantize and code;
    ``unit.decode(y_hat, output_size)`` restores a tensor shaped like ``x``
    given ``output_size = x.shape[-2:]``; ``unit(x)`` is both with no
    quantization.  ``unit.encoder`` and ``unit.decoder`` are the two halves
    as modules (what a :class:`featcodec.codec.FeatureCodec` wraps).
    """

    def __init__(self, kind: str, in_channels: int, out_channels: int, stride: int,
                 stages: Sequence[Stage]) -> None:
        super().__init__()
        self.kind, self.in_channels, self.out_channels, self.stride = kind, in_channels, out_channels, stride
        self.encoder = BottleneckEncoder(stages)
        self.decoder = BottleneckDecoder(stages)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, y: torch.Tensor, output_size: Sequence[int]) -> torch.Tensor:
        return self.decoder(y, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x), x.shape[-2:])

    def code_shape(self, channels_height_width: Sequence[int]) -> Tuple[int, int, int]:
        """The (C_r, h, w) the encoder makes of a (C, H, W) feature."""
        height, width = channels_height_width[-2:]
        for stage in self.encoder.stages:
            height, width = stage.output_length(height), stage.output_length(width)
        return self.out_channels, height, width

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, C={self.in_channels}, C_r={self.out_channels}, S={self.stride}"


class IdentityUnit(nn.Module):
    """A unit that changes nothing: checks that a split network equals the original."""

    kind = "identity"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def decode(self, y: torch.Tensor, output_size: Sequence[int]) -> torch.Tensor:
        if tuple(y.shape[-2:]) != tuple(output_size):
            raise ValueError(f"identity unit: size {tuple(output_size)} does not match {tuple(y.shape[-2:])}")
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


StageBuilder = Callable[[int, int, int], List[Stage]]


def _dws(c: int, c_r: int, s: int) -> List[Stage]:
    return [Stage(c, c, 3, s, groups=c), Stage(c, c_r, 1, 1)]


def _conv(c: int, c_r: int, s: int) -> List[Stage]:
    return [Stage(c, c_r, 3, s)]


def _conv2(c: int, c_r: int, s: int) -> List[Stage]:
    return [Stage(c, c_r, 3, s), Stage(c_r, c_r, 3, 1)]


def _dws2(c: int, c_r: int, s: int) -> List[Stage]:
    return _dws(c, c_r, s) + [Stage(c_r, c_r, 3, 1, groups=c_r), Stage(c_r, c_r, 1, 1)]


UNIT_KINDS: Dict[str, StageBuilder] = {"dws": _dws, "conv": _conv, "conv2": _conv2, "dws2": _dws2}
"""Unit kinds by name: each maps (C, C_r, S) to the encoder's stages."""

DEFAULT_KIND = "dws"


def register_unit(name: str, stages: StageBuilder) -> None:
    """Adds a unit kind: ``stages(C, C_r, S)`` lists the encoder's convolutions."""
    if name in UNIT_KINDS:
        raise ValueError(f"unit kind {name!r} is already registered")
    UNIT_KINDS[name] = stages


def make_unit(kind: str = DEFAULT_KIND, in_channels: int = 0, out_channels: int = 0,
              stride: int = 1) -> BottleneckUnit:
    """A bottleneck unit of ``kind`` for C = ``in_channels``, C_r = ``out_channels``, S = ``stride``."""
    if kind not in UNIT_KINDS:
        raise ValueError(f"unknown unit kind {kind!r}; known: {sorted(UNIT_KINDS)}")
    if min(in_channels, out_channels, stride) < 1:
        raise ValueError(f"C, C_r and S must be positive, got {in_channels}, {out_channels}, {stride}")
    return BottleneckUnit(kind, in_channels, out_channels, stride, UNIT_KINDS[kind](in_channels, out_channels, stride))


def parameter_count(module: nn.Module) -> int:
    """Number of trainable-or-not parameters (buffers excluded)."""
    return sum(p.numel() for p in module.parameters())
