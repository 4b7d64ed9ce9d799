"""The mean-scale hyperprior (Minnen et al., NeurIPS 2018): its messages, means and side information."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from small_models import mean_scale

from featcodec import DecodeError
from featcodec.entropy import EntropyCoder, MeanScaleHyperprior, dequantize, symbols_of


def _coded_means(model, y):
    """The means both ends code with: h_s(round(h_a(y))) in float64, as float32."""
    with torch.no_grad():
        z_hat = torch.round(model.h_a(y))
        scales, means = model.coding_parameters(z_hat, y.shape)
    return scales, means.to(torch.float32)


@settings(max_examples=25, deadline=None)  # each example runs h_a and h_s twice; 25 cover the shapes
@given(batch=st.integers(1, 2), height=st.integers(1, 11), width=st.integers(1, 11),
       q=st.sampled_from([0.1, 1.0, 3.0]), magnitude=st.sampled_from([0.1, 5.0, 200.0]),
       seed=st.integers(0, 2**31))
def test_roundtrip_gives_the_means_plus_q_times_the_symbols(batch, height, width, q, magnitude, seed):
    model = mean_scale(4)
    y = torch.randn(batch, 4, height, width, generator=torch.Generator().manual_seed(seed)) * magnitude
    data = model.compress(y, q_step=q)
    decoded = model.decompress(data, y.shape, q_step=q)
    _, means = _coded_means(model, y)
    assert torch.equal(decoded, dequantize(symbols_of(y, q, means), q, means))
    expected, likelihoods = model(y, q_step=q)  # float32 means: equal up to their rounding
    assert torch.allclose(decoded, expected, rtol=1e-5, atol=1e-5 * (1 + float(y.abs().max())))
    assert likelihoods["z"].shape == (batch, 6, -(-(-(-height // 2)) // 2), -(-(-(-width // 2)) // 2))


def test_the_decoder_adds_the_predicted_means_back():
    model = mean_scale(4, seed=1)
    y = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2)) * 3
    _, means = _coded_means(model, y)
    assert float(means.abs().min()) > 0  # random weights: no mean is exactly zero
    decoded = model.decompress(model.compress(y, q_step=0.5), y.shape, q_step=0.5)
    symbols = torch.round((decoded - means) / 0.5)
    assert torch.allclose(decoded - means, symbols * 0.5, atol=1e-5)
    assert not torch.allclose(decoded, torch.round(decoded / 0.5) * 0.5, atol=1e-3)  # not zero-mean coding


def test_is_an_entropy_coder_and_codes_an_empty_batch():
    model = mean_scale(3)
    assert isinstance(model, EntropyCoder)
    y = torch.zeros(0, 3, 5, 4)
    assert model.decompress(model.compress(y), y.shape).shape == y.shape


def test_wrong_shape_and_corrupt_bytes_raise_decode_error():
    model = mean_scale(4)
    y = torch.randn(1, 4, 7, 6, generator=torch.Generator().manual_seed(3)) * 5
    data = model.compress(y)
    with pytest.raises(DecodeError):
        model.decompress(data, (1, 4, 7, 9))  # another z size
    with pytest.raises(DecodeError):
        model.decompress(data[: len(data) // 2], y.shape)
    rng = np.random.default_rng(0)
    reference = model.decompress(data, y.shape)
    for _ in range(100):
        corrupt = bytearray(data)
        corrupt[rng.integers(len(corrupt))] ^= 1 << rng.integers(8)
        try:
            out = model.decompress(bytes(corrupt), y.shape)
        except DecodeError:
            continue
        assert torch.equal(out, reference)  # a flip in a bit that changes nothing


def test_rate_report_counts_z():
    model = mean_scale(4)
    y = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(4)) * 3
    report = model.rate_report(y, (32, 32))
    assert report.actual_bits == 8 * len(model.compress(y))
    assert "side information (z)" in str(report)


def test_coding_parameters_need_y_shape():
    model = MeanScaleHyperprior(3, 2)
    with pytest.raises(ValueError, match="shape"):
        model.coding_parameters(torch.zeros(1, 2, 1, 1))
