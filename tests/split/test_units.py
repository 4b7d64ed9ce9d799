"""Bottleneck units: shapes, exact size restoration, registry, parameter counts."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from featcodec.split import units
from featcodec.split.units import UNIT_KINDS, IdentityUnit, Stage, make_unit, parameter_count, register_unit


@settings(max_examples=60)
@given(kind=st.sampled_from(sorted(UNIT_KINDS)), height=st.integers(1, 40), width=st.integers(1, 40),
       stride=st.integers(1, 6), channels=st.integers(1, 6), code_channels=st.integers(1, 5))
def test_decoder_restores_the_input_size(kind, height, width, stride, channels, code_channels):
    unit = make_unit(kind, channels, code_channels, stride).eval()
    x = torch.randn(1, channels, height, width)
    with torch.no_grad():
        y = unit.encode(x)
        restored = unit.decode(y, (height, width))
    assert tuple(y.shape[1:]) == unit.code_shape(x.shape[1:])
    assert y.shape[1] == code_channels
    assert restored.shape == x.shape


@pytest.mark.parametrize("stride", [1, 2, 4, 6])
def test_code_is_strided(stride):
    unit = make_unit("dws", 8, 3, stride)
    y = unit.encode(torch.randn(2, 8, 24, 18))
    assert tuple(y.shape) == (2, 3, -(-24 // stride), -(-18 // stride))


def test_default_unit_is_the_seeds_depthwise_separable_layer():
    unit = make_unit(in_channels=16, out_channels=4, stride=2)
    depthwise, pointwise = (layer.conv for layer in unit.encoder.layers)
    assert (depthwise.groups, depthwise.kernel_size, depthwise.stride) == (16, (3, 3), (2, 2))
    assert (pointwise.in_channels, pointwise.out_channels, pointwise.kernel_size) == (16, 4, (1, 1))
    assert all(isinstance(layer.bn, torch.nn.BatchNorm2d) for layer in unit.encoder.layers)
    decoder_convs = [layer.conv for layer in unit.decoder.layers]
    assert all(isinstance(c, torch.nn.ConvTranspose2d) for c in decoder_convs)
    assert [(c.in_channels, c.out_channels, c.groups) for c in decoder_convs] == [(4, 16, 1), (16, 16, 16)]


@pytest.mark.parametrize("channels", [1024, 2048])
@pytest.mark.parametrize("code_channels", [32, 128])
def test_default_units_are_well_under_a_million_parameters(channels, code_channels):
    count = parameter_count(make_unit("dws", channels, code_channels, 2))
    expected_convs = 2 * (9 * channels + channels * code_channels)
    expected_bn = 2 * (channels + code_channels) + 2 * (2 * channels)  # encoder BN(C), BN(C_r); decoder BN(C) x 2
    assert count == expected_convs + expected_bn
    assert count < 700_000


def test_kinds_differ_in_size_as_documented():
    counts = {kind: parameter_count(make_unit(kind, 256, 32, 2)) for kind in UNIT_KINDS}
    assert counts["dws"] < counts["dws2"] < counts["conv"] < counts["conv2"]


def test_registry_rejects_unknown_and_duplicate_kinds():
    with pytest.raises(ValueError, match="unknown unit kind"):
        make_unit("nope", 4, 2, 1)
    with pytest.raises(ValueError, match="already registered"):
        register_unit("dws", lambda c, c_r, s: [])
    with pytest.raises(ValueError, match="positive"):
        make_unit("dws", 4, 0, 1)


def test_registering_a_kind(monkeypatch):
    monkeypatch.setattr(units, "UNIT_KINDS", dict(UNIT_KINDS))
    register_unit("wide", lambda c, c_r, s: [Stage(c, c_r, 5, s)])
    unit = make_unit("wide", 3, 2, 3)
    assert unit.decode(unit.encode(torch.randn(1, 3, 10, 11)), (10, 11)).shape == (1, 3, 10, 11)


def test_identity_unit_checks_the_size():
    x = torch.randn(1, 2, 5, 5)
    assert IdentityUnit().decode(IdentityUnit().encode(x), (5, 5)) is x
    with pytest.raises(ValueError):
        IdentityUnit().decode(x, (4, 5))
