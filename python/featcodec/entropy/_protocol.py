"""What a model must offer to code a codec's latent: the protocol the feature codec and the bank rely on.

The feature codec checks behaviour, not classes, so a user's model codes
through it as soon as it has these members.  ``checksum`` and ``context``
are the native core's (docs/format.md): the checksum's size in bytes, and
associated data hashed into it but never sent, which is how a codec's
header and fingerprint are authenticated at no cost in bytes.
"""

from __future__ import annotations

from typing import Optional, Protocol, Sequence, runtime_checkable

import torch

from ._base import ChecksumOption, ChecksumRequirement
from ._ledger import RateReport


@runtime_checkable
class EntropyCoder(Protocol):
    """An entropy model over ``channels`` channels of (B, C, h, w) latents, coded without side input.

    compress and decompress must never change the module's mode or buffers
    (several threads may code with one model at once), and
    ``decompress(compress(y, Q), y.shape, Q)`` must equal the eval-mode
    quantization of y.  ``rate_report`` prices ``compress(y)`` from the neural
    estimate to the actual bits, counting ``extra_header_bytes`` that the
    caller adds around the message.
    """

    channels: int

    def compress(self, y: torch.Tensor, q_step: float = 1.0, *, checksum: ChecksumOption = True,
                 context: bytes = b"") -> bytes: ...

    def decompress(self, data: bytes, shape: Sequence[int], q_step: float = 1.0,
                   device: Optional[torch.device] = None, *, checksum: ChecksumRequirement = None,
                   context: bytes = b"") -> torch.Tensor: ...

    def rate_report(self, y: torch.Tensor, image_size: Sequence[int], q_step: float = 1.0, *,
                    checksum: ChecksumOption = True, extra_header_bytes: int = 0,
                    context: bytes = b"") -> RateReport: ...
