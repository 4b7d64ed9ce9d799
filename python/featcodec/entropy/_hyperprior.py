"""Hyperprior: the neural rate estimator of Ahuja et al., CVPR 2023, and a coder with side information."""

from __future__ import annotations

import copy
from typing import Optional, Sequence

import torch
from torch import nn

from .._coding import DecodeError
from .._varint import read_varint, write_varint
from ._base import ChecksumOption, ChecksumRequirement, check_context, checksum_size
from ._compressai_names import HYPERPRIOR_NAMES, CompressAINames
from ._factorized import FactorizedPrior
from ._gaussian import GaussianConditional
from ._ledger import RateReport, pixels_of
from ._quantizer import dequantize, symbols_of


class Hyperprior(CompressAINames, nn.Module):
    """z = h_a(y), scales = h_s(round(z)); y ~ N(0, scales) with step Q, z ~ a FactorizedPrior.

    h_a: conv C 3x3 / 1, ReLU, conv ``hyper_channels`` 1x1 / 1.
    h_s: deconv C 1x1 / 1, ReLU, deconv C 3x3 / 1, softplus (positive scales).

    forward(y, q_step) -> (y_hat, {"y": likelihoods, "z": likelihoods}): the
    neural rate estimate is :func:`featcodec.entropy.estimate_bits` of the
    dict.  compress(y) holds z and y in one message (docs/format.md,
    "Hyperprior message"): a varint with the size of z's part, z's part (no
    checksum of its own), then y's part, whose checksum has everything before
    it as associated data, so one checksum covers z and y.

    >>> import torch
    >>> from featcodec.entropy import Hyperprior
    >>> model = Hyperprior(8).eval()
    >>> _ = model.update_tables()
    >>> y = torch.randn(1, 8, 5, 6) * 4
    >>> data = model.compress(y, q_step=2.0)
    >>> torch.equal(model.decompress(data, y.shape, q_step=2.0), model(y, q_step=2.0)[0])
    True
    """

    _compressai_names = HYPERPRIOR_NAMES
    z_model: FactorizedPrior
    y_model: GaussianConditional

    def __init__(
        self,
        channels: int,
        hyper_channels: int = 8,
        *,
        scale_table: Optional[Sequence[float]] = None,
        straight_through: bool = False,
        precision: int = 16,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.hyper_channels = hyper_channels
        self.h_a = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, hyper_channels, 1)
        )
        self.h_s: nn.Module = nn.Sequential(
            nn.ConvTranspose2d(hyper_channels, channels, 1), nn.ReLU(),
            nn.ConvTranspose2d(channels, channels, 3, padding=1), nn.Softplus(),
        )
        self.z_model = FactorizedPrior(hyper_channels, straight_through=straight_through, precision=precision)
        self.y_model = GaussianConditional(scale_table, straight_through=straight_through, precision=precision)
        self.straight_through, self.precision = straight_through, precision

    def config(self) -> dict:
        """The constructor's arguments that a saved model needs besides its state_dict."""
        return {"channels": self.channels, "hyper_channels": self.hyper_channels,
                "scales": int(self.y_model.scale_table.numel()), "straight_through": self.straight_through,
                "precision": self.precision}

    @property
    def auto_update_tables(self) -> bool:
        return self.z_model.auto_update_tables

    @auto_update_tables.setter
    def auto_update_tables(self, value: bool) -> None:
        self.z_model.auto_update_tables = self.y_model.auto_update_tables = value

    def forward(self, y: torch.Tensor, q_step: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(y_hat, {"y": likelihoods, "z": likelihoods}), noise or rounding by the module's mode."""
        self._check_shape(y.shape)
        z_hat, z_likelihoods = self.z_model(self.h_a(y))
        scales, means = self._gaussian_parameters(self.h_s, z_hat, y.shape)
        y_hat, y_likelihoods = self.y_model(y, scales, means, q_step=q_step)
        return y_hat, {"y": y_likelihoods, "z": z_likelihoods}

    def _gaussian_parameters(self, h_s: nn.Module, z_hat: torch.Tensor, shape: Sequence[int]
                             ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(scales, means) of y's Gaussians from ``h_s(z_hat)``; this model's means are 0 (None)."""
        return h_s(z_hat), None

    def aux_loss(self) -> torch.Tensor:
        """The z prior's quantile loss (trains its tail quantiles only)."""
        return self.z_model.aux_loss()

    def update_tables(self) -> None:
        """Builds and stores both models' coding tables."""
        self.z_model.update_tables()
        self.y_model.update_tables()

    @torch.no_grad()
    def coding_scales(self, z_hat: torch.Tensor, shape: Optional[Sequence[int]] = None) -> torch.Tensor:
        """h_s(z_hat) in float64 on the CPU: the scales both ends index the tables with.

        float64 makes a disagreement between two machines' scales (and so
        their table indexes) need a scale within ~1e-15 of a family scale;
        in float32 it would be ~1e-7.  ``shape``: y's, for models whose
        h_s upsamples (default: z_hat's spatial size).
        """
        return self.coding_parameters(z_hat, shape)[0]

    @torch.no_grad()
    def coding_parameters(self, z_hat: torch.Tensor, shape: Optional[Sequence[int]] = None
                          ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(scales, means) in float64 on the CPU, as both ends code y with (means None: zero)."""
        shape = tuple(z_hat.shape) if shape is None else tuple(shape)
        return self._gaussian_parameters(self._float64_h_s(), z_hat.detach().to("cpu", torch.float64), shape)

    def _float64_h_s(self) -> nn.Module:
        """A float64 CPU copy of h_s in eval mode, remade when a parameter changes.

        A copy rather than torch.func.functional_call, which swaps the
        module's own parameters for the call and so races with other threads.
        """
        key = tuple((id(p), p._version) for p in self.h_s.parameters())
        cached = self.__dict__.get("_h_s_cache")
        if cached is None or cached[0] != key:
            copy_ = copy.deepcopy(self.h_s).to("cpu", torch.float64).eval()
            for p in copy_.parameters():
                p.requires_grad_(False)
            cached = (key, copy_)
            self.__dict__["_h_s_cache"] = cached
        return cached[1]

    def _check_shape(self, shape: Sequence[int]) -> None:
        if len(shape) != 4 or shape[1] != self.channels:
            raise ValueError(f"expected a tensor of shape (B, {self.channels}, H, W), got {tuple(shape)}")

    def _z_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        return (shape[0], self.hyper_channels, shape[2], shape[3])

    @torch.no_grad()
    def _encode_parts(self, y: torch.Tensor, q_step: float, checksum: ChecksumOption, context: bytes):
        z = self.h_a(y)
        z_data = self.z_model.compress(z, checksum=False)
        z_part = write_varint(len(z_data)) + z_data
        z_hat = dequantize(symbols_of(z).cpu())  # what the decoder's z_hat is: z coded losslessly
        scales, means = self.coding_parameters(z_hat, y.shape)
        means = None if means is None else means.to(y.device, y.dtype)
        y_data = self.y_model.compress(y, scales.to(y.device), means, q_step=q_step, checksum=checksum,
                                       context=_y_context(context, z_part))
        return z, z_data, z_part, (scales, means), y_data

    @torch.no_grad()
    def compress(self, y: torch.Tensor, q_step: float = 1.0, *, checksum: ChecksumOption = True,
                 context: bytes = b"") -> bytes:
        """One message holding z and y (see the class docstring); context: hashed into y's checksum, not sent."""
        self._check_shape(y.shape)
        _, _, z_part, _, y_data = self._encode_parts(y, q_step, checksum, check_context(context))
        return z_part + y_data

    @torch.no_grad()
    def decompress(self, data: bytes, shape: Sequence[int], q_step: float = 1.0,
                   device: Optional[torch.device] = None, *, checksum: ChecksumRequirement = None,
                   context: bytes = b"") -> torch.Tensor:
        """y_hat of ``shape`` (B, C, H, W) from :meth:`compress`'s bytes (checksum: as FactorizedPrior's)."""
        shape = tuple(int(d) for d in shape)
        self._check_shape(shape)
        data = bytes(data)
        z_size, start = read_varint(data, 0, what="hyperprior z size")
        if start + z_size > len(data):
            raise DecodeError("hyperprior message: z's part runs past the end")
        z_part = data[: start + z_size]
        z_hat = self.z_model.decompress(z_part[start:], self._z_shape(shape), device=torch.device("cpu"))
        scales, means = self.coding_parameters(z_hat, shape)
        y_hat = self.y_model.decompress(data[len(z_part):], scales,
                                        None if means is None else means.to(torch.float32), q_step=q_step,
                                        checksum=checksum, context=_y_context(check_context(context), z_part))
        return y_hat.to(device or self.z_model._device())

    @torch.no_grad()
    def rate_report(self, y: torch.Tensor, image_size: Sequence[int], q_step: float = 1.0, *,
                    checksum: ChecksumOption = True, extra_header_bytes: int = 0,
                    context: bytes = b"") -> RateReport:
        """Neural estimate, ideal and actual bits of compress(y), with the gap by cause.

        The z row of the report is z's whole cost: its part of the message,
        size varint included.
        """
        self._check_shape(y.shape)
        z, z_data, z_part, (scales, means), y_data = self._encode_parts(y, q_step, checksum,
                                                                         check_context(context))
        # The estimate is the eval forward pass, whose scales are float32.
        z_hat, _ = self.z_model.eval_forward(z)
        estimate_scales, _ = self._gaussian_parameters(self.h_s, z_hat, y.shape)
        unchecked = (len(self.y_model.compress(y, scales.to(y.device), means, q_step=q_step, checksum=False))
                     if checksum_size(checksum) else None)
        y_part = self.y_model.ledger(y, scales.to(y.device), q_step, y_data, means, name="y",
                                     estimate_scales=estimate_scales, unchecked_bytes=unchecked)
        z_ledger = self.z_model.ledger(z, 1.0, z_data, name="z")
        return RateReport.from_parts(y_part, pixels_of(y.shape[0], image_size), side=z_ledger,
                                     side_prefix_bytes=len(z_part) - len(z_data),
                                     extra_header_bytes=extra_header_bytes)


class _MeanScaleSynthesis(nn.Module):
    """h_s of :class:`MeanScaleHyperprior`: z_hat (B, N, h/4, w/4) -> (B, 2M, h, w), scales then means.

    The transposed convolutions are told the sizes h_a's strided ones saw,
    so every (h, w) comes back exactly.
    """

    def __init__(self, channels: int, hyper_channels: int) -> None:
        super().__init__()
        m, n = channels, hyper_channels
        self.up1 = nn.ConvTranspose2d(n, m, 5, stride=2, padding=2)
        self.up2 = nn.ConvTranspose2d(m, m * 3 // 2, 5, stride=2, padding=2)
        self.out = nn.Conv2d(m * 3 // 2, 2 * m, 3, padding=1)
        self.act = nn.LeakyReLU()

    def forward(self, z_hat: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        h, w = (int(d) for d in size[-2:])
        half = (-(-h // 2), -(-w // 2))
        x = self.act(self.up1(z_hat, output_size=list(half)))
        x = self.act(self.up2(x, output_size=[h, w]))
        return self.out(x)


class MeanScaleHyperprior(Hyperprior):
    """The mean-scale hyperprior of Minnen, Balle and Toderici, NeurIPS 2018 (without its context model).

    h_a: conv M 3x3 / 1, LeakyReLU, conv N 5x5 / 2, LeakyReLU, conv N 5x5 / 2:
    z has ceil(ceil(h / 2) / 2) x ceil(ceil(w / 2) / 2) positions.
    h_s: deconv M 5x5 / 2, LeakyReLU, deconv 3M/2 5x5 / 2, LeakyReLU, conv 2M
    3x3 / 1, split into the scales (through softplus, so positive) and the
    means of y's Gaussians.  y is coded as ``round((y - mean) / Q)``; the
    message is a Hyperprior message (docs/format.md) whose scales and means
    both come from h_s(z_hat) in float64.  The symbols decode exactly on any
    machine whose scales index the same tables; y_hat = mean + Q * symbol
    then differs between machines at most by the means' last bits.

    Used by the neural input-image codec baseline of Matsubara et al., WACV
    2022 (:class:`featcodec.split.MeanScaleImageCodec`).

    >>> import torch
    >>> from featcodec.entropy import MeanScaleHyperprior
    >>> model = MeanScaleHyperprior(6, 4).eval()
    >>> _ = model.update_tables()
    >>> y = torch.randn(1, 6, 9, 7) * 4
    >>> model.decompress(model.compress(y), y.shape).shape
    torch.Size([1, 6, 9, 7])
    """

    def __init__(
        self,
        channels: int,
        hyper_channels: int = 8,
        *,
        scale_table: Optional[Sequence[float]] = None,
        straight_through: bool = False,
        precision: int = 16,
    ) -> None:
        super().__init__(channels, hyper_channels, scale_table=scale_table, straight_through=straight_through,
                         precision=precision)
        m, n = channels, hyper_channels
        self.h_a = nn.Sequential(
            nn.Conv2d(m, m, 3, padding=1), nn.LeakyReLU(),
            nn.Conv2d(m, n, 5, stride=2, padding=2), nn.LeakyReLU(),
            nn.Conv2d(n, n, 5, stride=2, padding=2),
        )
        self.h_s = _MeanScaleSynthesis(m, n)

    def _gaussian_parameters(self, h_s: nn.Module, z_hat: torch.Tensor, shape: Sequence[int]
                             ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        scales, means = h_s(z_hat, shape[-2:]).chunk(2, dim=1)
        return nn.functional.softplus(scales), means

    def coding_parameters(self, z_hat: torch.Tensor, shape: Optional[Sequence[int]] = None
                          ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        if shape is None:
            raise ValueError("a mean-scale hyperprior's parameters need y's shape")
        return super().coding_parameters(z_hat, shape)

    def _z_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        quarter = [-(-(-(-int(d) // 2)) // 2) for d in shape[2:]]
        return (shape[0], self.hyper_channels, *quarter)


def _y_context(context: bytes, z_part: bytes) -> bytes:
    """y's associated data: the caller's, then z's part as sent (docs/format.md)."""
    return context + z_part
