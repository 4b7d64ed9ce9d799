"""featcodec.compat.compressai: accelerated CompressAI models decode exactly what CompressAI decodes;
the converters keep the likelihoods; models it cannot accelerate are refused untouched."""

from __future__ import annotations

import copy
import os
import pathlib
import pickle
import subprocess
import sys
import textwrap
import warnings

import pytest

compressai = pytest.importorskip("compressai")  # the test extra installs it

import numpy as np  # noqa: E402
import torch  # noqa: E402
from compressai.entropy_models import EntropyBottleneck, GaussianConditional, GaussianMixtureConditional  # noqa: E402
from compressai.models import (  # noqa: E402
    Cheng2020Anchor,
    FactorizedPrior,
    FactorizedPriorReLU,
    JointAutoregressiveHierarchicalPriors,
    MeanScaleHyperprior,
    ScaleHyperprior,
)
from compressai.models.base import get_scale_table  # noqa: E402

import featcodec  # noqa: E402
from featcodec import entropy  # noqa: E402
from featcodec.compat.compressai import (  # noqa: E402
    AcceleratedEntropyBottleneck,
    AcceleratedGaussianConditional,
    UnsupportedModelError,
    accelerate,
    entropy_bottleneck_from_featcodec,
    factorized_prior_from_compressai,
    gaussian_conditional_from_compressai,
    gaussian_conditional_from_featcodec,
)

warnings.filterwarnings("ignore", category=FutureWarning)

@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The models are tiny: torch's thread pool costs more than it gives (far more on a loaded machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


ARCHITECTURES = [FactorizedPrior, FactorizedPriorReLU, ScaleHyperprior, MeanScaleHyperprior]
TABLES = ["compressai", "featcodec"]


