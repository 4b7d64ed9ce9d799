"""Honest rate reports: the gaps add up, and trained models' actual bits meet their estimates."""

import math

import pytest
import torch
from small_models import factorized, hyperprior

from featcodec.entropy import GAP_CAUSES, FactorizedPrior, GaussianConditional, Hyperprior, estimate_bits


def _check_consistent(report, data_bytes):
    assert report.actual_bits == 8 * data_bytes
    assert math.isclose(report.main_neural_bits + sum(report.gaps.values()), report.actual_bits, rel_tol=1e-9, abs_tol=1e-6)
    assert list(report.gaps) == list(GAP_CAUSES)
    d = report.as_dict()
    assert d["actual_bpp"] == report.actual_bits / report.pixels
    assert "flush and padding" in str(report) and "bpp" in str(report)


def test_factorized_report_adds_up_with_escapes():
    model = factorized(3)
    y = torch.randn(2, 3, 8, 8) * 4
    y[0, 0, 0, 0] = 1e6  # escaped
    report = model.rate_report(y, (32, 32), q_step=0.5)
    _check_consistent(report, len(model.compress(y, q_step=0.5)))
    assert report.pixels == 2 * 32 * 32
    # The model itself would charge a 2e6 outlier far more than its escape code costs.
    assert report.parts["y"]["escapes"] == 1 and 6 < report.parts["y"]["escape_bits"] < 60
    assert report.gaps["escapes"] < 0
    assert report.gaps["checksum"] == 32 and report.gaps["side information (z)"] == 0


def test_hyperprior_report_adds_up():
    model = hyperprior(4)
    y = torch.randn(2, 4, 6, 6) * 7
    report = model.rate_report(y, (24, 24))
    _check_consistent(report, len(model.compress(y)))
    assert set(report.parts) == {"y", "z"}
    z = report.parts["z"]
    assert report.gaps["side information (z)"] == 8 * (z["message_bytes"] + 1)  # z and its size varint


def test_gaussian_conditional_report_adds_up():
    model = GaussianConditional().eval()
    model.update_tables()
    y, scales = torch.randn(1, 2, 9, 9) * 3, torch.rand(1, 2, 9, 9) * 5
    report = model.rate_report(y, scales, (9, 9))
    _check_consistent(report, len(model.compress(y, scales)))


def _train(model, y, steps, lr):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        _, likelihoods = model(y)
        (estimate_bits(likelihoods) / y.numel() + model.aux_loss()).backward()
        optimizer.step()
    model.eval()
    model.update_tables()


def test_fitted_factorized_prior_codes_within_1_percent_of_its_estimate():
    torch.manual_seed(0)
    spread = torch.tensor([0.5, 1.5, 4.0, 12.0]).view(1, 4, 1, 1)
    y = torch.distributions.Laplace(0.0, 1.0).sample((64, 4, 20, 20)) * spread  # 102,400 symbols
    model = FactorizedPrior(4)
    _train(model, y, steps=300, lr=0.02)
    report = model.rate_report(y, (80, 80))
    assert abs(report.actual_bits - report.neural_bits) <= 0.01 * report.neural_bits, str(report)
    # And the fit is real: within 3 % of the Laplace sources' entropy.
    assert report.neural_bits / y.numel() < 1.03 * _laplace_entropy_bits(spread.flatten())


def _laplace_entropy_bits(spreads):
    """Mean entropy (bits) of round(Laplace(0, b)) over the channels, by summation."""
    k = torch.arange(-2000, 2001, dtype=torch.float64)
    total = 0.0
    for b in spreads.double():
        cdf = lambda x: torch.where(x < 0, 0.5 * torch.exp(x / b), 1 - 0.5 * torch.exp(-x / b))  # noqa: E731
        p = (cdf(k + 0.5) - cdf(k - 0.5)).clamp_min(1e-300)
        total += float(-(p * torch.log2(p)).sum())
    return total / len(spreads)


def test_fitted_hyperprior_codes_within_2_percent_of_its_estimate():
    torch.manual_seed(0)
    field = torch.nn.functional.interpolate(torch.randn(32, 1, 4, 4), size=(16, 16), mode="bilinear")
    y = torch.randn(32, 8, 16, 16) * torch.exp(1.5 * field + 0.5)  # scale varies smoothly over space
    model = Hyperprior(8)
    _train(model, y, steps=300, lr=0.01)
    report = model.rate_report(y, (64, 64))
    assert abs(report.actual_bits - report.neural_bits) <= 0.02 * report.neural_bits, str(report)
    assert report.gaps["side information (z)"] != 0
