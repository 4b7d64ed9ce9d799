"""A stand-in with RateBank's methods over FeatureCodec, until featcodec.bank lands."""

from __future__ import annotations

from featcodec import DecodeError


class BankDouble:
    def __init__(self, feature_shape, split=None, network=None):
        self.feature_shape = tuple(feature_shape)
        self.split, self.network = split, network
        self.units = []

    def add(self, codec, bpp, metric=None):
        self.units.append((codec, bpp, metric))
        return len(self.units) - 1

    def encode(self, features, unit=None, target_bpp=None):
        if unit is None:
            fits = [i for i, (_, bpp, _) in enumerate(self.units) if bpp <= target_bpp]
            unit = max(fits, key=lambda i: self.units[i][1])
        return bytes([unit]) + self.units[unit][0].encode(features)

    def decode(self, data):
        if not data:
            raise DecodeError("empty message")
        if data[0] >= len(self.units):
            raise DecodeError(f"no unit {data[0]}")
        return self.units[data[0]][0].decode(data[1:]), data[0]
