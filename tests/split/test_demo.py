"""`featcodec demo --quick` end to end through the runner: the outputs, honest bits, decoded features."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from featcodec.split import demo
from featcodec.split.search import pareto_frontier
from featcodec.split.units import make_unit, parameter_count

PIXELS = demo.IMAGE_SIZE ** 2


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These tests code one image at a time through tiny networks: on cores shared with other jobs a
    second thread's hand-offs cost far more than it computes (the search here ran 9 times faster)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def quick(tmp_path_factory, digits_cache):
    out = tmp_path_factory.mktemp("demo")
    assert demo.main(["--quick", "--out", str(out), "--no-progress"]) == 0
    return out, json.loads((out / "demo.json").read_text())


def test_quick_demo_writes_every_comparison(quick):
    out, result = quick
    settings = demo.DemoSettings.quick()
    assert (out / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (out / "summary.md").read_text()
    for comparison in demo.SEARCHES:
        assert comparison.label in summary
        rows = result["trials"][comparison.name]
        assert len(rows) == settings.trials
        # The frontier is the study's Pareto set of (accuracy, true bpp).
        front = pareto_frontier([(float(r["metric"]), float(r["true_bpp"])) for r in rows])
        assert sorted(int(rows[i]["trial"]) for i in front) == sorted(
            int(r["trial"]) for r in result["frontiers"][comparison.name])
        for row in rows:
            assert row["objective"] == comparison.objective and row["rate"] == comparison.rate
            assert (row["estimated_bpp"] is None) == (comparison.rate == "l1")
    # Equal budgets: every search trained the same (C_r, S, lambda, Q) draws.
    draws = [[(r["channels"], r["stride"], r["lam"], r["q_step"]) for r in result["trials"][c.name]]
             for c in demo.SEARCHES]
    assert draws[0] == draws[1] == draws[2]
    assert [r["unit"] for r in result["topologies"]] == list(demo.TOPOLOGIES)
    channels, stride, _, _ = settings.topology_point
    for row in result["topologies"]:
        assert int(float(row["parameters"])) == parameter_count(make_unit(row["unit"], 64, channels, stride))
    jpeg = sorted((int(r["quality"]), float(r["true_bpp"])) for r in result["baselines"] if r["codec"] == "jpeg")
    assert len(jpeg) == 2 and jpeg[0][1] < jpeg[1][1]


def test_every_row_is_coded_losslessly_and_counts_its_bytes(quick):
    _, result = quick
    val = demo.DemoSettings.quick().limit_val
    rows = [r for rows in result["trials"].values() for r in rows] + result["topologies"]
    for row in rows:
        metric, forward = float(row["metric"]), float(row["forward_metric"])
        # Through the bitstreams the predictions are the eval forward's (one image at a time against
        # a batch may flip a borderline argmax): a codec that garbled the features would not match.
        assert abs(metric - forward) <= 2 / val
        # True bits: the coding prior's information content plus a bounded per-message cost.
        true_bpp, prior_bpp = float(row["true_bpp"]), float(row["prior_bpp"])
        assert prior_bpp <= true_bpp <= prior_bpp + 16 * 8 / PIXELS


def test_a_topology_unit_decodes_to_its_features_and_its_bpp_is_its_bytes(quick, digits_cache):
    from featcodec.entropy import quantize
    from featcodec.split import runner

    out, result = quick
    settings = demo.DemoSettings.quick()
    base = demo.build_run(settings, demo.default_cache_dir(), progress=False)
    method = runner.method_of(base.config)
    folder = out / "topologies" / "dws" / "unit"
    trained = method.load(base, json.loads((folder / "params.json").read_text()), folder)
    codec = method.codec(trained)
    images = torch.stack([base.data.val[i][0] for i in range(settings.limit_val)])
    with torch.no_grad():
        features = base.head(images)
        unit = trained.model.unit
        expected = unit.decode(quantize(unit.encode(features), trained.model.q_step, "round"), (8, 8))
        sizes = []
        for i in range(len(images)):
            data = codec.encode(features[i:i + 1])
            sizes.append(len(data))
            assert torch.equal(codec.decode(data), expected[i:i + 1])
    (row,) = [r for r in result["topologies"] if r["unit"] == "dws"]
    assert float(row["true_bpp"]) == pytest.approx(8 * sum(sizes) / (len(images) * PIXELS), rel=1e-12)


def test_a_high_rate_unit_keeps_the_networks_accuracy(tmp_path, digits_cache):
    """At a high rate (no spatial reduction, a fine step, a large lambda) the coded accuracy is at least
    the network's, within a few images (supervised training may adapt the cut features to the labels
    and exceed a weak network): wrong features or a unit that learned nothing fall far below."""
    from featcodec.split import runner
    from featcodec.split.train import evaluate

    settings = demo.DemoSettings(epochs=5, batch_size=16, prior_epochs=1, classifier_epochs=2, limit_train=384,
                                 limit_val=96, topology_point=(16, 1, 10.0, 0.25))
    base = demo.build_run(settings, demo.default_cache_dir(), progress=False)
    config = demo.demo_config(settings, demo.SEARCHES[1])  # the L1 proxy: the fastest to train
    row = runner.train(config, tmp_path, run=runner.Run(config, base.dist, base.network, base.head, base.tail,
                                                         base.data, base.feature_shape))
    reference = evaluate(base.network, base.val_loader())["accuracy"]
    assert row is not None and float(row["metric"]) >= reference - 6 / 96
    assert abs(float(row["metric"]) - float(row["forward_metric"])) <= 2 / 96
    assert float(row["true_bpp"]) > 1.0  # 16 x 8 x 8 symbols at a fine step


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


def test_demo_options_are_checked():
    with pytest.raises(SystemExit):
        demo.main(["--quick", "--full"])
