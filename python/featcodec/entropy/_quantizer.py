"""The uniform quantizer with step Q shared by the entropy models and the split-DNN units.

Symbols are ``round((y - mean) / Q)``; the dequantized value is
``mean + Q * symbol``.  Training needs a differentiable stand-in for the
rounding, and the two in use are both here: additive uniform noise of one
step's width (Balle et al.) and the straight-through estimator (round
forward, identity gradient backward).
"""

from __future__ import annotations

from typing import Literal, Optional

import torch

QuantizeMode = Literal["round", "ste", "noise"]
QUANTIZE_MODES = ("round", "ste", "noise")


def quantize(
    y: torch.Tensor,
    q_step: float = 1.0,
    mode: QuantizeMode = "round",
    means: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Returns y quantized with step ``q_step`` around ``means`` (default 0).

    mode "round": ``mean + Q * round((y - mean) / Q)``, no gradient.
    mode "ste": the same forward value, identity gradient backward.
    mode "noise": ``y + Q * u`` with u ~ U(-1/2, 1/2): the training proxy
    whose density is the model's density convolved with the step's box.
    """
    check_q_step(q_step)
    if mode == "noise":
        return y + q_step * (torch.rand_like(y) - 0.5)
    centred = y if means is None else y - means
    rounded = torch.round(centred / q_step) * q_step
    if mode == "ste":
        rounded = centred + (rounded - centred).detach()
    elif mode != "round":
        raise ValueError(f"mode must be one of {QUANTIZE_MODES}, got {mode!r}")
    return rounded if means is None else rounded + means


def symbols_of(y: torch.Tensor, q_step: float = 1.0, means: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The integer symbols ``round((y - mean) / Q)`` as int32 (what the coder codes)."""
    check_q_step(q_step)
    centred = y.detach() if means is None else y.detach() - means
    scaled = torch.round(centred / q_step)
    if scaled.numel():
        low, high = torch.aminmax(scaled)  # one pass; NaN and inf fail the test below
        # Both bounds are exact in float32 (2**31 - 1 is not: it rounds up to 2**31).
        if not (float(low) >= -(2.0**31) and float(high) < 2.0**31):
            raise ValueError("symbols must be finite and within int32 after quantization (check y and q_step)")
    return scaled.to(torch.int32)


def dequantize(symbols: torch.Tensor, q_step: float = 1.0, means: Optional[torch.Tensor] = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``mean + Q * symbol``: the inverse of :func:`symbols_of` on its image."""
    check_q_step(q_step)
    values = symbols.to(dtype) * q_step
    return values if means is None else values + means


def check_q_step(q_step: float) -> None:
    if not isinstance(q_step, (int, float)) or isinstance(q_step, bool):
        raise TypeError(f"q_step must be a Python float, got {type(q_step).__name__}")
    if not (q_step > 0 and q_step < float("inf")):
        raise ValueError(f"q_step must be positive and finite, got {q_step}")
