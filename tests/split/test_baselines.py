"""Image-codec baselines: whole-file bytes, monotone in quality, the network unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from featcodec.split.baselines import decode_image, encode_image, sweep


def _images(count=6, size=48):
    rng = np.random.default_rng(0)
    images = []
    for i in range(count):  # smooth gradients plus noise: compressible, but not trivially
        y, x = np.mgrid[0:size, 0:size]
        base = np.stack([(x * (i + 1) * 3) % 256, (y * 5 + i * 20) % 256, ((x + y) * 2) % 256], -1)
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        images.append((Image.fromarray(pixels, "RGB"), i % 2))
    return images


@pytest.mark.parametrize("codec", ["jpeg", "webp", "avif"])
def test_bpp_grows_with_quality(codec):
    images = _images()
    qualities = [5, 25, 50, 75, 95]
    sizes = [sum(len(encode_image(image, codec, q)) for image, _ in images) for q in qualities]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    decoded = decode_image(encode_image(images[0][0], codec, 95))
    assert decoded.size == images[0][0].size and decoded.mode == "RGB"


def test_bad_arguments_are_refused():
    image = _images(1)[0][0]
    with pytest.raises(ValueError, match="unknown image codec"):
        encode_image(image, "gif", 50)
    with pytest.raises(ValueError, match="quality"):
        encode_image(image, "jpeg", 101)


def test_sweep_counts_whole_files_and_runs_the_network():
    images = _images(4)

    class MeanColour(nn.Module):  # "class 1" when the red channel is bright on average
        def forward(self, x):
            score = x[:, 0].mean((1, 2))
            return torch.stack([-score, score], 1)

    def to_input(image):
        return torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)

    points = sweep(MeanColour(), images, to_input, ["jpeg", "webp"], [10, 90], "accuracy", 2, batch_size=3)
    assert [(p.codec, p.quality) for p in points] == [("jpeg", 10), ("jpeg", 90), ("webp", 10), ("webp", 90)]
    for p in points:
        expected = 8 * sum(len(encode_image(image, p.codec, p.quality)) for image, _ in images) / (4 * 48 * 48)
        assert p.bpp == pytest.approx(expected, rel=1e-12)
        hits = 0
        for image, label in images:
            coded = to_input(decode_image(encode_image(image, p.codec, p.quality)))[None]
            hits += int(MeanColour()(coded).argmax(1).item() == label)
        assert p.metric == pytest.approx(hits / 4, rel=1e-12)
