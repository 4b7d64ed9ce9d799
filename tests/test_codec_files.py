"""FeatureCodec.save / load and fit_prior: one safetensors + JSON file, checked by digest and fingerprint."""

import json
import os
import struct
import subprocess
import sys
import textwrap

import pytest
import torch
from bank_models import FEATURE_SHAPE, features, unit_codec
from torch import nn

from featcodec.codec import FeatureCodec, fit_prior
from featcodec.entropy import FactorizedPrior, Hyperprior, MeanScaleHyperprior
from featcodec.split.units import make_unit


def test_save_and_load_in_a_fresh_process_decode_byte_identically(tmp_path):
    codec = unit_codec()
    path = tmp_path / "unit.fcodec"
    codec.save(path)
    x = features(3, seed=1)
    messages = [codec.encode(x[:1]), codec.encode(x), codec.encode(x[:1], q_step=0.3)]
    for k, data in enumerate(messages):
        (tmp_path / f"m{k}").write_bytes(data)
    torch.save([codec.decode(m) for m in messages], tmp_path / "expected.pt")
    torch.save(x, tmp_path / "x.pt")
    script = textwrap.dedent("""
        import sys, pathlib, torch
        from featcodec.codec import FeatureCodec
        root = pathlib.Path(sys.argv[1])
        codec = FeatureCodec.load(root / "unit.fcodec")
        x = torch.load(root / "x.pt")
        for k, want in enumerate(torch.load(root / "expected.pt")):
            assert torch.equal(codec.decode((root / f"m{k}").read_bytes()), want), k
        assert codec.encode(x) == (root / "m1").read_bytes()
        codec.save(root / "again.fcodec")
        print(codec.fingerprint().hex())
    """)
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == codec.fingerprint().hex()
    assert (tmp_path / "again.fcodec").read_bytes() == path.read_bytes()


def test_the_file_holds_everything_the_receiver_needs(tmp_path):
    codec = unit_codec().with_options(model_id=7, checksum=1, max_elements=1 << 20)
    codec.save(tmp_path / "unit.fcodec")
    loaded = FeatureCodec.load(tmp_path / "unit.fcodec")
    assert (loaded.model_id, loaded.checksum, loaded.max_elements) == (7, 1, 1 << 20)
    assert (loaded.q_step, loaded.feature_shape, loaded.split, loaded.network) == (0.5, FEATURE_SHAPE, "layer", "net")
    assert isinstance(loaded.entropy_model, FactorizedPrior)
    assert torch.equal(loaded.entropy_model._tables_blob, codec.entropy_model._tables_blob)
    assert FeatureCodec.load(tmp_path / "unit.fcodec", model_id=2).model_id == 2
    blob = (tmp_path / "unit.fcodec").read_bytes()
    assert b"pickle" not in blob and blob[8:9] == b"{"  # a safetensors JSON header


@pytest.mark.parametrize("family", [Hyperprior, MeanScaleHyperprior])
def test_a_hyperprior_codec_round_trips_through_a_file(tmp_path, family):
    torch.manual_seed(2)
    unit = make_unit("conv2", 16, 6, 2).eval()
    model = family(6, 3).eval()
    model.update_tables()
    codec = FeatureCodec(unit.encoder, unit.decoder, model, 0.75)
    codec.save(tmp_path / "h.fcodec")
    loaded = FeatureCodec.load(tmp_path / "h.fcodec")
    assert type(loaded.entropy_model) is family
    x = features(2, seed=3)
    assert loaded.encode(x) == codec.encode(x)
    assert torch.equal(loaded.decode(codec.encode(x)), codec.decode(codec.encode(x)))


def test_a_changed_byte_is_a_clear_error(tmp_path):
    path = tmp_path / "unit.fcodec"
    unit_codec().save(path)
    blob = path.read_bytes()
    header = 8 + int.from_bytes(blob[:8], "little")
    positions = sorted(set(range(0, header, 5)) | set(range(header, len(blob), 61)) | {len(blob) - 1})
    for position in positions:
        for change in (1, 0x80):
            changed = bytearray(blob)
            changed[position] = changed[position] ^ change
            path.write_bytes(bytes(changed))
            with pytest.raises(ValueError):
                FeatureCodec.load(path)


def _rewrite(path, edit, fingerprint=True):
    """The file with its JSON edited and its digest (and the codec's fingerprint) made to match: a forger's."""
    from featcodec.codec import _artifact_bytes, _fingerprint, read_artifact

    document, tensors = read_artifact(path, "featcodec.codec")
    edit(document, tensors)
    record = document["codec"]
    if fingerprint:
        described = {k: record[k] for k in ("architecture", "entropy_model", "q_step", "feature_shape", "split",
                                            "network")}
        record["fingerprint"] = _fingerprint(described, tensors).hex()
    path.write_bytes(_artifact_bytes("featcodec.codec", {k: v for k, v in document.items()
                                                          if k not in ("kind", "version")}, tensors))


