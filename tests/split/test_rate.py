"""Rate terms: the L1 proxy's quantization and gradients, the registry."""

from __future__ import annotations

import pytest
import torch

from featcodec.split import L1Rate, RATE_TERMS, make_rate


def test_l1_rate_rounds_in_eval_and_passes_gradients_straight_through_in_training():
    y = torch.tensor([[-1.3, 0.2, 2.6, 0.74]], requires_grad=True)
    term = L1Rate()
    y_hat, rate = term.eval()(y, 0.5)
    assert torch.equal(y_hat, torch.tensor([[-1.5, 0.0, 2.5, 0.5]]))
    assert rate.item() == pytest.approx((1.3 + 0.2 + 2.6 + 0.74) / 0.5)
    y_hat, rate = term.train()(y, 0.5)
    assert torch.equal(y_hat.detach(), torch.tensor([[-1.5, 0.0, 2.5, 0.5]]))
    (y_hat.sum() + rate).backward()
    assert torch.allclose(y.grad, 1 + torch.sign(y.detach()) / 0.5)


def test_l1_rate_noise_mode_stays_within_half_a_step():
    y = torch.zeros(10_000)
    y_hat, _ = L1Rate("noise").train()(y, 2.0)
    assert y_hat.abs().max() <= 1.0 and y_hat.std() > 0.5
    with pytest.raises(ValueError):
        L1Rate("round")


def test_registry():
    assert set(RATE_TERMS) >= {"l1", "hyperprior", "factorized"}
    assert isinstance(make_rate("l1", 8), L1Rate)
    assert float(make_rate("l1", 8).aux_loss()) == 0.0
    with pytest.raises(ValueError, match="unknown rate term"):
        make_rate("l2", 8)


@pytest.mark.parametrize("name", ["hyperprior", "factorized"])
def test_neural_rate_is_the_estimated_bits_and_trains(name):
    from featcodec.entropy import estimate_bits

    term = make_rate(name, 4)
    assert term.in_bits
    y = (torch.randn(2, 4, 5, 3, generator=torch.Generator().manual_seed(0)) * 3).requires_grad_()
    y_hat, rate = term.train()(y, 0.5)
    assert rate.dim() == 0 and float(rate.detach()) > 0
    assert not torch.equal(y_hat, torch.round(y / 0.5) * 0.5)  # noise in training
    (rate + term.aux_loss()).backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    assert all(p.grad is not None for p in term.parameters() if p.requires_grad)
    with torch.no_grad():
        y_hat, rate = term.eval()(y, 0.5)
        assert torch.equal(y_hat, torch.round(y / 0.5) * 0.5)
        assert float(rate) == pytest.approx(float(estimate_bits(term.entropy_model(y, q_step=0.5)[1])))
