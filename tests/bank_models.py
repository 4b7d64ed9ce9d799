"""Small trained-enough codecs for the codec-file and bank tests: dws units on 16 x 7 x 7 features."""

from __future__ import annotations

import functools

import torch

from featcodec.codec import FeatureCodec, fit_prior
from featcodec.split.units import make_unit

FEATURE_SHAPE = (16, 7, 7)


def features(n: int, seed: int = 0) -> torch.Tensor:
    """Post-ReLU features, as at a ResNet split point."""
    return torch.relu(torch.randn(n, *FEATURE_SHAPE, generator=torch.Generator().manual_seed(seed)) * 2)


@functools.lru_cache(maxsize=None)
def unit_codec(channels: int = 4, q_step: float = 0.5, seed: int = 0) -> FeatureCodec:
    """A dws unit (random weights, BatchNorm statistics set) with a prior fitted to its code."""
    torch.manual_seed(seed)
    unit = make_unit("dws", FEATURE_SHAPE[0], channels, 2)
    for m in unit.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(0, 0.5)
            m.running_var.uniform_(0.5, 2)
    prior = fit_prior(unit, features(32, seed), q_step, epochs=2, batch_size=16, progress=False, seed=seed)
    return FeatureCodec(unit.encoder, unit.decoder, prior, q_step, feature_shape=FEATURE_SHAPE,
                        split="layer", network="net")
