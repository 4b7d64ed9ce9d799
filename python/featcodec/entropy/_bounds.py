"""A lower bound on likelihoods that still lets gradients raise them."""

from __future__ import annotations

import torch


class _LowerBound(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        # clamp_min would zero the gradient below the bound, and a likelihood
        # stuck there could never recover; pass it whenever it pushes x upward.
        passes = (x >= ctx.bound) | (grad < 0)
        return grad * passes, None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    """``max(x, bound)`` forward; the gradient flows where x is above the bound or would rise."""
    return _LowerBound.apply(x, bound)