def small_model(cls, seed: int = 0, loud: float = 1.0) -> torch.nn.Module:
    """A random-weight model (N=8, M=12), update()d.  ``loud`` scales y, so that the
    symbols spread wide and some fall outside the tables (escapes)."""
    torch.manual_seed(seed)
    model = cls(8, 12).eval()
    with torch.no_grad():
        last = [m for m in model.g_a.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        last.weight.mul_(loud)
        last.bias.mul_(loud)
    model.update(force=True)
    return model


def images(seed: int, shape=(2, 3, 64, 64)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def code(model, x):
    with torch.no_grad():
        out = model.compress(x)
        return out, model.decompress(out["strings"], out["shape"])["x_hat"]


# --- accelerate: the same x_hat -------------------------------------------------------------


@pytest.mark.parametrize("cls", ARCHITECTURES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("tables", TABLES)
@pytest.mark.parametrize("loud", [1.0, 40.0, 400.0])
def test_accelerated_model_decodes_the_same_x_hat(cls, tables, loud):
    model = small_model(cls, loud=loud)
    fast = accelerate(model, tables=tables)
    for seed, shape in [(0, (2, 3, 64, 64)), (1, (1, 3, 64, 128)), (2, (3, 3, 128, 64))]:
        x = images(seed, shape)
        theirs, x_hat = code(model, x)
        ours, fast_x_hat = code(fast, x)
        assert torch.equal(fast_x_hat, x_hat)
        # CompressAI's return structure: a list of strings per entropy module, one per image.
        assert [len(s) for s in ours["strings"]] == [len(s) for s in theirs["strings"]] == \
            [shape[0]] * len(theirs["strings"])
        assert ours["shape"] == theirs["shape"]
        assert all(isinstance(s, bytes) for strings in ours["strings"] for s in strings)
        assert ours["strings"] != theirs["strings"]  # featcodec's format, not CompressAI's


@pytest.mark.parametrize("tables", TABLES)
def test_accelerated_modules_decode_what_compressai_decodes(tables):
    """The modules alone, with escapes on both sides of every table and means."""
    torch.manual_seed(1)
    bottleneck = EntropyBottleneck(5).eval()
    with torch.no_grad():
        bottleneck.quantiles[:, 0, 1] = torch.tensor([0.3, -1.5, 0.0, 2.25, -0.7])
    bottleneck.update(force=True)
    conditional = GaussianConditional(None).eval()
    conditional.update_scale_table(get_scale_table())
    fast_b = accelerate(torch.nn.ModuleList([bottleneck]), tables=tables)[0]
    fast_c = accelerate(torch.nn.ModuleList([conditional]), tables=tables)[0]
    generator = torch.Generator().manual_seed(2)
    y = torch.randn(2, 5, 7, 3, generator=generator) * torch.tensor([1.0, 20, 300, 1e5, 0.1]).view(1, 5, 1, 1)
    assert torch.equal(fast_b.decompress(fast_b.compress(y), y.shape[2:]),
                       bottleneck.decompress(bottleneck.compress(y), y.shape[2:]))
    scales = torch.exp(torch.randn(2, 5, 7, 3, generator=generator) * 3)
    means = torch.randn(2, 5, 7, 3, generator=generator) * 10
    for m in (None, means, means[:, :, :1, :1].contiguous()):
        indexes = conditional.build_indexes(scales)
        assert torch.equal(fast_c.build_indexes(scales), indexes)
        expected = conditional.decompress(conditional.compress(y, indexes, m), indexes, means=m)
        assert torch.equal(fast_c.decompress(fast_c.compress(y, indexes, m), indexes, means=m), expected)
        assert torch.equal(expected, conditional(y, scales, m)[0])


def test_build_indexes_equals_compressais_at_every_boundary():
    conditional = GaussianConditional(None)
    conditional.update_scale_table(get_scale_table())
    table = conditional.scale_table
    scales = torch.cat([table, table.nextafter(torch.tensor(0.0)), table.nextafter(torch.tensor(1e9)),
                        torch.tensor([0.0, -1.0, 0.05, 1e30, float("inf"), float("-inf"), float("nan")]),
                        torch.exp(torch.randn(5000, generator=torch.Generator().manual_seed(0)) * 3)])
    expected = conditional.build_indexes(scales)
    conditional.__class__ = AcceleratedGaussianConditional
    for values in (scales, scales.double(), scales.view(1, -1, 1)):
        assert torch.equal(conditional.build_indexes(values), expected.view(values.shape))
    # A bound above the smallest table scale lifts the small scales first, as CompressAI's does.
    lifted = GaussianConditional([0.1, 0.2, 0.4, 0.8], scale_bound=0.3)
    expected = lifted.build_indexes(scales)
    lifted.__class__ = AcceleratedGaussianConditional
    assert torch.equal(lifted.build_indexes(scales), expected)


def test_corrupt_strings_raise_decode_error():
    model = small_model(ScaleHyperprior, loud=40.0)
    fast = accelerate(model)
    out = fast.compress(images(0))
    strings = [list(s) for s in out["strings"]]
    strings[0][1] = strings[0][1][:-1] + bytes([strings[0][1][-1] ^ 0x10])
    with pytest.raises(featcodec.DecodeError):
        fast.decompress(strings, out["shape"])


def test_checksum_sizes_and_the_requirement_to_have_one():
    model = small_model(ScaleHyperprior, loud=40.0)
    x = images(6)
    expected = code(model, x)[1]
    sizes = []
    for checksum in (False, 1, 2, True):
        fast = accelerate(model, checksum=checksum)
        out, x_hat = code(fast, x)
        assert torch.equal(x_hat, expected)
        sizes.append(sum(len(s) for strings in out["strings"] for s in strings))
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0]
    # A receiver that relies on the checksum refuses strings without one.
    unchecked = accelerate(model, checksum=False).compress(x)
    with pytest.raises(featcodec.DecodeError):
        accelerate(model).decompress(unchecked["strings"], unchecked["shape"])
    with pytest.raises(ValueError, match="checksum"):
        accelerate(model, checksum=3)


def test_tables_follow_update_and_load_state_dict():
    model = small_model(FactorizedPrior, loud=40.0)
    fast = accelerate(model, tables="compressai")
    bottleneck = fast.entropy_bottleneck
    before = bottleneck.coding_tables()
    assert bottleneck.coding_tables() is before  # cached
    with torch.no_grad():
        bottleneck.quantiles[:, 0, 0] -= 5.0  # wider supports after the next update()
    assert bottleneck.coding_tables() is before  # as CompressAI: the tables are the last update()'s
    fast.update(force=True)
    after = bottleneck.coding_tables()
    assert after != before and (after.lengths > before.lengths).all()
    x = images(3)
    assert torch.equal(code(fast, x)[1], code(compressai_copy(fast), x)[1])
    # A checkpoint loads into an accelerated model that was never update()d, and its tables come with it.
    fresh = accelerate(FactorizedPrior(8, 12).eval())
    fresh.load_state_dict(model.state_dict())
    assert fresh.entropy_bottleneck.coding_tables() == before
    assert torch.equal(code(fresh, x)[1], code(model, x)[1])


def compressai_copy(fast: torch.nn.Module) -> torch.nn.Module:
    """A plain CompressAI model with the accelerated one's state."""
    plain = copy.deepcopy(fast)
    for module in plain.modules():
        if isinstance(module, AcceleratedEntropyBottleneck):
            module.__class__ = EntropyBottleneck
        elif isinstance(module, AcceleratedGaussianConditional):
            module.__class__ = GaussianConditional
    return plain


def test_accelerate_copies_unless_inplace_and_keeps_the_state_dict():
    model = small_model(MeanScaleHyperprior)
    fast = accelerate(model)
    assert type(model.entropy_bottleneck) is EntropyBottleneck
    assert type(model.gaussian_conditional) is GaussianConditional
    assert type(fast.entropy_bottleneck) is AcceleratedEntropyBottleneck
    assert type(fast.gaussian_conditional) is AcceleratedGaussianConditional
    state = fast.state_dict()
    assert state.keys() == model.state_dict().keys()
    plain = MeanScaleHyperprior(8, 12).eval()
    plain.load_state_dict(state)  # strict: the accelerated state is CompressAI's
    x = images(4)
    assert torch.equal(code(plain, x)[1], code(fast, x)[1])
    same = accelerate(model, inplace=True)
    assert same is model and type(model.entropy_bottleneck) is AcceleratedEntropyBottleneck
    assert accelerate(model, tables="featcodec") is not model  # accelerating again: new options


def test_accelerated_models_deepcopy_and_pickle():
    fast = accelerate(small_model(ScaleHyperprior, loud=40.0))
    x = images(5)
    expected = code(fast, x)[1]
    for clone in (copy.deepcopy(fast), pickle.loads(pickle.dumps(fast))):
        assert type(clone.gaussian_conditional) is AcceleratedGaussianConditional
        assert torch.equal(code(clone, x)[1], expected)


def test_coding_before_update_raises_compressais_error():
    model = FactorizedPrior(8, 12).eval()
    fast = accelerate(model)
    with pytest.raises(ValueError, match="update"):
        fast.compress(images(0))


def test_accelerate_argument_errors():
    model = small_model(FactorizedPrior)
    with pytest.raises(ValueError, match="tables"):
        accelerate(model, tables="fast")
    with pytest.raises(ValueError, match="threads"):
        accelerate(model, threads=0)
    with pytest.raises(TypeError, match="nn.Module"):
        accelerate("model")


# --- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [JointAutoregressiveHierarchicalPriors, Cheng2020Anchor], ids=lambda c: c.__name__)
@pytest.mark.parametrize("inplace", [False, True])
def test_autoregressive_models_are_refused_untouched(cls, inplace):
    model = cls(8, 12) if cls is JointAutoregressiveHierarchicalPriors else cls(8)
    state = {key: value.clone() for key, value in model.state_dict().items()}
    with pytest.raises(UnsupportedModelError, match="autoregressive context model.*context_prediction.*MaskedConv2d"):
        accelerate(model, inplace=inplace)
    assert type(model.entropy_bottleneck) is EntropyBottleneck
    assert type(model.gaussian_conditional) is GaussianConditional
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())
    assert issubclass(UnsupportedModelError, ValueError)


def test_other_entropy_models_and_models_without_any_are_refused():
    mixture = torch.nn.ModuleDict({"eb": EntropyBottleneck(4), "gmm": GaussianMixtureConditional()})
    with pytest.raises(UnsupportedModelError, match="'gmm' is a GaussianMixtureConditional"):
        accelerate(mixture, inplace=True)
    assert type(mixture["eb"]) is EntropyBottleneck

    class CustomBottleneck(EntropyBottleneck):
        pass

    with pytest.raises(UnsupportedModelError, match="CustomBottleneck"):
        accelerate(torch.nn.Sequential(CustomBottleneck(4)))
    with pytest.raises(UnsupportedModelError, match="no EntropyBottleneck or GaussianConditional"):
        accelerate(torch.nn.Conv2d(3, 3, 1))


# --- converters -------------------------------------------------------------------------


def trained_looking_bottleneck(channels: int = 6, seed: int = 0) -> EntropyBottleneck:
    """An EntropyBottleneck with varied densities and medians off the integers."""
    torch.manual_seed(seed)
    bottleneck = EntropyBottleneck(channels, init_scale=4).eval()
    with torch.no_grad():
        for parameter in bottleneck.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
        bottleneck.quantiles[:, 0, 1] = torch.randn(channels) * 2
    bottleneck.update(force=True)
    return bottleneck


def assert_same_likelihoods(a: torch.Tensor, b: torch.Tensor) -> None:
    """The same probabilities up to float32 rounding of two formulas for one number."""
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_entropy_bottleneck_to_featcodec_keeps_y_hat_and_likelihoods():
    bottleneck = trained_looking_bottleneck()
    prior = factorized_prior_from_compressai(bottleneck)
    assert prior.around_median and prior.filters == (3, 3, 3, 3) and prior.channels == 6
    y = torch.randn(3, 6, 9, 4, generator=torch.Generator().manual_seed(0)) * 4
    with torch.no_grad():
        y_hat, likelihoods = bottleneck(y)
        ours_hat, ours = prior(y, 1.0)
    assert torch.equal(ours_hat, y_hat)
    assert_same_likelihoods(ours, likelihoods)
    # The converted prior codes on its own (featcodec's tables) and decodes CompressAI's y_hat.
    assert torch.equal(prior.decompress(prior.compress(y), y.shape), y_hat)


def test_checkpoints_with_prefixes_and_old_parameter_names_convert():
    model = small_model(ScaleHyperprior, loud=40.0)
    checkpoint = model.state_dict()
    old = {key.replace("entropy_bottleneck.matrices.", "entropy_bottleneck._matrix")
              .replace("entropy_bottleneck.biases.", "entropy_bottleneck._bias")
              .replace("entropy_bottleneck.factors.", "entropy_bottleneck._factor"): value
           for key, value in checkpoint.items()}
    assert "entropy_bottleneck._matrix0" in old
    z = torch.randn(2, 8, 3, 3) * 3
    expected = model.entropy_bottleneck(z)
    for state in (checkpoint, old):
        prior = factorized_prior_from_compressai(state, prefix="entropy_bottleneck.").eval()
        y_hat, likelihoods = prior(z)
        assert torch.equal(y_hat, expected[0])
        assert_same_likelihoods(likelihoods, expected[1])
    conditional = gaussian_conditional_from_compressai(checkpoint, prefix="gaussian_conditional.")
    assert torch.equal(conditional.scale_table, model.gaussian_conditional.scale_table.double())
    with pytest.raises(ValueError, match="no entries with prefix"):
        factorized_prior_from_compressai(checkpoint, prefix="hyperprior.")
    with pytest.raises(ValueError, match="not an EntropyBottleneck"):
        factorized_prior_from_compressai(checkpoint, prefix="g_a.")


@pytest.mark.parametrize("around_median", [True, False])
def test_factorized_prior_to_compressai_keeps_y_hat_and_likelihoods(around_median):
    torch.manual_seed(3)
    prior = entropy.FactorizedPrior(5, around_median=around_median, init_scale=3).eval()
    with torch.no_grad():
        for parameter in prior.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
        prior.quantiles[:, 0, 1] = torch.randn(5) * 2
    bottleneck = entropy_bottleneck_from_featcodec(prior)
    assert bottleneck.filters == (3, 3, 3) and bottleneck._quantized_cdf.numel() > 0
    y = torch.randn(2, 5, 6, 6, generator=torch.Generator().manual_seed(1)) * 4
    # Ties (x.5 after the shift) round the same way on both sides too.
    y[0, :, 0, 0] = torch.tensor([0.5, 1.5, -2.5, 3.5, -0.5])
    with torch.no_grad():
        ours_hat, ours = prior(y)
        y_hat, likelihoods = bottleneck(y)
    assert torch.equal(y_hat, ours_hat)
    assert_same_likelihoods(likelihoods, ours)
    # And back: the same parameters (the median of a zero-centred prior became 0).
    back = factorized_prior_from_compressai(bottleneck)
    for name, parameter in back.named_parameters():
        if name != "quantiles" or around_median:
            assert torch.equal(parameter, prior.get_parameter(name)), name


def test_gaussian_conditional_both_ways_keeps_likelihoods():
    theirs = GaussianConditional(None).eval()
    theirs.update_scale_table(get_scale_table())
    ours = gaussian_conditional_from_compressai(theirs)
    generator = torch.Generator().manual_seed(0)
    y = torch.randn(2, 4, 8, 8, generator=generator) * 20
    scales = torch.exp(torch.randn(2, 4, 8, 8, generator=generator) * 2.5)
    scales[0, 0, 0, :3] = torch.tensor([0.0, 0.05, 1e4])
    means = torch.randn(2, 4, 8, 8, generator=generator)
    back = gaussian_conditional_from_featcodec(ours)
    assert torch.equal(back.scale_table, theirs.scale_table)
    for m in (None, means):
        y_hat, likelihoods = theirs(y, scales, m)
        for model in (ours, back):
            other_hat, other = model(y, scales, m)
            assert torch.equal(other_hat, y_hat)
            assert_same_likelihoods(other, likelihoods)
    # featcodec's own coding of the converted module round-trips with the scales themselves.
    assert torch.equal(ours.decompress(ours.compress(y, scales, means), scales, means), theirs(y, scales, means)[0])


def test_gaussian_conditional_conversion_refusals():
    with pytest.raises(ValueError, match="no scale table"):
        gaussian_conditional_from_compressai(GaussianConditional(None))
    with pytest.raises(ValueError, match="scale_bound"):
        gaussian_conditional_from_compressai(GaussianConditional([0.2, 0.4], scale_bound=0.11))
    with pytest.raises(TypeError, match="GaussianConditional"):
        gaussian_conditional_from_compressai(EntropyBottleneck(3))
    with pytest.raises(TypeError, match="FactorizedPrior"):
        entropy_bottleneck_from_featcodec(EntropyBottleneck(3))


# --- the import boundary ---------------------------------------------------------------------


def test_only_compat_imports_compressai():
    script = textwrap.dedent(
        """
        import sys
        import featcodec, featcodec.entropy, featcodec.codec
        print("compressai" in sys.modules or any(m.startswith("compressai.") for m in sys.modules))
        import featcodec.compat
        print("compressai" in sys.modules)
        import featcodec.compat.compressai
        print("compressai" in sys.modules)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=pathlib.Path(featcodec.__file__).parent.parent, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "True"]


def test_no_module_outside_compat_mentions_a_compressai_import():
    package = pathlib.Path(featcodec.__file__).parent
    offenders = [str(path.relative_to(package)) for path in package.rglob("*.py")
                 if path.parent.name != "compat"
                 and any(line.lstrip().startswith(("import compressai", "from compressai"))
                         for line in path.read_text().splitlines())]
    assert offenders == []
    assert np is not None
