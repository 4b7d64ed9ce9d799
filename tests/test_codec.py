"""featcodec.codec.FeatureCodec: features in, bytes out, and back; its header; its report."""

import struct

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from featcodec import DecodeError
from featcodec._varint import write_varint
from featcodec.codec import FeatureCodec
from featcodec.entropy import FactorizedPrior, Hyperprior


class Down(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(16, 4, 3, stride=2, padding=1)
        self.norm = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.norm(self.conv(x))


class Up(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.ConvTranspose2d(4, 16, 3, stride=2, padding=1)

    def forward(self, y, output_size):
        return self.conv(y, output_size=output_size)


def _codec(kind, q_step=0.5, model_id=0, **options):
    torch.manual_seed(0)
    model = (FactorizedPrior(4) if kind == "factorized" else Hyperprior(4)).eval()
    model.update_tables()
    return FeatureCodec(Down().eval(), Up().eval(), model, q_step=q_step, model_id=model_id, **options)


CODECS = {kind: _codec(kind) for kind in ("factorized", "hyperprior")}


@given(kind=st.sampled_from(sorted(CODECS)), batch=st.integers(1, 3), height=st.integers(1, 12),
       width=st.integers(1, 12), q=st.sampled_from([None, 0.1, 0.5, 2.0]), seed=st.integers(0, 2**16))
def test_decode_gives_the_decoder_of_the_quantized_latent(kind, batch, height, width, q, seed):
    codec = CODECS[kind]
    features = torch.randn(batch, 16, height, width, generator=torch.Generator().manual_seed(seed)) * 3
    data = codec.encode(features, q_step=q)
    decoded = codec.decode(data)
    step = codec.q_step if q is None else float(torch.tensor(q, dtype=torch.float32))
    y_hat, _ = codec.entropy_model(codec.encoder(features), q_step=step)
    assert torch.equal(decoded, codec.decoder(y_hat, output_size=(height, width)))


def test_header_is_small_and_q_costs_bytes_only_when_it_differs():
    codec = CODECS["factorized"]
    features = torch.randn(1, 16, 14, 14)
    default = codec.encode(features)
    other = codec.encode(features, q_step=0.75)
    header = 1 + 5  # flags byte and five one-byte varints
    assert len(default) == header + len(codec.entropy_model.compress(codec.encoder(features), q_step=0.5))
    assert len(other) == header + 4 + len(codec.entropy_model.compress(codec.encoder(features), q_step=0.75))


def test_report_counts_every_byte():
    codec = CODECS["hyperprior"]
    features = torch.randn(2, 16, 9, 11) * 2
    report = codec.report(features, image_size=(72, 88))
    assert report.actual_bits == 8 * len(codec.encode(features))
    assert report.pixels == 2 * 72 * 88
    assert report.gaps["header"] >= 8 * 6


def test_modes_are_restored():
    codec = CODECS["factorized"]
    codec.encoder.train()
    codec.encode(torch.randn(1, 16, 4, 4))
    assert codec.encoder.training and codec.encoder.norm.training
    codec.encoder.eval()


def test_model_id_is_checked():
    sender = _codec("factorized", model_id=5)
    data = sender.encode(torch.randn(1, 16, 4, 4))
    assert FeatureCodec.model_id_of(data) == 5
    with pytest.raises(DecodeError, match="model id 5"):
        CODECS["factorized"].decode(data)
    with pytest.raises(ValueError, match="model_id"):
        _codec("factorized", model_id=8)


def _header(batch, h, w, lh, lw, flags=0):
    return bytes([1 << 5 | flags]) + b"".join(write_varint(v) for v in (batch, h, w, lh, lw))


def test_bad_headers_raise_decode_error_before_allocating():
    codec = _codec("factorized", max_elements=1 << 20)
    with pytest.raises(DecodeError, match="empty"):
        codec.decode(b"")
    with pytest.raises(DecodeError, match="version"):
        codec.decode(bytes([2 << 5]) + b"\x01" * 8)
    with pytest.raises(DecodeError, match="reserved"):
        codec.decode(_header(1, 4, 4, 2, 2, flags=1))
    with pytest.raises(DecodeError, match="latent size"):
        codec.decode(_header(1000, 4, 4, 1000, 1000))
    with pytest.raises(DecodeError, match="out of range"):
        codec.decode(_header(1, 2**40, 4, 2, 2))
    with pytest.raises(DecodeError, match="truncated"):
        codec.decode(_header(1, 4, 4, 2, 2)[:3])
    with pytest.raises(DecodeError, match="Q"):
        codec.decode(_header(1, 4, 4, 2, 2, flags=2) + struct.pack("<f", -1.0))
    with pytest.raises(DecodeError):
        codec.decode(_header(1, 4, 4, 2, 2) + b"\x00\x01")
    with pytest.raises(TypeError):
        codec.decode("text")


def test_truncated_and_corrupt_messages_raise_decode_error():
    codec = CODECS["hyperprior"]
    data = codec.encode(torch.randn(1, 16, 8, 8) * 3)
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            codec.decode(data[:cut])


def test_a_decoder_without_output_size_must_match_the_size():
    torch.manual_seed(0)
    prior = FactorizedPrior(4).eval()
    prior.update_tables()
    decoder = nn.Sequential(nn.ConvTranspose2d(4, 16, 2, stride=2))  # forward(input) only
    codec = FeatureCodec(nn.Conv2d(16, 4, 3, stride=2, padding=1), decoder, prior)
    assert codec.decode(codec.encode(torch.randn(1, 16, 8, 8))).shape == (1, 16, 8, 8)
    with pytest.raises(ValueError, match="output_size"):
        codec.decode(codec.encode(torch.randn(1, 16, 7, 7)))


def test_bad_arguments():
    with pytest.raises(TypeError, match="entropy_model"):
        FeatureCodec(nn.Identity(), nn.Identity(), nn.Identity())
    with pytest.raises(ValueError, match="q_step"):
        _codec("factorized", q_step=1e-50)  # zero in float32
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        CODECS["factorized"].encode(torch.zeros(16, 4, 4))


def test_checksum_can_be_turned_off():
    features = torch.randn(1, 16, 6, 6) * 2
    for kind in ("factorized", "hyperprior"):
        with_sum, without = CODECS[kind], _codec(kind, checksum=False)
        data = without.encode(features)
        # The 4-byte checksum is lane 0's initial state: it costs about 4 bytes.
        assert 0 < len(with_sum.encode(features)) - len(data) <= 5
        assert torch.equal(without.decode(data), with_sum.decode(with_sum.encode(features)))
        report = without.report(features, image_size=(24, 24))
        assert report.actual_bits == 8 * len(data) and report.gaps["checksum"] == 0
