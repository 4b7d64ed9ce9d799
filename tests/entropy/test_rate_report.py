"""Honest rate reports: each cause checked against a computation of its own, and trained models' actual bits meet their estimates."""

import copy
import math

import numpy as np
import pytest
import torch
from small_models import factorized, hyperprior

import featcodec as fc
from featcodec._varint import write_varint

from featcodec.entropy import GAP_CAUSES, FactorizedPrior, GaussianConditional, Hyperprior, estimate_bits


def _check_consistent(report, data_bytes):
    assert report.actual_bits == 8 * data_bytes
    assert math.isclose(report.main_neural_bits + sum(report.gaps.values()), report.actual_bits,
                        rel_tol=1e-9, abs_tol=1e-6)
    assert list(report.gaps) == list(GAP_CAUSES)
    d = report.as_dict()
    assert d["actual_bpp"] == report.actual_bits / report.pixels
    assert "flush and padding" in str(report) and "bpp" in str(report)


def _close(a, b, scale):
    assert math.isclose(a, b, rel_tol=1e-7, abs_tol=1e-6 * max(1.0, abs(scale))), (a, b)


def _table_bits(tables, rows, symbols):
    """-log2 of each symbol's frequency in its row (escape symbol outside the support), by hand from the CDF."""
    cdf = tables.cdf()
    out = []
    for row, v in zip(rows.tolist(), symbols.tolist()):
        offset, length = int(tables.offsets[row]), int(tables.lengths[row])
        s = v - offset if 0 <= v - offset < length else length
        out.append(tables.precision - math.log2(int(cdf[row, s + 1]) - int(cdf[row, s])))
    return torch.tensor(out, dtype=torch.float64)


def _escape_raw_bits(tables, rows, symbols):
    """6 + nb bits of each escaped value's code (docs/format.md), 0 for values in the support."""
    out = []
    for row, v in zip(rows.tolist(), symbols.tolist()):
        lo = int(tables.offsets[row])
        hi = lo + int(tables.lengths[row])
        if lo <= v < hi:
            out.append(0)
            continue
        u = 2 * (v - hi) if v >= hi else 2 * (lo - 1 - v) + 1
        out.append(6 + (u + 1).bit_length() - 1)
    return torch.tensor(out, dtype=torch.float64)


def test_factorized_report_each_cause_by_hand():
    model = factorized(3)
    q = 0.5
    y = torch.randn(2, 3, 8, 8) * 4
    tables = model.tables
    # Escaped, yet near enough for float64 probabilities to be nonzero.
    y[0, 0, 0, 0] = q * float(tables.offsets[0] + tables.lengths[0] + 5)
    y[1, 2, 3, 3] = q * float(tables.offsets[2] - 7)
    report = model.rate_report(y, (32, 32), q_step=q, extra_header_bytes=3)
    data, bare = model.compress(y, q_step=q), model.compress(y, q_step=q, checksum=False)
    _check_consistent(report, len(data) + 3)
    assert report.pixels == 2 * 32 * 32

    symbols = torch.round(y / q).to(torch.int64)
    rows = torch.arange(3).view(1, 3, 1, 1).expand_as(symbols).reshape(-1)
    flat = symbols.reshape(-1)
    escaped = torch.tensor([not 0 <= int(v) - int(tables.offsets[r]) < int(tables.lengths[r])
                            for r, v in zip(rows.tolist(), flat.tolist())])
    assert int(escaped.sum()) == 2
    # The model's own probabilities, in float64 through a double copy's forward.
    double = copy.deepcopy(model).double()
    with torch.no_grad():
        p64 = double._likelihood(symbols.double()).reshape(-1)
        _, p32 = model(y, q_step=q)
    model_bits = -torch.log2(p64)
    coded = _table_bits(tables, rows, flat)
    raw = _escape_raw_bits(tables, rows, flat)

    gaps = report.gaps
    _close(gaps["likelihood bound and float32"], float(model_bits.sum() + torch.log2(p32.double()).sum()),
           report.neural_bits)
    _close(gaps["table quantization"], float((coded - model_bits)[~escaped].sum()), report.neural_bits)
    _close(gaps["escapes"], float((coded + raw - model_bits)[escaped].sum()), report.neural_bits)
    ideal = fc.information_content(symbols.numpy(), tables, np.arange(3).reshape(1, 3, 1, 1))
    _close(gaps["flush and padding"], 8 * (len(bare) - 1) - ideal, ideal)
    assert gaps["header"] == 8 * (1 + 3)
    assert gaps["checksum"] == 8 * (len(data) - len(bare)) and 0 < gaps["checksum"] <= 32
    assert abs(gaps["scale-table rounding"]) < 1e-6 and gaps["side information (z)"] == 0


def test_hyperprior_report_each_cause_by_hand():
    model = hyperprior(4)
    q = 0.5
    y = torch.randn(2, 4, 6, 6)  # within 30 sigma of every scale: plain float64 CDFs resolve the bins
    report = model.rate_report(y, (24, 24), q_step=q)
    data = model.compress(y, q_step=q)
    _check_consistent(report, len(data))
    assert set(report.parts) == {"y", "z"}
    with torch.no_grad():
        z = model.h_a(y)
        z_message = model.z_model.compress(z, checksum=False)
        z_hat = torch.round(z)
        scales = model.h_s(z_hat).double()  # the float32 forward
        exact = model.coding_scales(z_hat)
    # z's whole cost: its size varint and its message.
    assert report.gaps["side information (z)"] == 8 * (len(write_varint(len(z_message))) + len(z_message))
    assert torch.allclose(scales, exact, rtol=1e-5)
    # Scale-table rounding: each symbol's Gaussian bits at its table's scale less at its own scale.
    symbols = torch.round(y / q).double()
    own = (exact / q).clamp_min(float(model.y_model.scale_table[0]))
    table = model.y_model.scale_table[torch.from_numpy(model.y_model.table_indexes(exact, q)).long()]

    def bits(sigma):
        d = symbols.abs()
        return -torch.log2(torch.special.ndtr((0.5 - d) / sigma) - torch.special.ndtr((-0.5 - d) / sigma))

    _close(report.gaps["scale-table rounding"], float((bits(table) - bits(own)).sum()), report.neural_bits)
    unchecked = len(model.y_model.compress(y, exact, q_step=q, checksum=False))
    y_message = len(data) - len(write_varint(len(z_message))) - len(z_message)
    assert report.gaps["checksum"] == 8 * (y_message - unchecked)
    assert report.gaps["header"] == 8


def test_gaussian_conditional_report_adds_up():
    model = GaussianConditional().eval()
    model.update_tables()
    y, scales = torch.randn(1, 2, 9, 9) * 3, torch.rand(1, 2, 9, 9) * 5
    report = model.rate_report(y, scales, (9, 9), checksum=2, extra_header_bytes=1)
    _check_consistent(report, len(model.compress(y, scales, checksum=2)) + 1)
    assert report.gaps["checksum"] == 8 * (len(model.compress(y, scales, checksum=2))
                                           - len(model.compress(y, scales, checksum=False)))
    off = model.rate_report(y, scales, (9, 9), checksum=False)
    assert off.gaps["checksum"] == 0 and off.actual_bits == 8 * len(model.compress(y, scales, checksum=False))


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
