"""The baselines of Matsubara et al., WACV 2022, as models.

* :func:`cr_bq_student`: channel reduction + bottleneck quantization.  The
  first residual stage of a copy of the network is replaced by the
  encoder/decoder of Matsubara and Levorato, ICPR 2020 (eight 2x2
  convolutions with batch norm, a bottleneck of 1 to 12 channels in the
  middle); the stem before it stays and trains with it (head network
  distillation), the stages after it are the teacher's and stay frozen.
  After training the bottleneck is quantized to 8 bits per element
  (Jacob et al., CVPR 2018: one affine min/scale per message) and sent as
  is; :class:`Uint8Codec` writes those messages.
* the end-to-end baseline (Singh et al., ICIP 2020) is the entropic student
  trained from scratch: :func:`end_to_end_student`.
* :class:`FactorizedPriorImageCodec` and :class:`MeanScaleImageCodec`:
  neural codecs of the input image (four 5x5/2 convolutions with GDN, and a
  factorized prior, Balle et al., ICLR 2018, or a mean-scale hyperprior,
  Minnen et al., NeurIPS 2018), coded by :class:`featcodec.codec.FeatureCodec`;
  the unchanged network then runs on the decoded image.
"""

from __future__ import annotations

import contextlib
import copy
import struct
from typing import TYPE_CHECKING, Any, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from .._coding import DecodeError
from .._varint import read_varint, write_varint
from ..entropy import FactorizedPrior, MeanScaleHyperprior
from .gdn import GDN
from .student import EntropicStudent, TailMode, default_stem_end, entropic_student, stem_output_shape

if TYPE_CHECKING:
    from ..codec import FeatureCodec

@contextlib.contextmanager
def _eval(module: nn.Module) -> Iterator[None]:
    """Runs the block with ``module`` in eval mode, then restores every submodule's mode."""
    modes = [(m, m.training) for m in module.modules()]
    try:
        module.eval()
        yield
    finally:
        for m, mode in modes:
            m.training = mode


# --- CR + BQ -----------------------------------------------------------------------------------------

# (in, out, padding, batch norm then ReLU?) of the ICPR 2020 layer1 bottleneck's eight 2x2
# convolutions, in units of its input channels C (64), output T (256) and the bottleneck c.
_ENCODER = (("C", "C", 1, False), ("C", "T", 1, True), ("T", "C", 1, False), ("C", "c", 1, True))
_DECODER = (("c", "C", 0, False), ("C", "2C", 0, True), ("2C", "T", 0, False), ("T", "T", 0, True))


def _conv_stack(spec: Sequence[Tuple[str, str, int, bool]], sizes: dict) -> nn.Sequential:
    layers: List[nn.Module] = []
    for cin, cout, padding, relu in spec:
        layers += [nn.Conv2d(sizes[cin], sizes[cout], 2, padding=padding, bias=False), nn.BatchNorm2d(sizes[cout])]
        if relu:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class QuantizedBottleneck(nn.Module):
    """encoder -> (8-bit quantization once ``quantize`` is on) -> decoder, in place of a residual stage."""

    def __init__(self, in_channels: int, out_channels: int, bottleneck_channels: int) -> None:
        super().__init__()
        if not 1 <= bottleneck_channels <= in_channels:
            raise ValueError(f"bottleneck_channels must be in [1, {in_channels}], got {bottleneck_channels}")
        sizes = {"C": in_channels, "2C": 2 * in_channels, "T": out_channels, "c": bottleneck_channels}
        self.encoder = _conv_stack(_ENCODER, sizes)
        self.decoder = _conv_stack(_DECODER, sizes)
        self.bottleneck_channels = bottleneck_channels
        self.quantize = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = self.encoder(x)
        if self.quantize:
            code = dequantize_uint8(*quantize_uint8(code))
        return self.decoder(code)


def quantize_uint8(x: torch.Tensor) -> Tuple[torch.Tensor, float, float]:
    """(q, minimum, scale): ``q = round((x - min) / scale)`` in [0, 255], min and scale float32 (Jacob et al.)."""
    low, high = (float(np.float32(v)) for v in torch.aminmax(x.detach().float()))
    scale = float(np.float32((high - low) / 255.0)) or 1.0
    q = torch.clamp(torch.round((x.detach().float() - low) / scale), 0, 255).to(torch.uint8)
    return q, low, scale


def dequantize_uint8(q: torch.Tensor, low: float, scale: float) -> torch.Tensor:
    return q.to(torch.float32) * scale + low


