"""decompress(compress(y)) equals the eval-mode forward y_hat exactly, for both models (hypothesis)."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from small_models import factorized, hyperprior

from featcodec import DecodeError


@st.composite
def latents(draw, channels=None, dims=4):
    """(y, q): random shape, batch, magnitude and step, with occasional huge outliers."""
    batch = draw(st.integers(1, 3))
    c = draw(st.sampled_from([1, 3, 8])) if channels is None else channels
    spatial = [draw(st.integers(1, 9)) for _ in range(dims - 2)]
    q = draw(st.sampled_from([0.05, 0.5, 1.0, 3.7, 10.0]))
    magnitude = draw(st.sampled_from([0.01, 1.0, 10.0, 300.0]))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    y = torch.randn((batch, c, *spatial), generator=generator) * magnitude
    if draw(st.booleans()):  # a few huge outliers, escaped by the tables
        flat = y.view(-1)
        picks = torch.randint(flat.numel(), (3,), generator=generator)
        flat[picks] = torch.tensor([1e6, -2e7, 5e8])[: picks.numel()] * q
    return y, q


@given(latents(dims=4) | latents(dims=3) | latents(dims=5))
def test_factorized_roundtrip(case):
    y, q = case
    model = factorized(y.shape[1])
    data = model.compress(y, q_step=q)
    expected, _ = model(y, q_step=q)
    assert torch.equal(model.decompress(data, y.shape, q_step=q), expected)


@given(latents(channels=4))
def test_hyperprior_roundtrip(case):
    y, q = case
    model = hyperprior(4)
    data = model.compress(y, q_step=q)
    expected, likelihoods = model(y, q_step=q)
    assert torch.equal(model.decompress(data, y.shape, q_step=q), expected)
    assert likelihoods["z"].shape == (y.shape[0], 8, *y.shape[2:])


def test_empty_batch_roundtrips():
    y = torch.zeros(0, 3, 4, 4)
    model = factorized(3)
    assert model.decompress(model.compress(y), y.shape).shape == y.shape
    hp = hyperprior(4)
    y = torch.zeros(0, 4, 2, 2)
    assert hp.decompress(hp.compress(y), y.shape).shape == y.shape


def test_outliers_far_outside_the_tables_roundtrip():
    y = torch.zeros(1, 3, 4, 4)
    y[0, 0, 0, 0], y[0, 1, 2, 3], y[0, 2, 3, 3] = 2.0**31 - 128, -(2.0**31), 123456.0
    for model in (factorized(3),):
        assert torch.equal(model.decompress(model.compress(y), y.shape), y)
    y = torch.zeros(1, 4, 3, 3)
    y[0, 1, 1, 1] = -1e9
    hp = hyperprior(4)
    assert torch.equal(hp.decompress(hp.compress(y), y.shape), y)


def test_wrong_shape_or_step_is_caught():
    model = factorized(3)
    y = torch.randn(2, 3, 5, 5) * 4
    data = model.compress(y, q_step=0.5)
    with pytest.raises(DecodeError):
        model.decompress(data, (2, 3, 5, 4), q_step=0.5)
    with pytest.raises(ValueError, match="shape"):
        model.decompress(data, (2, 4, 5, 5), q_step=0.5)
    with pytest.raises(ValueError, match=r"\(B, 3"):
        model.compress(torch.zeros(2, 4, 5, 5))
    hp = hyperprior(4)
    data = hp.compress(torch.randn(1, 4, 6, 6) * 5)
    with pytest.raises(DecodeError):
        hp.decompress(data, (1, 4, 6, 5))
    with pytest.raises(DecodeError):
        hp.decompress(data[: len(data) // 2], (1, 4, 6, 6))


def test_corrupt_hyperprior_messages_raise_decode_error():
    hp = hyperprior(4)
    y = torch.randn(1, 4, 6, 6) * 5
    data = bytearray(hp.compress(y))
    rng = np.random.default_rng(0)
    for _ in range(200):
        corrupt = bytearray(data)
        corrupt[rng.integers(len(corrupt))] ^= 1 << rng.integers(8)
        try:
            out = hp.decompress(bytes(corrupt), y.shape)
        except DecodeError:
            continue
        # Accepted only if the flip left the values intact (a flip in a don't-care bit).
        assert torch.equal(out, hp(y)[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_tensors_in_and_back_on_the_device():
    model = factorized(3).cuda()
    y = torch.randn(2, 3, 4, 4, device="cuda") * 3
    out = model.decompress(model.compress(y), y.shape)
    assert out.device == y.device and torch.equal(out, model(y)[0])
    model.cpu()
