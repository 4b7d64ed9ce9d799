"""The entropic student: shapes, tail modes, and its bitstream through the feature codec."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from featcodec.split import SplitModel, TailMode, entropic_student, split, tail_mode_of  # noqa: E402
from featcodec.split.neural_baselines import cr_bq_student  # noqa: E402
from featcodec.split.student import stem_size  # noqa: E402

SIZES = [(64, 64), (37, 45), (5, 5), (33, 70)]


@pytest.fixture(scope="module")
def resnet_student(resnet50):
    torch.manual_seed(5)
    return entropic_student(resnet50, latent_channels=8).eval()


@pytest.fixture(scope="module")
def deeplab_student(deeplab):
    torch.manual_seed(6)
    return entropic_student(deeplab, latent_channels=8).eval()


def _teacher_layer1(model, name, x):
    head, _ = split(model, name)
    crossing = head(x)
    return crossing[0] if isinstance(crossing, tuple) else crossing


@pytest.mark.parametrize("size", SIZES)
def test_decoder_output_has_layer1_shape_resnet(resnet50, resnet_student, size):
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        restored = resnet_student.bottleneck(x)
        want = _teacher_layer1(resnet50, "layer1", x)
    assert restored.shape == want.shape
    assert tuple(want.shape[-2:]) == stem_size(size)


def test_student_runs_the_whole_network(resnet_student):
    with torch.no_grad():
        out = resnet_student(torch.randn(1, 3, 37, 45))
    assert out.output.shape == (1, 1000) and out.restored.shape == (1, 256, 10, 12)
    assert out.latent.shape == (1, 8, 9, 11) and float(out.rate) > 0


@pytest.mark.parametrize("size", SIZES[1:3])
def test_decoder_output_has_layer1_shape_deeplab(deeplab, deeplab_student, size):
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        out = deeplab_student(x)
        want = _teacher_layer1(deeplab, "backbone.layer1", x)
    assert out.restored.shape == want.shape
    assert out.output["out"].shape == (1, 21, *size)


def test_too_small_input_is_refused(resnet_student):
    with pytest.raises(ValueError, match="H, W >= 5"):
        resnet_student(torch.zeros(1, 3, 4, 9))


def test_student_owns_a_copy(resnet50, resnet_student):
    teacher = {id(p) for p in resnet50.parameters()}
    assert not teacher & {id(p) for p in resnet_student.parameters()}
    assert torch.equal(resnet_student.network.layer2[0].conv1.weight, resnet50.layer2[0].conv1.weight)


def test_tail_modes(resnet50, resnet_student):
    assert tail_mode_of(resnet_student) is TailMode.TUNED
    head, tail = split(resnet50, "layer4.2")
    from featcodec.split import IdentityUnit, L1Rate
    assert tail_mode_of(SplitModel(head, IdentityUnit(), L1Rate(), tail)) is TailMode.FROZEN
    assert tail_mode_of(cr_bq_student(resnet50, 2)) is TailMode.FROZEN
    with pytest.raises(TypeError, match="frozen or tuned"):
        tail_mode_of(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("which", ["resnet", "deeplab"])
def test_bitstream_decodes_to_the_students_output(which, resnet_student, deeplab_student):
    student = resnet_student if which == "resnet" else deeplab_student
    x = torch.randn(1, 3, 41, 38, generator=torch.Generator().manual_seed(7))
    codec = student.codec()
    data = student.client(x, codec)
    assert codec.input_size_of(data) == (41, 38)
    with torch.no_grad():
        served = student.server(data, codec)
        direct = student(x)
    if which == "deeplab":
        served, direct_out = served["out"], direct.output["out"]
    else:
        direct_out = direct.output
    assert torch.equal(served, direct_out)  # same symbols, same modules, same order of operations


def test_bitstream_decodes_in_a_fresh_process(tmp_path: pathlib.Path):
    """The receiver loads the codec artifact (FeatureCodec.save: safetensors + JSON) and the tuned tail's
    weights, decodes the bytes and runs the tail; nothing is unpickled.  The network is a small ResNet
    (tests/split/tiny_networks.py) so that the second process starts quickly."""
    from safetensors.torch import save_file

    from .tiny_networks import tiny_resnet

    torch.manual_seed(5)
    student = entropic_student(tiny_resnet(seed=4), latent_channels=8).eval()
    x = torch.randn(1, 3, 48, 40, generator=torch.Generator().manual_seed(8))
    codec = student.codec()
    data = student.client(x, codec)
    codec.save(tmp_path / "codec")
    tail = {k: v.contiguous() for k, v in student.network.state_dict().items() if not k.startswith("layer1.")}
    save_file(tail, str(tmp_path / "tail.safetensors"))
    (tmp_path / "message.bin").write_bytes(data)
    with torch.no_grad():
        expected_features = codec.decode(data)
        expected = student(x).output
    script = f"""
import sys, torch
sys.path.insert(0, {str(pathlib.Path(__file__).parent)!r})
from safetensors.torch import load_file
from featcodec.codec import FeatureCodec
from featcodec.split import entropic_student
from tiny_networks import tiny_resnet
torch.set_num_threads(2)
codec = FeatureCodec.load({str(tmp_path / 'codec')!r})
student = entropic_student(tiny_resnet(seed=99), latent_channels=8).eval()  # other weights until loaded
student.network.load_state_dict(load_file({str(tmp_path / 'tail.safetensors')!r}), strict=False)
data = open({str(tmp_path / 'message.bin')!r}, 'rb').read()
features = codec.decode(data)
with torch.no_grad():
    logits = student.tail_output(features, codec.input_size_of(data))
torch.save({{"features": features, "logits": logits}}, {str(tmp_path / 'out.pt')!r})
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    result = torch.load(tmp_path / "out.pt", weights_only=True)
    assert torch.equal(result["features"], expected_features)
    scale = float(expected.abs().max())
    assert torch.allclose(result["logits"], expected, rtol=1e-4, atol=1e-5 * scale)
