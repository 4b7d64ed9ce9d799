"""The entropic student of Matsubara et al., WACV 2022 ("Supervised Compression for
Resource-Constrained Edge Computing Systems"), and the tail modes of split models.

The stem of a ResNet-50 (conv1, bn1, relu, maxpool and the first residual
stage ``layer1``), or of DeepLabv3-ResNet50's backbone, is replaced by a
*student bottleneck*:

* encoder (the client): conv 5x5/2 (3 -> 4N), GDN, conv 5x5/2 (4N -> 2N),
  GDN, conv 2x2/1 no padding (2N -> N): the latent y, N channels (24 in the
  paper), at about H/4 x W/4;
* a factorized prior over the N channels; y is quantized with step 1
  (uniform noise while the prior trains, rounding once it is frozen) and
  coded by :class:`featcodec.codec.FeatureCodec`;
* decoder (the server): conv 2x2/1 pad 1 (N -> 2T), IGDN, conv 2x2/1
  (2T -> T), IGDN, conv 2x2/1 pad 1 (T -> T), with T the first residual
  stage's channels (256 for ResNet-50).

The layer shapes follow the paper's figure S1 and sc2bench's
``FPBasedResNetBottleneck`` (Matsubara's code).  The GDNs are the
simplified ones (:mod:`featcodec.split.gdn`).  With kernels 5/2 padded 2 the
encoder's spatial reduction is ceil(ceil(H / 2) / 2), the same as ResNet's
conv 7x7/2 and max pool 3x3/2; the 2x2 convolutions take one off and put it
back, so the decoder's output has the shape of layer1's output for every
input size of at least 5 x 5.

Everything after the stem is the pretrained network's and is fine-tuned in
the second training stage: an entropic student has a *tuned tail*
(:attr:`TailMode.TUNED`), unlike the bottleneck units of Datta et al., ICPR
2022 and Ahuja et al., CVPR 2023, which train with the network frozen
(:attr:`TailMode.FROZEN`); :func:`tail_mode_of` tells which a model is.
"""

from __future__ import annotations

import copy
import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Sequence, Tuple

import torch
from torch import nn

from ..entropy import FactorizedPrior, StaleTablesError, estimate_bits
from .cut import SIZE, split
from .gdn import GDN

if TYPE_CHECKING:
    from ..codec import FeatureCodec


class TailMode(str, enum.Enum):
    """What training may change behind the bottleneck."""

    #: The pretrained network is fixed; only a bottleneck unit and its rate
    #: model train (Datta et al., ICPR 2022; Ahuja et al., CVPR 2023).
    FROZEN = "frozen"
    #: The layers after the bottleneck are fine-tuned as well (the entropic
    #: student of Matsubara et al., WACV 2022, and its baselines).
    TUNED = "tuned"


def tail_mode_of(model: nn.Module) -> TailMode:
    """A split model's :class:`TailMode` (its ``tail_mode`` attribute)."""
    mode = getattr(model, "tail_mode", None)
    if not isinstance(mode, TailMode):
        raise TypeError(f"{type(model).__name__} does not say whether its tail is frozen or tuned (no tail_mode)")
    return mode


