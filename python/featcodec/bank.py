"""The rate bank: the bottleneck units of one split point, and the choice of one per message.

Switching the bit-rate means switching the bottleneck unit, never the
network (Datta et al., ICPR 2022): a bank holds the Pareto-optimal units of
one split point, each a :class:`~featcodec.codec.FeatureCodec` with its
fitted prior and Q, their measured bpp and task metric.  Both ends load the
same bank file.  The sender picks a unit per message, by id or by a target
bpp; the message names it in its header byte (docs/format.md, "Feature codec
message"), so the receiver decodes any of them.  The feature shape is a
constant of the bank: a message of one image at that shape carries one
header byte before its payload.

    bank = RateBank(feature_shape=(2048, 7, 7), split="layer4.2", network="resnet50")
    unit = bank.add(codec, bpp=0.021, metric=0.74)
    data = bank.encode(features, target_bpp=0.03)
    features, unit = bank.decode(data)
    bank.save("bank.fcbank"); bank = RateBank.load("bank.fcbank")
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Optional, Sequence, Union

import torch

from ._coding import DecodeError
from .entropy import checksum_size
from .codec import MAX_UNIT_ID, FeatureCodec, PathLike, _shape3, read_artifact, write_artifact

#: Units a bank holds at most: the header byte's unit id field.
MAX_UNITS = MAX_UNIT_ID + 1
_FILE_KIND = "featcodec.bank"


@dataclasses.dataclass(frozen=True)
class UnitInfo:
    """What the bank knows of one unit: its id in messages, measured bpp and metric, Q and fingerprint."""

    id: int
    bpp: float
    metric: Optional[float]
    q_step: float
    fingerprint: str  # hex of FeatureCodec.fingerprint()


class RateBank:
    """Up to 32 codecs for one split point, chosen per message by id or by a target bpp.

    feature_shape: (C, H, W) of the split point's features, the same for
    every unit; split, network: names kept in the file (every unit's codec
    is given them, so they are part of its fingerprint).
    checksum: each message's checksum size in bytes (True: 4, 1, 2; False:
    none); the receiver requires it.  max_elements: as in FeatureCodec.
    """

    def __init__(self, feature_shape: Sequence[int], split: Optional[str] = None, network: Optional[str] = None,
                 *, checksum: Union[bool, int] = True, max_elements: Optional[int] = None) -> None:
        self.feature_shape = _shape3(feature_shape)
        for name, value in (("split", split), ("network", network)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a string or None, got {type(value).__name__}")
        self.split, self.network = split, network
        self._options: dict[str, Any] = {"checksum": checksum}
        if max_elements is not None:
            self._options["max_elements"] = max_elements
        self._codecs: list[FeatureCodec] = []
        self._units: list[UnitInfo] = []
        self.checksum = checksum_size(checksum)

    # --- units ----------------------------------------------------------------------

    def add(self, codec: FeatureCodec, bpp: float, metric: Optional[float] = None) -> int:
        """Adds a unit and returns its id (0, 1, ... in order of addition).

        codec: a FeatureCodec for this split point; the bank keeps a codec
        that shares its modules, with the bank's feature shape, names,
        checksum and the new id.  bpp: the unit's measured bits per input
        pixel (what ``target_bpp`` is compared with); metric: its task metric
        (accuracy, mIoU: higher is better), or None.
        """
        if not isinstance(codec, FeatureCodec):
            raise TypeError(f"codec must be a FeatureCodec, got {type(codec).__name__}")
        if len(self._codecs) >= MAX_UNITS:
            raise ValueError(f"a bank holds at most {MAX_UNITS} units")
        bpp = _finite(bpp, "bpp")
        if bpp <= 0:
            raise ValueError(f"bpp must be positive, got {bpp}")
        metric = None if metric is None else _finite(metric, "metric")
        for name, value in (("split", self.split), ("network", self.network)):
            theirs = getattr(codec, name)
            if theirs is not None and value is not None and theirs != value:
                raise ValueError(f"the codec is for {name} {theirs!r}, the bank for {value!r}")
        if codec.feature_shape is not None and codec.feature_shape != self.feature_shape:
            raise ValueError(f"the codec's feature shape {codec.feature_shape} is not the bank's {self.feature_shape}")
        if codec.channels != self.feature_shape[0]:
            raise ValueError(f"the codec takes {codec.channels} channels, the bank's features have "
                             f"{self.feature_shape[0]}")
        unit_id = len(self._codecs)
        member = codec.with_options(feature_shape=self.feature_shape, split=self.split, network=self.network,
                                    model_id=unit_id, **self._options)
        member.latent_size(self.feature_shape[1:])  # the unit must take the bank's features
        self._codecs.append(member)
        self._units.append(UnitInfo(unit_id, bpp, metric, member.q_step, member.fingerprint().hex()))
        return unit_id

    @property
    def units(self) -> tuple[UnitInfo, ...]:
        """Per unit: id, measured bpp, metric, Q and fingerprint, in id order."""
        return tuple(self._units)

    def __len__(self) -> int:
        return len(self._codecs)

    def codec(self, unit: int) -> FeatureCodec:
        """The codec of unit ``unit`` (its modules, entropy model and Q)."""
        return self._codecs[self._check_unit(unit)]

    def unit_for(self, target_bpp: float) -> int:
        """The best unit whose measured bpp is at most ``target_bpp``.

        Best: the highest metric when every fitting unit has one (ties: the
        lower bpp), else the highest bpp.  ValueError if none fits.
        """
        target = _finite(target_bpp, "target_bpp")
        fitting = [u for u in self._units if u.bpp <= target]
        if not fitting:
            lowest = min((u.bpp for u in self._units), default=None)
            raise ValueError(f"no unit fits target_bpp {target}: the bank's lowest bpp is {lowest}")
        if all(u.metric is not None for u in fitting):
            return max(fitting, key=lambda u: (u.metric, -u.bpp)).id
        return max(fitting, key=lambda u: (u.bpp, -u.id)).id

    def _check_unit(self, unit: int) -> int:
        if isinstance(unit, bool) or not isinstance(unit, int) or not 0 <= unit < len(self._codecs):
            raise ValueError(f"unit must be an id in [0, {len(self._codecs) - 1}], got {unit!r}")
        return unit

    # --- coding -----------------------------------------------------------------------

    def encode(self, features: torch.Tensor, unit: Optional[int] = None, *, target_bpp: Optional[float] = None,
               q_step: Optional[float] = None) -> bytes:
        """Bytes for features (B, C, H, W) coded by ``unit``, or by the best unit for ``target_bpp``."""
        if (unit is None) == (target_bpp is None):
            raise TypeError("give exactly one of unit and target_bpp")
        chosen = self.unit_for(target_bpp) if target_bpp is not None else self._check_unit(unit)  # type: ignore[arg-type]
        return self._codecs[chosen].encode(features, q_step=q_step)

    def decode(self, data: bytes) -> tuple[torch.Tensor, int]:
        """(features, unit id) from :meth:`encode`'s bytes; DecodeError for bytes that are not such."""
        unit = self._unit_of(data)
        return self._codecs[unit].decode(data), unit

    def decode_many(self, messages: Sequence[bytes]) -> list[Union[tuple[torch.Tensor, int], Exception]]:
        """:meth:`decode` of each message, with one synthesis call per unit and feature size.

        See :meth:`FeatureCodec.decode_many`: a message that does not decode
        gets its error (DecodeError, ValueError or TypeError) in its place
        instead of (features, unit id), and the others decode as usual.
        """
        results: list[Union[tuple[torch.Tensor, int], Exception]] = []
        by_unit: dict[int, list[int]] = {}
        for index, data in enumerate(messages):
            try:
                by_unit.setdefault(self._unit_of(data), []).append(index)
            except (DecodeError, TypeError) as error:
                results.append(error)
                continue
            results.append(DecodeError("not decoded"))  # replaced below
        for unit, indices in by_unit.items():
            for index, item in zip(indices, self._codecs[unit].decode_many([messages[i] for i in indices])):
                results[index] = item if isinstance(item, Exception) else (item, unit)
        return results

    def _unit_of(self, data: bytes) -> int:
        unit = FeatureCodec.unit_id_of(data)
        if unit >= len(self._codecs):
            raise DecodeError(f"message names unit {unit}, the bank has {len(self._codecs)}")
        return unit

    # --- files -------------------------------------------------------------------------

    def save(self, path: PathLike) -> None:
        """Writes the bank to one file: safetensors tensors with a JSON description (no pickle)."""
        units, tensors = [], {}
        for info, codec in zip(self._units, self._codecs):
            record, codec_tensors = codec.to_record()
            units.append({"bpp": info.bpp, "metric": info.metric, "codec": record})
            tensors.update({f"unit{info.id}.{name}": t for name, t in codec_tensors.items()})
        document = {"feature_shape": list(self.feature_shape), "split": self.split, "network": self.network,
                    "options": dict(self._options, checksum=self.checksum), "units": units}
        write_artifact(path, _FILE_KIND, document, tensors)

    @classmethod
    def load(cls, path: PathLike) -> "RateBank":
        """Reads a file of :meth:`save`; ValueError if it is not one, or was changed."""
        document, tensors = read_artifact(path, _FILE_KIND)
        name = os.fspath(path)
        try:
            options = dict(document["options"])
            units = list(document["units"])
            bank = cls(document["feature_shape"], document["split"], document["network"], **options)
        except (KeyError, TypeError) as error:
            raise ValueError(f"{name}: not a bank description ({error!r})") from None
        if len(units) > MAX_UNITS:
            raise ValueError(f"{name}: {len(units)} units, a bank holds at most {MAX_UNITS}")
        groups: list[dict[str, torch.Tensor]] = [{} for _ in units]
        for key, tensor in tensors.items():
            prefix, _, rest = key.partition(".")
            index = prefix[4:]
            if not prefix.startswith("unit") or not index.isdigit() or int(index) >= len(units):
                raise ValueError(f"{name}: unexpected tensor {key!r}")
            groups[int(index)][rest] = tensor
        for unit, group in zip(units, groups):
            if not isinstance(unit, dict) or "codec" not in unit:
                raise ValueError(f"{name}: a unit without a codec record")
            codec = FeatureCodec.from_record(unit["codec"], group)
            bank.add(codec, unit.get("bpp"), unit.get("metric"))  # type: ignore[arg-type]  # checked by add
        return bank


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value}")
    return float(value)
