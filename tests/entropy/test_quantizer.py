"""featcodec.entropy's quantizer: rounding, straight-through, noise, and the symbol mapping."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from featcodec.entropy import dequantize, quantize, symbols_of

steps = st.floats(0.01, 100.0)


@given(q=steps, seed=st.integers(0, 2**16))
def test_round_is_dequantized_symbols(q, seed):
    torch.manual_seed(seed)
    y = torch.randn(3, 4, 5) * 50
    means = torch.randn(3, 4, 5)
    for m in (None, means):
        assert torch.equal(quantize(y, q, "round", m), dequantize(symbols_of(y, q, m), q, m))


def test_straight_through_passes_gradient_and_rounds_forward():
    y = torch.tensor([0.2, 0.7, -1.6], requires_grad=True)
    out = quantize(y, 0.5, "ste")
    assert torch.allclose(out, torch.tensor([0.0, 0.5, -1.5]))
    out.sum().backward()
    assert torch.equal(y.grad, torch.ones(3))


def test_noise_stays_within_half_a_step():
    torch.manual_seed(0)
    y = torch.zeros(10000)
    noisy = quantize(y, 2.0, "noise")
    assert noisy.abs().max() <= 1.0 and noisy.std() > 0.5


def test_bad_arguments():
    y = torch.zeros(3)
    with pytest.raises(ValueError, match="q_step"):
        quantize(y, 0.0)
    with pytest.raises(ValueError, match="q_step"):
        quantize(y, float("nan"))
    with pytest.raises(TypeError, match="q_step"):
        quantize(y, torch.tensor(1.0))
    with pytest.raises(ValueError, match="mode"):
        quantize(y, 1.0, "floor")
    with pytest.raises(ValueError, match="int32"):
        symbols_of(torch.tensor([3e9]), 1.0)
    with pytest.raises(ValueError, match="int32"):
        symbols_of(torch.tensor([2.0**31 - 1]), 1.0)  # float32 rounds it to 2**31
    assert symbols_of(torch.tensor([-(2.0**31)]), 1.0).item() == -(2**31)
    with pytest.raises(ValueError, match="finite"):
        symbols_of(torch.tensor([float("inf")]), 1.0)
    with pytest.raises(ValueError, match="finite"):
        symbols_of(torch.tensor([0.0, float("nan")]), 1.0)
