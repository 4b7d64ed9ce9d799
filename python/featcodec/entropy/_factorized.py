"""FactorizedPrior: a learned density per channel (Balle et al. 2018, appendix 6.1)."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._tables import CdfTables, default_tail_mass
from ._base import (ChecksumOption, ChecksumRequirement, EntropyModel, checksum_size, decode_symbols,
                    encode_symbols)
from ._bounds import lower_bound
from ._compressai_names import FACTORIZED_NAMES, CompressAINames
from ._ledger import PartLedger, RateReport, ledger_of_message, pixels_of
from ._quantizer import dequantize, quantize, symbols_of

#: Widest support a channel's table may have; beyond it values are escaped.
MAX_SUPPORT = 1 << 14


class FactorizedPrior(CompressAINames, EntropyModel):
    """One learned, flexible density per channel for symbols ``round(y / Q)``.

    The CDF of channel c is a monotone MLP (positive matrices, gated tanh
    nonlinearities) ending in a sigmoid; a symbol's likelihood is the CDF's
    increase over its quantization bin.  Tail quantiles are learned beside it
    (:meth:`aux_loss`) and bound the support of the coding tables.

    forward(y, q_step) -> (y_hat, likelihoods): additive uniform noise while
    training (or straight-through rounding with ``straight_through=True``),
    rounding in eval.  compress/decompress code ``round(y / Q)`` with the
    stored tables (:meth:`update_tables` first).

    around_median: quantize around each channel's learned median m instead
    of 0: symbols ``round((y - Q m) / Q)``, ``y_hat = Q m + Q symbol``
    (CompressAI's EntropyBottleneck does this, with Q = 1).  It fits
    densities whose centre is off zero better; the median is detached, so
    only :meth:`aux_loss` moves it.

    filters: the hidden widths of the CDF's MLP.  The default (3, 3, 3) is
    one layer shallower than CompressAI's (3, 3, 3, 3);
    :mod:`featcodec.compat.compressai` converts either way and reads the
    widths from the weights.

    >>> import torch
    >>> from featcodec.entropy import FactorizedPrior
    >>> prior = FactorizedPrior(4).eval()
    >>> _ = prior.update_tables()
    >>> y = torch.randn(2, 4, 3, 3) * 3
    >>> y_hat, likelihoods = prior(y, q_step=0.5)
    >>> data = prior.compress(y, q_step=0.5)
    >>> torch.equal(prior.decompress(data, y.shape, q_step=0.5), y_hat)
    True
    """

    _compressai_names = FACTORIZED_NAMES

    def __init__(
        self,
        channels: int,
        *,
        filters: Sequence[int] = (3, 3, 3),
        init_scale: float = 10.0,
        tail_mass: float = 1e-9,
        likelihood_bound: float = 1e-9,
        straight_through: bool = False,
        around_median: bool = False,
        precision: int = 16,
    ) -> None:
        super().__init__(precision)
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive integer, got {channels!r}")
        if not 0 < tail_mass < 1:
            raise ValueError(f"tail_mass must be in (0, 1), got {tail_mass}")
        self.channels = channels
        self.filters = tuple(int(f) for f in filters)
        self.tail_mass = float(tail_mass)
        self.likelihood_bound = float(likelihood_bound)
        self.straight_through = straight_through
        self.around_median = bool(around_median)

        widths = (1, *self.filters, 1)
        scale = init_scale ** (1.0 / (len(widths) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for k in range(len(widths) - 1):
            # softplus(init) = 1 / (scale * fan_out): the initial CDF spans about +-init_scale.
            init = math.log(math.expm1(1.0 / scale / widths[k + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, widths[k + 1], widths[k]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, widths[k + 1], 1) - 0.5))
            if k < len(widths) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, widths[k + 1], 1)))
        self.quantiles = nn.Parameter(torch.tensor([-init_scale, 0.0, init_scale]).repeat(channels, 1, 1))

    # --- the density --------------------------------------------------------------

    def _layers(self, *, exact: bool = False) -> list[tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]]:
        """(softplus(matrix), bias, tanh(factor)) per layer; ``exact``: detached float64 CPU copies."""

        def view(p: torch.Tensor) -> torch.Tensor:
            return p.detach().double().cpu() if exact else p

        factors = [torch.tanh(view(f)) for f in self.factors] + [None]
        return [(F.softplus(view(m)), view(b), f) for m, b, f in zip(self.matrices, self.biases, factors)]

    @staticmethod
    def _logits(u: torch.Tensor, layers) -> torch.Tensor:
        """Logit of the CDF at u, shaped (C, 1, N)."""
        x = u
        for matrix, bias, factor in layers:
            x = torch.matmul(matrix, x) + bias
            if factor is not None:
                x = x + factor * torch.tanh(x)
        return x

    def _channels_first(self, u: torch.Tensor) -> torch.Tensor:
        if u.dim() < 2 or u.shape[1] != self.channels:
            raise ValueError(f"expected a tensor of shape (B, {self.channels}, ...), got {tuple(u.shape)}")
        return u.transpose(0, 1).reshape(self.channels, 1, -1)

    def _from_channels_first(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        shape = (like.shape[1], like.shape[0], *like.shape[2:])
        return values.reshape(shape).transpose(0, 1)

    def _likelihood(self, u: torch.Tensor) -> torch.Tensor:
        """P(bin of width 1 around u) under each channel's density, u shaped like y."""
        flat = self._channels_first(u)
        layers = self._layers()
        lower = self._logits(flat - 0.5, layers)
        upper = self._logits(flat + 0.5, layers)
        # Evaluate on the side of the median where the sigmoids are not both near 1.
        sign = -torch.sign(lower + upper).detach()
        mass = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return self._from_channels_first(mass, u)

    def _means(self, y: torch.Tensor, q_step: float) -> Optional[torch.Tensor]:
        """What symbols are centred on, in units of y: Q times each channel's median, or None (zero)."""
        if not self.around_median:
            return None
        medians = self.quantiles.detach()[:, 0, 1].to(device=y.device, dtype=y.dtype)
        return medians.view((1, self.channels) + (1,) * (y.dim() - 2)) * q_step

    def _symbol_centres(self) -> torch.Tensor:
        """Per channel, the value of symbol 0 in units of y / Q (float64): the median, or 0."""
        if not self.around_median:
            return torch.zeros(self.channels, dtype=torch.float64)
        return self.quantiles.detach()[:, 0, 1].double().cpu()

    def forward(self, y: torch.Tensor, q_step: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(y_hat, likelihoods): y quantized with step Q and each element's probability."""
        mode = ("ste" if self.straight_through else "noise") if self.training else "round"
        return self._quantized_likelihoods(y, q_step, mode)

    def _quantized_likelihoods(self, y: torch.Tensor, q_step: float, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        self._channels_first(y)  # shape check
        y_hat = quantize(y, q_step, mode, self._means(y, q_step))  # type: ignore[arg-type]
        likelihoods = lower_bound(self._likelihood(y_hat / q_step), self.likelihood_bound)
        return y_hat, likelihoods

    @torch.no_grad()
    def eval_forward(self, y: torch.Tensor, q_step: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """What ``forward`` gives in eval mode (rounding), whatever the module's mode; changes nothing."""
        return self._quantized_likelihoods(y, q_step, "round")

    def config(self) -> dict:
        """The constructor's arguments that a saved model needs besides its state_dict."""
        return {"channels": self.channels, "filters": list(self.filters), "tail_mass": self.tail_mass,
                "likelihood_bound": self.likelihood_bound, "straight_through": self.straight_through,
                "around_median": self.around_median, "precision": self.precision}

    def aux_loss(self) -> torch.Tensor:
        """Moves the learned quantiles to the tail_mass/2, median and 1 - tail_mass/2 points.

        The density's parameters are detached, so this trains the quantiles
        only and can simply be added to the main loss.
        """
        target_logit = math.log(2.0 / self.tail_mass - 1.0)
        target = torch.tensor([-target_logit, 0.0, target_logit], device=self.quantiles.device)
        layers = [(m.detach(), b.detach(), None if f is None else f.detach()) for m, b, f in self._layers()]
        return torch.abs(self._logits(self.quantiles, layers) - target).sum()

    # --- tables -------------------------------------------------------------------

    def _table_inputs(self):
        return self.parameters()

    def _extra_fingerprint(self) -> str:
        return f"tail={self.tail_mass!r}" + ("/around_median" if self.around_median else "")

    def _expected_rows(self) -> int:
        return self.channels

    def _build_tables(self) -> CdfTables:
        pmf, offsets, lengths = self._support_pmf()
        return CdfTables.from_pmf(pmf, offsets, lengths, precision=self.precision)

    def _support_pmf(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each channel's pmf (float64) over its support, and the supports' offsets and lengths.

        The support ends where the coder prefers escapes: outside mass
        default_tail_mass(P) / 2 on each side (a far-tail symbol keeps a
        frequency >= 1 / 2**P, which the likely symbols pay for).  The ends are
        found on the density itself, from the learned median outward, so tail
        quantiles that have not converged cannot make the tables escape-heavy.
        """
        tail = default_tail_mass(self.precision) / 2
        centres = self._symbol_centres()
        median = self.quantiles.detach()[:, 0, 1].double().cpu().clamp(-(2**30), 2**30)
        start = torch.round(median - centres)  # the symbol nearest the median
        low = start - self._distance_to_tail(start + centres, -1, tail)
        high = start + self._distance_to_tail(start + centres, +1, tail)
        width = int((high - low).max().item()) + 1
        k = low[:, None] + torch.arange(width, dtype=torch.float64)  # (C, width)
        pmf = self._exact_pmf(k[:, None, :]).reshape(self.channels, width).numpy()
        lengths = (high - low).numpy().astype(np.int64) + 1
        first = np.zeros(self.channels, dtype=np.int64)
        for c in range(self.channels):
            row = pmf[c, : lengths[c]]
            left = int(np.searchsorted(np.cumsum(row), tail, side="right"))
            right = int(np.searchsorted(np.cumsum(row[::-1]), tail, side="right"))
            if left + right >= len(row):  # nearly all mass outside (a degenerate density): keep the mode
                left, right = int(np.argmax(row)), len(row) - int(np.argmax(row)) - 1
            first[c], lengths[c] = left, len(row) - left - right
        trimmed = np.zeros((self.channels, int(lengths.max())))
        for c in range(self.channels):
            trimmed[c, : lengths[c]] = pmf[c, first[c] : first[c] + lengths[c]]
        trimmed[trimmed.sum(axis=1) == 0, 0] = 1e-300  # all mass escapes
        return trimmed, (low.numpy().astype(np.int64) + first).astype(np.int32), lengths

    def _distance_to_tail(self, start: torch.Tensor, direction: int, tail: float) -> torch.Tensor:
        """Per channel, a power-of-two distance from the value ``start`` beyond which the CDF's tail is below ``tail``."""
        layers = self._layers(exact=True)
        threshold = math.log(tail / (1 - tail))  # logit of the tail mass
        distance = torch.ones_like(start)
        for _ in range(int(math.log2(MAX_SUPPORT))):
            edge = start + direction * (distance + 0.5)
            logits = self._logits(edge.view(-1, 1, 1), layers).view(-1)
            inside = (logits > threshold) if direction < 0 else (logits < -threshold)
            if not bool(inside.any()):
                break
            distance = torch.where(inside, distance * 2, distance)
        return distance.clamp_max(MAX_SUPPORT // 2 - 1)

    @torch.no_grad()
    def _exact_pmf(self, k: torch.Tensor) -> torch.Tensor:
        """P(symbol k) in float64 on the CPU, no lower bound: the model's own probabilities, k shaped (C, 1, N)."""
        return torch.exp(self._exact_log_pmf(k))

    @torch.no_grad()
    def _exact_log_pmf(self, k: torch.Tensor) -> torch.Tensor:
        layers = self._layers(exact=True)
        k = k.double().cpu() + self._symbol_centres().view(-1, 1, 1)
        lower = self._logits(k - 0.5, layers)
        upper = self._logits(k + 0.5, layers)
        # log(sigmoid(a) - sigmoid(b)), a > b, on the side where it does not cancel.
        sign = -torch.sign(lower + upper)
        sign[sign == 0] = 1.0
        a, b = torch.maximum(sign * upper, sign * lower), torch.minimum(sign * upper, sign * lower)
        log_a, log_b = F.logsigmoid(a), F.logsigmoid(b)
        return log_a + torch.log1p(-torch.exp(log_b - log_a))

    # --- coding -------------------------------------------------------------------

    def _indexes(self, ndim: int) -> np.ndarray:
        return np.arange(self.channels, dtype=np.int32).reshape((1, self.channels) + (1,) * (ndim - 2))

    @torch.no_grad()
    def compress(self, y: torch.Tensor, q_step: float = 1.0, *, checksum: ChecksumOption = True,
                 context: bytes = b"", threads: Optional[int] = None) -> bytes:
        """Codes ``round(y / Q)`` for y of shape (B, C, ...) into one message.

        checksum: its size in bytes (True: 4, False: none); context: bytes
        hashed into the checksum but not sent (featcodec.encode); threads: see
        featcodec.encode.
        """
        self._channels_first(y)  # shape check
        tables = self.tables
        symbols = symbols_of(y, q_step, self._means(y, q_step)).cpu().numpy()
        return encode_symbols(symbols, tables, self._indexes(y.dim()), checksum=checksum, context=context,
                              threads=threads)

    @torch.no_grad()
    def decompress(self, data: bytes, shape: Sequence[int], q_step: float = 1.0,
                   device: Optional[torch.device] = None, *, checksum: ChecksumRequirement = None,
                   context: bytes = b"", threads: Optional[int] = None) -> torch.Tensor:
        """y_hat (float32, on ``device``, default the module's) from :meth:`compress`'s bytes.

        checksum: None accepts what the message says; True or a size in bytes
        requires one (a DecodeError otherwise); context: the sender's.
        """
        shape = tuple(int(d) for d in shape)
        if len(shape) < 2 or shape[1] != self.channels:
            raise ValueError(f"shape must be (B, {self.channels}, ...), got {shape}")
        symbols = decode_symbols(data, self.tables, self._indexes(len(shape)), shape=shape, checksum=checksum,
                                 context=context, threads=threads)
        values = torch.from_numpy(symbols).to(device or self._device())
        return dequantize(values, q_step, self._means(values.float(), q_step))

    @torch.no_grad()
    def ledger(self, y: torch.Tensor, q_step: float, data: bytes, name: str = "y",
               unchecked_bytes: Optional[int] = None) -> PartLedger:
        """Where the bits of ``data`` (this model's message for y) go; see :class:`RateReport`.

        unchecked_bytes: the length of the message without its checksum
        (None: ``data`` has none).
        """
        _, likelihoods = self.eval_forward(y, q_step)
        symbols = symbols_of(y, q_step, self._means(y, q_step))
        model_log_pmf = self._from_channels_first(self._exact_log_pmf(self._channels_first(symbols)), symbols)
        return ledger_of_message(
            name,
            neural_bits=float(-torch.log2(likelihoods.double()).sum()),
            model_bits_per_symbol=(-model_log_pmf / math.log(2)).numpy(),
            symbols=symbols.cpu().numpy(),
            tables=self.tables,
            indexes=self._indexes(y.dim()),
            data=data,
            unchecked_bytes=unchecked_bytes,
        )

    @torch.no_grad()
    def rate_report(self, y: torch.Tensor, image_size: Sequence[int], q_step: float = 1.0, *,
                    checksum: ChecksumOption = True, extra_header_bytes: int = 0,
                    context: bytes = b"") -> RateReport:
        """Neural estimate, ideal and actual bits of compress(y), with the gap by cause."""
        data = self.compress(y, q_step, checksum=checksum, context=context)
        unchecked = len(self.compress(y, q_step, checksum=False)) if checksum_size(checksum) else None
        part = self.ledger(y, q_step, data, unchecked_bytes=unchecked)
        return RateReport.from_parts(part, pixels_of(y.shape[0], image_size), extra_header_bytes=extra_header_bytes)
