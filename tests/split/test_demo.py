"""`featcodec demo --quick` end to end, and the command's torch-free start."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from featcodec.split import demo


def test_quick_demo_codes_real_bitstreams_and_caches_the_classifier(tmp_path, capsys):
    cache, out = tmp_path / "cache", tmp_path / "out"
    assert demo.main(["--quick", "--cache-dir", str(cache), "--out", str(out), "--no-progress", "--search", "2"]) == 0
    printed = capsys.readouterr().out
    assert "true bpp" in printed and "supervised" in printed and "unsupervised" in printed
    assert "Pareto frontier" in printed and printed.count(" C_r=") == 2 and " * C_r=" in printed
    png = out / "demo_accuracy_vs_bpp.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (cached,) = cache.glob("digits_cnn_*.pt")
    stamp = cached.stat().st_mtime_ns
    results = demo.run(demo.DemoSettings.quick(), cache, out, progress=False)
    assert cached.stat().st_mtime_ns == stamp  # trained once
    assert {(r.point.objective, r.point.rate) for r in results} == {
        (o, r) for o in ("supervised", "unsupervised") for r in ("l1", "hyperprior")}
    for r in results:
        assert 0 <= r.coded_accuracy <= 1 and r.true_bpp > 0 and r.prior_bpp > 0
        assert r.one_message_bpp <= r.true_bpp  # one header and flush instead of one per image
        assert (r.estimator_bpp is None) == (r.point.rate == "l1")


def test_digits_are_local_and_upscaled():
    train, test = demo.digits_datasets()
    assert train.tensors[0].shape[1:] == (3, demo.IMAGE_SIZE, demo.IMAGE_SIZE)
    assert len(train) + len(test) == 1797
    assert float(train.tensors[0].min()) >= -1 and float(train.tensors[0].max()) <= 1


def test_cli_imports_torch_only_for_the_demo(tmp_path):
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('fake torch imported')\n")
    script = textwrap.dedent("""
        import sys
        import featcodec, featcodec.cli
        assert featcodec.cli.main([]) == 0
        assert featcodec.cli.main(["nope"]) == 2
        print(sorted(m for m in ("torch", "featcodec.split", "featcodec.entropy") if m in sys.modules))
        """)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "usage: featcodec" in result.stdout and "demo" in result.stdout