def stem_size(size: Sequence[int]) -> Tuple[int, int]:
    """(H, W) of ResNet's layer1 output for an input of (H, W): ceil(ceil(x / 2) / 2)."""
    return tuple(-(-(-(-int(d) // 2)) // 2) for d in size[-2:])  # type: ignore[return-value]


class StudentEncoder(nn.Sequential):
    """The client's half: image (B, 3, H, W) -> latent (B, N, ceil(ceil(H/2)/2) - 1, ...)."""

    def __init__(self, latent_channels: int = 24, in_channels: int = 3) -> None:
        n = latent_channels
        super().__init__(
            nn.Conv2d(in_channels, 4 * n, 5, stride=2, padding=2, bias=False), GDN(4 * n),
            nn.Conv2d(4 * n, 2 * n, 5, stride=2, padding=2, bias=False), GDN(2 * n),
            nn.Conv2d(2 * n, n, 2, stride=1, padding=0, bias=False),
        )
        self.latent_channels, self.in_channels = n, in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if x.dim() != 4 or min(x.shape[-2:]) < 5:
            raise ValueError(f"the entropic student's encoder needs (B, C, H, W) with H, W >= 5, got {tuple(x.shape)}")
        return super().forward(x)


class StudentDecoder(nn.Sequential):
    """The server's half: latent (B, N, h, w) -> features (B, T, h + 1, w + 1), layer1's shape."""

    def __init__(self, latent_channels: int = 24, target_channels: int = 256) -> None:
        n, t = latent_channels, target_channels
        super().__init__(
            nn.Conv2d(n, 2 * t, 2, stride=1, padding=1, bias=False), GDN(2 * t, inverse=True),
            nn.Conv2d(2 * t, t, 2, stride=1, padding=0, bias=False), GDN(t, inverse=True),
            nn.Conv2d(t, t, 2, stride=1, padding=1, bias=False),
        )
        self.target_channels = t

    @staticmethod
    def output_size_of(input_size: Sequence[int]) -> Tuple[int, int]:
        """The features' (h, w) for an image of ``input_size``: what the codec checks."""
        return stem_size(input_size)


class StudentBottleneck(nn.Module):
    """encoder -> prior (quantizer and rate) -> decoder, in place of the stem.

    ``forward(image)`` returns the restored features and keeps the pass's
    latent and likelihoods in ``last`` (the rate of the batch is read from it).
    """

    def __init__(self, latent_channels: int, target_channels: int, q_step: float = 1.0) -> None:
        super().__init__()
        self.encoder = StudentEncoder(latent_channels)
        self.prior = FactorizedPrior(latent_channels)
        self.decoder = StudentDecoder(latent_channels, target_channels)
        self.q_step = float(q_step)
        self.last: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        latent = self.encoder(x)
        latent_hat, likelihoods = self.prior(latent, q_step=self.q_step)
        restored = self.decoder(latent_hat)
        self.last = (latent, likelihoods, restored)
        return restored


@dataclass
class StudentOutput:
    """One forward pass: the network's ``output``, the batch's estimated ``rate`` in bits,
    the ``latent`` before quantization and the decoder's ``restored`` features."""

    output: Any
    rate: torch.Tensor
    latent: torch.Tensor
    restored: torch.Tensor


class EntropicStudent(nn.Module):
    """A copy of a network whose stem is a :class:`StudentBottleneck`; built by :func:`entropic_student`.

    ``student(x)`` gives a :class:`StudentOutput`.  ``client(images)`` gives
    the bytes an edge device sends (encoder and prior, coded by the feature
    codec), ``server(data)`` the network's output from them.
    ``freeze_encoder()`` fixes the encoder and the prior (the second stage):
    they stay in eval mode, so the latent is rounded, not noised.
    """

    tail_mode = TailMode.TUNED

    def __init__(self, network: nn.Module, stem_end: str, bottleneck: StudentBottleneck) -> None:
        super().__init__()
        if network.get_submodule(stem_end) is not bottleneck:
            raise ValueError(f"the network's {stem_end!r} is not the given bottleneck")
        self.network, self.stem_end = network, stem_end
        self.encoder_frozen = False
        self._tail: Optional[nn.Module] = None

    # --- training ----------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> StudentOutput:
        output = self.network(x)
        last = self.bottleneck.last
        if last is None:
            raise RuntimeError("the network's forward did not run the student bottleneck")
        self.bottleneck.last = None
        latent, likelihoods, restored = last
        return StudentOutput(output, estimate_bits(likelihoods), latent, restored)

    def train(self, mode: bool = True) -> "EntropicStudent":
        super().train(mode)
        if self.encoder_frozen:
            self.bottleneck.encoder.eval()
            self.bottleneck.prior.eval()
        return self

    def freeze_encoder(self) -> None:
        """Turns gradients off for the encoder and the prior and keeps them in eval mode."""
        for part in (self.bottleneck.encoder, self.bottleneck.prior):
            for parameter in part.parameters():
                parameter.requires_grad_(False)
            part.eval()
        self.encoder_frozen = True

    @property
    def bottleneck(self) -> StudentBottleneck:
        """The module in place of the stem (registered once, inside ``network``)."""
        return self.network.get_submodule(self.stem_end)  # type: ignore[return-value]

    @property
    def encoder(self) -> StudentEncoder:
        return self.bottleneck.encoder

    @property
    def decoder(self) -> StudentDecoder:
        return self.bottleneck.decoder

    @property
    def prior(self) -> FactorizedPrior:
        return self.bottleneck.prior

    def tail_parameters(self) -> list:
        """The parameters after the bottleneck (what the second stage tunes besides the decoder)."""
        own = {id(p) for p in self.bottleneck.parameters()}
        return [p for p in self.network.parameters() if id(p) not in own]

    # --- deployment --------------------------------------------------------------

    @property
    def tail(self) -> nn.Module:
        """The network after the bottleneck, taking what crosses the cut (shares the student's modules)."""
        if self._tail is None:
            _, tail = split(self.network, self.stem_end)
            crossing: tuple = getattr(tail, "crossing")
            for value in crossing[1:]:
                if value.kind != SIZE or not value.producer.startswith("input.shape"):
                    raise ValueError(f"the tail after {self.stem_end!r} needs {value.name} from {value.producer}, "
                                     "which the entropic student's server cannot restore")
            object.__setattr__(self, "_tail", tail)  # not a submodule: its modules are the network's
        return self._tail  # type: ignore[return-value]

    def tail_output(self, features: torch.Tensor, input_size: Sequence[int]) -> Any:
        """The network's output from the decoder's features and the image's (H, W)."""
        tail = self.tail
        crossing: tuple = getattr(tail, "crossing")
        if len(crossing) == 1:
            return tail(features)
        return tail((features, *[torch.Size(tuple(input_size)) for _ in crossing[1:]]))

    def codec(self, *, model_id: int = 0, checksum: bool = True) -> "FeatureCodec":
        """The feature codec of this student: image in, bytes out; bytes in, layer1 features out.

        Builds the prior's coding tables (once trained, they stay: the prior
        is frozen in the second stage).
        """
        from ..codec import FeatureCodec

        try:
            self.prior.tables
        except StaleTablesError:
            self.prior.update_tables()
        return FeatureCodec(self.encoder, self.decoder, self.prior, q_step=self.bottleneck.q_step,
                            model_id=model_id, checksum=checksum)

    @torch.no_grad()
    def client(self, images: torch.Tensor, codec: Optional["FeatureCodec"] = None) -> bytes:
        """The message an edge device sends for ``images``."""
        return (codec or self.codec()).encode(images)

    @torch.no_grad()
    def server(self, data: bytes, codec: Optional["FeatureCodec"] = None) -> Any:
        """The network's output (logits, or DeepLab's dict) from a client's message."""
        codec = codec or self.codec()
        was_training = self.training
        self.eval()
        try:
            return self.tail_output(codec.decode(data), codec.input_size_of(data))
        finally:
            self.train(was_training)


def _stem_modules(model: nn.Module, stem_end: str) -> Tuple[nn.Module, list]:
    """The module holding ``stem_end`` and the names of its children up to and including it."""
    parent_name, _, last = stem_end.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    names = [name for name, _ in parent.named_children()]
    if last not in names:
        raise ValueError(f"{type(model).__name__} has no submodule {stem_end!r}")
    return parent, names[: names.index(last) + 1]


def default_stem_end(model: nn.Module) -> str:
    """``layer1`` for a ResNet, ``backbone.layer1`` for DeepLabv3 (torchvision names)."""
    names = dict(model.named_modules())
    for name in ("layer1", "backbone.layer1"):
        if name in names:
            return name
    raise ValueError(f"cannot find the first residual stage of {type(model).__name__}; give stem_end")


def replace_stem(model: nn.Module, stem_end: str, bottleneck: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose children up to ``stem_end`` are identities, ``stem_end`` being ``bottleneck``.

    The parent of ``stem_end`` must run its children in order (ResNet's
    forward, DeepLab's backbone); :func:`entropic_student` checks the shapes.
    """
    network = copy.deepcopy(model)
    parent, names = _stem_modules(network, stem_end)
    for name in names[:-1]:
        setattr(parent, name, nn.Identity())
    setattr(parent, names[-1], bottleneck)
    return network


@torch.no_grad()
def stem_output_shape(model: nn.Module, stem_end: str, size: Sequence[int]) -> Tuple[int, ...]:
    """(C, h, w) of the teacher's ``stem_end`` output for a (1, 3, H, W) input."""
    head, _ = split(model, stem_end)
    was_training = model.training
    model.eval()
    try:
        crossing = head(torch.zeros(1, 3, *size))
    finally:
        model.train(was_training)
    feature = crossing[0] if isinstance(crossing, tuple) else crossing
    return tuple(feature.shape[1:])


def entropic_student(model: nn.Module, *, latent_channels: int = 24, stem_end: Optional[str] = None,
                     q_step: float = 1.0) -> EntropicStudent:
    """The entropic student of ``model`` (torchvision ResNet-50 or DeepLabv3-ResNet50, or a like network).

    ``model`` is the teacher and is not changed: the student holds a deep
    copy whose stem (everything up to ``stem_end``, default ``layer1`` /
    ``backbone.layer1``) is a fresh :class:`StudentBottleneck` with
    ``latent_channels`` (N, 24 in the paper) latent channels.  The rest keeps
    the teacher's weights, to be fine-tuned in the second stage.
    """
    if isinstance(latent_channels, bool) or not isinstance(latent_channels, int) or latent_channels < 1:
        raise ValueError(f"latent_channels must be a positive integer, got {latent_channels!r}")
    stem_end = stem_end or default_stem_end(model)
    probe = (37, 45)
    channels, *size = stem_output_shape(model, stem_end, probe)
    if tuple(size) != stem_size(probe):
        raise ValueError(f"{type(model).__name__}'s {stem_end} output is {tuple(size)} at input {probe}, not "
                         f"{stem_size(probe)}: its stem does not reduce like ResNet's")
    bottleneck = StudentBottleneck(latent_channels, int(channels), q_step=q_step)
    return EntropicStudent(replace_stem(model, stem_end, bottleneck), stem_end, bottleneck)


__all__ = [
    "EntropicStudent", "StudentBottleneck", "StudentDecoder", "StudentEncoder", "StudentOutput", "TailMode",
    "default_stem_end", "entropic_student", "replace_stem", "stem_output_shape", "stem_size", "tail_mode_of",
]
