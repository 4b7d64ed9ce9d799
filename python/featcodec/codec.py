"""The feature codec: a bottleneck encoder/decoder pair and an entropy model, tensor in, bytes out.

A message is a small header and the entropy model's bytes:

    byte 0     bits 7-5: header version (1); bits 4-2: model id (0-7);
               bit 1: Q follows; bit 0: reserved, 0
    varints    batch B, feature height H and width W, latent height h and width w
    [Q]        float32, little-endian, when it differs from the codec's own Q
    payload    the entropy model's message (docs/format.md)

The receiver holds the same codec (modules and stored tables), so the channel
counts, the kind of entropy model and the default Q need no bytes.  The model
id tells apart up to 8 codecs a receiver holds (a Pareto frontier of units).
Needs PyTorch.
"""

from __future__ import annotations

import contextlib
import inspect
import struct
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ._coding import DecodeError
from ._varint import read_varint, write_varint
from .entropy import FactorizedPrior, Hyperprior, RateReport
from .entropy._ledger import pixels_of
from .entropy._quantizer import check_q_step

HEADER_VERSION = 1
_MAX_MODEL_ID = 7
_DEFAULT_MAX_ELEMENTS = 1 << 28


class FeatureCodec:
    """Codes split-point features into bytes and back through a trained bottleneck.

    encoder: features (B, C, H, W) -> latent y (B, C_r, h, w).
    decoder: latent -> features; if it takes an ``output_size`` argument it is
    given (H, W), so odd sizes come back exactly.  A decoder that restores
    another size than its encoder's input (the entropic student codes the
    image and restores the first residual block's output) says which with a
    method ``output_size_of((H, W)) -> (h, w)``.
    entropy_model: a :class:`~featcodec.entropy.FactorizedPrior` or
    :class:`~featcodec.entropy.Hyperprior` over C_r channels, with tables
    (``update_tables()``).
    q_step: the quantization step Q of the latent, stored as float32.
    checksum: end each message with the 4-byte checksum of the values (see
    featcodec.encode); off saves 4 bytes a message, and corrupt bytes may
    then decode to wrong features instead of raising DecodeError.
    max_elements: the largest latent or feature plane (B*C_r*h*w, B*H*W) a
    header may ask for; larger ones are refused before anything is allocated.

    >>> import torch
    >>> from torch import nn
    >>> from featcodec.codec import FeatureCodec
    >>> from featcodec.entropy import FactorizedPrior
    >>> prior = FactorizedPrior(4).eval(); _ = prior.update_tables()
    >>> codec = FeatureCodec(nn.Conv2d(16, 4, 1), nn.Conv2d(4, 16, 1), prior, q_step=0.5)
    >>> features = torch.randn(2, 16, 7, 7)
    >>> data = codec.encode(features)
    >>> codec.decode(data).shape
    torch.Size([2, 16, 7, 7])
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        entropy_model: "FactorizedPrior | Hyperprior",
        q_step: float = 1.0,
        *,
        model_id: int = 0,
        checksum: bool = True,
        max_elements: int = _DEFAULT_MAX_ELEMENTS,
    ) -> None:
        if not isinstance(entropy_model, (FactorizedPrior, Hyperprior)):
            raise TypeError(f"entropy_model must be a FactorizedPrior or a Hyperprior, got {type(entropy_model).__name__}")
        if isinstance(model_id, bool) or not isinstance(model_id, int) or not 0 <= model_id <= _MAX_MODEL_ID:
            raise ValueError(f"model_id must be an integer in [0, {_MAX_MODEL_ID}], got {model_id!r}")
        self.encoder, self.decoder, self.entropy_model = encoder, decoder, entropy_model
        self.q_step = _as_float32(q_step)
        self.model_id = model_id
        self.checksum = bool(checksum)
        self.max_elements = int(max_elements)
        self._decoder_takes_size = "output_size" in inspect.signature(decoder.forward).parameters

    # --- the header ---------------------------------------------------------------

    def _header(self, batch: int, feature_size: Sequence[int], latent_size: Sequence[int], q_step: float) -> bytes:
        explicit_q = q_step != self.q_step
        head = bytes([HEADER_VERSION << 5 | self.model_id << 2 | explicit_q << 1])
        sizes = b"".join(write_varint(int(d)) for d in (batch, *feature_size, *latent_size))
        return head + sizes + (struct.pack("<f", q_step) if explicit_q else b"")

    def _read_header(self, data: bytes) -> tuple[int, tuple[int, int], tuple[int, int], float, int]:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        data = bytes(data)
        if not data:
            raise DecodeError("empty message")
        head = data[0]
        if head >> 5 != HEADER_VERSION:
            raise DecodeError(f"feature codec header version {head >> 5} is not {HEADER_VERSION}")
        if head & 1:
            raise DecodeError("feature codec header: reserved bit set")
        if (head >> 2) & _MAX_MODEL_ID != self.model_id:
            raise DecodeError(f"message is for model id {(head >> 2) & _MAX_MODEL_ID}, this codec is {self.model_id}")
        position, sizes = 1, []
        for what in ("batch", "height", "width", "latent height", "latent width"):
            value, position = read_varint(data, position, limit=self.max_elements + 1, what=what)
            sizes.append(value)
        batch, height, width, latent_height, latent_width = sizes
        for plane, what in ((batch * height * width, "feature"),
                            (batch * self.entropy_model.channels * latent_height * latent_width, "latent")):
            if plane > self.max_elements:
                raise DecodeError(f"{what} size in the header ({plane} elements) exceeds max_elements")
        q_step = self.q_step
        if head >> 1 & 1:
            if position + 4 > len(data):
                raise DecodeError("truncated Q in the header")
            (q_step,) = struct.unpack_from("<f", data, position)
            position += 4
            if not (q_step > 0 and np.isfinite(q_step)):
                raise DecodeError(f"Q in the header is {q_step}")
        return batch, (height, width), (latent_height, latent_width), float(q_step), position

    @staticmethod
    def model_id_of(data: bytes) -> int:
        """The model id a message names (to pick the codec that decodes it)."""
        if not data:
            raise DecodeError("empty message")
        return (data[0] >> 2) & _MAX_MODEL_ID

    # --- coding -------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, features: torch.Tensor, q_step: Optional[float] = None) -> bytes:
        """Bytes for features (B, C, H, W); the modules run in eval mode."""
        y, q = self._latent(features, q_step)
        with _eval(self.entropy_model):
            payload = self.entropy_model.compress(y, q_step=q, checksum=self.checksum)
        return self._header(features.shape[0], features.shape[2:], y.shape[2:], q) + payload

    def _latent(self, features: torch.Tensor, q_step: Optional[float]) -> tuple[torch.Tensor, float]:
        """The encoder's output (in eval mode) and the step, checked."""
        if features.dim() != 4:
            raise ValueError(f"features must be (B, C, H, W), got shape {tuple(features.shape)}")
        q = self.q_step if q_step is None else _as_float32(q_step)
        with _eval(self.encoder):
            return self.encoder(features), q

    @torch.no_grad()
    def decode(self, data: bytes) -> torch.Tensor:
        """Features (on the decoder's device) from :meth:`encode`'s bytes."""
        batch, size, latent_size, q, start = self._read_header(data)
        shape = (batch, self.entropy_model.channels, *latent_size)
        with _eval(self.decoder, self.entropy_model):
            y_hat = self.entropy_model.decompress(bytes(data[start:]), shape, q_step=q)
            y_hat = y_hat.to(_device_of(self.decoder, y_hat.device))
            features = self.decoder(y_hat, output_size=size) if self._decoder_takes_size else self.decoder(y_hat)
        expected = self._restored_size(size)
        if tuple(features.shape[2:]) != expected:
            raise ValueError(f"the decoder made features of size {tuple(features.shape[2:])}, expected "
                             f"{expected}; give the decoder an output_size argument")
        return features

    def _restored_size(self, size: tuple[int, int]) -> tuple[int, int]:
        size_of = getattr(self.decoder, "output_size_of", None)
        return size if size_of is None else tuple(int(d) for d in size_of(size))  # type: ignore[return-value]

    def input_size_of(self, data: bytes) -> tuple[int, int]:
        """The (H, W) of the encoder's input that a message was made from (read from its header)."""
        return self._read_header(data)[1]

    @torch.no_grad()
    def report(self, features: torch.Tensor, image_size: Sequence[int], q_step: Optional[float] = None) -> RateReport:
        """The rate report of encode(features) for input images of ``image_size`` (H, W).

        Lists the neural estimate, the ideal bits under the tables and the
        actual bytes (this codec's header included), in bits and in bpp =
        bits / (B * H * W), with the gap broken down by cause.
        """
        pixels_of(features.shape[0], image_size)
        y, q = self._latent(features, q_step)
        header = self._header(features.shape[0], features.shape[2:], y.shape[2:], q)
        with _eval(self.entropy_model):
            return self.entropy_model.rate_report(y, image_size, q_step=q, checksum=self.checksum,
                                                  extra_header_bytes=len(header))


def _as_float32(q_step: float) -> float:
    check_q_step(q_step)
    value = float(np.float32(q_step))
    check_q_step(value)  # a float too small for float32 becomes 0
    return value


def _device_of(module: nn.Module, default: torch.device) -> torch.device:
    parameter = next(module.parameters(), None)
    return default if parameter is None else parameter.device


@contextlib.contextmanager
def _eval(*modules: nn.Module) -> Iterator[None]:
    """Runs the block with the modules in eval mode, then restores their modes."""
    modes = [(m, m.training) for module in modules for m in module.modules()]
    try:
        for module in modules:
            module.eval()
        yield
    finally:
        for m, mode in modes:
            m.training = mode
