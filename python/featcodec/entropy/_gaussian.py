"""GaussianConditional: per-element Gaussians from a scale family, as a hyperprior predicts them."""

from __future__ import annotations

import math
from typing import Optional, Sequence, cast

import numpy as np
import torch

from .._parametric import scale_index
from .._tables import CdfTables
from ._base import (ChecksumOption, ChecksumRequirement, EntropyModel, checksum_size, decode_symbols,
                    encode_symbols)
from ._bounds import lower_bound
from ._compressai_names import GAUSSIAN_NAMES, CompressAINames
from ._ledger import PartLedger, RateReport, ledger_of_message, pixels_of
from ._quantizer import check_q_step, dequantize, quantize, symbols_of


def default_scale_table() -> torch.Tensor:
    """64 log-spaced scales from 0.11 to 256 (float64), the usual family."""
    return torch.exp(torch.linspace(math.log(0.11), math.log(256.0), 64, dtype=torch.float64, device="cpu"))


class GaussianConditional(CompressAINames, EntropyModel):
    """Zero-mean (or mean-shifted) discretized Gaussians, one per element, coded with a scale family.

    An element with scale s (in units of y) is coded as the symbol
    ``round((y - mean) / Q)`` with the table of the smallest family scale t
    with Q * t >= s (the last one beyond the family); the likelihood in forward uses
    s / Q itself, bounded below by the family's smallest scale.

    Both ends must compute the same table index from the scales; see
    :meth:`table_indexes` for how that is kept robust.

    Scales are the standard deviations themselves, a floating-point tensor,
    non-negative and finite (else ValueError).  CompressAI's
    GaussianConditional is called with integer table indexes from its
    ``build_indexes(scales)`` instead; pass the scales here (and see
    :mod:`featcodec.compat.compressai` to code CompressAI models).

    >>> import torch
    >>> from featcodec.entropy import GaussianConditional
    >>> gc = GaussianConditional().eval()
    >>> _ = gc.update_tables()
    >>> y, scales = torch.randn(1, 2, 4, 4) * 5, torch.full((1, 2, 4, 4), 5.0)
    >>> data = gc.compress(y, scales)
    >>> torch.equal(gc.decompress(data, scales), gc(y, scales)[0])
    True
    """

    _compressai_names = GAUSSIAN_NAMES
    scale_table: torch.Tensor

    def __init__(
        self,
        scale_table: Optional[Sequence[float]] = None,
        *,
        tail_mass: Optional[float] = None,
        likelihood_bound: float = 1e-9,
        straight_through: bool = False,
        precision: int = 16,
    ) -> None:
        super().__init__(precision)
        # On the CPU even under a meta device context: the checks below read the values.
        table = (default_scale_table() if scale_table is None
                 else torch.as_tensor(scale_table, dtype=torch.float64, device="cpu"))
        if table.dim() != 1 or table.numel() == 0:
            raise ValueError("scale_table must be a non-empty 1-D sequence")
        if not bool(torch.isfinite(table).all()) or bool((table <= 0).any()) or bool((table[1:] <= table[:-1]).any()):
            raise ValueError("scale_table must be positive, finite and strictly increasing")
        self.register_buffer("scale_table", table.clone())
        self.tail_mass = tail_mass
        self.likelihood_bound = float(likelihood_bound)
        self.straight_through = straight_through

    # --- the density --------------------------------------------------------------

    def check_scales(self, scales: torch.Tensor) -> None:
        """ValueError unless ``scales`` is a floating-point tensor of non-negative, finite values."""
        if not isinstance(scales, torch.Tensor):
            raise TypeError(f"scales must be a torch.Tensor, got {type(scales).__name__}")
        if not scales.is_floating_point():
            raise ValueError(f"scales must be a floating-point tensor of standard deviations, got {scales.dtype}"
                             + self._looks_like_indexes(scales))
        if scales.numel():
            low, high = torch.aminmax(scales.detach())  # NaN propagates into both
            if not (float(low) >= 0 and float(high) < math.inf):
                raise ValueError(f"scales must be non-negative and finite, got values in [{float(low)}, {float(high)}]")

    def _looks_like_indexes(self, scales: torch.Tensor) -> str:
        if scales.dtype == torch.bool or scales.is_complex() or not scales.numel():
            return ""
        table = cast(torch.Tensor, self.scale_table)
        low, high = int(scales.min()), int(scales.max())
        if 0 <= low and high < table.numel():
            return (f"; its values ({low}..{high}) look like CompressAI table indexes (build_indexes(scales)): "
                    "featcodec takes the scales themselves, and featcodec.compat.compressai codes CompressAI models")
        return ""

    def _symbol_scales(self, scales: torch.Tensor, q_step: float) -> torch.Tensor:
        return (scales / q_step).clamp_min(float(self.scale_table[0]))

    def _likelihood(self, v: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """P(bin of width 1 around v) under N(0, scales), evaluated on the lower tail."""
        distance = torch.abs(v)
        upper = torch.special.ndtr((0.5 - distance) / scales)
        lower = torch.special.ndtr((-0.5 - distance) / scales)
        return upper - lower

    def forward(self, y: torch.Tensor, scales: torch.Tensor, means: Optional[torch.Tensor] = None,
                q_step: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(y_hat, likelihoods) of y given per-element scales (and means), with step Q."""
        mode = ("ste" if self.straight_through else "noise") if self.training else "round"
        return self._quantized_likelihoods(y, scales, means, q_step, mode)

    def _quantized_likelihoods(self, y: torch.Tensor, scales: torch.Tensor, means: Optional[torch.Tensor],
                               q_step: float, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_scales(scales)
        y_hat = quantize(y, q_step, mode, means)  # type: ignore[arg-type]
        centred = y_hat if means is None else y_hat - means
        likelihoods = self._likelihood(centred / q_step, self._symbol_scales(scales, q_step))
        return y_hat, lower_bound(likelihoods, self.likelihood_bound)

    @torch.no_grad()
    def eval_forward(self, y: torch.Tensor, scales: torch.Tensor, means: Optional[torch.Tensor] = None,
                     q_step: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """What ``forward`` gives in eval mode (rounding), whatever the module's mode; changes nothing."""
        return self._quantized_likelihoods(y, scales, means, q_step, "round")

    def config(self) -> dict:
        """The constructor's arguments that a saved model needs besides its state_dict (the scale table is a buffer)."""
        return {"tail_mass": self.tail_mass, "likelihood_bound": self.likelihood_bound,
                "straight_through": self.straight_through, "precision": self.precision,
                "scales": int(self.scale_table.numel())}

    @torch.no_grad()
    def table_indexes(self, scales: torch.Tensor, q_step: float = 1.0) -> np.ndarray:
        """Each element's table: the smallest family scale t with Q * t >= scale (int32, on the CPU).

        Scales at or below Q times the smallest family scale get table 0 (as
        forward bounds them); beyond the largest, the last table; NaN raises
        ValueError (as do negative scales and integer tensors: see
        :meth:`check_scales`).  The comparisons are exact (featcodec.scale_index), so
        an encoder and a decoder disagree only if they computed different
        scales (another device, another BLAS), and then only for a scale
        within rounding error of Q * t.  The hyperprior computes its scales
        in float64 to make that rare; the checksum detects it when it happens.
        """
        check_q_step(q_step)
        self.check_scales(scales)
        values = scales.detach().cpu().numpy()
        return scale_index(values, self.scale_table.cpu().numpy() * q_step)

    # --- tables -------------------------------------------------------------------

    def _table_inputs(self):
        return [self.scale_table]

    def _extra_fingerprint(self) -> str:
        return f"tail={self.tail_mass!r}"

    def _expected_rows(self) -> int:
        return len(self.scale_table)

    def _build_tables(self) -> CdfTables:
        return CdfTables.gaussian(self.scale_table.cpu().numpy(), self.precision, self.tail_mass)

    # --- coding -------------------------------------------------------------------

    @torch.no_grad()
    def compress(self, y: torch.Tensor, scales: torch.Tensor, means: Optional[torch.Tensor] = None,
                 q_step: float = 1.0, *, checksum: ChecksumOption = True, context: bytes = b"",
                 threads: Optional[int] = None) -> bytes:
        """Codes ``round((y - means) / Q)`` with each element's scale-family table (checksum, context:
        see FactorizedPrior.compress)."""
        if scales.shape != y.shape:
            raise ValueError(f"scales must have y's shape {tuple(y.shape)}, got {tuple(scales.shape)}")
        tables = self.tables
        symbols = symbols_of(y, q_step, means).cpu().numpy()
        return encode_symbols(symbols, tables, self.table_indexes(scales, q_step), checksum=checksum,
                              context=context, threads=threads)

    @torch.no_grad()
    def decompress(self, data: bytes, scales: torch.Tensor, means: Optional[torch.Tensor] = None,
                   q_step: float = 1.0, *, checksum: ChecksumRequirement = None, context: bytes = b"",
                   threads: Optional[int] = None) -> torch.Tensor:
        """y_hat (float32, on the scales' device) from :meth:`compress`'s bytes and the same scales."""
        indexes = self.table_indexes(scales, q_step)
        symbols = decode_symbols(data, self.tables, indexes, shape=indexes.shape, checksum=checksum,
                                 context=context, threads=threads)
        return dequantize(torch.from_numpy(symbols).to(scales.device), q_step, means)

    @torch.no_grad()
    def ledger(self, y: torch.Tensor, scales: torch.Tensor, q_step: float, data: bytes,
               means: Optional[torch.Tensor] = None, name: str = "y",
               estimate_scales: Optional[torch.Tensor] = None, unchecked_bytes: Optional[int] = None) -> PartLedger:
        """Where the bits of ``data`` (this model's message for y, coded with ``scales``) go.

        estimate_scales: the scales of the forward pass that made the neural
        estimate, when they differ from the coding scales (a hyperprior's
        float32 forward against its float64 coding scales).  unchecked_bytes:
        the length of the message without its checksum (None: ``data`` has
        none).  See :class:`RateReport`.
        """
        _, likelihoods = self.eval_forward(y, scales if estimate_scales is None else estimate_scales, means, q_step)
        symbols = symbols_of(y, q_step, means).cpu()
        indexes = self.table_indexes(scales, q_step)
        exact_scales = self._symbol_scales(scales.detach().to("cpu", torch.float64), q_step)
        table_scales = self.scale_table.cpu()[torch.from_numpy(indexes).long()]
        return ledger_of_message(
            name,
            neural_bits=float(-torch.log2(likelihoods.double()).sum()),
            model_bits_per_symbol=_gaussian_bits(symbols, exact_scales).numpy(),
            table_model_bits_per_symbol=_gaussian_bits(symbols, table_scales).numpy(),
            symbols=symbols.numpy(),
            tables=self.tables,
            indexes=indexes,
            data=data,
            unchecked_bytes=unchecked_bytes,
        )

    @torch.no_grad()
    def rate_report(self, y: torch.Tensor, scales: torch.Tensor, image_size: Sequence[int],
                    means: Optional[torch.Tensor] = None, q_step: float = 1.0, *, checksum: ChecksumOption = True,
                    extra_header_bytes: int = 0, context: bytes = b"") -> RateReport:
        """Neural estimate, ideal and actual bits of compress(y, scales), with the gap by cause."""
        data = self.compress(y, scales, means, q_step, checksum=checksum, context=context)
        unchecked = len(self.compress(y, scales, means, q_step, checksum=False)) if checksum_size(checksum) else None
        part = self.ledger(y, scales, q_step, data, means, unchecked_bytes=unchecked)
        return RateReport.from_parts(part, pixels_of(y.shape[0], image_size), extra_header_bytes=extra_header_bytes)


def _gaussian_bits(symbols: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """-log2 P(symbol) under N(0, scale) discretized to unit bins, in float64, stable in the tails."""
    distance = torch.abs(symbols.double())
    log_upper = torch.special.log_ndtr((0.5 - distance) / scales)
    log_lower = torch.special.log_ndtr((-0.5 - distance) / scales)
    return -(log_upper + torch.log1p(-torch.exp(log_lower - log_upper))) / math.log(2)
