"""Shared builders for the entropy-model tests: small models with tables, cached per configuration."""

from __future__ import annotations

import functools

import torch

from featcodec.entropy import FactorizedPrior, Hyperprior, MeanScaleHyperprior


@functools.lru_cache(maxsize=None)
def factorized(channels: int, seed: int = 0) -> FactorizedPrior:
    """An untrained (random-bias) FactorizedPrior in eval mode, with tables."""
    torch.manual_seed(seed)
    model = FactorizedPrior(channels).eval()
    model.update_tables()
    return model


@functools.lru_cache(maxsize=None)
def hyperprior(channels: int, seed: int = 0) -> Hyperprior:
    """A random-weight Hyperprior in eval mode, with tables."""
    torch.manual_seed(seed)
    model = Hyperprior(channels).eval()
    model.update_tables()
    return model


@functools.lru_cache(maxsize=None)
def mean_scale(channels: int, hyper_channels: int = 6, seed: int = 0) -> MeanScaleHyperprior:
    """A random-weight MeanScaleHyperprior in eval mode, with tables."""
    torch.manual_seed(seed)
    model = MeanScaleHyperprior(channels, hyper_channels).eval()
    model.update_tables()
    return model
