"""Shared pytest configuration for the featcodec test suite.

Hypothesis profiles (select with HYPOTHESIS_PROFILE=<name>):

* ``ci`` (default): enough examples to cover the strategies' corners while
  the whole suite stays within a few minutes on two cores.
* ``dev``: a quick smoke run.
* ``thorough``: many more examples, for a nightly or pre-release run.

All profiles disable the per-example deadline: native calls on large arrays
and the first table build in a process (the fixed-point log2 table) are
legitimately slower than hypothesis' default 200 ms.
"""

from __future__ import annotations

import os
import pathlib
import sys

from hypothesis import HealthCheck, settings

# Make the helper module (tests/strategies.py) importable regardless of the
# pytest import mode.  Only this directory is added: the library itself must
# come from the installed package, not from python/featcodec.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=200, **_COMMON)
settings.register_profile("dev", max_examples=15, **_COMMON)
settings.register_profile("thorough", max_examples=1000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_report_header(config):
    import featcodec
    import isa_kernels

    return [f"featcodec {featcodec.__version__} from {featcodec.__file__}", isa_kernels.report_line()]

