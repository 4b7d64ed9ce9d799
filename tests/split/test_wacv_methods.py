"""The WACV 2022 methods through the config runner: train one point, save, load, and count the bits again."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
pytest.importorskip("optuna")

from featcodec.split import runner  # noqa: E402
from featcodec.split.config import parse_config  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("net") / "resnet18.pt"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None, num_classes=10).state_dict(), path)
    return path


def _config(tmp_path, weights, method, **options):
    one = {"epochs": 1, "batch_size": 4}
    raw = {"network": {"name": "resnet18", "weights": str(weights), "split": "layer1", "num_classes": 10},
           "data": {"kind": "digits", "limit_train": 4, "limit_val": 2},
           "train": {"method": method, "lam": 1.0, "channels": 2, "seed": 0},
           "method": {"latent_channels": 4, "codec_channels": 8, "stage1": one, "stage2": one, "stage": one,
                      **options}}
    return parse_config(raw, tmp_path)


@pytest.mark.parametrize("method, options", [("entropic_student", {}), ("end_to_end", {}), ("cr_bq", {}),
                                             ("input_codec", {}), ("input_codec", {"codec": "mean_scale"})])
def test_method_trains_saves_and_its_bits_are_the_messages(tmp_path, weights, method, options):
    config = _config(tmp_path, weights, method, **options)
    run = runner.Run.build(config)
    row = runner.train(config, tmp_path / "out", run=run)
    assert row["method"] == method and 0.0 <= row["metric"] <= 1.0
    impl = runner.method_of(config)
    params = impl.fixed(run)
    model, _ = impl.load(run, params, tmp_path / "out" / "unit")
    codec = impl.codec((model, params))
    images = torch.stack([run.data.val[i][0] for i in range(len(run.data.val))])
    bits = sum(8 * len(codec.encode(images[i:i + 1])) for i in range(len(images)))
    assert row["true_bpp"] == pytest.approx(bits / (len(images) * 32 * 32), rel=1e-12)
    if options.get("codec") == "mean_scale":
        from featcodec.entropy import MeanScaleHyperprior

        assert isinstance(model.prior, MeanScaleHyperprior)


def test_input_codec_names_its_codec(tmp_path, weights):
    config = _config(tmp_path, weights, "input_codec", codec="jpeg2000")
    run = runner.Run.build(config)
    with pytest.raises(ValueError, match="codec must be one of"):
        runner.method_of(config).build(run, {"lam": 1.0, "channels": 8})


def test_search_draws_the_knob(tmp_path, weights):
    import optuna

    config = _config(tmp_path, weights, "cr_bq")
    run = runner.Run.build(config)
    trial = optuna.create_study().ask()
    assert runner.method_of(config).suggest(trial, run)["channels"] in (1, 2, 3, 6, 9, 12)
    config = _config(tmp_path, weights, "entropic_student")
    run.config = config
    config.method["log10_lam"] = [-2.0, -1.0]
    lam = runner.method_of(config).suggest(optuna.create_study().ask(), run)["lam"]
    assert 0.01 <= lam <= 0.1
