"""Package-level properties: imports, public names, version, doctests."""

from __future__ import annotations

import doctest
import importlib.metadata
import pathlib
import re
import os
import subprocess
import sys
import textwrap

import pytest

import featcodec as fc
import featcodec._coding
import featcodec._tables

# Fake heavyweight modules: if featcodec imports one of them, even inside a
# try/except, it lands in sys.modules and the check below sees it.
FAKE_MODULE = "import sys\nsys.stderr.write('imported fake {name}\\n')\n"


def test_import_does_not_pull_in_torch_or_scipy(tmp_path):
    for name in ("torch", "scipy", "compressai", "constriction"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(FAKE_MODULE.format(name=name))
    script = textwrap.dedent(
        """
        import sys
        import featcodec
        featcodec.encode([1, 2], featcodec.CdfTables.gaussian([1.0]), 0)
        heavy = sorted(m for m in ("torch", "scipy", "compressai", "constriction") if m in sys.modules)
        print(",".join(heavy) or "none")
        """
    )
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    # A sanitizer build (tools/sanitize.sh) needs its runtime preloaded in children too.
    env.update({k: v for k, v in os.environ.items() if k in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")})
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "none", f"import featcodec imported {result.stdout.strip()}"
    # The fakes are importable in that environment, so the check above can fail.
    probe = subprocess.run([sys.executable, "-c", "import torch, sys; print('torch' in sys.modules)"],
                           capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert probe.stdout.strip() == "True"


def test_decode_error_is_a_value_error():
    assert issubclass(fc.DecodeError, ValueError)
    assert fc.DecodeError is featcodec._coding.DecodeError
    assert fc.DecodeError.__module__ == "featcodec"
    assert fc.DecodeError.__doc__
    with pytest.raises(ValueError):
        fc.decode(b"\x00", fc.CdfTables.gaussian([1.0]), 0, shape=(1,))


def test_version():
    assert isinstance(fc.__version__, str)
    assert fc.__version__ == importlib.metadata.version("featcodec")
    parts = fc.__version__.split(".")
    assert len(parts) >= 2 and all(p.isdigit() for p in parts[:2])


def test_public_names():
    for name in fc.__all__:
        assert hasattr(fc, name), name
    expected = {"CdfTables", "DEFAULT_CHUNK_SIZE", "DecodeError", "FORMAT_VERSION", "decode", "default_tail_mass",
                "encode", "information_content"}
    assert expected <= set(fc.__all__)
    assert fc.FORMAT_VERSION == 3
    assert fc.DEFAULT_CHUNK_SIZE & (fc.DEFAULT_CHUNK_SIZE - 1) == 0 and 16 <= fc.DEFAULT_CHUNK_SIZE <= 2**30
    assert all(0 < fc.default_tail_mass(p) < 1 for p in range(2, 17))


@pytest.mark.parametrize("module", [featcodec._tables, featcodec._coding, featcodec._family, featcodec._parametric, fc],
                         ids=lambda m: m.__name__)
def test_doctests(module):
    result = doctest.testmod(module, verbose=False, report=True, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    if module is not fc:
        assert result.attempted > 0, f"{module.__name__} has no doctest examples"


README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_example():
    """The ```python block of README.md runs as written (its asserts included)."""
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)
    assert blocks, "README.md has no python block"
    code = blocks[0]  # the numpy example; tests/split/test_readme_example.py runs the split one
    assert "fc.encode" in code and "fc.decode" in code
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(code, str(README), "exec"), namespace)
    # What the example computed is what it claims.
    y, tables, idx = namespace["y"], namespace["tables"], namespace["idx"]
    assert (fc.decode(fc.encode(y, tables, idx), tables, idx) == y).all()
    assert namespace["bits"] > 0
    assert fc.CdfTables.from_bytes(namespace["blob"]) == namespace["per_channel"]
