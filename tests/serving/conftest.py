"""Fixtures for the serving tests: tiny networks cut in two, a bank of two units, a server on loopback."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("grpc")

from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from featcodec.bank import RateBank  # noqa: E402
from featcodec.codec import FeatureCodec  # noqa: E402
from featcodec.entropy import FactorizedPrior  # noqa: E402
from featcodec.split import feature_of, make_unit, split  # noqa: E402

torch.set_num_threads(2)

FEATURE_CHANNELS = 16


class TinyClassifier(nn.Module):
    """Stem, a body to cut after, a pooled linear classifier over 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(8, FEATURE_CHANNELS, 3, 2, 1), nn.ReLU())
        self.neck = nn.Sequential(nn.Conv2d(FEATURE_CHANNELS, 32, 3, 1, 1), nn.ReLU())
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.neck(self.body(self.stem(x))), 1), 1))


class TinySegmenter(nn.Module):
    """Like torchvision's segmentation models: a dict with "out", upsampled to the input's size."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, FEATURE_CHANNELS, 3, 4, 1), nn.ReLU())
        self.classifier = nn.Conv2d(FEATURE_CHANNELS, classes, 1)

    def forward(self, x: torch.Tensor) -> dict:
        size = x.shape[-2:]
        return {"out": F.interpolate(self.classifier(self.body(x)), size=size, mode="bilinear", align_corners=False)}


def make_bank(head, images, unit_channels=(2, 4), split_name="body"):
    """A RateBank of random dws units (one per C_r, untrained priors) for the head's feature."""
    with torch.no_grad():
        feature = feature_of(head(images))
    bank = RateBank(feature_shape=tuple(feature.shape[1:]), split=split_name, network="tiny")
    for index, channels in enumerate(unit_channels):
        torch.manual_seed(10 + index)
        unit = make_unit("dws", feature.shape[1], channels, 2).eval()
        prior = FactorizedPrior(channels).eval()
        prior.update_tables()
        bank.add(FeatureCodec(unit.encoder, unit.decoder, prior, q_step=0.25), bpp=0.01 * (index + 1))
    return bank


@pytest.fixture(scope="session")
def images():
    return torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="session")
def classifier():
    torch.manual_seed(0)
    network = TinyClassifier().eval()
    head, tail = split(network, "body")
    return network, head, tail


@pytest.fixture(scope="session")
def bank(classifier, images):
    return make_bank(classifier[1], images)
