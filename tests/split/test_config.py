"""Run configs: the examples validate, bad keys are named, and the big examples run one step on stand-ins."""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from featcodec.split import runner
from featcodec.split.config import load_config, parse_config
from featcodec.split.runner import read_csv

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", ["digits.toml", "resnet50_imagenet.toml", "deeplabv3_coco.toml"])
def test_examples_validate(name):
    config = load_config(EXAMPLES / name)
    assert config.train.method == "bottleneck"
    space = config.search.space()
    assert space.channels and space.log10_lambda[0] < space.log10_lambda[1]
    if config.network.weights is not None:
        assert config.network.weights.is_absolute()  # relative paths are taken from the config's folder


def test_papers_hyper_parameters_are_in_the_big_examples():
    resnet, deeplab = load_config(EXAMPLES / "resnet50_imagenet.toml"), load_config(EXAMPLES / "deeplabv3_coco.toml")
    t = resnet.train
    assert (t.optimizer, t.lr, t.step_size, t.gamma, t.epochs, t.batch_size) == ("sgd", 0.5, 15, 0.1, 30, 96)
    assert resnet.search.space().channels == (32, 64, 96, 128) and resnet.search.space().q_step == (0.5, 10.0)
    t = deeplab.train
    assert (t.optimizer, t.lr, t.step_size, t.epochs, t.batch_size) == ("adam", 1e-3, 10, 30, 8)
    assert deeplab.search.space().channels == (2, 4, 8, 16, 32, 48, 64) and deeplab.data.image_size == 513


def _raw(name):
    return tomllib.loads((EXAMPLES / name).read_text())


@pytest.mark.parametrize("change, message", [
    (lambda r: r.update(extra={}), "unknown config sections"),
    (lambda r: r["train"].update(optimiser="sgd"), "unknown keys"),
    (lambda r: r["train"].update(objective="semi"), "objective"),
    (lambda r: r["train"].update(objective="distillation"), "does not fit"),
    (lambda r: r["train"].update(rate="l2"), "rate"),
    (lambda r: r["train"].update(batch_size=0), "batch_size"),
    (lambda r: r["search"].update(preset="nope"), "unknown preset"),
    (lambda r: r["search"].update(sampler="grid"), "sampler"),
    (lambda r: r["search"].update(q_step=[3.0, 1.0]), "low <= high"),
    (lambda r: r["baselines"].update(codecs=["heic"]), "unknown codecs"),
    (lambda r: r["network"].pop("weights"), "weights"),
    (lambda r: r["network"].pop("split"), "missing required keys"),
    (lambda r: r["data"].update(kind="lmdb"), "kind"),
])
def test_bad_configs_name_the_problem(change, message):
    raw = _raw("resnet50_imagenet.toml")
    change(raw)
    with pytest.raises(ValueError, match=message):
        parse_config(raw)


def _one_step(raw, folder):
    """The example's shapes and network, on a handful of items, one training step, one trial."""
    raw["data"].update(limit_train=2, limit_val=2, workers=0)
    raw["train"].update(epochs=1, batch_size=2, prior_epochs=1, device="cpu")
    raw["search"].update(trials=1)
    raw["baselines"].update(codecs=["jpeg"], qualities=[50])
    config = parse_config(raw, base=folder)
    out = folder / "out"
    torch.manual_seed(0)
    study = runner.search(config, out)
    (trial,) = study.trials
    assert trial.values[1] > 0 and 0 <= trial.values[0] <= 1
    rows = read_csv(out / "trials.csv")
    assert [r["kind"] for r in rows] == ["trial", "baseline"]
    assert (out / "bank" / "frontier.fcbank").exists()
    return config, rows


def test_resnet50_imagenet_example_runs_one_step(tmp_path):
    import torchvision

    (tmp_path / "weights").mkdir()
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "weights" / "resnet50.pth")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label in ("n01", "n02"):
            folder = tmp_path / "imagenet" / split / label
            folder.mkdir(parents=True)
            Image.fromarray(rng.integers(0, 256, (300, 260, 3), dtype=np.uint8)).save(folder / "a.jpg")
    config, rows = _one_step(_raw("resnet50_imagenet.toml"), tmp_path)
    run = runner.Run.build(config)
    assert run.feature_shape == (2048, 7, 7)  # the paper's split point at 224 x 224


def test_deeplabv3_coco_example_runs_one_step(tmp_path):
    import torchvision

    (tmp_path / "weights").mkdir()
    model = torchvision.models.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21,
                                                               aux_loss=True)
    torch.save(model.state_dict(), tmp_path / "weights" / "deeplabv3_resnet50_coco.pth")
    rng = np.random.default_rng(0)
    (tmp_path / "coco" / "annotations").mkdir(parents=True)
    for split in ("train2017", "val2017"):
        (tmp_path / "coco" / split).mkdir()
        images, annotations = [], []
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)).save(
                tmp_path / "coco" / split / f"{i}.jpg")
            images.append({"id": i, "file_name": f"{i}.jpg", "width": 320, "height": 240})
            annotations.append({"id": i, "image_id": i, "category_id": 1, "iscrowd": 0, "bbox": [10, 10, 100, 80],
                                "segmentation": [[10, 10, 110, 10, 110, 90, 10, 90]]})
        (tmp_path / "coco" / "annotations" / f"instances_{split}.json").write_text(
            json.dumps({"images": images, "annotations": annotations}))
    _, rows = _one_step(_raw("deeplabv3_coco.toml"), tmp_path)
    assert float(rows[0]["true_bpp"]) > 0 and rows[0]["channels"] in {"2", "4", "8", "16", "32", "48", "64"}
