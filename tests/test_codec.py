"""featcodec.codec.FeatureCodec: features in, bytes out, and back; its header, checksum context and report."""

import struct
import threading

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
        self.norm = nn.BatchNorm2d(16)

    def forward(self, y, output_size):
        return self.norm(self.conv(y, output_size=output_size))


def _trained_norms(*modules):
    """Gives the BatchNorm layers statistics other than the defaults, so that eval and train differ."""
    for module in modules:
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)


def _codec(kind, q_step=0.5, model_id=0, **options):
    torch.manual_seed(0)
    model = (FactorizedPrior(4) if kind == "factorized" else Hyperprior(4)).eval()
    model.update_tables()
    down, up = Down().eval(), Up().eval()
    _trained_norms(down, up)
    return FeatureCodec(down, up, model, q_step=q_step, model_id=model_id, **options)


CODECS = {kind: _codec(kind) for kind in ("factorized", "hyperprior")}


def _expected(codec, features, q_step):
    """The eval-mode decoder of the eval-mode quantized latent, by hand."""
    with torch.no_grad():
        was = [(m, m.training) for m in (codec.encoder, codec.decoder, codec.entropy_model)]
        for m, _ in was:
            m.eval()
        y_hat = torch.round(codec.encoder(features) / q_step) * q_step
        out = codec.decoder(y_hat, output_size=features.shape[2:])
        for m, mode in was:
            m.train(mode)
    return out


@given(kind=st.sampled_from(sorted(CODECS)), batch=st.integers(0, 3), height=st.integers(1, 12),
       width=st.integers(1, 12), q=st.sampled_from([None, 0.1, 0.5, 2.0]), seed=st.integers(0, 2**16))
def test_decode_gives_the_decoder_of_the_quantized_latent(kind, batch, height, width, q, seed):
    codec = CODECS[kind]
    features = torch.randn(batch, 16, height, width, generator=torch.Generator().manual_seed(seed)) * 3
    data = codec.encode(features, q_step=q)
    decoded = codec.decode(data)
    step = codec.q_step if q is None else float(torch.tensor(q, dtype=torch.float32))
    assert torch.equal(decoded, _expected(codec, features, step))


def test_a_fixed_feature_shape_makes_a_one_byte_header():
    codec = _codec("factorized", feature_shape=(16, 14, 14), model_id=9)
    features = torch.randn(3, 16, 14, 14)

    def check(x, q, header):
        data = codec.encode(x, q_step=q)
        assert data[: len(header)] == header
        with torch.no_grad():  # the rest is the entropy model's message, its checksum bound to the header
            y = codec.encoder(x)
        payload = codec.entropy_model.decompress(data[len(header):], y.shape, q, checksum=4,
                                                 context=codec._context(header))
        assert torch.equal(payload, torch.round(y / q) * q)

    check(features[:1], 0.5, bytes([9 << 3]))
    # Explicit fields only for what differs from the codec: batch, size, Q.
    check(features, 0.5, bytes([9 << 3 | 4]) + write_varint(3))
    check(features[:1], 0.75, bytes([9 << 3 | 1]) + struct.pack("<f", 0.75))
    check(torch.randn(1, 16, 9, 300), 0.5, bytes([9 << 3 | 2]) + write_varint(9) + write_varint(300))
    check(features, 0.75, bytes([9 << 3 | 4 | 1]) + write_varint(3) + struct.pack("<f", 0.75))
    other = torch.randn(1, 16, 9, 30)
    assert torch.equal(codec.decode(codec.encode(other)), _expected(codec, other, 0.5))


def test_without_a_feature_shape_every_message_has_its_size():
    codec = CODECS["factorized"]
    assert codec.header(1, (14, 14), 0.5) == bytes([2]) + write_varint(14) + write_varint(14)


def test_report_counts_every_byte():
    codec = CODECS["hyperprior"]
    features = torch.randn(2, 16, 9, 11) * 2
    data = codec.encode(features)
    report = codec.report(features, image_size=(72, 88))
    assert report.actual_bits == 8 * len(data)
    assert report.pixels == 2 * 72 * 88
    header = len(codec.header(2, (9, 11), 0.5))
    assert report.gaps["header"] == 8 * (header + report.parts["y"]["header_bytes"])


def test_modules_in_training_mode_are_left_alone():
    codec = _codec("factorized", feature_shape=(16, 8, 8))
    features = torch.randn(2, 16, 8, 8) * 2
    reference = codec.encode(features)
    modules = (codec.encoder, codec.decoder, codec.entropy_model)
    for m in modules:
        m.train()
    state = {k: v.clone() for m in modules for k, v in m.state_dict().items()}
    assert codec.encode(features) == reference
    assert torch.equal(codec.decode(reference), _expected(codec, features, 0.5))
    assert all(m.training for module in modules for m in module.modules())
    after = {k: v for m in modules for k, v in m.state_dict().items()}
    assert all(torch.equal(state[k], after[k]) for k in state)


@pytest.mark.parametrize("kind", ["factorized", "hyperprior"])
def test_eight_threads_on_modules_in_training_mode_agree(kind):
    codec = _codec(kind, feature_shape=(16, 8, 8))
    inputs = [torch.randn(1 + i % 3, 16, 8, 8, generator=torch.Generator().manual_seed(i)) * 2 for i in range(8)]
    expected = [codec.encode(x) for x in inputs]
    decoded = [codec.decode(d) for d in expected]
    modules = (codec.encoder, codec.decoder, codec.entropy_model)
    for m in modules:
        m.train()
    norms = [m for module in modules for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    stats = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in norms]
    failures, start = [], threading.Barrier(8)

    def work(index):
        start.wait()
        try:
            for round_ in range(6):
                i = (index + round_) % 8
                data = codec.encode(inputs[i])
                if data != expected[i] or not torch.equal(codec.decode(data), decoded[i]):
                    failures.append((index, i))
        except Exception as error:  # noqa: BLE001 - reported below, with the thread
            failures.append((index, repr(error)))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    for m, (mean, var, count) in zip(norms, stats):
        assert torch.equal(m.running_mean, mean) and torch.equal(m.running_var, var)
        assert torch.equal(m.num_batches_tracked, count)
    assert all(m.training for module in modules for m in module.modules())


def test_unit_id_is_checked():
    sender = _codec("factorized", model_id=21)
    data = sender.encode(torch.randn(1, 16, 4, 4))
    assert FeatureCodec.unit_id_of(data) == 21
    with pytest.raises(DecodeError, match="unit id 21"):
        CODECS["factorized"].decode(data)
    with pytest.raises(ValueError, match="model_id"):
        _codec("factorized", model_id=32)


def _header(unit=0, batch=None, size=None, q=None):
    flags, fields = unit << 3, b""
    if batch is not None:
        flags, fields = flags | 4, fields + write_varint(batch)
    if size is not None:
        flags, fields = flags | 2, fields + write_varint(size[0]) + write_varint(size[1])
    if q is not None:
        flags, fields = flags | 1, fields + struct.pack("<f", q)
    return bytes([flags]) + fields


def test_bad_headers_raise_decode_error_before_allocating():
    codec = _codec("factorized", max_elements=1 << 20)
    fixed = _codec("factorized", feature_shape=(16, 8, 8))
    cases = [
        (codec, b"", "empty"),
        (codec, _header(size=(1000, 1000), batch=1000), "max_elements"),
        (codec, _header(size=(2**40, 4)), "out of range"),
        (codec, _header(size=(4, 4))[:2], "truncated"),
        (codec, _header(size=(0, 4)), "empty"),
        (codec, _header(), "no feature size"),
        (codec, _header(size=(4, 4), q=-1.0), "Q"),
        (codec, _header(size=(4, 4), q=float("nan")), "Q"),
        (codec, _header(size=(4, 4), q=0.5), "own Q"),
        (codec, _header(size=(4, 4), q=0.5)[:5], "truncated Q"),
        (codec, _header(size=(4, 4), batch=1), "batch of 1"),
        (fixed, _header(size=(8, 8)), "own feature size"),
        (fixed, _header(unit=3), "unit id 3"),
        (codec, _header(size=(4, 4)) + b"\x00\x01", None),
    ]
    for target, data, match in cases:
        with pytest.raises(DecodeError, match=match):
            target.decode(data)
    with pytest.raises(TypeError):
        codec.decode("text")


def test_a_size_the_encoder_cannot_take_is_a_decode_error():
    torch.manual_seed(0)
    prior = FactorizedPrior(4).eval()
    prior.update_tables()
    codec = FeatureCodec(nn.Conv2d(16, 4, 5), nn.ConvTranspose2d(4, 16, 5), prior)  # needs H, W >= 5
    with pytest.raises(DecodeError, match="size"):
        codec.decode(_header(size=(2, 2)) + b"\x00")


def test_truncated_messages_raise_decode_error():
    for kind, codec in CODECS.items():
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


class NotAModel(nn.Module):
    channels = 4


def test_bad_arguments():
    with pytest.raises(TypeError, match="entropy_model"):
        FeatureCodec(nn.Conv2d(16, 4, 1), nn.Identity(), NotAModel())
    with pytest.raises(ValueError, match="q_step"):
        _codec("factorized", q_step=1e-50)  # zero in float32
    with pytest.raises(ValueError, match=r"\(B, 16, H, W\)"):
        CODECS["factorized"].encode(torch.zeros(16, 4, 4))
    with pytest.raises(ValueError, match="checksum"):
        _codec("factorized", checksum=3)
    with pytest.raises(ValueError, match="feature_shape"):
        _codec("factorized", feature_shape=(16, 0, 4))
    with pytest.raises(ValueError, match="input channels"):
        FeatureCodec(nn.Identity(), nn.Identity(), CODECS["factorized"].entropy_model)


class ScaledPrior(nn.Module):
    """A user's entropy model: no featcodec base class, only the protocol (it wraps a FactorizedPrior)."""

    def __init__(self, prior, factor):
        super().__init__()
        self.prior, self.factor, self.channels = prior, factor, prior.channels

    def compress(self, y, q_step=1.0, *, checksum=True, context=b""):
        return self.prior.compress(y * self.factor, q_step, checksum=checksum, context=context)

    def decompress(self, data, shape, q_step=1.0, device=None, *, checksum=None, context=b""):
        return self.prior.decompress(data, shape, q_step, device, checksum=checksum, context=context) / self.factor

    def rate_report(self, y, image_size, q_step=1.0, *, checksum=True, extra_header_bytes=0, context=b""):
        return self.prior.rate_report(y * self.factor, image_size, q_step, checksum=checksum,
                                      extra_header_bytes=extra_header_bytes, context=context)


def test_any_model_that_follows_the_protocol_codes():
    model = ScaledPrior(CODECS["factorized"].entropy_model, 2.0)
    codec = FeatureCodec(Down().eval(), Up().eval(), model, q_step=0.5)
    features = torch.randn(2, 16, 6, 6)
    with torch.no_grad():
        y_hat = torch.round(codec.encoder(features) * 2.0 / 0.5) * 0.5 / 2.0
        expected = codec.decoder(y_hat, output_size=(6, 6))
    assert torch.equal(codec.decode(codec.encode(features)), expected)
    assert codec.report(features, (24, 24)).actual_bits == 8 * len(codec.encode(features))
    with pytest.raises(TypeError, match="saved"):
        codec.to_record()


