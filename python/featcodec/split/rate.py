"""Rate terms for L = L_rate + lambda * L_task, interchangeable.

A rate term is an ``nn.Module`` whose ``forward(y, q_step)`` returns
``(y_hat, rate)``: ``y_hat`` is what the bottleneck decoder receives (the
quantized code, or its training stand-in) and ``rate`` a differentiable
scalar for the whole batch.  ``aux_loss()`` is added to the loss as is
(zero when the term has nothing auxiliary to train).

* :class:`L1Rate`: the L1-norm proxy of ICPR 2022.  Its rate is not in bits:
  it is ``sum |y| / Q``, the magnitude of the symbols, which is what the bits
  grow with.  Quantization is straight-through in training.
* :class:`NeuralRate`: the neural rate estimator of CVPR 2023, an entropy
  model from :mod:`featcodec.entropy` (a ``Hyperprior`` as in that paper, or a
  ``FactorizedPrior``) whose rate is the estimated bits, sum of -log2
  likelihood of the code (and of the side information).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Tuple, cast

import torch
from torch import nn

from ..entropy import quantize
from ..entropy._quantizer import QuantizeMode


class RateTerm(nn.Module):
    """Interface: ``forward(y, q_step) -> (y_hat, rate)`` and ``aux_loss()``."""

    #: True when ``rate`` is an estimate in bits (so bpp = rate / pixels).
    in_bits: bool = False

    def forward(self, y: torch.Tensor, q_step: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def aux_loss(self) -> torch.Tensor:
        return torch.zeros(())


class L1Rate(RateTerm):
    """The L1-norm proxy: ``rate = sum |y| / Q``; ``y_hat`` quantized with step Q.

    ``train_mode`` is the quantizer's mode in training: ``"ste"`` (Ahuja et al.'s (CVPR 2023)
    straight-through estimator, default) or ``"noise"``; eval rounds.
    """

    in_bits = False

    def __init__(self, train_mode: str = "ste") -> None:
        super().__init__()
        if train_mode not in ("ste", "noise"):
            raise ValueError(f"train_mode must be 'ste' or 'noise', got {train_mode!r}")
        self.train_mode = train_mode

    def forward(self, y: torch.Tensor, q_step: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor]:
        y_hat = quantize(y, q_step, cast(QuantizeMode, self.train_mode if self.training else "round"))
        return y_hat, y.abs().sum() / q_step

    def extra_repr(self) -> str:
        return f"train_mode={self.train_mode!r}"


class NeuralRate(RateTerm):
    """Wraps an entropy model of :mod:`featcodec.entropy`; rate = estimated bits.

    The model's ``forward(y, q_step=...)`` gives ``(y_hat, likelihoods)``;
    its mode (noise in training, rounding in eval) follows ``self.training``.
    """

    in_bits = True

    entropy_model: Any  # an entropy model of featcodec.entropy (forward, compress, decompress, aux_loss)

    def __init__(self, entropy_model: nn.Module) -> None:
        super().__init__()
        self.entropy_model = entropy_model

    def forward(self, y: torch.Tensor, q_step: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor]:
        from ..entropy import estimate_bits

        y_hat, likelihoods = self.entropy_model(y, q_step=q_step)
        return y_hat, estimate_bits(likelihoods)

    def aux_loss(self) -> torch.Tensor:
        return self.entropy_model.aux_loss()


def hyperprior_rate(channels: int, hyper_channels: int = 8) -> NeuralRate:
    """Ahuja et al.'s (CVPR 2023) neural rate estimator for a code of ``channels`` channels."""
    from ..entropy import Hyperprior

    return NeuralRate(Hyperprior(channels, hyper_channels=hyper_channels))


def factorized_rate(channels: int) -> NeuralRate:
    """A rate term from a per-channel learned density (what codes the unit's output)."""
    from ..entropy import FactorizedPrior

    return NeuralRate(FactorizedPrior(channels))


RATE_TERMS: Dict[str, Callable[[int], RateTerm]] = {"l1": lambda channels: L1Rate(), "hyperprior": hyperprior_rate, "factorized": factorized_rate}
"""Rate terms by name: each maps the code's channel count C_r to a fresh term."""


def make_rate(name: str, channels: int) -> RateTerm:
    """A fresh rate term by name (see :data:`RATE_TERMS`)."""
    if name not in RATE_TERMS:
        raise ValueError(f"unknown rate term {name!r}; known: {sorted(RATE_TERMS)}")
    return RATE_TERMS[name](channels)
