"""A split network with a bottleneck unit inserted at the cut.

``SplitModel(head, unit, rate, tail, q_step)`` runs
``tail(unit.decode(rate(unit.encode(head(x)))))``.  Only the unit and the
rate term train: the head and the tail (the pretrained network) have
``requires_grad`` off and stay in eval mode whatever ``.train()`` is asked,
so their batch-norm statistics never move.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Optional

import torch
from torch import nn

from .cut import feature_of, with_feature
from .rate import RateTerm
from .student import TailMode


@dataclass
class SplitOutput:
    """What one forward pass gives.

    ``output``: the tail's output (logits, or DeepLab's dict);
    ``rate``: the rate term's value for the batch (bits or a proxy);
    ``code``: the unit's output before quantization;
    ``reference``: the original network's output on the same input, when asked.
    """

    output: Any
    rate: torch.Tensor
    code: torch.Tensor
    reference: Any = None


def freeze(module: nn.Module) -> nn.Module:
    """Turns gradients off for every parameter and puts ``module`` in eval mode."""
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module.eval()


class SplitModel(nn.Module):
    """head -> unit.encode -> rate (quantizer) -> unit.decode -> tail.

    The feature the unit codes is the first value ``head`` returns (see
    :func:`featcodec.split.cut.split`); other crossing values pass unchanged.
    """

    #: The pretrained network stays fixed (see :class:`featcodec.split.student.TailMode`).
    tail_mode = TailMode.FROZEN
    unit: Any  # a BottleneckUnit, IdentityUnit or any module with encode(x) and decode(y, size)

    def __init__(self, head: nn.Module, unit: nn.Module, rate: RateTerm, tail: nn.Module,
                 q_step: float = 1.0) -> None:
        super().__init__()
        self.head, self.tail = freeze(head), freeze(tail)
        self.unit, self.rate = unit, rate
        self.q_step = float(q_step)

    def train(self, mode: bool = True) -> "SplitModel":
        super().train(mode)
        self.head.eval()
        self.tail.eval()
        return self

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """The unit's and the rate term's parameters: all that an optimizer should see."""
        yield from self.unit.parameters()
        yield from self.rate.parameters()

    def forward(self, x: torch.Tensor, with_reference: bool = False) -> SplitOutput:
        """The split network's output; ``with_reference`` adds the original network's
        (computed from the same head pass, without gradient)."""
        with torch.no_grad():
            crossing = self.head(x)
        feature = feature_of(crossing)
        code = self.unit.encode(feature)
        code_hat, rate = self.rate(code, self.q_step)
        restored = self.unit.decode(code_hat, feature.shape[-2:])
        output = self.tail(with_feature(crossing, restored))
        reference: Optional[Any] = None
        if with_reference:
            with torch.no_grad():
                reference = self.tail(crossing)
        return SplitOutput(output, rate, code, reference)

    def reference(self, x: torch.Tensor) -> Any:
        """The original network's output (head then tail, no unit)."""
        with torch.no_grad():
            return self.tail(self.head(x))
