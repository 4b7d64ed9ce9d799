"""featcodec.bank.RateBank: units chosen by id or target bpp, one-byte headers, one file for all units."""

import functools
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from bank_models import FEATURE_SHAPE, features, unit_codec

from featcodec import DecodeError
from featcodec.bank import MAX_UNITS, RateBank


def _bank(points=((0.5, 0.02, 0.61), (1.0, 0.01, 0.55), (0.25, 0.04, 0.70)), **options):
    bank = RateBank(FEATURE_SHAPE, split="layer", network="net", **options)
    for q, bpp, metric in points:
        bank.add(unit_codec(q_step=q), bpp=bpp, metric=metric)
    return bank


def test_units_describe_what_was_added():
    bank = _bank()
    assert [u.id for u in bank.units] == [0, 1, 2] and len(bank) == 3
    assert [(u.bpp, u.metric, u.q_step) for u in bank.units] == [(0.02, 0.61, 0.5), (0.01, 0.55, 1.0),
                                                                   (0.04, 0.70, 0.25)]
    assert all(u.fingerprint == bank.codec(u.id).fingerprint().hex() for u in bank.units)
    assert len({u.fingerprint for u in bank.units}) == 3


def test_target_bpp_picks_the_best_unit_that_fits():
    bank = _bank()
    assert bank.unit_for(0.05) == 2 and bank.unit_for(0.04) == 2
    assert bank.unit_for(0.039) == 0 and bank.unit_for(0.015) == 1
    with pytest.raises(ValueError, match="lowest bpp is 0.01"):
        bank.unit_for(0.005)
    # A unit with more bits but a worse metric is not chosen.
    worse = _bank(((0.5, 0.02, 0.61), (0.25, 0.03, 0.50)))
    assert worse.unit_for(0.1) == 0
    # Without metrics: the most bits that fit.
    plain = _bank(((0.5, 0.02, None), (0.25, 0.03, None), (1.0, 0.01, None)))
    assert plain.unit_for(0.025) == 0 and plain.unit_for(1.0) == 1
    x = features(1, seed=3)
    data = bank.encode(x, target_bpp=0.039)
    assert data == bank.encode(x, unit=0)
    decoded, unit = bank.decode(data)
    assert unit == 0 and torch.equal(decoded, bank.codec(0).decode(data))
    with pytest.raises(TypeError, match="exactly one"):
        bank.encode(x)
    with pytest.raises(TypeError, match="exactly one"):
        bank.encode(x, unit=0, target_bpp=0.1)


def test_a_message_of_one_image_has_a_one_byte_header():
    bank = _bank()
    x = features(1, seed=4)
    for unit in range(3):
        codec = bank.codec(unit)
        data = bank.encode(x, unit=unit)
        assert data[0] == unit << 3
        with torch.no_grad():
            payload = codec.entropy_model.compress(codec.encoder.eval()(x), q_step=codec.q_step, checksum=False)
        unchecked = RateBank(FEATURE_SHAPE, "layer", "net", checksum=False)
        unchecked.add(unit_codec(q_step=codec.q_step), bpp=0.01)
        assert unchecked.encode(x, unit=0) == bytes([0]) + payload
    batch = bank.encode(features(3, seed=5), unit=1)
    assert batch[:2] == bytes([1 << 3 | 4, 3])


def test_at_least_sixteen_units():
    bank = RateBank(FEATURE_SHAPE)
    codec = unit_codec()
    for k in range(MAX_UNITS):
        assert bank.add(codec.with_options(q_step=0.25 + 0.05 * k), bpp=0.01 * (k + 1)) == k
    with pytest.raises(ValueError, match="at most 32"):
        bank.add(codec, bpp=1.0)
    x = features(1, seed=6)
    for unit in (0, 15, 16, 31):
        decoded, found = bank.decode(bank.encode(x, unit=unit))
        assert found == unit
        assert torch.equal(decoded, bank.codec(unit).decode(bank.codec(unit).encode(x)))


def test_bad_units_and_messages():
    bank = _bank()
    with pytest.raises(ValueError, match="unit"):
        bank.encode(features(1), unit=3)
    with pytest.raises(DecodeError, match="unit 5"):
        bank.decode(bytes([5 << 3]) + b"\x00" * 8)
    with pytest.raises(DecodeError, match="empty"):
        bank.decode(b"")
    with pytest.raises(ValueError, match="feature shape"):
        RateBank((16, 8, 8)).add(unit_codec(), bpp=0.1)
    with pytest.raises(ValueError, match="split"):
        RateBank(FEATURE_SHAPE, split="other").add(unit_codec(), bpp=0.1)
    with pytest.raises(ValueError, match="bpp"):
        RateBank(FEATURE_SHAPE).add(unit_codec(), bpp=0.0)
    with pytest.raises(ValueError, match="finite"):
        RateBank(FEATURE_SHAPE).add(unit_codec(), bpp=0.1, metric=float("nan"))
    with pytest.raises(ValueError, match="channels"):
        RateBank((8, 7, 7)).add(unit_codec().with_options(feature_shape=None), bpp=0.1)