def test_a_file_with_a_matching_digest_is_still_checked(tmp_path):
    path = tmp_path / "unit.fcodec"
    unit_codec().save(path)
    _rewrite(path, lambda d, t: d["codec"].update(q_step=0.25), fingerprint=False)
    with pytest.raises(ValueError, match="fingerprint"):
        FeatureCodec.load(path)
    cases = {
        "do not match": lambda d, t: t.pop("encoder.layers.0.conv.weight"),
        "needs": lambda d, t: t.update({"decoder.layers.0.conv.weight": torch.zeros(3, 3)}),
        "stage": lambda d, t: d["codec"]["architecture"].update(stages=[[16, 16, 3, 2, 16], [16, 4, 1, 1, 0]]),
        "groups": lambda d, t: d["codec"]["architecture"].update(stages=[[16, 16, 3, 2, 5]]),
        "cannot be rebuilt": lambda d, t: d["codec"]["entropy_model"].update({"class": "os.system"}),
        "filters": lambda d, t: d["codec"]["entropy_model"]["config"].update(filters="3"),
    }
    for match, edit in cases.items():
        unit_codec().save(path)
        _rewrite(path, edit)
        with pytest.raises(ValueError, match=match):
            FeatureCodec.load(path)
    unit_codec().save(path)
    with pytest.raises(ValueError, match="featcodec.bank"):
        from featcodec.bank import RateBank
        RateBank.load(path)


def test_a_huge_architecture_is_refused_before_allocating(tmp_path):
    path = tmp_path / "unit.fcodec"
    unit_codec().save(path)
    # 65536 x 65536 x 3 x 3 weights would be 150 GiB: built on the meta device, refused by shape.
    _rewrite(path, lambda d, t: d["codec"]["architecture"].update(stages=[[65536, 65536, 3, 1, 1]]))
    with pytest.raises(ValueError, match="do not match|needs"):
        FeatureCodec.load(path)


def test_only_known_modules_can_be_saved(tmp_path):
    prior = FactorizedPrior(4).eval()
    prior.update_tables()
    codec = FeatureCodec(nn.Conv2d(16, 4, 1), nn.Conv2d(4, 16, 1), prior)
    with pytest.raises(TypeError, match="bottleneck units"):
        codec.save(tmp_path / "x.fcodec")
    assert not (tmp_path / "x.fcodec").exists()


def test_not_a_featcodec_file(tmp_path):
    path = tmp_path / "x"
    for blob in (b"", b"\x00" * 3, struct.pack("<Q", 2**60) + b"{}", struct.pack("<Q", 2) + b"{}",
                 b"\x10\x00\x00\x00\x00\x00\x00\x00" + json.dumps({"__metadata__": {"a": "b"}}).encode().ljust(16)):
        path.write_bytes(blob)
        with pytest.raises(ValueError):
            FeatureCodec.load(path)


def test_fit_prior_fits_the_code_and_leaves_the_unit_alone(capsys):
    torch.manual_seed(0)
    unit = make_unit("dws", 16, 4, 2).train()
    before = {k: v.clone() for k, v in unit.state_dict().items()}
    x = features(64, seed=4)
    untrained = FactorizedPrior(4).eval()
    prior = fit_prior(unit, x, 0.5, epochs=8, batch_size=32, progress=True)
    assert "fitting the coding prior" in capsys.readouterr().err
    assert all(m.training for m in unit.modules())
    assert all(torch.equal(before[k], v) for k, v in unit.state_dict().items())
    with torch.no_grad():
        y = unit.encoder.eval()(x)
    unit.train()
    codec = FeatureCodec(unit.encoder, unit.decoder, prior, 0.5)
    untrained.update_tables()
    bare = FeatureCodec(unit.encoder, unit.decoder, untrained, 0.5)
    assert len(codec.encode(x)) < 0.8 * len(bare.encode(x))  # the fit is real
    assert not prior.training and prior.tables is not None
    # From a loader of (features, label) pairs, the same code: the same prior.
    loader = [(x[i : i + 32], None) for i in range(0, 64, 32)]
    again = fit_prior(unit, loader, 0.5, epochs=8, batch_size=32, progress=False)
    assert torch.equal(again._tables_blob, prior._tables_blob)
    with pytest.raises(ValueError, match="empty"):
        fit_prior(unit, [], 0.5)
    del y
