"""Generalized divisive normalization (GDN) and its inverse, as learned image codecs use them.

For a feature x with C channels at one position, channel i is normalized by
a learned combination of all channels there:

* GDN (Balle, Laparra and Simoncelli, ICLR 2016):
  ``y_i = x_i / sqrt(beta_i + sum_j gamma_ij * x_j ** 2)``
* simplified GDN (Johnston et al., 2019; the entropic student's activation
  in Matsubara et al., WACV 2022):
  ``y_i = x_i / (beta_i + sum_j gamma_ij * |x_j|)``
* the inverse layers (IGDN) multiply by the same denominator instead of
  dividing: ``y_i = x_i * (beta_i + sum_j gamma_ij * |x_j|)``.

beta must stay positive (beta >= beta_min) and gamma non-negative.  Both are
stored reparameterized: the parameter p stands for ``max(p, bound)**2 -
pedestal`` with a small pedestal (2**-36), so the value is kept in range
without clipping gradients to zero at the boundary, and the square root near
zero is well conditioned.  The layer's effective values are
:attr:`GDN.beta_value` and :attr:`GDN.gamma_value`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..entropy._bounds import lower_bound

#: Offset of the reparameterization: values are ``p**2 - OFFSET**2``.
REPARAM_OFFSET = 2.0**-18


class NonNegative(nn.Module):
    """Maps a stored parameter p to ``max(p, bound)**2 - pedestal >= minimum``.

    ``init(v)`` gives the p that stands for v; the gradient of the bound
    passes where it pushes p back above the bound (see ``lower_bound``).
    """

    def __init__(self, minimum: float = 0.0, offset: float = REPARAM_OFFSET) -> None:
        super().__init__()
        if minimum < 0:
            raise ValueError(f"minimum must be >= 0, got {minimum}")
        self.minimum = float(minimum)
        self.pedestal = float(offset) ** 2
        self.bound = (self.minimum + self.pedestal) ** 0.5

    def init(self, value: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.clamp_min(value + self.pedestal, self.pedestal))

    def forward(self, stored: torch.Tensor) -> torch.Tensor:
        return lower_bound(stored, self.bound) ** 2 - self.pedestal


class GDN(nn.Module):
    """GDN over the channels of (N, C, H, W) tensors; ``inverse=True`` is IGDN.

    ``simplified=True`` (the default, as in the entropic student) uses the
    L1 form without a square root; ``False`` is the original GDN.
    beta starts at 1 and gamma at ``gamma_init`` times the identity, so a
    fresh layer is close to ``x / (1 + 0.1 |x|)``.
    """

    def __init__(self, channels: int, *, inverse: bool = False, simplified: bool = True,
                 beta_min: float = 1e-6, gamma_init: float = 0.1) -> None:
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive integer, got {channels!r}")
        if not beta_min > 0:
            raise ValueError(f"beta_min must be positive, got {beta_min}")
        self.channels, self.inverse, self.simplified = channels, bool(inverse), bool(simplified)
        self.beta_map = NonNegative(minimum=beta_min)
        self.gamma_map = NonNegative()
        self.beta = nn.Parameter(self.beta_map.init(torch.ones(channels)))
        self.gamma = nn.Parameter(self.gamma_map.init(gamma_init * torch.eye(channels)))

    @property
    def beta_value(self) -> torch.Tensor:
        """beta_i, shape (C,), each >= beta_min."""
        return self.beta_map(self.beta)

    @property
    def gamma_value(self) -> torch.Tensor:
        """gamma_ij (row i: the weights of channel i's denominator), shape (C, C), >= 0."""
        return self.gamma_map(self.gamma)

    def denominator(self, x: torch.Tensor) -> torch.Tensor:
        """``beta_i + sum_j gamma_ij |x_j|`` (simplified) or its squared-form square root."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected (N, {self.channels}, H, W), got {tuple(x.shape)}")
        weight = self.gamma_value.reshape(self.channels, self.channels, 1, 1)
        if self.simplified:
            return F.conv2d(x.abs(), weight, self.beta_value)
        return torch.sqrt(F.conv2d(x * x, weight, self.beta_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = self.denominator(x)
        return x * norm if self.inverse else x / norm

    def extra_repr(self) -> str:
        return f"{self.channels}, inverse={self.inverse}, simplified={self.simplified}"


def igdn(channels: int, **kwargs: object) -> GDN:
    """The inverse layer: ``GDN(channels, inverse=True, ...)``."""
    return GDN(channels, inverse=True, **kwargs)  # type: ignore[arg-type]