class CRBQStudent(nn.Module):
    """A copy of the network with a :class:`QuantizedBottleneck` in place of ``stage`` (built by :func:`cr_bq_student`).

    Its tail is the teacher's, frozen (:attr:`TailMode.FROZEN`); the head
    (stem and bottleneck) is what trains.  ``student(x)`` is the network's output.
    """

    tail_mode = TailMode.FROZEN

    def __init__(self, network: nn.Module, stage: str, bottleneck: QuantizedBottleneck) -> None:
        super().__init__()
        if network.get_submodule(stage) is not bottleneck:
            raise ValueError(f"the network's {stage!r} is not the given bottleneck")
        self.network, self.stage = network, stage

    @property
    def bottleneck(self) -> QuantizedBottleneck:
        """The module in place of ``stage`` (registered once, inside ``network``)."""
        return self.network.get_submodule(self.stage)  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> Any:
        return self.network(x)

    def head_parameters(self) -> List[nn.Parameter]:
        """The stem before the bottleneck and the bottleneck: what head network distillation trains."""
        parent_name, _, last = self.stage.rpartition(".")
        parent = self.network.get_submodule(parent_name) if parent_name else self.network
        names = [name for name, _ in parent.named_children()]
        return [p for name in names[: names.index(last) + 1] for p in getattr(parent, name).parameters()]

    def head_modules(self) -> List[nn.Module]:
        parent_name, _, last = self.stage.rpartition(".")
        parent = self.network.get_submodule(parent_name) if parent_name else self.network
        names = [name for name, _ in parent.named_children()]
        return [getattr(parent, name) for name in names[: names.index(last) + 1]]

    def codec(self) -> "Uint8Codec":
        return Uint8Codec(self)


def cr_bq_student(model: nn.Module, bottleneck_channels: int = 3, *, stage: Optional[str] = None) -> CRBQStudent:
    """The CR+BQ student of ``model`` with a ``bottleneck_channels`` bottleneck in place of ``stage`` (layer1)."""
    stage = stage or default_stem_end(model)
    parent_name, _, last = stage.rpartition(".")
    in_channels = _stage_input_channels(model, stage)
    out_channels = stem_output_shape(model, stage, (32, 32))[0]
    bottleneck = QuantizedBottleneck(in_channels, out_channels, bottleneck_channels)
    network = copy.deepcopy(model)
    parent = network.get_submodule(parent_name) if parent_name else network
    setattr(parent, last, bottleneck)
    student = CRBQStudent(network, stage, bottleneck)
    head = {id(p) for p in student.head_parameters()}
    for parameter in network.parameters():
        parameter.requires_grad_(id(parameter) in head)
    return student


def _stage_input_channels(model: nn.Module, stage: str) -> int:
    module = model.get_submodule(stage)
    first_conv = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    if first_conv is None:
        raise ValueError(f"{stage!r} has no convolution to read its input channels from")
    return int(first_conv.in_channels)


