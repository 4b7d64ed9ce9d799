"""What every entropy model shares: integer tables kept in the state_dict, and a guard against stale ones.

CompressAI's models keep their coding tables beside the parameters and
rebuild them only when ``update()`` is called, so a model that trained on
after the last update, or a checkpoint saved before one, codes with the wrong
tables and nobody is told.  Here the tables are a serialized
:class:`featcodec.CdfTables` blob in a buffer, next to a fingerprint of the
parameters they were built from.  ``compress`` and ``decompress`` check the
fingerprint, so tables older than the parameters raise :class:`StaleTablesError`
(or are rebuilt, if ``auto_update_tables`` is set), and a loaded model codes
with exactly the integers it was saved with: no rebuild, no float arithmetic
that two machines could round differently.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .._coding import decode, encode
from .._tables import CdfTables
from ._derived import Derived

#: What ``checksum=`` accepts when coding: on (4 bytes), off, or a size in bytes.
ChecksumOption = Union[bool, int]
#: What ``checksum=`` accepts when decoding: None (what the message says), True (any), or a size.
ChecksumRequirement = Optional[Union[bool, int]]

_FINGERPRINT_BYTES = 16


class StaleTablesError(RuntimeError):
    """The coding tables are missing, or older than the parameters they derive from."""


class EntropyModel(nn.Module):
    """Base of the models that turn tensors into bytes with stored integer tables.

    Subclasses say what their tables derive from (:meth:`_table_inputs`), how
    to build them (:meth:`_build_tables`) and how many rows they must have
    (:meth:`_expected_rows`).
    """

    _tables_blob: torch.Tensor
    _tables_fingerprint: torch.Tensor

    def __init__(self, precision: int = 16) -> None:
        super().__init__()
        if isinstance(precision, bool) or not isinstance(precision, int) or not 8 <= precision <= 16:
            raise ValueError(f"precision must be an integer in [8, 16], got {precision!r}")
        self.precision = precision
        #: Rebuild stale tables in compress/decompress instead of raising.
        self.auto_update_tables = False
        self.register_buffer("_tables_blob", torch.zeros(0, dtype=torch.uint8))
        self.register_buffer("_tables_fingerprint", torch.zeros(_FINGERPRINT_BYTES, dtype=torch.uint8))
        self._cached_tables: Optional[CdfTables] = None
        self._fingerprint_cache: Derived[np.ndarray] = Derived()

    def __getstate__(self) -> dict:
        # The parsed tables hold a native object that cannot be copied; the blob rebuilds them.
        state = self.__dict__.copy()
        state["_cached_tables"] = None
        return state

    # --- what subclasses provide ---------------------------------------------------

    def _table_inputs(self) -> Iterable[torch.Tensor]:
        raise NotImplementedError

    def _build_tables(self) -> CdfTables:
        raise NotImplementedError

    def _expected_rows(self) -> int:
        raise NotImplementedError

    # --- the tables ---------------------------------------------------------------

    @torch.no_grad()
    def update_tables(self) -> CdfTables:
        """Builds the integer coding tables from the current parameters and stores them.

        Call after training (and after any change of the parameters); the
        tables then travel with ``state_dict()``.
        """
        tables = self._build_tables()
        blob = np.frombuffer(tables.to_bytes(), dtype=np.uint8).copy()
        self._tables_blob = torch.from_numpy(blob).to(self._tables_blob.device)
        self._tables_fingerprint.copy_(torch.from_numpy(self._fingerprint()))
        self._cached_tables = tables
        return tables

    @property
    def tables(self) -> CdfTables:
        """The stored tables, checked against the parameters (see :class:`StaleTablesError`)."""
        if self._tables_blob.numel() == 0:
            if self.auto_update_tables:
                return self.update_tables()
            raise StaleTablesError(f"{type(self).__name__} has no coding tables yet: call update_tables()")
        if not np.array_equal(self._fingerprint(), self._tables_fingerprint.cpu().numpy()):
            if self.auto_update_tables:
                return self.update_tables()
            raise StaleTablesError(
                f"{type(self).__name__}'s coding tables are older than its parameters: call update_tables() "
                "(or set auto_update_tables = True)"
            )
        if self._cached_tables is None:
            self._cached_tables = CdfTables.from_bytes(self._tables_blob.cpu().numpy().tobytes())
        return self._cached_tables

    def _fingerprint(self) -> np.ndarray:
        """A hash of everything the tables derive from, exactly as stored (recomputed when it changes)."""
        settings = (type(self).__name__, self.precision, self._extra_fingerprint())
        return self._fingerprint_cache.get(self._table_inputs(), settings, self._fingerprint_now)

    def _fingerprint_now(self) -> np.ndarray:
        digest = hashlib.blake2b(digest_size=_FINGERPRINT_BYTES)
        digest.update(f"{type(self).__name__}/{self.precision}/{self._extra_fingerprint()}".encode())
        for tensor in self._table_inputs():
            data = tensor.detach().cpu().contiguous()
            digest.update(f"{data.dtype}{tuple(data.shape)}".encode())
            digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
        return np.frombuffer(digest.digest(), dtype=np.uint8).copy()

    def _extra_fingerprint(self) -> str:
        """Settings other than tensors that the tables depend on."""
        return ""

    # --- loading ------------------------------------------------------------------

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        key = prefix + "_tables_blob"
        blob = state_dict.get(key)
        if blob is not None:
            # The blob's size is the tables', not the module's: take the incoming one.
            self._tables_blob = torch.empty_like(blob, device=self._tables_blob.device)
            if blob.numel():
                self._check_loaded_tables(blob)
        self._cached_tables = None
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def _check_loaded_tables(self, blob: torch.Tensor) -> None:
        try:
            tables = CdfTables.from_bytes(blob.cpu().numpy().tobytes())
        except ValueError as error:
            raise ValueError(f"{type(self).__name__}: the stored coding tables are not valid: {error}") from None
        if len(tables) != self._expected_rows():
            raise ValueError(
                f"{type(self).__name__}: the stored coding tables have {len(tables)} rows, "
                f"this module needs {self._expected_rows()} (a checkpoint of another configuration?)"
            )
        if tables.precision != self.precision:
            raise ValueError(
                f"{type(self).__name__}: the stored coding tables have precision {tables.precision}, "
                f"this module has {self.precision}"
            )

    def _device(self) -> torch.device:
        return self._tables_blob.device


def estimate_bits(likelihoods: "torch.Tensor | dict[str, torch.Tensor]") -> torch.Tensor:
    """The neural rate estimate: sum of -log2 likelihood over a tensor or a dict of them (differentiable)."""
    if isinstance(likelihoods, dict):
        return torch.stack([estimate_bits(value) for value in likelihoods.values()]).sum()
    return -torch.log2(likelihoods).sum()


_CHECKSUM_SIZES = (0, 1, 2, 4)


def checksum_size(checksum: ChecksumOption) -> int:
    """Bytes of checksum a ``checksum=`` option asks for: True is 4, False is 0, else 0, 1, 2 or 4."""
    if checksum is True or checksum is False:
        return 4 if checksum else 0
    if isinstance(checksum, (int, np.integer)) and int(checksum) in _CHECKSUM_SIZES:
        return int(checksum)
    raise ValueError(f"checksum must be True, False or a size in bytes (1, 2 or 4), got {checksum!r}")


def check_context(context: bytes) -> bytes:
    if not isinstance(context, (bytes, bytearray, memoryview)):
        raise TypeError(f"context must be bytes, got {type(context).__name__}")
    return bytes(context)


def encode_symbols(symbols: np.ndarray, tables: CdfTables, indexes: np.ndarray, *, checksum: ChecksumOption,
                   context: bytes, threads: Optional[int]) -> bytes:
    """featcodec.encode with a checksum of ``checksum`` bytes over the values and ``context``.

    Without a checksum nothing can authenticate the context, so it is dropped.
    """
    size = checksum_size(checksum)
    context = check_context(context)
    return encode(symbols, tables, indexes, checksum=size, context=context if size else b"", threads=threads)


def decode_symbols(data: bytes, tables: CdfTables, indexes: np.ndarray, *, shape: Sequence[int],
                   checksum: ChecksumRequirement, context: bytes, threads: Optional[int]) -> np.ndarray:
    """featcodec.decode, requiring at least the checksum the caller asks for, with the sender's context.

    checksum None (or False, 0): accept what the message says, verifying
    the context when it carries a checksum (an encoder without one drops
    the context); True or a size: require one, verified with the context.
    """
    from ._ledger import declared_checksum_bytes

    context = check_context(context)
    if checksum is None or checksum is False or (checksum is not True and checksum_size(checksum) == 0):
        if not declared_checksum_bytes(bytes(data[:1])):
            context = b""
        return decode(data, tables, indexes, shape=shape, context=context, threads=threads)
    required = True if checksum is True else checksum_size(checksum)
    return decode(data, tables, indexes, shape=shape, checksum=required, context=context, threads=threads)
