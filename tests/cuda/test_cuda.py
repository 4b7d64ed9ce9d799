"""featcodec.cuda: availability, errors without a GPU, and (with a GPU)
bit-exact equality with the CPU builders over >= 1e6 random rows/elements
of every kind, extreme scales and means included."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import featcodec as fc
import featcodec.cuda as fcc

gpu = pytest.mark.skipif(not fcc.is_available(), reason="no CUDA device")
FAMILIES = ["gaussian", "laplace", "logistic"]


def test_import_featcodec_does_not_load_cuda():
    code = "import sys, featcodec; print(any(m.startswith(('featcodec._cuda', 'torch')) for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_is_available_is_a_bool_and_never_raises():
    assert isinstance(fcc.is_available(), bool)
    assert (fcc.unavailable_reason() is None) == fcc.is_available()


@pytest.mark.skipif(shutil.which("nvcc") is None or os.environ.get("FEATCODEC_CUDA") == "OFF",
                    reason="no nvcc, or built with FEATCODEC_CUDA=OFF: kernels not built")
def test_kernels_are_built_when_nvcc_is_present():
    import featcodec._cuda  # noqa: F401  (AUTO builds them; importing needs no driver)


@pytest.mark.skipif(fcc.is_available(), reason="a CUDA device is present")
def test_clear_error_without_a_device():
    for call in (lambda: fcc.gaussian([1.0]), lambda: fcc.scale_index([1.0], [1.0]),
                 lambda: fcc.parametric_intervals([0], "gaussian", 0.0, 1.0), fcc.device_name):
        with pytest.raises(RuntimeError, match="not available"):
            call()


# --- with a GPU --------------------------------------------------------------------


def extreme_scales(rng, n):
    return np.concatenate([np.exp(rng.uniform(np.log(2.0**-20), np.log(2.0**20), n - 6)),
                           [2.0**-20, 2.0**20, 1.0, 0.5, 1e-3, 3e3]])


@gpu
@pytest.mark.parametrize("family", FAMILIES)
def test_element_intervals_bit_exact(family):
    rng = np.random.default_rng(7)
    n = 1_000_000
    scales = extreme_scales(rng, n)
    means = np.concatenate([rng.uniform(-50, 50, n // 2), rng.uniform(-(2.0**30), 2.0**30, n - n // 2 - 2),
                            [2.0**30, -(2.0**30)]])
    rng.shuffle(means)
    values = np.round(means + rng.normal(0, 1, n) * np.minimum(scales, 1e4) * 2).clip(-(2**31), 2**31 - 1)
    values[::97] = rng.integers(-(2**31), 2**31 - 1, values[::97].size)
    values = values.astype(np.int32)
    for precision in (16, 12, 2):
        start, freq = fc.parametric_intervals(values, family, means, scales, precision)
        packed = fcc.parametric_intervals(values, family, means, scales, precision)
        np.testing.assert_array_equal(packed, start | freq << 16)
    f32 = fcc.parametric_intervals(values, family, means.astype(np.float32), scales.astype(np.float32))
    start, freq = fc.parametric_intervals(values, family, means.astype(np.float32), scales.astype(np.float32))
    np.testing.assert_array_equal(f32, start | freq << 16)


@gpu
def test_scale_index_bit_exact():
    rng = np.random.default_rng(8)
    table = np.exp(np.linspace(np.log(0.11), np.log(256), 64))
    s64 = np.concatenate([np.exp(rng.uniform(-5, 7, 1_000_000)), table, np.nextafter(table, 0), [0, np.inf, -1]])
    for s in (s64, s64.astype(np.float32)):
        np.testing.assert_array_equal(fcc.scale_index(s, table), fc.scale_index(s, table))
    with pytest.raises(ValueError, match="NaN"):
        fcc.scale_index([np.nan], table)


@gpu
@pytest.mark.parametrize("family", FAMILIES)
def test_parametric_tables_bit_exact(family):
    rng = np.random.default_rng(9)
    scales = np.concatenate([np.exp(rng.uniform(np.log(1e-3), np.log(3e3), 2000)), [1e-300, 1e300, 5e-324]])
    for precision, tail in ((16, None), (12, 1e-9), (2, None), (9, 0.3)):
        cpu = getattr(fc.CdfTables, family)(scales, precision, tail)
        assert getattr(fcc, family)(scales, precision, tail).to_bytes() == cpu.to_bytes()


@gpu
def test_pmf_tables_bit_exact():
    rng = np.random.default_rng(10)
    total = 0
    for width, rows, precision in ((4, 300_000, 16), (16, 300_000, 12), (40, 300_000, 16), (300, 20_000, 16),
                                   (2, 100_000, 1), (7, 50_000, 3)):
        pmf = rng.dirichlet(np.full(width, 0.3), size=rows) * rng.choice([0.3, 1.0, 1.7], size=(rows, 1))
        pmf[rng.random(pmf.shape) < 0.1] = 0.0
        pmf[:, 0] += 1e-300
        pmf[::101] *= 1e300
        lengths = rng.integers(1, width + 1, rows)
        offsets = rng.integers(-1000, 1000, rows)
        cpu = fc.CdfTables.from_pmf(pmf, offsets, lengths, precision)
        assert fcc.tables_from_pmf(pmf, offsets, lengths, precision).to_bytes() == cpu.to_bytes()
        lengths = np.minimum(lengths, 2**precision - 1)
        cpu = fc.CdfTables.from_pmf(pmf, offsets, lengths, precision, support="given")
        assert fcc.tables_from_pmf(pmf, offsets, lengths, precision, support="given").to_bytes() == cpu.to_bytes()
        total += rows
    assert total >= 1_000_000


@gpu
def test_wide_pmf_rows_bit_exact():
    # Rows far wider than their mass: the support search moves a long way.
    rng = np.random.default_rng(11)
    b = np.exp(rng.uniform(np.log(0.05), np.log(300.0), 3000))
    k = np.arange(-1000, 1001, dtype=np.float64)
    pmf = np.exp(-np.abs(k)[None] / b[:, None])
    pmf /= pmf.sum(axis=1, keepdims=True) * rng.choice([1.0, 1.01, 0.9], size=(len(b), 1))
    offsets = np.full(len(b), -1000)
    lengths = np.full(len(b), k.size)
    for precision in (16, 10, 4):
        cpu = fc.CdfTables.from_pmf(pmf, offsets, lengths, precision)
        assert fcc.tables_from_pmf(pmf, offsets, lengths, precision).to_bytes() == cpu.to_bytes()


@gpu
def test_pmf_errors_name_the_row():
    with pytest.raises(ValueError, match="row 1: pmf has a negative value"):
        fcc.tables_from_pmf(np.array([[0.5, 0.5], [0.5, -1.0]]), [0, 0], [2, 2])


@gpu
def test_device_arrays_and_streams():
    torch = pytest.importorskip("torch")
    table = np.exp(np.linspace(np.log(0.11), np.log(256), 64))
    s = torch.rand(1000, device="cuda", dtype=torch.float64) * 300
    out = torch.empty(1000, device="cuda", dtype=torch.int32)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        fcc.scale_index(s, table, out=out, stream=stream)
    stream.synchronize()
    np.testing.assert_array_equal(out.cpu().numpy(), fc.scale_index(s.cpu().numpy(), table))
