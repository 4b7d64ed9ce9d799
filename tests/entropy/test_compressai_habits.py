"""What CompressAI users bring along: quantization around the median, CompressAI-style
indexes passed as scales, CompressAI method names."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import featcodec as fc
from featcodec.entropy import FactorizedPrior, GaussianConditional, Hyperprior, StaleTablesError

MEDIANS = torch.tensor([0.3, -2.7, 4.5, 0.0])


@functools.lru_cache(maxsize=None)
def median_prior(around_median: bool = True, seed: int = 0, init_scale: float = 10.0) -> FactorizedPrior:
    """A prior whose density is shifted so that its medians are off the integers."""
    torch.manual_seed(seed)
    prior = FactorizedPrior(4, around_median=around_median, init_scale=init_scale).eval()
    with torch.no_grad():
        prior.biases[-1].sub_(MEDIANS.view(4, 1, 1))  # moves the CDF, roughly by the median
        prior.quantiles[:, 0, 1] = MEDIANS
    prior.update_tables()
    return prior


# --- quantization around the median ----------------------------------------------------


@given(seed=st.integers(0, 2**16), q_step=st.sampled_from([1.0, 0.5, 2.5]), spread=st.floats(0.1, 30))
def test_around_median_round_trip_matches_forward(seed, q_step, spread):
    prior = median_prior()
    y = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(seed)) * spread
    y_hat, likelihoods = prior(y, q_step)
    data = prior.compress(y, q_step)
    assert torch.equal(prior.decompress(data, y.shape, q_step), y_hat)
    # y_hat sits on the grid Q * (median + k).
    offset = (y_hat - q_step * MEDIANS.view(1, 4, 1, 1)) / q_step
    assert torch.allclose(offset, torch.round(offset), atol=1e-4 * (1 + offset.abs().max()))
    assert bool((likelihoods > 0).all())


def test_around_median_quantizes_around_the_median_not_zero():
    centred, zero = median_prior(True), median_prior(False)
    y = torch.full((1, 4, 1, 1), 0.45)
    assert centred(y)[0].flatten().tolist() == pytest.approx([0.3, 0.3, 0.5, 0.0])
    assert zero(y)[0].flatten().tolist() == [0.0, 0.0, 0.0, 0.0]


def test_around_median_tables_follow_the_shifted_density():
    """Symbol k of channel c has the probability of the bin around median_c + k, not around k."""
    prior = median_prior(init_scale=2.0)
    tables, layers = prior.tables, prior._layers(exact=True)

    def pmf(c: int, values: torch.Tensor) -> np.ndarray:
        values = values.view(1, 1, -1).expand(4, 1, -1)
        upper, lower = prior._logits(values + 0.5, layers)[c], prior._logits(values - 0.5, layers)[c]
        return (torch.sigmoid(upper) - torch.sigmoid(lower)).flatten().numpy()

    for c in range(3):  # the channels whose median is not 0
        k = torch.arange(int(tables.offsets[c]), int(tables.offsets[c] + tables.lengths[c])).double()
        freqs = tables.freqs(c)[:-1] / 2.0**tables.precision
        shifted = np.abs(freqs - pmf(c, k + float(MEDIANS[c]))).max()
        assert shifted < 1e-3
        assert shifted < np.abs(freqs - pmf(c, k)).max() / 4


def test_around_median_is_part_of_the_tables_fingerprint():
    state = median_prior(False).state_dict()
    prior = FactorizedPrior(4, around_median=True).eval()
    prior.load_state_dict(state)
    with pytest.raises(StaleTablesError):
        prior.compress(torch.zeros(1, 4, 2, 2))


def test_default_is_zero_centred_with_three_hidden_layers():
    prior = FactorizedPrior(3)
    assert prior.around_median is False
    assert prior.filters == (3, 3, 3)
    assert [tuple(m.shape) for m in prior.matrices] == [(3, 3, 1), (3, 3, 3), (3, 3, 3), (3, 1, 3)]
    assert FactorizedPrior(3, filters=(3, 3, 3, 3)).filters == (3, 3, 3, 3)


# --- scales, not indexes ------------------------------------------------------------------


def conditional() -> GaussianConditional:
    model = GaussianConditional().eval()
    model.update_tables()
    return model


@pytest.mark.parametrize("bad", [-1.0, -1e-30, math.nan, math.inf, -math.inf])
def test_gaussian_rejects_negative_and_non_finite_scales(bad):
    model = conditional()
    y = torch.zeros(1, 2, 2, 2)
    scales = torch.ones_like(y)
    scales[0, 1, 1, 0] = bad
    data = model.compress(y, torch.ones_like(y))
    for call in (lambda: model(y, scales), lambda: model.compress(y, scales),
                 lambda: model.decompress(data, scales), lambda: model.table_indexes(scales)):
        with pytest.raises(ValueError, match="non-negative and finite"):
            call()


def test_gaussian_accepts_zero_scales():
    model = conditional()
    y = torch.tensor([[[[0.0, 1.0]]]])
    scales = torch.zeros_like(y)
    y_hat, likelihoods = model(y, scales)
    assert torch.equal(model.decompress(model.compress(y, scales), scales), y_hat)
    assert bool((likelihoods > 0).all())


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.int16, torch.uint8])
def test_gaussian_says_when_integer_scales_look_like_indexes(dtype):
    model = conditional()
    y = torch.zeros(1, 2, 2, 2)
    indexes = torch.tensor([0, 5, 63, 17, 2, 2, 9, 40], dtype=dtype).view(1, 2, 2, 2)
    for call in (lambda: model(y, indexes), lambda: model.compress(y, indexes)):
        with pytest.raises(ValueError, match="look like CompressAI table indexes"):
            call()


def test_gaussian_rejects_other_integer_scales_without_the_hint():
    model = conditional()
    y = torch.zeros(1, 1, 1, 2)
    for scales in (torch.tensor([[[[70, 3]]]]), torch.tensor([[[[-1, 3]]]]), torch.tensor([[[[True, False]]]])):
        with pytest.raises(ValueError, match="floating-point") as error:
            model(y, scales)
        assert "indexes" not in str(error.value)


# --- CompressAI method names -------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, name, equivalent",
    [
        (FactorizedPrior(2), "update", "update_tables()"),
        (FactorizedPrior(2), "loss", "aux_loss()"),
        (FactorizedPrior(2), "_get_medians", "around_median"),
        (FactorizedPrior(2), "quantized_cdf", "CdfTables"),
        (FactorizedPrior(2), "quantize", "featcodec.entropy.quantize"),
        (GaussianConditional(), "update", "update_tables()"),
        (GaussianConditional(), "build_indexes", "table_indexes"),
        (GaussianConditional(), "update_scale_table", "scale_table="),
        (GaussianConditional(), "_offset", "CdfTables"),
        (Hyperprior(4), "update", "update_tables()"),
        (Hyperprior(4), "entropy_bottleneck", "z_model"),
    ],
)
def test_compressai_names_point_to_featcodec(model, name, equivalent):
    with pytest.raises(AttributeError, match="a CompressAI name") as error:
        getattr(model, name)
    assert equivalent in str(error.value)
    assert type(model).__name__ in str(error.value)
    assert not hasattr(model, name)


def test_other_missing_names_are_plain_attribute_errors():
    prior = FactorizedPrior(2)
    with pytest.raises(AttributeError) as error:
        prior.no_such_thing
    assert "CompressAI" not in str(error.value)
    # Real attributes and submodules are found as before.
    assert prior.matrices[0].shape == (2, 3, 1) and prior.aux_loss().dim() == 0
    assert isinstance(Hyperprior(4).z_model, FactorizedPrior)
    assert fc.CdfTables is not None


def test_around_median_travels_with_the_config():
    prior = median_prior()
    config = prior.config()
    assert config["around_median"] is True and config["filters"] == [3, 3, 3]
    rebuilt = FactorizedPrior(**config).eval()
    rebuilt.load_state_dict(prior.state_dict())
    y = torch.randn(1, 4, 3, 3) * 3
    assert torch.equal(rebuilt.decompress(prior.compress(y), y.shape), prior(y)[0])
