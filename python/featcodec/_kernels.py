"""Which build of the native per-symbol kernels codes: FEATCODEC_ISA.

The native core has the chunk coders built for the baseline instruction set
("generic") and, on x86-64, for x86-64-v3 ("avx2") and x86-64-v4
("avx512"); it uses the best one the CPU runs.  FEATCODEC_ISA=generic|avx2|
avx512 caps that choice (for tests and A/B runs).  All kernels write and read
the same bytes.  A name that is not one of these is an error at import; a
level that this CPU or build lacks falls back to the best one below it, with
a RuntimeWarning saying which one runs.
"""

from __future__ import annotations

import os
import warnings

from . import _core

KERNELS = ("generic", "avx2", "avx512")


def check_requested_kernels() -> None:
    """Validates FEATCODEC_ISA against the kernels the CPU runs."""
    requested = os.environ.get("FEATCODEC_ISA", "")
    if not requested:
        return
    if requested not in KERNELS:
        raise ValueError(f"FEATCODEC_ISA={requested!r} is not one of {', '.join(KERNELS)}")
    used = _core.kernel_isa()
    if used != requested:
        warnings.warn(
            f"FEATCODEC_ISA={requested}: this CPU or build lacks those kernels "
            f"(available: {', '.join(_core.available_kernels())}); using {used}",
            RuntimeWarning,
            stacklevel=3,
        )
