"""Local weights and datasets; nothing is ever downloaded."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from featcodec.split import data


@pytest.fixture
def no_downloads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("attempted a download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_networks_from_local_state_dicts(tmp_path, no_downloads):
    torch.manual_seed(0)
    source = data.resnet50(num_classes=10)
    torch.save(source.state_dict(), tmp_path / "resnet.pt")
    loaded = data.resnet50(tmp_path / "resnet.pt", num_classes=10)
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), loaded.state_dict().values()))
    assert not loaded.training
    torch.save({"state_dict": source.state_dict()}, tmp_path / "wrapped.pt")
    assert torch.equal(data.resnet50(tmp_path / "wrapped.pt", num_classes=10).fc.weight, source.fc.weight)


def test_deeplab_drops_the_auxiliary_head_unless_asked(tmp_path, no_downloads):
    with_aux = data.deeplabv3_resnet50(num_classes=3, aux_loss=True)
    torch.save(with_aux.state_dict(), tmp_path / "deeplab.pt")
    plain = data.deeplabv3_resnet50(tmp_path / "deeplab.pt", num_classes=3)
    assert plain.aux_classifier is None
    assert torch.equal(plain.classifier[4].weight, with_aux.classifier[4].weight)


def test_image_folder(tmp_path):
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        Image.fromarray(np.full((40, 50, 3), 100, np.uint8)).save(tmp_path / label / "a.png")
    dataset = data.image_folder(tmp_path, data.imagenet_transform(size=32, resize=36))
    image, label = dataset[1]
    assert image.shape == (3, 32, 32) and label == 1
    with pytest.raises(FileNotFoundError):
        data.image_folder(tmp_path / "missing")


def test_coco_segmentation_masks(tmp_path):
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "img.jpg")
    rle_counts = [2 * 10 + 3, 4, 10 * 12 - 27]  # column-major: 3 zero columns' worth, then 4 ones in column 2
    coco = {
        "images": [{"id": 7, "file_name": "img.jpg", "width": 12, "height": 10}],
        "annotations": [
            {"image_id": 7, "category_id": 5, "iscrowd": 0, "bbox": [0, 0, 4, 4],
             "segmentation": [[0, 0, 3, 0, 3, 3, 0, 3]]},  # airplane: VOC label 1
            {"image_id": 7, "category_id": 1, "iscrowd": 0, "bbox": [2, 3, 1, 4],
             "segmentation": {"size": [10, 12], "counts": rle_counts}},  # person: VOC label 15
            {"image_id": 7, "category_id": 90, "iscrowd": 0, "bbox": [8, 8, 2, 2],
             "segmentation": [[8, 8, 9, 8, 9, 9]]},  # toothbrush: not a VOC class, dropped
            {"image_id": 7, "category_id": 3, "iscrowd": 1, "bbox": [9, 0, 2, 2],
             "segmentation": {"size": [10, 12], "counts": "abc"}},  # crowd: ignored region
        ],
    }
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    dataset = data.CocoSegmentation(tmp_path, tmp_path / "instances.json")
    image, mask = dataset[0]
    assert image.shape == (3, 10, 12) and mask.shape == (10, 12) and mask.dtype == torch.int64
    assert (mask[0:3, 0:2] == 1).all()
    assert (mask[3:7, 2] == 15).all() and mask[7, 2] == 0
    assert (mask[0:3, 9:12] == 255).all()
    assert set(mask.unique().tolist()) == {0, 1, 15, 255}
