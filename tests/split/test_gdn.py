"""GDN and inverse GDN against their definitions."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from featcodec.split.gdn import GDN, NonNegative  # noqa: E402


def _random_gdn(channels: int, **kwargs) -> GDN:
    layer = GDN(channels, **kwargs)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        beta = 0.5 + torch.rand(channels, generator=generator, dtype=torch.float64)
        gamma = torch.rand(channels, channels, generator=generator, dtype=torch.float64) * 0.3
        layer.beta.copy_(layer.beta_map.init(beta).float())
        layer.gamma.copy_(layer.gamma_map.init(gamma).float())
    return layer


def _direct(layer: GDN, x: torch.Tensor) -> torch.Tensor:
    """The formulas, one channel and one position at a time, in float64."""
    beta = layer.beta_value.double()
    gamma = layer.gamma_value.double()
    x = x.double()
    out = torch.empty_like(x)
    n, c, h, w = x.shape
    for b in range(n):
        for i in range(c):
            for r in range(h):
                for s in range(w):
                    column = x[b, :, r, s]
                    if layer.simplified:
                        norm = beta[i] + (gamma[i] * column.abs()).sum()
                    else:
                        norm = torch.sqrt(beta[i] + (gamma[i] * column ** 2).sum())
                    out[b, i, r, s] = x[b, i, r, s] * norm if layer.inverse else x[b, i, r, s] / norm
    return out


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("simplified", [True, False])
def test_gdn_matches_its_definition(inverse, simplified):
    layer = _random_gdn(4, inverse=inverse, simplified=simplified)
    x = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(4)) * 3
    got = layer(x).detach().double()
    with torch.no_grad():
        want = _direct(layer, x)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6 * float(want.abs().max().detach()))


def test_fresh_gdn_is_x_over_one_plus_tenth_abs_x():
    layer = GDN(3)
    x = torch.randn(1, 3, 4, 4)
    assert torch.allclose(layer(x), x / (1 + 0.1 * x.abs()), rtol=1e-5, atol=1e-6)
    inverse = GDN(3, inverse=True)
    assert torch.allclose(inverse(x), x * (1 + 0.1 * x.abs()), rtol=1e-5, atol=1e-6)


def test_reparameterization_keeps_beta_above_minimum_and_gamma_non_negative():
    layer = GDN(3, beta_min=1e-3)
    with torch.no_grad():
        layer.beta.fill_(-5.0)
        layer.gamma.fill_(-5.0)
    assert bool((layer.beta_value >= 1e-3 - 1e-9).all())
    assert bool((layer.gamma_value >= 0).all())
    value = torch.tensor([0.0, 1e-3, 0.5, 7.0], dtype=torch.float64)
    mapping = NonNegative(minimum=0.0)
    assert torch.allclose(mapping(mapping.init(value)), value, rtol=1e-9, atol=1e-12)


def test_gradient_at_the_bound_passes_when_it_pushes_up():
    layer = GDN(2)
    with torch.no_grad():
        layer.beta.fill_(-1.0)  # below the bound
    x = torch.ones(1, 2, 1, 1)
    # d(out)/d(beta) < 0: minimizing out raises beta (passes), minimizing -out would lower it (blocked).
    layer(x).sum().backward()
    assert layer.beta.grad is not None and bool((layer.beta.grad < 0).all())
    layer.zero_grad()
    (-layer(x)).sum().backward()
    assert bool((layer.beta.grad == 0).all())


def test_bad_arguments():
    with pytest.raises(ValueError, match="channels"):
        GDN(0)
    with pytest.raises(ValueError, match="beta_min"):
        GDN(2, beta_min=0.0)
    with pytest.raises(ValueError, match="expected"):
        GDN(2)(torch.zeros(1, 3, 2, 2))
