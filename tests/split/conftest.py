"""Fixtures for the split-DNN tests: random-weight torchvision networks, small inputs."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

# Other people share this machine's cores; the networks are small at these sizes.
torch.set_num_threads(2)

RESNET_POINTS = ("layer4.2", "layer4.1", "layer4.0", "layer3.4")
DEEPLAB_POINTS = ("backbone.layer4.1", "backbone.layer3.5", "classifier.0.convs.1")


@pytest.fixture(scope="session")
def resnet50():
    torch.manual_seed(0)
    return torchvision.models.resnet50(weights=None).eval()


@pytest.fixture(scope="session")
def deeplab():
    torch.manual_seed(0)
    return torchvision.models.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None,
                                                             num_classes=21).eval()


@pytest.fixture(scope="session")
def resnet_input():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="session")
def deeplab_input():
    return torch.randn(1, 3, 57, 49, generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="session")
def digits_cache(tmp_path_factory):
    """A cache folder holding the digits classifier of the runner tests (2 epochs, trained once);
    XDG_CACHE_HOME points at it for the whole session, so subprocesses find it too."""
    import os

    folder = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    from featcodec.split import demo

    demo.trained_classifier(demo.digits_datasets()[0], demo.default_cache_dir(), 2, progress=False)
    yield folder
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous
