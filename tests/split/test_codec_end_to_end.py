"""A batch through head -> unit -> real bitstream -> unit decoder -> tail."""

from __future__ import annotations

import pytest
import torch

from featcodec.codec import FeatureCodec
from featcodec.entropy import FactorizedPrior, Hyperprior
from featcodec.split import NeuralRate, SplitModel, feature_of, make_unit, split, with_feature


def _codec_for(network, name, images, q_step, entropy_model_of):
    head, tail = split(network, name)
    with torch.no_grad():
        crossing = head(images)
    feature = feature_of(crossing)
    torch.manual_seed(4)
    unit = make_unit("dws", feature.shape[1], 6, 2).eval()
    entropy_model = entropy_model_of(6).eval()
    entropy_model.update_tables()
    model = SplitModel(head, unit, NeuralRate(entropy_model), tail, q_step=q_step).eval()
    return model, FeatureCodec(unit.encoder, unit.decoder, entropy_model, q_step), crossing


@pytest.mark.parametrize("entropy_model_of", [FactorizedPrior, Hyperprior], ids=["factorized", "hyperprior"])
def test_resnet_batch_through_the_codec(resnet50, resnet_input, entropy_model_of):
    model, codec, crossing = _codec_for(resnet50, "layer3.4", resnet_input, 0.5, entropy_model_of)
    data = codec.encode(crossing)
    assert isinstance(data, bytes) and len(data) < 2 * 6 * 2 * 2 * 4  # far below float32 size
    with torch.no_grad():
        decoded = codec.decode(data)
        assert decoded.shape == crossing.shape == (2, 1024, 4, 4)
        expected = model(resnet_input)
        code_hat = model.rate(model.unit.encode(crossing), 0.5)[0]
        assert torch.equal(decoded, model.unit.decode(code_hat, (4, 4)))
        assert torch.equal(model.tail(decoded), expected.output)
    report = codec.report(crossing, image_size=(64, 64))
    assert report.actual_bits == 8 * len(data)
    assert report.neural_bits == pytest.approx(float(expected.rate), rel=1e-4)


def test_deeplab_batch_through_the_codec(deeplab, deeplab_input):
    model, codec, crossing = _codec_for(deeplab, "backbone.layer4.1", deeplab_input, 1.0, FactorizedPrior)
    feature, input_size = crossing
    data = codec.encode(feature)
    with torch.no_grad():
        decoded = codec.decode(data)
        # The input image's size crosses beside the bitstream (see split()): the tail needs it.
        out = model.tail(with_feature(crossing, decoded))["out"]
        assert out.shape == (1, 21, 57, 49)
        assert torch.equal(out, model(deeplab_input).output["out"])