def test_single_bit_flips_of_bank_messages_are_decode_errors():
    bank = _bank()
    for unit, x in ((0, features(1, seed=7)), (2, features(2, seed=8))):
        data = bank.encode(x, unit=unit)
        for position in range(len(data)):
            for bit in range(8):
                changed = bytearray(data)
                changed[position] ^= 1 << bit
                with pytest.raises(DecodeError):
                    bank.decode(bytes(changed))


def test_save_and_load(tmp_path):
    bank = _bank(checksum=2)
    path = tmp_path / "bank.fcbank"
    bank.save(path)
    loaded = RateBank.load(path)
    assert loaded.units == bank.units and loaded.checksum == 2
    assert (loaded.feature_shape, loaded.split, loaded.network) == (FEATURE_SHAPE, "layer", "net")
    x = features(2, seed=9)
    for unit in range(3):
        data = bank.encode(x, unit=unit)
        assert loaded.encode(x, unit=unit) == data
        assert torch.equal(loaded.decode(data)[0], bank.decode(data)[0])
    loaded.save(tmp_path / "again.fcbank")
    assert (tmp_path / "again.fcbank").read_bytes() == path.read_bytes()


def test_a_fresh_process_decodes_byte_identically(tmp_path):
    bank = _bank()
    bank.save(tmp_path / "bank.fcbank")
    x = features(2, seed=10)
    messages = [bank.encode(x[:1], unit=0), bank.encode(x, unit=2)]
    for k, data in enumerate(messages):
        (tmp_path / f"m{k}").write_bytes(data)
    torch.save([bank.decode(m)[0] for m in messages], tmp_path / "expected.pt")
    torch.save(x, tmp_path / "x.pt")
    script = textwrap.dedent("""
        import sys, pathlib, torch
        from featcodec.bank import RateBank
        root = pathlib.Path(sys.argv[1])
        bank = RateBank.load(root / "bank.fcbank")
        expected = torch.load(root / "expected.pt")
        x = torch.load(root / "x.pt")
        for k, want in enumerate(expected):
            features, unit = bank.decode((root / f"m{k}").read_bytes())
            assert torch.equal(features, want), k
        assert bank.encode(x[:1], unit=0) == (root / "m0").read_bytes()
        assert bank.encode(x, unit=2) == (root / "m1").read_bytes()
        print("same")
    """)
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "same"


def test_a_changed_byte_is_a_clear_error(tmp_path):
    path = tmp_path / "bank.fcbank"
    _bank(((0.5, 0.02, 0.61),)).save(path)
    blob = path.read_bytes()
    header = 8 + int.from_bytes(blob[:8], "little")
    positions = sorted(set(range(0, 16)) | set(range(0, header, 7)) | set(range(header, len(blob), 97))
                       | set(range(len(blob) - 16, len(blob))))
    for position in positions:
        changed = bytearray(blob)
        changed[position] = (changed[position] + 1) % 256
        path.write_bytes(bytes(changed))
        with pytest.raises(ValueError):
            RateBank.load(path)


@pytest.fixture(scope="module")
def many():
    """A bank and a message of each kind: one per unit, another size, two images, and broken ones."""
    bank = _bank()
    x = features(2, seed=8)
    wide = torch.relu(torch.randn(1, FEATURE_SHAPE[0], 9, 11, generator=torch.Generator().manual_seed(9)))
    good = bank.encode(x[:1], unit=1)
    messages = {
        "unit0": bank.encode(x[:1], unit=0), "unit1": good, "unit2": bank.encode(x[1:], unit=2),
        "other size": bank.encode(wide, unit=1), "two images": bank.encode(x, unit=1), "garbage": b"\x17\x00\xff",
        "unknown unit": bytes([7 << 3 | good[0] & 7]) + good[1:], "truncated": good[: len(good) // 2],
        "empty": b""}
    return bank, messages


@settings(max_examples=15, deadline=None)
@given(kinds=st.lists(st.sampled_from(["unit0", "unit1", "unit2", "other size", "two images", "garbage",
                                       "unknown unit", "truncated", "empty"]), max_size=8))
def test_decode_many_is_decode_of_each_message(many, kinds):
    bank, by_kind = many
    messages = [by_kind[kind] for kind in kinds]
    results = bank.decode_many(messages)
    assert len(results) == len(messages)
    for data, result in zip(messages, results):
        try:
            expected, unit = bank.decode(data)
        except (DecodeError, ValueError, TypeError) as error:
            assert type(result) is type(error) and str(result) == str(error)
            continue
        features_, got_unit = result
        assert got_unit == unit and features_.shape == expected.shape
        # One synthesis call for several messages may round differently from one a message.
        torch.testing.assert_close(features_, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


def test_decode_many_of_nothing_is_nothing():
    assert _bank().decode_many([]) == []
