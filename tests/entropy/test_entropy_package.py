"""featcodec.entropy's public surface and its runnable docstring examples."""

import doctest
import importlib

import pytest

import featcodec.entropy as entropy

MODULES = ["featcodec.entropy._factorized", "featcodec.entropy._gaussian", "featcodec.entropy._hyperprior",
           "featcodec.codec"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def test_public_names():
    for name in entropy.__all__:
        assert hasattr(entropy, name), name
    assert {"FactorizedPrior", "GaussianConditional", "Hyperprior", "estimate_bits", "RateReport",
            "StaleTablesError", "quantize"} <= set(entropy.__all__)
