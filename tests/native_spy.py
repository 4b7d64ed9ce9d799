"""A stand-in for featcodec._core in one module that records the arguments
of native calls: for checking what the numpy layer hands the native layer
(a thread count, say) where the result alone cannot tell."""

from __future__ import annotations

import os


class NativeCallSpy:
    """Forwards every attribute to `core`; the functions named in `names`
    record (name, positional arguments) in ``calls`` before running."""

    def __init__(self, core, names):
        self._core, self._names, self.calls = core, set(names), []

    def __getattr__(self, name):
        target = getattr(self._core, name)
        if name not in self._names:
            return target

        def record(*args):
            self.calls.append((name, args))
            return target(*args)

        return record


def differing_int_argument(calls_a, calls_b) -> int:
    """The one integer argument that differs between two runs of the same
    native calls (made with, say, threads=1 and threads=None), as run b passed it."""
    assert calls_a and [n for n, _ in calls_a] == [n for n, _ in calls_b]
    diffs = [b for (_, args_a), (_, args_b) in zip(calls_a, calls_b) for a, b in zip(args_a, args_b)
             if type(a) is int and type(b) is int and a != b]
    assert len(diffs) == len(calls_a), f"expected one differing integer argument per call: {calls_a} vs {calls_b}"
    assert len(set(diffs)) == 1, diffs
    return diffs[0]


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, where there is one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
