"""`featcodec demo --quick` end to end, and the command's torch-free start."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import torch

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
    test_images = len(demo.digits_datasets()[1])
    for r in results:
        # Lossless coding: the decoded features give the eval forward's predictions (one image at a time
        # against a batch may flip a borderline argmax, hence two images' worth of slack).
        assert abs(r.coded_accuracy - r.accuracy) <= 2 / test_images
        # True bits cover the coding prior's information content plus a bounded per-message cost.
        assert r.prior_bpp <= r.true_bpp <= r.prior_bpp + 24 * 8 / demo.IMAGE_SIZE ** 2
        assert r.one_message_bpp <= r.true_bpp  # one header and flush instead of one per image
        assert (r.estimator_bpp is None) == (r.point.rate == "l1")


def test_decoded_features_are_the_eval_forwards_and_bits_are_the_bytes(tmp_path):
    from torch.utils.data import TensorDataset

    from featcodec.codec import FeatureCodec
    from featcodec.entropy import quantize

    settings = demo.DemoSettings.quick()
    train, test = demo.digits_datasets()
    classifier = demo.trained_classifier(train, tmp_path, settings.classifier_epochs, progress=False)
    head, tail = demo.split(classifier, demo.SPLIT_POINT)
    train_features, test_features = demo.head_features(head, train), demo.head_features(head, test)
    point = demo.DemoPoint("supervised", "l1", 1.0, 0.5)
    model = demo.train_unit(tail, point, train_features, settings, progress=False)
    prior = demo.fit_coding_prior(model.unit, train_features, point.q_step, settings, progress=False)
    codec = FeatureCodec(model.unit.encoder, model.unit.decoder, prior, point.q_step)
    few = TensorDataset(*(t[:12] for t in test_features.tensors))
    features = few.tensors[0]
    with torch.no_grad():
        expected = model.unit.decode(quantize(model.unit.encode(features), point.q_step, "round"), (8, 8))
        for i in range(len(features)):
            assert torch.equal(codec.decode(codec.encode(features[i:i + 1])), expected[i:i + 1])
    accuracy, bpp = demo.code_test_set(codec, tail, few)
    assert bpp == sum(8 * len(codec.encode(features[i:i + 1])) for i in range(12)) / (12 * demo.IMAGE_SIZE ** 2)
    with torch.no_grad():
        hits = sum(int(tail(expected[i:i + 1]).argmax(1).item() == int(few.tensors[1][i])) for i in range(12))
    assert accuracy == hits / 12


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