@pytest.mark.parametrize("size", [False, 1, 2, 4])
def test_checksum_sizes(size):
    features = torch.randn(1, 16, 6, 6) * 2
    for kind in ("factorized", "hyperprior"):
        reference, codec = _codec(kind, checksum=False), _codec(kind, checksum=size)
        data = codec.encode(features)
        # Format 3: the checksum is lane 0's initial state, so it costs about its size: a byte or two
        # less or more, as the start-up map codes a lane that starts at 0 at about its information.
        added = len(data) - len(reference.encode(features))
        assert added == 0 if not size else size - 2 <= added <= size + 2
        assert torch.equal(codec.decode(data), reference.decode(reference.encode(features)))
        report = codec.report(features, image_size=(24, 24))
        assert report.actual_bits == 8 * len(data) and report.gaps["checksum"] == 8 * added


def test_a_receiver_requires_the_checksum_it_was_built_with():
    features = torch.randn(1, 16, 6, 6)
    without = _codec("factorized", checksum=False).encode(features)
    with pytest.raises(DecodeError):
        _codec("factorized", checksum=4).decode(without)
    with pytest.raises(DecodeError):  # a receiver asks for at least its own size
        _codec("factorized", checksum=4).decode(_codec("factorized", checksum=2).encode(features))


def _flips(data):
    for position in range(len(data)):
        for bit in range(8):
            changed = bytearray(data)
            changed[position] ^= 1 << bit
            yield position, bit, bytes(changed)


@pytest.mark.parametrize("kind", ["factorized", "hyperprior"])
def test_every_single_bit_flip_is_a_decode_error(kind):
    codec = _codec(kind, feature_shape=(16, 6, 6), model_id=5)
    messages = [codec.encode(torch.randn(1, 16, 6, 6) * 2), codec.encode(torch.randn(2, 16, 6, 5), q_step=0.3)]
    for data in messages:
        for position, bit, changed in _flips(data):
            with pytest.raises(DecodeError):
                codec.decode(changed)
                pytest.fail(f"flipping bit {bit} of byte {position} decoded")


def test_q_and_weights_are_never_taken_from_the_receiver():
    features = torch.randn(1, 16, 6, 6) * 2
    sender = _codec("factorized", q_step=0.25)
    data = sender.encode(features)
    with pytest.raises(DecodeError):  # a receiver whose Q is another: the fingerprint differs
        _codec("factorized", q_step=1.0).decode(data)
    receiver = _codec("factorized", q_step=0.25)
    with torch.no_grad():
        receiver.decoder.conv.weight.add_(1e-3)  # another decoder: the fingerprint differs
    with pytest.raises(DecodeError):
        receiver.decode(data)
    assert torch.equal(_codec("factorized", q_step=0.25).decode(data), sender.decode(data))


def test_fingerprint_follows_in_place_changes():
    codec = _codec("factorized")
    before = codec.fingerprint()
    assert codec.fingerprint() == before and len(before) == 16
    with torch.no_grad():
        codec.encoder.conv.bias.add_(1.0)
    assert codec.fingerprint() != before
    assert codec.with_options(model_id=3, checksum=False).fingerprint() == codec.fingerprint()
    assert codec.with_options(q_step=0.25).fingerprint() != codec.fingerprint()


def test_decode_many_calls_the_decoder_with_at_most_max_elements():
    from bank_models import FEATURE_SHAPE, features, unit_codec

    per_image = FEATURE_SHAPE[0] * FEATURE_SHAPE[1] * FEATURE_SHAPE[2]
    codec = unit_codec().with_options(max_elements=3 * per_image)
    messages = [codec.encode(features(n, seed=n)) for n in (1, 2, 1, 3, 1)]
    calls, view = [], codec._decoder_view  # the decoder as the codec runs it (an eval view)

    def counting(y_hat, **kwargs):
        calls.append(y_hat.shape[0])
        return view(y_hat, **kwargs)

    codec._decoder_view = counting
    decoded = codec.decode_many(messages)
    codec._decoder_view = view
    assert calls == [3, 1, 3, 1]  # (1, 2), (1), (3), (1): in order, none over 3 images
    for data, got in zip(messages, decoded):
        expected = codec.decode(data)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))
