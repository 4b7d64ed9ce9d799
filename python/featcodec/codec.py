"""The feature codec: a bottleneck encoder/decoder pair and an entropy model, tensor in, bytes out.

A message (docs/format.md, "Feature codec message") is one header byte, the
fields its flags call for, and the entropy model's message:

    byte 0     bits 7-3: unit id (0-31); bit 2: batch follows; bit 1: size follows; bit 0: Q follows
    [batch]    varint B, when B != 1
    [size]     varints H, W of the features, when they differ from the codec's feature shape
    [Q]        float32, little-endian, when the sender used another step than the codec's
    payload    the entropy model's message, whose checksum has the codec's fingerprint and the
               header as associated data

The receiver holds the same codec (saved with :meth:`FeatureCodec.save`), so
the channel counts, the latent size, the kind of entropy model and Q need no
bytes; a codec with a fixed feature shape sends one header byte per image.
With the checksum on, a changed header field, another Q or a receiver with
other weights or tables is a DecodeError: all of them are hashed into the
checksum without being sent.  Needs PyTorch.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import struct
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from ._coding import DecodeError
from ._varint import read_varint, write_varint
from .entropy import EntropyCoder, FactorizedPrior, Hyperprior, MeanScaleHyperprior, RateReport, checksum_size, estimate_bits
from .entropy._derived import Derived, module_tensors
from .entropy._ledger import pixels_of
from .entropy._quantizer import check_q_step

#: Version of the codec's framing and of its saved files (docs/format.md).
FORMAT_VERSION = 1
MAX_UNIT_ID = 31
_DEFAULT_MAX_ELEMENTS = 1 << 28
_BATCH_FLAG, _SIZE_FLAG, _Q_FLAG = 4, 2, 1
_UNIT_SHIFT = 3
_FINGERPRINT_BYTES = 16
# Hashed into every checksum before the fingerprint, so that another framing version never verifies.
_CONTEXT_LABEL = b"featcodec.codec/1"
_FILE_KIND = "featcodec.codec"
_LATENT_SIZE_CACHE = 256

PathLike = Union[str, "os.PathLike[str]"]


class FeatureCodec:
    """Codes split-point features into bytes and back through a trained bottleneck.

    encoder: features (B, C, H, W) -> latent y (B, C_r, h, w).
    decoder: latent -> features; if it takes an ``output_size`` argument it is
    given (H, W), so odd sizes come back exactly.  A decoder that restores
    another size than its encoder's input (the entropic student codes the
    image and restores the first residual stage's output) says which with a
    method ``output_size_of((H, W)) -> (h, w)``.
    entropy_model: any :class:`~featcodec.entropy.EntropyCoder` over C_r
    channels with its tables built (a FactorizedPrior fitted to the code,
    see :func:`fit_prior`, or a Hyperprior).
    q_step: the quantization step Q of the latent, stored as float32.
    feature_shape: (C, H, W) of the split point's features.  Messages of
    that size carry no size fields; without it every message carries H and W.
    model_id: the unit id written in each header (0-31), to tell apart the
    codecs a receiver holds (see :class:`featcodec.bank.RateBank`).
    checksum: its size in bytes per message (True: 4, 1, 2, or False:
    none).  The decoder requires the same size.  Without a checksum, corrupt
    bytes may decode to wrong features instead of raising DecodeError.
    max_elements: the largest latent or feature tensor a header may ask for;
    larger ones are refused before anything is allocated.
    split, network: names of the split point and the network, kept in the
    saved file (and its fingerprint) for the receiver.

    The codec never changes its modules' modes or buffers: it codes through
    eval-mode views that share their parameters, so modules left in training
    mode, or several threads at once, give the same bytes.

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
        entropy_model: EntropyCoder,
        q_step: float = 1.0,
        *,
        feature_shape: Optional[Sequence[int]] = None,
        model_id: int = 0,
        checksum: Union[bool, int] = True,
        max_elements: int = _DEFAULT_MAX_ELEMENTS,
        split: Optional[str] = None,
        network: Optional[str] = None,
    ) -> None:
        if not isinstance(entropy_model, EntropyCoder) or not isinstance(entropy_model, nn.Module):
            raise TypeError("entropy_model must be an nn.Module with channels, compress, decompress and "
                            f"rate_report (featcodec.entropy.EntropyCoder), got {type(entropy_model).__name__}")
        for module, what in ((encoder, "encoder"), (decoder, "decoder")):
            if not isinstance(module, nn.Module):
                raise TypeError(f"{what} must be an nn.Module, got {type(module).__name__}")
        if isinstance(model_id, bool) or not isinstance(model_id, int) or not 0 <= model_id <= MAX_UNIT_ID:
            raise ValueError(f"model_id must be an integer in [0, {MAX_UNIT_ID}], got {model_id!r}")
        for name, value in (("split", split), ("network", network)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a string or None, got {type(value).__name__}")
        self._encoder, self._decoder, self._entropy_model = encoder, decoder, entropy_model
        self._encoder_view, self._decoder_view = _eval_view(encoder), _eval_view(decoder)
        self.q_step = _as_float32(q_step)
        self.model_id = model_id
        self.checksum = checksum_size(checksum)
        self.max_elements = _positive_int(max_elements, "max_elements")
        self.split, self.network = split, network
        self.feature_shape = None if feature_shape is None else _shape3(feature_shape)
        self.channels = self.feature_shape[0] if self.feature_shape else _input_channels(encoder)
        self._decoder_takes_size = _takes_output_size(decoder)
        self._latent_sizes: dict[tuple[int, int], tuple[int, int]] = {}
        self._fingerprint_cache: Derived[bytes] = Derived()

    # --- what the codec holds -----------------------------------------------------

    @property
    def encoder(self) -> nn.Module:
        return self._encoder

    @property
    def decoder(self) -> nn.Module:
        return self._decoder

    @property
    def entropy_model(self) -> EntropyCoder:
        return self._entropy_model

    def with_options(self, **options: Any) -> "FeatureCodec":
        """A codec with the same modules (shared, not copied) and some options changed.

        options: any keyword argument of the constructor but the modules.
        """
        current: dict[str, Any] = dict(q_step=self.q_step, feature_shape=self.feature_shape, model_id=self.model_id,
                       checksum=self.checksum, max_elements=self.max_elements, split=self.split,
                       network=self.network)
        unknown = set(options) - set(current)
        if unknown:
            raise TypeError(f"unknown options: {sorted(unknown)}")
        current.update(options)
        return FeatureCodec(self._encoder, self._decoder, self._entropy_model, **current)

    def latent_size(self, size: Sequence[int]) -> tuple[int, int]:
        """(h, w) of the encoder's output for features of spatial size (H, W), without running it.

        Found by running the encoder on the meta device (shapes only), once
        per size; raises ValueError if the encoder cannot take that size.
        """
        key = (int(size[0]), int(size[1]))
        cached = self._latent_sizes.get(key)
        if cached is not None:
            return cached
        tensors = {name: torch.empty_like(t, device="meta") for name, t in _named_tensors(self._encoder_view)}
        try:
            out = functional_call(self._encoder_view, tensors,
                                  (torch.empty(1, self.channels, *key, device="meta"),))
        except Exception as error:  # any failure of a user's encoder on this size
            raise ValueError(f"the encoder does not take features of size {key}: {error}") from None
        if not isinstance(out, torch.Tensor) or out.dim() != 4 or out.shape[1] != self._entropy_model.channels:
            raise ValueError(f"the encoder must return (B, {self._entropy_model.channels}, h, w), "
                             f"got {getattr(out, 'shape', type(out).__name__)}")
        latent = (int(out.shape[2]), int(out.shape[3]))
        if len(self._latent_sizes) < _LATENT_SIZE_CACHE:
            self._latent_sizes[key] = latent
        return latent

    # --- the header ---------------------------------------------------------------

    def header(self, batch: int, size: Sequence[int], q_step: float) -> bytes:
        """The header of a message for ``batch`` features of spatial ``size`` coded with ``q_step``."""
        flags = self.model_id << _UNIT_SHIFT
        fields = b""
        if batch != 1:
            flags |= _BATCH_FLAG
            fields += write_varint(batch)
        if self.feature_shape is None or tuple(size) != self.feature_shape[1:]:
            flags |= _SIZE_FLAG
            fields += write_varint(int(size[0])) + write_varint(int(size[1]))
        if q_step != self.q_step:
            flags |= _Q_FLAG
            fields += struct.pack("<f", q_step)
        return bytes([flags]) + fields

    def _read_header(self, data: bytes) -> tuple[int, tuple[int, int], float, int]:
        """(batch, (H, W), Q, payload start) of a message for this codec; DecodeError if not."""
        if not data:
            raise DecodeError("empty message")
        head = data[0]
        if head >> _UNIT_SHIFT != self.model_id:
            raise DecodeError(f"message is for unit id {head >> _UNIT_SHIFT}, this codec is {self.model_id}")
        position, batch = 1, 1
        if head & _BATCH_FLAG:
            batch, position = read_varint(data, position, limit=self.max_elements + 1, what="batch")
            if batch == 1:
                raise DecodeError("header: a batch of 1 is sent without a batch field")
        if head & _SIZE_FLAG:
            height, position = read_varint(data, position, limit=self.max_elements + 1, what="feature height")
            width, position = read_varint(data, position, limit=self.max_elements + 1, what="feature width")
            size = (height, width)
            if self.feature_shape is not None and size == self.feature_shape[1:]:
                raise DecodeError("header: the codec's own feature size is sent without a size field")
            if min(size) < 1:
                raise DecodeError(f"header: feature size {size} is empty")
        elif self.feature_shape is None:
            raise DecodeError("header: no feature size, and this codec has no fixed feature shape")
        else:
            size = self.feature_shape[1:]
        q_step = self.q_step
        if head & _Q_FLAG:
            if position + 4 > len(data):
                raise DecodeError("header: truncated Q")
            (q_step,) = struct.unpack_from("<f", data, position)
            position += 4
            if not (q_step > 0 and math.isfinite(q_step)):
                raise DecodeError(f"header: Q is {q_step}")
            if q_step == self.q_step:
                raise DecodeError("header: the codec's own Q is sent without a Q field")
        if batch * self.channels * size[0] * size[1] > self.max_elements:
            raise DecodeError(f"header: features of {batch} x {self.channels} x {size[0]} x {size[1]} "
                              "exceed max_elements")
        return batch, size, float(q_step), position

    def _restored_size(self, size: tuple[int, int]) -> tuple[int, int]:
        size_of = getattr(self._decoder, "output_size_of", None)
        return size if size_of is None else (int(size_of(size)[0]), int(size_of(size)[1]))

    def input_size_of(self, data: bytes) -> tuple[int, int]:
        """The (H, W) of the encoder's input a message was made from (its header, or the codec's feature shape)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        return self._read_header(bytes(data))[1]

    @staticmethod
    def unit_id_of(data: bytes) -> int:
        """The unit id a message names (to pick the codec that decodes it)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        if not len(data):
            raise DecodeError("empty message")
        return data[0] >> _UNIT_SHIFT

    def _context(self, header: bytes) -> bytes:
        """The associated data of a message's checksum: framing version, fingerprint, header."""
        return _CONTEXT_LABEL + self.fingerprint() + header

    # --- coding -------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, features: torch.Tensor, q_step: Optional[float] = None) -> bytes:
        """Bytes for features (B, C, H, W)."""
        y, q, header = self._latent(features, q_step)
        payload = self._entropy_model.compress(y, q_step=q, checksum=self.checksum, context=self._context(header))
        return header + payload

    def _latent(self, features: torch.Tensor, q_step: Optional[float]) -> tuple[torch.Tensor, float, bytes]:
        """The encoder's output (eval mode), the step and the header, checked."""
        if not isinstance(features, torch.Tensor):
            raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
        if features.dim() != 4 or features.shape[1] != self.channels:
            raise ValueError(f"features must be (B, {self.channels}, H, W), got shape {tuple(features.shape)}")
        q = self.q_step if q_step is None else _as_float32(q_step)
        size = (int(features.shape[2]), int(features.shape[3]))
        y = self._encoder_view(features)
        if tuple(y.shape[2:]) != self.latent_size(size):
            raise ValueError(f"the encoder made a latent of size {tuple(y.shape[2:])} from {size}, but its shape "
                             f"on the meta device is {self.latent_size(size)}")
        return y, q, self.header(int(features.shape[0]), size, q)

    @torch.no_grad()
    def decode(self, data: bytes) -> torch.Tensor:
        """Features (on the decoder's device) from :meth:`encode`'s bytes; DecodeError if they are not such."""
        y_hat, size = self._decoded_latent(data)
        return self._synthesis(y_hat, size)

    @torch.no_grad()
    def decode_many(self, messages: Sequence[bytes]) -> list[Union[torch.Tensor, Exception]]:
        """:meth:`decode` of each message, with one synthesis call for all messages of one size.

        Each message is checked and entropy-decoded on its own; the decoder
        then runs once on the latents of the messages with the same feature
        size, which costs far less than a call a message for small messages.
        A call takes at most ``max_elements`` features, as one message may, so
        many messages cost no more memory at once than one.  A message that
        does not decode gets its error (DecodeError, ValueError or TypeError)
        in its place in the list instead of features, and the others are
        decoded as usual.  The features equal decode()'s up to float rounding
        of the batched synthesis.
        """
        results: list[Union[torch.Tensor, Exception]] = []
        latents: dict[int, torch.Tensor] = {}
        groups: dict[tuple[int, int], list[int]] = {}
        for index, data in enumerate(messages):
            try:
                latents[index], size = self._decoded_latent(data)
            except (DecodeError, ValueError, TypeError) as error:
                results.append(error)
                continue
            results.append(latents[index])  # replaced by its features below
            groups.setdefault(size, []).append(index)
        for size, indices in self._synthesis_calls(groups, latents):
            parts = [latents[i] for i in indices]
            try:
                features = self._synthesis(torch.cat(parts) if len(parts) > 1 else parts[0], size)
            except ValueError as error:
                for i in indices:
                    results[i] = error
                continue
            for i, part in zip(indices, features.split([p.shape[0] for p in parts])):
                results[i] = part
        return results

    def _synthesis_calls(self, groups: dict[tuple[int, int], list[int]],
                         latents: dict[int, torch.Tensor]) -> list[tuple[tuple[int, int], list[int]]]:
        """Each size's messages, in runs of at most max_elements features a call."""
        calls: list[tuple[tuple[int, int], list[int]]] = []
        for size, indices in groups.items():
            per_image = self.channels * size[0] * size[1]
            elements = self.max_elements
            for i in indices:
                count = latents[i].shape[0] * per_image
                if elements + count > self.max_elements:
                    calls.append((size, []))
                    elements = 0
                calls[-1][1].append(i)
                elements += count
        return calls

    def _decoded_latent(self, data: bytes) -> tuple[torch.Tensor, tuple[int, int]]:
        """The dequantized latent of a message (on the decoder's device) and its feature size."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        data = bytes(data)
        batch, size, q, start = self._read_header(data)
        try:
            latent_size = self.latent_size(size)
        except ValueError as error:
            raise DecodeError(f"header: {error}") from None
        shape = (batch, self._entropy_model.channels, *latent_size)
        if math.prod(shape) > self.max_elements:
            raise DecodeError(f"header: a latent of {shape} exceeds max_elements")
        y_hat = self._entropy_model.decompress(data[start:], shape, q_step=q, checksum=self.checksum or None,
                                               context=self._context(data[:start]))
        return y_hat.to(_device_of(self._decoder, y_hat.device)), size

    def _synthesis(self, y_hat: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if self._decoder_takes_size:
            features = self._decoder_view(y_hat, output_size=size)
        else:
            features = self._decoder_view(y_hat)
        expected = self._restored_size(size)
        if tuple(features.shape[2:]) != expected:
            raise ValueError(f"the decoder made features of size {tuple(features.shape[2:])}, expected "
                             f"{expected}; give the decoder an output_size argument")
        return features

    @torch.no_grad()
    def report(self, features: torch.Tensor, image_size: Sequence[int], q_step: Optional[float] = None) -> RateReport:
        """The rate report of encode(features) for input images of ``image_size`` (H, W).

        Lists the neural estimate, the ideal bits under the tables and the
        actual bytes (this codec's header included), in bits and in bpp =
        bits / (B * H * W), with the gap broken down by cause.
        """
        pixels_of(features.shape[0], image_size)
        y, q, header = self._latent(features, q_step)
        return self._entropy_model.rate_report(y, image_size, q_step=q, checksum=self.checksum,
                                               extra_header_bytes=len(header), context=self._context(header))

    # --- fingerprint and files ----------------------------------------------------

    def fingerprint(self) -> bytes:
        """16 bytes that identify everything deciding the decoded features.

        A hash of the architecture, every weight and buffer (tables included),
        the entropy model's settings, Q, the feature shape, split and network;
        not of the deployment options (unit id, checksum, max_elements).
        Recomputed when a tensor changes (see :class:`~featcodec.entropy._derived.Derived`
        for what counts as a change).
        """
        settings = (self.q_step, self.feature_shape, self.split, self.network)
        return self._fingerprint_cache.get(module_tensors(self._encoder, self._decoder, self._entropy_model),
                                           settings, self._fingerprint_now)

    def _fingerprint_now(self) -> bytes:
        return _fingerprint(self._description(), {k: t.detach().cpu() for k, t in self._tensors().items()})

    def _tensors(self) -> dict[str, torch.Tensor]:
        tensors = {}
        for prefix, module in (("encoder.", self._encoder), ("decoder.", self._decoder),
                               ("entropy.", self._entropy_model)):
            for name, tensor in module.state_dict(keep_vars=True).items():
                tensors[prefix + name] = tensor.detach()
        return tensors

    def _description(self) -> dict:
        """What decides the decoded features besides the tensors (JSON-ready)."""
        return {
            "architecture": _architecture_of(self._encoder, self._decoder),
            "entropy_model": _entropy_description(self._entropy_model),
            "q_step": self.q_step,
            "feature_shape": None if self.feature_shape is None else list(self.feature_shape),
            "split": self.split,
            "network": self.network,
        }

    def to_record(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """(JSON-ready description, tensors) of this codec: what :meth:`save` writes and a bank stores.

        TypeError unless the halves are a featcodec.split unit's and the
        entropy model is a FactorizedPrior or a Hyperprior: those are what a
        file can rebuild without running code from it.
        """
        description = self._description()
        if description["architecture"]["kind"] not in ("bottleneck", "entropic_student"):
            raise TypeError("only codecs of featcodec.split bottleneck units (make_unit) or entropic students "
                            "can be saved, not "
                            f"{description['architecture']['encoder']} / {description['architecture']['decoder']}")
        if description["entropy_model"]["config"] is None:
            raise TypeError(f"entropy model {description['entropy_model']['class']} cannot be saved "
                            f"(known: {sorted(_ENTROPY_MODELS)})")
        tensors = {name: t.detach().cpu().contiguous().clone() for name, t in self._tensors().items()}
        record = description
        record["fingerprint"] = self.fingerprint().hex()
        record["options"] = {"model_id": self.model_id, "checksum": self.checksum, "max_elements": self.max_elements}
        return record, tensors

    @classmethod
    def from_record(cls, record: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], **options: Any) -> "FeatureCodec":
        """The codec a record describes, checked against its fingerprint (ValueError if it differs)."""
        return _codec_from_record(cls, record, tensors, options)

    def save(self, path: PathLike) -> None:
        """Writes the codec to one file: safetensors tensors with a JSON description (no pickle)."""
        record, tensors = self.to_record()
        write_artifact(path, _FILE_KIND, {"codec": record}, tensors)

    @classmethod
    def load(cls, path: PathLike, **options: Any) -> "FeatureCodec":
        """Reads a file of :meth:`save`; ValueError if it is not one, or was changed (fingerprint).

        options: deployment options to override (model_id, checksum, max_elements).
        """
        document, tensors = read_artifact(path, _FILE_KIND)
        record = document.get("codec")
        if not isinstance(record, dict):
            raise ValueError(f"{os.fspath(path)}: no codec record")
        return _codec_from_record(cls, record, tensors, options)


# --- fitting a coding prior ------------------------------------------------------

def fit_prior(
    unit: nn.Module,
    features: "torch.Tensor | Iterable[Any]",
    q_step: float,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-2,
    quantile_lr: float = 0.1,
    seed: int = 0,
    progress: bool = True,
    filters: Sequence[int] = (3, 3, 3),
) -> FactorizedPrior:
    """A FactorizedPrior fitted to a trained unit's code, with its coding tables built.

    At inference only the bottleneck and a factorized prior fitted to its
    code are needed (Ahuja et al., CVPR 2023): this trains the prior's
    density on ``round(encoder(features) / Q)`` (noise in training, as
    usual) and its tail quantiles, then builds its integer tables.

    unit: a bottleneck unit (its ``encoder`` is used) or an encoder module;
    it is run in eval mode through a view, its modes are left alone.
    features: a (N, C, H, W) tensor, or an iterable of such tensors (or of
    tuples whose first item is one, as a DataLoader gives).
    progress: show a tqdm progress bar over the epochs.
    """
    check_q_step(q_step)
    epochs, batch_size = _positive_int(epochs, "epochs"), _positive_int(batch_size, "batch_size")
    encoder = _eval_view(getattr(unit, "encoder", unit))
    codes = _codes_of(encoder, features, batch_size)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    prior = FactorizedPrior(codes.shape[1], filters=filters).to(codes.device).train()
    density = [p for name, p in prior.named_parameters() if name != "quantiles"]
    optimizer = torch.optim.Adam([{"params": density, "lr": lr}, {"params": [prior.quantiles], "lr": quantile_lr}])
    for _ in _progress(range(epochs), progress, "fitting the coding prior"):
        for index in torch.randperm(len(codes), generator=generator).split(batch_size):
            batch = codes[index.to(codes.device)]
            optimizer.zero_grad()
            _, likelihoods = prior(batch, q_step=q_step)
            loss = estimate_bits(likelihoods) / batch.numel() + prior.aux_loss()
            loss.backward()
            optimizer.step()
    prior.eval()
    prior.update_tables()
    return prior


@torch.no_grad()
def _codes_of(encoder: nn.Module, features: "torch.Tensor | Iterable[Any]", batch_size: int) -> torch.Tensor:
    if isinstance(features, torch.Tensor):
        if features.dim() != 4 or len(features) == 0:
            raise ValueError(f"features must be a non-empty (N, C, H, W) tensor, got {tuple(features.shape)}")
        batches: Iterable[Any] = features.split(batch_size)
    else:
        batches = features
    codes = []
    for batch in batches:
        tensor = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(tensor, torch.Tensor) or tensor.dim() != 4:
            raise ValueError("features must yield (N, C, H, W) tensors")
        codes.append(encoder(tensor).detach())
    if not codes:
        raise ValueError("features is empty")
    return torch.cat(codes)


def _progress(items: Iterable[int], enabled: bool, description: str) -> Iterable[int]:
    if not enabled:
        return items
    from tqdm.auto import tqdm  # type: ignore[import-untyped]  # the torch extra installs it

    return tqdm(items, desc=description, leave=False)


# --- files: safetensors + JSON ---------------------------------------------------

def write_artifact(path: PathLike, kind: str, document: dict, tensors: Mapping[str, torch.Tensor]) -> None:
    """One safetensors file whose metadata holds ``document`` as JSON, with its kind, version and digest.

    The digest (blake2b over the JSON and every tensor) makes any change of
    content an error on loading; the loader also re-serializes what it read
    and compares, so no byte of the file can change unnoticed.
    """
    with open(path, "wb") as file:
        file.write(_artifact_bytes(kind, document, tensors))


def _artifact_bytes(kind: str, document: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    header = {**document, "kind": kind, "version": FORMAT_VERSION}
    header["digest"] = _fingerprint(header, tensors).hex()
    return save(dict(tensors), metadata={"featcodec": json.dumps(header, sort_keys=True, allow_nan=False)})


def read_artifact(path: PathLike, kind: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """(document, tensors) of a file of :func:`write_artifact`; ValueError naming what is wrong."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    name = os.fspath(path)
    with open(path, "rb") as file:
        blob = file.read()
    try:
        metadata = _safetensors_metadata(blob)
        tensors = load(blob)
    except (SafetensorError, ValueError, KeyError, UnicodeDecodeError, OverflowError, RuntimeError) as error:
        raise ValueError(f"{name} is not a readable featcodec file (safetensors: {error})") from None
    text = metadata.get("featcodec")
    if not isinstance(text, str):
        raise ValueError(f"{name} is a safetensors file without featcodec metadata")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{name}: its featcodec metadata is not JSON ({error}); the file was changed") from None
    if not isinstance(document, dict) or document.get("kind") != kind:
        found = document.get("kind") if isinstance(document, dict) else None
        raise ValueError(f"{name} is not a {kind} file (it says {found!r})")
    if document.get("version") != FORMAT_VERSION:
        raise ValueError(f"{name}: file version {document.get('version')!r}, this featcodec reads {FORMAT_VERSION}")
    digest = document.pop("digest", None)
    if not isinstance(digest, str) or _fingerprint(document, tensors).hex() != digest:
        raise ValueError(f"{name}: the digest does not match the contents: the file was changed or is corrupt")
    if _artifact_bytes(kind, {k: v for k, v in document.items() if k not in ("kind", "version")}, tensors) != blob:
        raise ValueError(f"{name} is not byte for byte what featcodec writes for its contents: the file was changed")
    return document, tensors


def _safetensors_metadata(blob: bytes) -> dict:
    """The ``__metadata__`` of a safetensors blob (its JSON header, whose size the first 8 bytes give)."""
    if len(blob) < 8:
        raise ValueError("shorter than a safetensors header")
    (size,) = struct.unpack_from("<Q", blob, 0)
    if size > len(blob) - 8:
        raise ValueError("header size runs past the end")
    header = json.loads(blob[8 : 8 + size].decode("utf-8"))
    metadata = header.get("__metadata__", {}) if isinstance(header, dict) else {}
    return metadata if isinstance(metadata, dict) else {}


def _fingerprint(description: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> bytes:
    digest = hashlib.blake2b(digest_size=_FINGERPRINT_BYTES, person=b"featcodec-codec")
    digest.update(json.dumps(description, sort_keys=True, allow_nan=False).encode())
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(f"\0{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.digest()


def _codec_from_record(cls: type, record: Mapping[str, Any], tensors: Mapping[str, torch.Tensor],
                       options: Mapping[str, Any]) -> FeatureCodec:
    try:
        description = {key: record[key] for key in
                       ("architecture", "entropy_model", "q_step", "feature_shape", "split", "network")}
        stored = bytes.fromhex(record["fingerprint"])
        saved_options = dict(record.get("options", {}))
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"not a codec record: {error!r}") from None
    if _fingerprint(description, tensors) != stored:
        raise ValueError("the codec's fingerprint does not match its contents: the file was changed or is corrupt")
    # The fingerprint holds: what follows builds what a featcodec wrote, but checks it anyway.
    groups: dict[str, dict[str, torch.Tensor]] = {"encoder": {}, "decoder": {}, "entropy": {}}
    for name, tensor in tensors.items():
        prefix, _, rest = name.partition(".")
        if prefix not in groups:
            raise ValueError(f"unexpected tensor {name!r} in a codec record")
        groups[prefix][rest] = tensor
    encoder, decoder = _build_halves(description["architecture"])
    entropy_model = _build_entropy_model(description["entropy_model"])
    for module, group in ((encoder, "encoder"), (decoder, "decoder"), (entropy_model, "entropy")):
        _load_state(module, groups[group], group)
    saved_options = {k: v for k, v in saved_options.items() if k in ("model_id", "checksum", "max_elements")}
    saved_options.update(options)
    codec = cls(encoder.eval(), decoder.eval(), entropy_model.eval(), description["q_step"],
                feature_shape=description["feature_shape"], split=description["split"],
                network=description["network"], **saved_options)
    if codec.fingerprint() != stored:
        raise ValueError("internal: the loaded codec's fingerprint differs from the file's")  # pragma: no cover
    return codec


def _load_state(module: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Materializes a meta-built module with exactly the file's tensors (names, shapes, dtypes)."""
    expected = {name: t for name, t in module.state_dict(keep_vars=True).items()}
    if set(expected) != set(state):
        raise ValueError(f"the file's {what} tensors {sorted(set(state) ^ set(expected))[:4]} do not match "
                         "its architecture")
    for name, tensor in expected.items():
        # A table blob's length is the tables' (EntropyModel takes the incoming one).
        same_shape = (tensor.dim() == state[name].dim() if name.rpartition(".")[2] == "_tables_blob"
                      else tensor.shape == state[name].shape)
        if not same_shape or tensor.dtype != state[name].dtype:
            raise ValueError(f"the file's {what} tensor {name!r} is {tuple(state[name].shape)} "
                             f"{state[name].dtype}, its architecture needs {tuple(tensor.shape)} {tensor.dtype}")
    module.to_empty(device="cpu")
    module.load_state_dict(dict(state), strict=True)


# --- architectures and entropy models a file may name ------------------------------

def _architecture_of(encoder: nn.Module, decoder: nn.Module) -> dict:
    """The JSON description of the halves, for the unit kinds a file can rebuild."""
    from .split.units import BottleneckDecoder, BottleneckEncoder  # the units define their architecture

    from .split.student import StudentDecoder, StudentEncoder

    if isinstance(encoder, StudentEncoder) and isinstance(decoder, StudentDecoder):
        return {"kind": "entropic_student", "in_channels": encoder.in_channels,
                "latent_channels": encoder.latent_channels, "target_channels": decoder.target_channels}
    if isinstance(encoder, BottleneckEncoder) and isinstance(decoder, BottleneckDecoder):
        if encoder.stages != decoder.stages:
            raise ValueError("the encoder and decoder are not halves of one unit (their stages differ)")
        return {"kind": "bottleneck",
                "stages": [[s.in_channels, s.out_channels, s.kernel, s.stride, s.groups] for s in encoder.stages]}
    return {"kind": "modules", "encoder": type(encoder).__qualname__, "decoder": type(decoder).__qualname__}


_MAX_STAGES = 16
_MAX_WIDTH = 1 << 16


def _build_halves(architecture: Any) -> tuple[nn.Module, nn.Module]:
    from .split.units import BottleneckDecoder, BottleneckEncoder, Stage

    if isinstance(architecture, dict) and architecture.get("kind") == "entropic_student":
        return _student_halves(architecture)
    if not isinstance(architecture, dict) or architecture.get("kind") != "bottleneck":
        kind = architecture.get("kind") if isinstance(architecture, dict) else architecture
        raise ValueError(f"architecture {kind!r} cannot be rebuilt from a file: only featcodec.split "
                         "bottleneck units (make_unit) can be saved and loaded")
    stages_field = architecture.get("stages")
    if not isinstance(stages_field, list) or not 1 <= len(stages_field) <= _MAX_STAGES:
        raise ValueError("architecture: stages must be a list of 1 to 16 stages")
    stages = []
    for item in stages_field:
        if (not isinstance(item, list) or len(item) != 5 or any(type(v) is not int for v in item)
                or not all(1 <= v <= _MAX_WIDTH for v in item)):
            raise ValueError(f"architecture: a stage must be 5 integers in [1, {_MAX_WIDTH}], got {item!r}")
        stage = Stage(*item)
        if stage.in_channels % stage.groups or stage.out_channels % stage.groups:
            raise ValueError(f"architecture: stage {item!r} has groups that do not divide its channels")
        stages.append(stage)
    with torch.device("meta"):  # shapes only: the file's tensors fill them after they are checked
        return BottleneckEncoder(stages), BottleneckDecoder(stages)


def _student_halves(architecture: dict) -> tuple[nn.Module, nn.Module]:
    """The entropic student's encoder and decoder (Matsubara et al., WACV 2022), on the meta device."""
    from .split.student import StudentDecoder, StudentEncoder

    widths = {}
    for key in ("in_channels", "latent_channels", "target_channels"):
        value = architecture.get(key)
        if type(value) is not int or not 1 <= value <= _MAX_WIDTH:
            raise ValueError(f"architecture: {key} must be an integer in [1, {_MAX_WIDTH}], got {value!r}")
        widths[key] = value
    with torch.device("meta"):
        return (StudentEncoder(widths["latent_channels"], widths["in_channels"]),
                StudentDecoder(widths["latent_channels"], widths["target_channels"]))


def _entropy_description(model: EntropyCoder) -> dict:
    config = getattr(model, "config", None)
    name = type(model).__name__
    if name not in _ENTROPY_MODELS or type(model) is not _ENTROPY_MODELS[name] or not callable(config):
        return {"class": f"{type(model).__module__}.{type(model).__qualname__}", "config": None}
    return {"class": name, "config": config()}


def _factorized_from(config: dict) -> nn.Module:
    filters = config.get("filters")
    if not isinstance(filters, list) or len(filters) > _MAX_STAGES:
        raise ValueError("entropy model: filters must be a list of at most 16 widths")
    return FactorizedPrior(_bounded(config, "channels"), filters=[_bounded({"f": f}, "f") for f in filters],
                           tail_mass=float(config["tail_mass"]), likelihood_bound=float(config["likelihood_bound"]),
                           straight_through=bool(config["straight_through"]),
                           around_median=bool(config.get("around_median", False)), precision=int(config["precision"]))


def _hyperprior_from(config: dict, cls: type = Hyperprior) -> nn.Module:
    scales = _bounded(config, "scales")
    return cls(_bounded(config, "channels"), _bounded(config, "hyper_channels"),
               scale_table=[float(i + 1) for i in range(scales)],  # replaced by the file's buffer
               straight_through=bool(config["straight_through"]), precision=int(config["precision"]))


_ENTROPY_MODELS: dict[str, type] = {"FactorizedPrior": FactorizedPrior, "Hyperprior": Hyperprior,
                                    "MeanScaleHyperprior": MeanScaleHyperprior}
_ENTROPY_BUILDERS: dict[str, Callable[[dict], nn.Module]] = {
    "FactorizedPrior": _factorized_from,
    "Hyperprior": _hyperprior_from,
    "MeanScaleHyperprior": lambda config: _hyperprior_from(config, MeanScaleHyperprior),
}


def _build_entropy_model(description: Any) -> nn.Module:
    if not isinstance(description, dict) or description.get("class") not in _ENTROPY_BUILDERS:
        name = description.get("class") if isinstance(description, dict) else description
        raise ValueError(f"entropy model {name!r} cannot be rebuilt from a file "
                         f"(known: {sorted(_ENTROPY_BUILDERS)})")
    config = description.get("config")
    if not isinstance(config, dict):
        raise ValueError("entropy model: config must be an object")
    try:
        with torch.device("meta"):
            return _ENTROPY_BUILDERS[description["class"]](config)
    except (KeyError, TypeError) as error:
        raise ValueError(f"entropy model config: {error!r}") from None


def _bounded(config: Mapping[str, Any], key: str) -> int:
    value = config[key]
    if type(value) is not int or not 1 <= value <= _MAX_WIDTH:
        raise ValueError(f"entropy model config: {key} must be an integer in [1, {_MAX_WIDTH}], got {value!r}")
    return value


# --- small helpers ----------------------------------------------------------------

def _eval_view(module: nn.Module) -> nn.Module:
    """A copy of ``module`` in eval mode that shares its parameters and buffers.

    Coding through it reads the same weights and BatchNorm statistics, follows
    every in-place update of them, and never touches the original's mode, so
    modules left in training mode and concurrent callers are safe.
    """
    shared = {id(t): t for t in list(module.parameters()) + list(module.buffers())}
    view = copy.deepcopy(module, memo=shared)
    return view.eval()


def _named_tensors(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return list(module.named_parameters()) + list(module.named_buffers())


def _takes_output_size(decoder: nn.Module) -> bool:
    import inspect

    return "output_size" in inspect.signature(decoder.forward).parameters


def _input_channels(encoder: nn.Module) -> int:
    """C of the features: the in_channels of the encoder's first convolution."""
    for module in encoder.modules():
        channels = getattr(module, "in_channels", None)
        if isinstance(channels, int):
            return channels
    raise ValueError("cannot tell the encoder's input channels: give feature_shape=(C, H, W)")


def _shape3(shape: Sequence[int]) -> tuple[int, int, int]:
    try:
        values = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise TypeError(f"feature_shape must be (C, H, W) integers, got {shape!r}") from None
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"feature_shape must be (C, H, W) with positive sizes, got {shape!r}")
    return values  # type: ignore[return-value]


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _as_float32(q_step: float) -> float:
    check_q_step(q_step)
    value = float(np.float32(q_step))
    check_q_step(value)  # a float too small for float32 becomes 0
    return value


def _device_of(module: nn.Module, default: torch.device) -> torch.device:
    parameter = next(module.parameters(), None)
    return default if parameter is None else parameter.device
