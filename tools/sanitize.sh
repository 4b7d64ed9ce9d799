#!/usr/bin/env bash
# Builds featcodec with AddressSanitizer + UndefinedBehaviorSanitizer in its
# own virtual environment and runs the test suite under it (arguments go to
# pytest, e.g. tools/sanitize.sh tests/test_decode_errors.py).  Python itself
# is not instrumented, so the sanitizer runtimes are preloaded.  By default it
# runs the tests of the native core and the numpy API; the torch layers reach
# native code only through that API, and torch does not run under a preloaded
# ASan runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-asan
.venv-asan/bin/pip install -q --upgrade pip
export FEATCODEC_CUDA=OFF  # ASan and the CUDA runtime do not mix; the tests read it too
.venv-asan/bin/pip install -q "pytest>=7" "hypothesis>=6"
FEATCODEC_SANITIZE=ON .venv-asan/bin/pip install -q --config-settings=build-dir=build/asan .
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:check_initialization_order=1:verify_asan_link_order=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
if [ $# -eq 0 ]; then
  # Named, not "everything but": a new torch-layer test module must not
  # break this run by importing torch under the preloaded runtime.
  set -- tests/test_coding.py tests/test_decode_errors.py tests/test_package.py \
    tests/test_parametric.py tests/test_parametric_coding.py tests/test_simd.py tests/test_tables.py
fi
exec .venv-asan/bin/python -m pytest -q -p no:cacheprovider "$@"
