"""Honest rate reports: the neural estimate, the ideal bits and the actual bytes, and why they differ.

Each coded message gets a :class:`PartLedger`: the same symbols priced five
ways, from the network's float32 likelihoods to the bytes on the wire.  The
report starts from the main part's (y's) neural estimate and adds one row per
cause: ``actual = main estimate + sum(gaps)``.  A side part (a hyperprior's z)
is one row, its whole cost in bytes; its own estimate is in ``parts``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

import numpy as np

from .._coding import information_content
from .._tables import CdfTables

_ESCAPE_LENGTH_BITS = 6  # docs/format.md, escape stream


@dataclasses.dataclass(frozen=True)
class PartLedger:
    """One message's symbols priced at each stage, in bits (bytes where named so)."""

    name: str
    symbols: int
    neural_bits: float  # -log2 of the forward pass's (bounded, float32) likelihoods
    model_bits: float  # the model's own probabilities in float64, no bound
    table_model_bits: float  # the same with the table's parameters (the scale table's scale)
    quantized_bits: float  # -log2 of the integer frequencies, in-support symbols
    escape_bits: float  # escaped symbols: the escape's -log2 frequency plus the raw value code
    escape_model_bits: float  # what the table model charged the escaped symbols
    escapes: int
    message_bytes: int
    header_bytes: int  # the message's header byte and chunk directory
    checksum_bytes: int

    @property
    def ideal_bits(self) -> float:
        """Sum of -log2 p under the quantized tables (featcodec.information_content)."""
        return self.quantized_bits + self.escape_bits

    @property
    def payload_bits(self) -> int:
        return 8 * (self.message_bytes - self.header_bytes - self.checksum_bytes)


def ledger_of_message(
    name: str,
    *,
    neural_bits: float,
    model_bits_per_symbol: np.ndarray,
    symbols: np.ndarray,
    tables: CdfTables,
    indexes: np.ndarray,
    data: bytes,
    table_model_bits_per_symbol: Optional[np.ndarray] = None,
) -> PartLedger:
    """Prices ``symbols`` (coded into ``data`` with ``tables`` and ``indexes``) at every stage."""
    if table_model_bits_per_symbol is None:
        table_model_bits_per_symbol = model_bits_per_symbol
    rows = np.broadcast_to(indexes, symbols.shape).reshape(-1)
    values = symbols.reshape(-1).astype(np.int64)
    offsets = tables.offsets.astype(np.int64)[rows]
    lengths = tables.lengths[rows]
    index = values - offsets
    inside = (index >= 0) & (index < lengths)
    symbol = np.where(inside, index, lengths)
    cdf = tables.cdf()
    freq = cdf[rows, symbol + 1] - cdf[rows, symbol]
    coded_bits = tables.precision - np.log2(freq)
    table_model = np.asarray(table_model_bits_per_symbol, dtype=np.float64).reshape(-1)

    escaped = ~inside
    raw_bits = _escape_value_bits(values[escaped], offsets[escaped], offsets[escaped] + lengths[escaped])
    header_bytes, checksum_bytes = message_layout(data, values.size)
    ledger = PartLedger(
        name=name,
        symbols=int(values.size),
        neural_bits=float(neural_bits),
        model_bits=float(np.sum(model_bits_per_symbol, dtype=np.float64)),
        table_model_bits=float(table_model.sum()),
        quantized_bits=float(coded_bits[inside].sum()),
        escape_bits=float(coded_bits[escaped].sum() + raw_bits.sum()),
        escape_model_bits=float(table_model[escaped].sum()),
        escapes=int(escaped.sum()),
        message_bytes=len(data),
        header_bytes=header_bytes,
        checksum_bytes=checksum_bytes,
    )
    # The ledger and the native coder must price the symbols alike.
    native = information_content(symbols, tables, indexes)
    if not math.isclose(ledger.ideal_bits, native, rel_tol=1e-9, abs_tol=1e-6):  # pragma: no cover
        raise RuntimeError(f"internal: the ledger prices {name} at {ledger.ideal_bits} bits, the coder at {native}")
    return ledger


