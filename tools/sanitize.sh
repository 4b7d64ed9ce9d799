#!/usr/bin/env bash
# Builds featcodec with AddressSanitizer + UndefinedBehaviorSanitizer in its
# own virtual environment and runs the test suite under it (arguments go to
# pytest, e.g. tools/sanitize.sh tests/test_decode_errors.py).  Python itself
# is not instrumented, so the sanitizer runtimes are preloaded.  The CUDA
# kernels are left out (FEATCODEC_CUDA=OFF): ASan and the CUDA runtime do not mix.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-asan
.venv-asan/bin/pip install -q --upgrade pip
export FEATCODEC_CUDA=OFF  # the tests read it too: no kernels expected
FEATCODEC_SANITIZE=ON .venv-asan/bin/pip install -q --config-settings=build-dir=build/asan ".[test]"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:check_initialization_order=1:verify_asan_link_order=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
exec .venv-asan/bin/python -m pytest -q -p no:cacheprovider "${@:-tests}"
