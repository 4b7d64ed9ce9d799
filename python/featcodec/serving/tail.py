"""The server's half of the network: the tail after the cut, and its answers.

A :class:`Tail` wraps the tail module that :func:`featcodec.split.split`
returns.  The bank's message carries only the feature; anything else that
crosses the cut must be a constant of the deployment.  The one such value
the supported networks need is the input image's (H, W) (DeepLabv3 cut in
its backbone upsamples its logits to it), given as ``image_size``.  Cuts
that need another tensor (DeepLabv3's ``classifier.0.convs.1`` needs the
ASPP input too) cannot be served from the bank's message and are refused.

The task follows from the tail's output: logits (B, classes) are
classification (answered with the top k classes), logits (B, classes, H, W)
are segmentation (answered with the arg-max label of each pixel).  A dict
output (torchvision's segmentation models) is read at ``"out"``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ._protocol import CLASSIFICATION, SEGMENTATION

PathLike = Union[str, "os.PathLike[str]"]

NETWORKS = ("resnet50", "deeplabv3_resnet50")
"""The networks ``featcodec serve`` builds by name (from a local state dict)."""

_IMAGE_SIZE_PRODUCER = "input.shape[-2:]"


@dataclass(frozen=True)
class TailOutput:
    """The answers for a batch: top-k (classes, probabilities), each (N, k), or labels (N, H, W)."""

    classes: Optional[np.ndarray] = None
    probabilities: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None

    def rows(self, start: int, stop: int) -> "TailOutput":
        if self.labels is not None:
            return TailOutput(labels=self.labels[start:stop])
        assert self.classes is not None and self.probabilities is not None
        return TailOutput(classes=self.classes[start:stop], probabilities=self.probabilities[start:stop])


class Tail:
    """Runs the tail on decoded features (N, C, H, W) and turns its output into answers.

    tail: the module from ``split(network, name)`` (its ``crossing`` says
    what else it needs); feature_shape: (C, H, W) at the cut, the bank's;
    image_size: (H, W) of the input images, for tails that need it;
    top_k: classes per image in a classification answer.  The module is put
    in eval mode once here and never switched again (the server calls it
    from one thread at a time).  A run on zeros checks that the tail takes
    the bank's features and finds the task.
    """

    def __init__(self, tail: nn.Module, feature_shape: Sequence[int], *, image_size: Optional[Sequence[int]] = None,
                 top_k: int = 5) -> None:
        if len(feature_shape) != 3 or min(feature_shape) < 1:
            raise ValueError(f"feature_shape must be (C, H, W), got {tuple(feature_shape)}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        self.module = tail.eval()
        self.feature_shape = tuple(int(d) for d in feature_shape)
        self.image_size = None if image_size is None else _checked_size(image_size)
        self._extra = _constant_crossings(tail, self.image_size)
        probe = self._forward(torch.zeros(1, *self.feature_shape))
        if probe.dim() == 2:
            self.task, self.classes = CLASSIFICATION, probe.shape[1]
            self.top_k = min(top_k, self.classes)
        elif probe.dim() == 4:
            self.task, self.classes, self.top_k = SEGMENTATION, probe.shape[1], 0
            if self.classes > 1 << 16:
                raise ValueError(f"segmentation with {self.classes} classes: labels are at most 16 bits")
        else:
            raise ValueError(f"the tail's output has shape {tuple(probe.shape)}; expected (B, classes) "
                             "for classification or (B, classes, H, W) for segmentation")

    def _forward(self, features: torch.Tensor) -> torch.Tensor:
        crossing: Any = (features, *self._extra) if self._extra else features
        with torch.inference_mode():
            out = self.module(crossing)
        if isinstance(out, dict):
            out = out["out"]
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"the tail returned {type(out).__name__}, not a tensor or a dict with 'out'")
        return out

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """The tail's raw output for features (N, C, H, W)."""
        if tuple(features.shape[1:]) != self.feature_shape:
            raise ValueError(f"features of shape {tuple(features.shape)}, the tail takes (N, *{self.feature_shape})")
        return self._forward(features)

    def __call__(self, features: torch.Tensor) -> TailOutput:
        return self.answers(self.logits(features))

    def answers(self, logits: torch.Tensor) -> TailOutput:
        """Top-k classes or label maps from the tail's output."""
        if self.task == CLASSIFICATION:
            probabilities, classes = torch.softmax(logits.float(), dim=1).topk(self.top_k, dim=1)
            return TailOutput(classes=classes.numpy().astype(np.int64), probabilities=probabilities.numpy())
        dtype = np.uint8 if self.classes <= 256 else np.uint16
        return TailOutput(labels=logits.argmax(dim=1).numpy().astype(dtype))


def _checked_size(size: Sequence[int]) -> Tuple[int, int]:
    if len(size) != 2 or min(int(d) for d in size) < 1:
        raise ValueError(f"image_size must be (H, W), got {tuple(size)}")
    return int(size[0]), int(size[1])


def _constant_crossings(tail: nn.Module, image_size: Optional[Tuple[int, int]]) -> Tuple[Any, ...]:
    """The values beside the feature that the tail takes, from the deployment's constants."""
    crossing = getattr(tail, "crossing", None)
    if crossing is None:
        return ()
    extra = []
    for value in crossing[1:]:
        if value.kind == "size" and value.producer == _IMAGE_SIZE_PRODUCER:
            if image_size is None:
                raise ValueError(f"the tail needs the input image's size ({value.name} from {value.producer}); "
                                 "give image_size")
            extra.append(torch.Size(image_size))
        else:
            raise ValueError(f"the tail needs {value.name} ({value.kind} from {value.producer}) besides the feature; "
                             "a bank message carries only the feature, so this cut cannot be served")
    return tuple(extra)


def load_network(name: str, weights: Optional[PathLike], num_classes: Optional[int] = None) -> nn.Module:
    """A network of :data:`NETWORKS` from a local state dict (random weights when ``weights`` is None)."""
    from ..split import data

    if name == "resnet50":
        return data.resnet50(weights, num_classes=1000 if num_classes is None else num_classes)
    if name == "deeplabv3_resnet50":
        return data.deeplabv3_resnet50(weights, num_classes=21 if num_classes is None else num_classes)
    raise ValueError(f"unknown network {name!r}; known: {', '.join(NETWORKS)}")