def _escape_value_bits(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Raw bits of each escaped value's code: 6 bits of length nb, then nb bits (docs/format.md)."""
    u = np.where(values >= high, 2 * (values - high), 2 * (low - 1 - values) + 1)
    nb = np.floor(np.log2((u + 1).astype(np.float64)))
    return _ESCAPE_LENGTH_BITS + nb


def message_layout(data: bytes, n_symbols: int) -> tuple[int, int]:
    """(header bytes, checksum bytes) of a featcodec message of ``n_symbols`` symbols."""
    if not data:
        return 0, 0
    head = data[0]
    checksum, chunked = bool(head >> 3 & 1), bool(head >> 2 & 1)
    header = 1
    if chunked:
        chunk_bits = data[1]
        chunks = -(-n_symbols // (1 << chunk_bits))
        header += 1
        for _ in range(chunks - 1):  # varint chunk lengths
            while data[header] & 0x80:
                header += 1
            header += 1
    return header, 4 if checksum else 0


#: The causes of the gap between the neural estimate and the actual bits, in ledger order.
GAP_CAUSES = (
    "likelihood bound and float32",
    "scale-table rounding",
    "table quantization",
    "escapes",
    "flush and padding",
    "header",
    "checksum",
    "side information (z)",
)


@dataclasses.dataclass(frozen=True)
class RateReport:
    """Neural estimate, ideal bits and actual bits of a batch, with the gap by cause.

    ``str(report)`` is a table for people; :meth:`as_dict` is for programs.
    bpp is bits / (batch * H * W) of the input images.
    """

    pixels: int
    neural_bits: float
    ideal_bits: float
    actual_bits: int
    gaps: dict
    parts: dict
    main: str = "y"

    @property
    def main_neural_bits(self) -> float:
        """The main part's neural estimate: where the rows of gaps start."""
        return float(self.parts[self.main]["neural_bits"])

    @classmethod
    def from_parts(cls, main: PartLedger, pixels: int, *, side: Optional[PartLedger] = None,
                   side_prefix_bytes: int = 0, extra_header_bytes: int = 0) -> "RateReport":
        """The report for a main message (y) and an optional side message (z).

        side_prefix_bytes: what frames the side message (its size varint),
        counted in its row; extra_header_bytes: what the caller adds around
        the whole message, counted as header.
        """
        gaps = dict.fromkeys(GAP_CAUSES, 0.0)
        gaps["likelihood bound and float32"] = main.model_bits - main.neural_bits
        gaps["scale-table rounding"] = main.table_model_bits - main.model_bits
        gaps["table quantization"] = main.quantized_bits - (main.table_model_bits - main.escape_model_bits)
        gaps["escapes"] = main.escape_bits - main.escape_model_bits
        gaps["flush and padding"] = main.payload_bits - main.ideal_bits
        gaps["header"] = 8.0 * (main.header_bytes + extra_header_bytes)
        gaps["checksum"] = 8.0 * main.checksum_bytes
        neural, ideal, actual = main.neural_bits, main.ideal_bits, 8 * (main.message_bytes + extra_header_bytes)
        parts = {main.name: dataclasses.asdict(main)}
        if side is not None:
            side_bits = 8 * (side.message_bytes + side_prefix_bytes)
            gaps["side information (z)"] = float(side_bits)
            neural += side.neural_bits
            ideal += side.ideal_bits
            actual += side_bits
            parts[side.name] = dataclasses.asdict(side)
        elif side_prefix_bytes:
            raise ValueError("side_prefix_bytes without a side part")
        if pixels <= 0:
            raise ValueError(f"pixels must be positive, got {pixels}")
        return cls(pixels=pixels, neural_bits=neural, ideal_bits=ideal, actual_bits=actual, gaps=gaps, parts=parts,
                   main=main.name)

    def bpp(self, bits: float) -> float:
        return bits / self.pixels

    def as_dict(self) -> dict:
        return {
            "pixels": self.pixels,
            "neural_bits": self.neural_bits,
            "main_neural_bits": self.main_neural_bits,
            "ideal_bits": self.ideal_bits,
            "actual_bits": self.actual_bits,
            "neural_bpp": self.bpp(self.neural_bits),
            "ideal_bpp": self.bpp(self.ideal_bits),
            "actual_bpp": self.bpp(self.actual_bits),
            "gaps_bits": dict(self.gaps),
            "parts": {name: dict(part) for name, part in self.parts.items()},
        }

    def __str__(self) -> str:
        rows: list[tuple[str, float]] = [(f"neural estimate of {self.main}", self.main_neural_bits)]
        rows += [(f"  + {cause}", bits) for cause, bits in self.gaps.items()]
        rows += [("= actual bits", float(self.actual_bits))]
        if len(self.parts) > 1:
            rows += [("neural estimate, all parts", self.neural_bits)]
        rows += [("ideal bits under the tables", self.ideal_bits)]
        width = max(len(label) for label, _ in rows)
        lines = [f"{'':{width}}  {'bits':>12}  {'bpp':>10}  {'of estimate':>11}"]
        for label, bits in rows:
            share = 100.0 * bits / self.neural_bits if self.neural_bits else float("nan")
            lines.append(f"{label:{width}}  {bits:12.1f}  {self.bpp(bits):10.5f}  {share:10.3f}%")
        return "\n".join(lines)


def pixels_of(batch: int, image_size: Sequence[int]) -> int:
    """batch * H * W, checked."""
    if len(image_size) != 2 or any(int(d) <= 0 for d in image_size):
        raise ValueError(f"image_size must be (H, W) with positive sides, got {image_size!r}")
    return int(batch) * int(image_size[0]) * int(image_size[1])
