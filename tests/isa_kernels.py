"""The native chunk kernels in tests: which this build and CPU have, and
parametrizations that run every kernel the CPU has and skip, saying why,
those it lacks (a skip here is never a missing feature: the CPU cannot run
them).  See featcodec._kernels for FEATCODEC_ISA."""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import pytest

import featcodec as fc

KERNELS = ("generic", "avx2", "avx512")
VECTOR_KERNELS = KERNELS[1:]
_NEEDS = {"avx2": "AVX2 (x86-64-v3)", "avx512": "AVX-512 (x86-64-v4)"}


def missing_reason(isa: str) -> Optional[str]:
    """Why `isa` cannot run here, or None if it can."""
    if isa in fc._core.available_kernels():
        return None
    if isa not in fc._core.built_kernels():
        return f"this build has no {isa} kernels (not an x86-64 build, or the compiler lacks x86-64-v3/v4)"
    return f"this CPU lacks {_NEEDS[isa]}: {isa} kernels not run"


def kernel_params(kernels=KERNELS) -> list:
    """pytest parameters, one per kernel, id = its name, skipped with the reason where it cannot run."""
    return [pytest.param(isa, id=isa, marks=[pytest.mark.skipif(missing_reason(isa) is not None,
                                                                reason=missing_reason(isa) or "")])
            for isa in kernels]


@contextlib.contextmanager
def using(isa: str) -> Iterator[None]:
    """Codes with the kernels of `isa` (which must be available), then restores the previous ones."""
    previous = fc._core.kernel_isa()
    assert fc._core.select_kernels(isa), missing_reason(isa)
    try:
        yield
    finally:
        assert fc._core.select_kernels(previous)


def report_line() -> str:
    """For pytest's header: which kernels this run tests."""
    available = fc._core.available_kernels()
    skipped = [isa for isa in KERNELS if isa not in available]
    line = f"featcodec kernels: {', '.join(available)} (default {fc._core.kernel_isa()})"
    return line + (f"; not on this CPU or build: {', '.join(skipped)}" if skipped else "")
