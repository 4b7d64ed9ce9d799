"""The WACV 2022 baselines: CR+BQ, end-to-end, the input-image codec; and the latency report."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from featcodec import DecodeError  # noqa: E402
from featcodec.split import latency, stages  # noqa: E402
from featcodec.split.neural_baselines import (FactorizedPriorImageCodec, MeanScaleImageCodec,  # noqa: E402
                                              cr_bq_student, dequantize_uint8, end_to_end_student, quantize_uint8)
from featcodec.split.recipes import train_cr_bq, train_end_to_end, train_input_codec  # noqa: E402
from featcodec.split.student import entropic_student  # noqa: E402

from .tiny_networks import tiny_resnet  # noqa: E402


def _loader(n=2, size=33, classes=10, batch=2):
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(n, 3, size, size, generator=g),
                                          torch.randint(0, classes, (n,), generator=g))
    return torch.utils.data.DataLoader(data, batch_size=batch)


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_quantize_uint8_error_is_at_most_half_a_step():
    x = torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(1)) * 7 + 0.5
    q, low, scale = quantize_uint8(x)
    assert q.dtype == torch.uint8 and int(q.min()) == 0 and int(q.max()) == 255
    assert float((dequantize_uint8(q, low, scale) - x).abs().max()) <= scale / 2 * (1 + 1e-4) + 1e-6
    constant = torch.full((1, 1, 2, 2), 3.0)
    q, low, scale = quantize_uint8(constant)
    assert torch.equal(dequantize_uint8(q, low, scale), constant)


def test_cr_bq_trains_the_head_only_and_its_message_decodes():
    teacher = tiny_resnet(seed=2)
    student = cr_bq_student(teacher, bottleneck_channels=3)
    x = torch.randn(1, 3, 37, 45)
    with torch.no_grad():
        code = student.bottleneck.encoder(student.network.maxpool(student.network.relu(
            student.network.bn1(student.network.conv1(x)))))
        restored = student.bottleneck.decoder(code)
    assert restored.shape == (1, 64, 10, 12)  # layer1's shape at 37 x 45
    before = _snapshot(student)
    train_cr_bq(student, teacher, _loader(), stages.cr_bq(epochs=1, progress=False))
    after = _snapshot(student)
    for key in before:
        head = key.startswith(("network.conv1.", "network.bn1.", "network.layer1."))
        if not head:
            assert torch.equal(before[key], after[key]), key
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("network.layer1.encoder."))
    assert student.bottleneck.quantize

    codec = student.codec()
    data = codec.encode(x)
    # every byte the receiver needs: tag, varints B, H, W, float32 min and scale, the code (10+4 x 12+4)
    assert len(data) == 1 + 3 + 8 + 3 * 14 * 16
    assert data[:4] == bytes([0x51, 1, 37, 45])
    student.eval()
    with torch.no_grad():
        assert torch.equal(codec.decode(data), student(x))
    two = codec.encode(torch.cat([x, x.flip(-1)]))
    assert len(two) == 1 + 3 + 8 + 2 * 3 * 14 * 16 and codec.decode_code(two)[1] == (37, 45)


def test_cr_bq_decoder_refuses_bad_messages():
    student = cr_bq_student(tiny_resnet(seed=2), bottleneck_channels=2).eval()
    student.bottleneck.quantize = True
    codec = student.codec()
    data = codec.encode(torch.randn(1, 3, 33, 33))
    quantizer = data[4:12]
    bad = {
        "truncated": data[:-1],
        "one byte too many": data + b"\0",
        "another tag": b"\x00" + data[1:],
        "empty": b"",
        "zero height": data[:2] + b"\x00" + data[3:],
        "huge image": data[:2] + bytes([0xFF, 0xFF, 0xFF, 0x7F]) + data[3:],
        "padded varint": data[:2] + bytes([0xA1, 0x00]) + data[3:],
        "zero scale": data[:4] + quantizer[:4] + b"\0\0\0\0" + data[12:],
        "NaN min": data[:4] + b"\0\0\xc0\x7f" + quantizer[4:] + data[12:],
        "another image size": data[:2] + bytes([41]) + data[3:],  # a code of 15 x 13, not 13 x 13
    }
    for name, message in bad.items():
        with pytest.raises(DecodeError):
            codec.decode(message)
            pytest.fail(name)
    with pytest.raises(TypeError):
        codec.decode("text")


def test_end_to_end_starts_from_scratch_and_trains_everything():
    teacher = tiny_resnet(seed=1)
    student = end_to_end_student(teacher, latent_channels=4, seed=3)
    assert not torch.equal(student.network.fc.weight, teacher.fc.weight)
    assert not torch.equal(student.network.layer3[0].conv1.weight, teacher.layer3[0].conv1.weight)
    before = _snapshot(student)
    history = train_end_to_end(student, _loader(), stages.end_to_end(epochs=1, progress=False, beta=1e-3))
    after = _snapshot(student)
    assert history[0].terms["bits_per_image"] > 0
    for prefix in ("network.layer1.encoder.", "network.layer1.prior.", "network.layer1.decoder.",
                   "network.layer3.", "network.fc."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix)), prefix


@pytest.mark.parametrize("kind", [FactorizedPriorImageCodec, MeanScaleImageCodec])
def test_input_codec_round_trip_and_training(kind):
    torch.manual_seed(4)
    codec_model = kind(channels=8, latent_channels=6)
    images = torch.rand(2, 3, 37, 30, generator=torch.Generator().manual_seed(5))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images), batch_size=2)
    before = _snapshot(codec_model)
    history = train_input_codec(codec_model, loader, stages.input_codec(epochs=2, lr=1e-2, progress=False))
    assert len(history) == 2 and history[0].terms["bpp"] > 0
    assert any(not torch.equal(before[k], v) for k, v in codec_model.state_dict().items())
    codec_model.eval()
    codec = codec_model.codec()
    data = codec.encode(images)
    with torch.no_grad():
        x_hat, likelihoods = codec_model(images)
    decoded = codec.decode(data)
    assert decoded.shape == images.shape
    if kind is FactorizedPriorImageCodec:
        assert torch.equal(decoded, x_hat)
    else:  # the coded means are h_s's in float64, the forward pass's in float32
        assert torch.allclose(decoded, x_hat, rtol=1e-4, atol=1e-5 * float(x_hat.abs().max()))
        assert set(likelihoods) == {"y", "z"}


def test_mean_scale_training_counts_the_side_information():
    """The mean-scale codec's bpp estimate includes z's bits: it exceeds the estimate from y alone."""
    from featcodec.entropy import estimate_bits

    torch.manual_seed(6)
    codec_model = MeanScaleImageCodec(channels=8, latent_channels=6).eval()
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        _, likelihoods = codec_model(images)
    assert float(estimate_bits(likelihoods)) > float(estimate_bits(likelihoods["y"])) > 0


def test_transfer_seconds_and_latency_report():
    assert latency.transfer_seconds(4688, 37.5) == pytest.approx(4688 * 8 / 37500)
    with pytest.raises(ValueError, match="link_kbps"):
        latency.transfer_seconds(10, 0)
    student = entropic_student(tiny_resnet(seed=6), latent_channels=4).eval()
    codec = student.codec()
    images = [torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    report = latency.latency_report(lambda x: student.client(x, codec), lambda d: student.server(d, codec),
                                    images, link_kbps=100.0)
    sizes = [len(student.client(x.unsqueeze(0), codec)) for x in images]
    assert [r.bytes for r in report.images] == sizes
    assert all(r.transfer_s == pytest.approx(r.bytes * 8 / 1e5) for r in report.images)
    assert all(r.client_s > 0 and r.server_s > 0 for r in report.images)
    assert "100 kbit/s" in report.format()
    with pytest.raises(ValueError, match="at least one"):
        latency.latency_report(len, len, [])
