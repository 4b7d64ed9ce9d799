"""Hyperprior: the seeds' neural rate estimator, and a coder with side information."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn
from torch.func import functional_call

from .._coding import DecodeError
from .._varint import read_varint, write_varint
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
    dict.  compress(y) holds z and y in one message: a varint with the size of
    z's part, z's part (no checksum), then y's part (with the checksum, which
    also catches a corrupt z: y would decode with other scales).

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
        self.h_s = nn.Sequential(
            nn.ConvTranspose2d(hyper_channels, channels, 1), nn.ReLU(),
            nn.ConvTranspose2d(channels, channels, 3, padding=1), nn.Softplus(),
        )
        self.z_model = FactorizedPrior(hyper_channels, straight_through=straight_through, precision=precision)
        self.y_model = GaussianConditional(scale_table, straight_through=straight_through, precision=precision)

    @property
    def auto_update_tables(self) -> bool:
        return self.z_model.auto_update_tables

    @auto_update_tables.setter
    def auto_update_tables(self, value: bool) -> None:
        self.z_model.auto_update_tables = self.y_model.auto_update_tables = value

    def forward(self, y: torch.Tensor, q_step: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self._check_shape(y.shape)
        z_hat, z_likelihoods = self.z_model(self.h_a(y))
        y_hat, y_likelihoods = self.y_model(y, self.h_s(z_hat), q_step=q_step)
        return y_hat, {"y": y_likelihoods, "z": z_likelihoods}

    def aux_loss(self) -> torch.Tensor:
        """The z prior's quantile loss (trains its tail quantiles only)."""
        return self.z_model.aux_loss()

    def update_tables(self) -> None:
        """Builds and stores both models' coding tables."""
        self.z_model.update_tables()
        self.y_model.update_tables()

    @torch.no_grad()
    def coding_scales(self, z_hat: torch.Tensor) -> torch.Tensor:
        """h_s(z_hat) in float64 on the CPU: the scales both ends index the tables with.

        float64 makes a disagreement between two machines' scales (and so
        their table indexes) need a scale within ~1e-15 of a family scale;
        in float32 it would be ~1e-7.
        """
        params = {name: p.detach().to("cpu", torch.float64) for name, p in self.h_s.named_parameters()}
        return functional_call(self.h_s, params, (z_hat.detach().to("cpu", torch.float64),))

    def _check_shape(self, shape: Sequence[int]) -> None:
        if len(shape) != 4 or shape[1] != self.channels:
            raise ValueError(f"expected a tensor of shape (B, {self.channels}, H, W), got {tuple(shape)}")

    def _z_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        return (shape[0], self.hyper_channels, shape[2], shape[3])

    @torch.no_grad()
    def _encode_parts(self, y: torch.Tensor, q_step: float, checksum: bool):
        z = self.h_a(y)
        z_data = self.z_model.compress(z, checksum=False)
        z_hat = dequantize(symbols_of(z).cpu())  # what the decoder's z_hat is: z coded losslessly
        scales = self.coding_scales(z_hat)
        y_data = self.y_model.compress(y, scales.to(y.device), q_step=q_step, checksum=checksum)
        return z, z_data, scales, y_data

    @torch.no_grad()
    def compress(self, y: torch.Tensor, q_step: float = 1.0, *, checksum: bool = True) -> bytes:
        """One message holding z and y (see the class docstring)."""
        self._check_shape(y.shape)
        _, z_data, _, y_data = self._encode_parts(y, q_step, checksum)
        return write_varint(len(z_data)) + z_data + y_data

    @torch.no_grad()
    def decompress(self, data: bytes, shape: Sequence[int], q_step: float = 1.0,
                   device: Optional[torch.device] = None) -> torch.Tensor:
        """y_hat of ``shape`` (B, C, H, W) from :meth:`compress`'s bytes."""
        shape = tuple(int(d) for d in shape)
        self._check_shape(shape)
        z_size, start = read_varint(data, 0)
        if start + z_size > len(data):
            raise DecodeError("hyperprior message: z's part runs past the end")
        z_hat = self.z_model.decompress(data[start : start + z_size], self._z_shape(shape), device=torch.device("cpu"))
        scales = self.coding_scales(z_hat)
        y_hat = self.y_model.decompress(data[start + z_size :], scales, q_step=q_step)
        return y_hat.to(device or self.z_model._device())

    @torch.no_grad()
    def rate_report(self, y: torch.Tensor, image_size: Sequence[int], q_step: float = 1.0,
                    *, checksum: bool = True, extra_header_bytes: int = 0) -> RateReport:
        """Neural estimate, ideal and actual bits of compress(y), with the gap by cause."""
        self._check_shape(y.shape)
        z, z_data, scales, y_data = self._encode_parts(y, q_step, checksum=checksum)
        was_training = self.training
        self.eval()
        try:
            # The estimate is the eval forward pass, whose scales are float32.
            z_hat, _ = self.z_model(z)
            estimate_scales = self.h_s(z_hat)
            y_part = self.y_model.ledger(y, scales.to(y.device), q_step, y_data, name="y",
                                         estimate_scales=estimate_scales)
        finally:
            self.train(was_training)
        z_part = self.z_model.ledger(z, 1.0, z_data, name="z")
        prefix = len(write_varint(len(z_data)))
        return RateReport.from_parts(y_part, pixels_of(y.shape[0], image_size), side=z_part,
                                     extra_header_bytes=prefix + extra_header_bytes)