class Uint8Codec:
    """Messages of a CR+BQ student: the bottleneck's 8-bit code, sent as is (docs/format.md, "CR+BQ message").

    Layout: byte 0 = 0x51 (the layout's tag); varints B, H, W (the batch
    and the image's size); float32 min and scale, little-endian; then the
    B x c x h x w code bytes in C order.  The receiver holds the same student,
    so the bottleneck width c and the code's size (h, w), which follows from
    (H, W), cost no bytes.  ``encode(images)`` runs the head;
    ``decode(data)`` gives the network's output (the server's part).
    """

    TAG = 0x51

    def __init__(self, student: CRBQStudent, max_elements: int = 1 << 28) -> None:
        self.student, self.max_elements = student, int(max_elements)
        self._head_modules = student.head_modules()
        self._code_sizes: dict = {}

    def _head(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        for module in self._head_modules[:-1]:
            x = module(x)
        return self.student.bottleneck.encoder(x)

    def code_size(self, size: Sequence[int]) -> Tuple[int, int]:
        """(h, w) of the code for images of (H, W): the head run on the meta device (shapes only), cached."""
        key = (int(size[0]), int(size[1]))
        if key not in self._code_sizes:
            meta = copy.deepcopy(nn.ModuleList(self._head_modules)).to("meta").eval()
            x = torch.empty(1, 3, *key, device="meta")
            try:
                for module in meta[:-1]:
                    x = module(x)
                code = meta[-1].encoder(x)  # type: ignore[operator]
            except RuntimeError as error:
                raise ValueError(f"the CR+BQ head does not take images of size {key}: {error}") from None
            if len(self._code_sizes) < 256:
                self._code_sizes[key] = (int(code.shape[2]), int(code.shape[3]))
            return int(code.shape[2]), int(code.shape[3])
        return self._code_sizes[key]

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> bytes:
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be a (B, 3, H, W) tensor, got {getattr(images, 'shape', images)!r}")
        with _eval(self.student):
            code = self._head(images)
        q, low, scale = quantize_uint8(code)
        header = bytes([self.TAG]) + b"".join(write_varint(int(d)) for d in (images.shape[0], *images.shape[2:]))
        return header + struct.pack("<ff", low, scale) + q.cpu().numpy().tobytes()

    @torch.no_grad()
    def decode_code(self, data: bytes) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """The dequantized code and the image's (H, W); DecodeError for anything but this codec's message."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        data = bytes(data)
        if not data or data[0] != self.TAG:
            raise DecodeError("not a CR+BQ message")
        position, sizes = 1, []
        for what in ("batch", "image height", "image width"):
            value, position = read_varint(data, position, limit=self.max_elements + 1, what=what)
            if value < 1:
                raise DecodeError(f"CR+BQ header: {what} is 0")
            sizes.append(value)
        batch, height, width = sizes
        if batch * 3 * height * width > self.max_elements:
            raise DecodeError(f"CR+BQ header: images of {batch} x 3 x {height} x {width} exceed max_elements")
        try:
            h, w = self.code_size((height, width))
        except ValueError as error:
            raise DecodeError(f"CR+BQ header: {error}") from None
        channels = self.student.bottleneck.bottleneck_channels
        count = batch * channels * h * w
        if count > self.max_elements:
            raise DecodeError(f"CR+BQ header: a code of {count} elements exceeds max_elements")
        if len(data) != position + 8 + count:
            raise DecodeError(f"CR+BQ message has {len(data)} bytes, its header says {position + 8 + count}")
        low, scale = struct.unpack_from("<ff", data, position)
        if not (np.isfinite(low) and np.isfinite(scale) and scale > 0):
            raise DecodeError(f"CR+BQ header: bad quantizer: min {low}, scale {scale}")
        raw = np.frombuffer(data, dtype=np.uint8, offset=position + 8, count=count)
        q = torch.from_numpy(raw.copy()).reshape(batch, channels, h, w)
        return dequantize_uint8(q, low, scale), (height, width)

    @torch.no_grad()
    def decode(self, data: bytes) -> Any:
        """The network's output from a message (decoder, then the frozen tail)."""
        code, size = self.decode_code(data)
        features = self._decoder_out(code)
        return _tail_output(self.student.network, self.student.stage, features, size)

    def _decoder_out(self, code: torch.Tensor) -> torch.Tensor:
        with _eval(self.student):
            return self.student.bottleneck.decoder(code)


def _tail_output(network: nn.Module, stage: str, features: torch.Tensor, size: Sequence[int]) -> Any:
    from .cut import SIZE, split

    cache = getattr(network, "_featcodec_tails", None)
    if cache is None:
        cache = {}
        object.__setattr__(network, "_featcodec_tails", cache)
    if stage not in cache:
        cache[stage] = split(network, stage)[1]
    tail = cache[stage]
    extra = tail.crossing[1:]
    if any(v.kind != SIZE or not v.producer.startswith("input.shape") for v in extra):
        raise ValueError(f"the tail after {stage!r} needs more than the features and the input size")
    with _eval(network):
        return tail(features) if not extra else tail((features, *[torch.Size(tuple(size)) for _ in extra]))


# --- end to end ---------------------------------------------------------------------------------------

def end_to_end_student(model: nn.Module, *, latent_channels: int = 24, seed: Optional[int] = None) -> EntropicStudent:
    """The entropic student architecture with every weight re-initialized (Singh et al., ICIP 2020).

    Trained from scratch on CE + beta * rate by
    :func:`featcodec.split.recipes.train_end_to_end`; no teacher is used.
    """
    if seed is not None:
        torch.manual_seed(seed)
    student = entropic_student(model, latent_channels=latent_channels)
    for module in student.network.modules():
        if module is not student.bottleneck and hasattr(module, "reset_parameters") and not isinstance(
                module, (GDN, FactorizedPrior)):
            module.reset_parameters()  # type: ignore[operator]
    return student


# --- input-image codecs -------------------------------------------------------------------------------

class ImageSynthesis(nn.Module):
    """g_s of :class:`FactorizedPriorImageCodec`: four 5x5/2 transposed convolutions with IGDN.

    ``forward(y, output_size)`` restores exactly (H, W): each layer is told
    the size the matching analysis layer saw.
    """

    def __init__(self, channels: int, latent_channels: int, out_channels: int = 3) -> None:
        super().__init__()
        widths = [latent_channels, channels, channels, channels, out_channels]
        self.layers = nn.ModuleList(nn.ConvTranspose2d(widths[i], widths[i + 1], 5, stride=2, padding=2)
                                    for i in range(4))
        self.norms = nn.ModuleList(GDN(channels, inverse=True) for _ in range(3))

    def forward(self, y: torch.Tensor, output_size: Sequence[int]) -> torch.Tensor:
        sizes = [tuple(int(d) for d in output_size[-2:])]
        for _ in range(3):
            sizes.append(tuple(-(-d // 2) for d in sizes[-1]))
        for i, layer in enumerate(self.layers):
            y = layer(y, output_size=list(sizes[3 - i]))
            if i < 3:
                y = self.norms[i](y)
        return y


def _analysis(channels: int, latent_channels: int) -> nn.Sequential:
    """g_a of the image codecs: four 5x5/2 convolutions, GDN between them (3 -> N -> N -> N -> M)."""
    widths = [3, channels, channels, channels, latent_channels]
    layers: List[nn.Module] = []
    for i in range(4):
        layers.append(nn.Conv2d(widths[i], widths[i + 1], 5, stride=2, padding=2))
        if i < 3:
            layers.append(GDN(channels))
    return nn.Sequential(*layers)


class _ImageCodec(nn.Module):
    """What the input-image codecs share: g_a, g_s, an entropy model ``prior``, and their FeatureCodec."""

    tail_mode = TailMode.FROZEN  # the task network behind it is unchanged
    g_a: nn.Module
    g_s: ImageSynthesis
    prior: Union[FactorizedPrior, MeanScaleHyperprior]

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Any]:
        """(x_hat, likelihoods): noise or rounding by the mode; the rate is ``estimate_bits(likelihoods)``."""
        y_hat, likelihoods = self.prior(self.g_a(x))
        return self.g_s(y_hat, x.shape[-2:]), likelihoods

    def codec(self, *, model_id: int = 0, checksum: bool = True) -> "FeatureCodec":
        """The :class:`featcodec.codec.FeatureCodec` that codes images with this codec (tables built if stale)."""
        from ..codec import FeatureCodec
        from ..entropy import StaleTablesError

        tabled = getattr(self.prior, "z_model", self.prior)  # a hyperprior's z prior holds the learned tables
        try:
            tabled.tables
        except StaleTablesError:
            self.prior.update_tables()
        return FeatureCodec(self.g_a, self.g_s, self.prior, model_id=model_id,  # type: ignore[arg-type]
                            checksum=checksum)


class FactorizedPriorImageCodec(_ImageCodec):
    """Balle et al., ICLR 2018's factorized-prior image codec (the supplementary: 128 channels).

    ``forward(x) -> (x_hat, likelihoods)``; ``codec()`` is the
    :class:`featcodec.codec.FeatureCodec` that codes images with it.
    """

    def __init__(self, channels: int = 128, latent_channels: Optional[int] = None) -> None:
        super().__init__()
        m = latent_channels or channels
        self.g_a = _analysis(channels, m)
        self.g_s = ImageSynthesis(channels, m)
        self.prior = FactorizedPrior(m)


class MeanScaleImageCodec(_ImageCodec):
    """The mean-scale hyperprior image codec of Minnen et al., NeurIPS 2018, without its context model.

    g_a and g_s as :class:`FactorizedPriorImageCodec`'s (N channels, an M
    channel latent, M = 3N/2 by default: CompressAI's 128 / 192); y's
    Gaussians are predicted by a :class:`featcodec.entropy.MeanScaleHyperprior`
    with N hyper channels, whose z costs bytes of its own in every message.
    ``forward(x) -> (x_hat, {"y": ..., "z": ...})``.
    """

    def __init__(self, channels: int = 128, latent_channels: Optional[int] = None) -> None:
        super().__init__()
        m = latent_channels or channels * 3 // 2
        self.g_a = _analysis(channels, m)
        self.g_s = ImageSynthesis(channels, m)
        self.prior = MeanScaleHyperprior(m, channels)


#: The input-image codecs by the name a run config gives them.
IMAGE_CODECS = {"factorized": FactorizedPriorImageCodec, "mean_scale": MeanScaleImageCodec}


__all__ = ["CRBQStudent", "FactorizedPriorImageCodec", "IMAGE_CODECS", "ImageSynthesis", "MeanScaleImageCodec",
           "QuantizedBottleneck", "Uint8Codec",
           "cr_bq_student", "dequantize_uint8", "end_to_end_student", "quantize_uint8"]
