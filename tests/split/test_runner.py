"""`featcodec search / train / evaluate` on digits: outputs, honest bits, shared studies, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import optuna
import pytest
import torch

from featcodec import cli
from featcodec.split import runner
from featcodec.split.config import load_config
from featcodec.split.runner import read_csv

from .runner_configs import digits_config

VAL = 48          # validation images in the small configs
PIXELS = 32 * 32  # digits are upscaled to 32x32


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These tests code one image at a time through tiny networks: on cores shared with other jobs a
    second thread's hand-offs cost far more than it computes (the search here ran 9 times faster)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _check_row(row):
    metric, forward = float(row["metric"]), float(row["forward_metric"])
    true_bpp, prior_bpp = float(row["true_bpp"]), float(row["prior_bpp"])
    # Lossless coding: through the bitstreams the predictions are the eval forward's (one image at a
    # time against a batch may flip a borderline argmax).
    assert abs(metric - forward) <= 2 / VAL
    # The true bits cover the prior's information content plus a bounded per-message cost.
    assert prior_bpp <= true_bpp <= prior_bpp + 24 * 8 / PIXELS


@pytest.fixture(scope="module")
def searched(tmp_path_factory, digits_cache):
    folder = tmp_path_factory.mktemp("search")
    config = digits_config(folder)
    out = folder / "out"
    assert cli.main(["search", str(config), "--out", str(out), "--threads", "1"]) == 0
    return config, out


def test_search_writes_the_run_folder_from_the_study(searched):
    config, out = searched
    study = optuna.load_study(study_name="digits_small", storage=f"sqlite:///{out / 'study.db'}")
    assert len(study.trials) == 2
    rows = read_csv(out / "trials.csv")
    trials = [r for r in rows if r["kind"] == "trial"]
    baselines = [r for r in rows if r["kind"] == "baseline"]
    assert len(trials) == 2 and {r["codec"] for r in baselines} == {"jpeg"} and len(baselines) == 2
    for row in trials:
        _check_row(row)
        assert float(row["estimated_bpp"]) > 0  # the neural estimator's bpp
    frontier = read_csv(out / "frontier.csv")
    assert {int(r["trial"]) for r in frontier} == {t.number for t in study.best_trials}
    assert [float(r["true_bpp"]) for r in frontier] == sorted(float(r["true_bpp"]) for r in frontier)
    assert (out / "metric_vs_bpp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from featcodec.bank import RateBank

    bank = RateBank.load(out / "bank" / "frontier.fcbank")
    assert bank.feature_shape == (64, 8, 8) and bank.split == "features.block2"
    assert [u.bpp for u in bank.units] == [float(r["true_bpp"]) for r in frontier]
    units = json.loads((out / "bank" / "units.json").read_text())
    assert [u["trial"] for u in units] == [int(r["trial"]) for r in frontier]
    for trial in study.trials:  # the draws came from the digits preset
        assert trial.params["channels"] in (4, 8, 16) and trial.params["stride"] in (1, 2)
        assert -2 <= trial.params["log10_lambda"] <= 1 and 0.5 <= trial.params["q_step"] <= 2


def test_a_saved_trial_decodes_to_the_eval_forwards_features_and_its_bits_are_the_bytes(searched):
    from featcodec.entropy import quantize

    config, out = searched
    run = runner.Run.build(load_config(config))
    method = runner.method_of(run.config)
    row = read_csv(out / "frontier.csv")[0]
    folder = out / "trials" / f"{int(row['trial']):04d}"
    trained = method.load(run, json.loads((folder / "params.json").read_text()), folder)
    codec = method.codec(trained)
    images = torch.stack([run.data.val[i][0] for i in range(VAL)])
    with torch.no_grad():
        features = run.head(images)
        unit = trained.model.unit
        expected = unit.decode(quantize(unit.encode(features), trained.model.q_step, "round"), (8, 8))
        sizes = []
        for i in range(VAL):
            data = codec.encode(features[i:i + 1])
            sizes.append(len(data))
            assert torch.equal(codec.decode(data), expected[i:i + 1])
    assert float(row["true_bpp"]) == pytest.approx(8 * sum(sizes) / (VAL * PIXELS), rel=1e-12)
    from featcodec.bank import RateBank

    # The bank sends the same messages, byte for byte in length, and decodes them to the same features.
    bank = RateBank.load(out / "bank" / "frontier.fcbank")
    with torch.no_grad():
        for i in range(4):
            data = bank.encode(features[i:i + 1], 0)
            assert len(data) == sizes[i]
            decoded, unit_id = bank.decode(data)
            assert unit_id == 0 and torch.equal(decoded, expected[i:i + 1])
    measured = method.measure(run, trained)  # the reloaded unit measures what the search recorded
    assert measured.true_bpp == pytest.approx(float(row["true_bpp"]), rel=1e-12)
    assert abs(measured.metric - float(row["metric"])) <= 1 / VAL


def test_resume_adds_trials_to_the_study(searched):
    config, out = searched
    assert cli.main(["search", str(config), "--out", str(out), "--trials", "1", "--no-baselines"]) == 0
    study = optuna.load_study(study_name="digits_small", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert len([r for r in read_csv(out / "trials.csv") if r["kind"] == "trial"]) == 3
    # Trial k's point depends on (seed, k) only: the resumed trial is new, not a repeat.
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 3


def test_two_workers_share_one_sqlite_study(tmp_path, digits_cache):
    config = digits_config(tmp_path, limit_train=96)
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    command = [sys.executable, "-m", "featcodec.cli", "search", str(config), "--trials", "1", "--storage", storage,
               "--study", "shared", "--no-baselines", "--threads", "1"]
    env = {**os.environ, "XDG_CACHE_HOME": str(digits_cache)}
    workers = [subprocess.Popen(command + ["--out", str(tmp_path / f"worker{i}")], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for i in range(2)]
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr[-3000:]
    study = optuna.load_study(study_name="shared", storage=storage)
    assert sorted(t.number for t in study.trials) == [0, 1]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    # Each worker's outputs come from the whole study, whichever worker finished last.
    best = {t.number for t in study.best_trials}
    last = max(workers and [tmp_path / "worker0", tmp_path / "worker1"],
               key=lambda p: (p / "frontier.csv").stat().st_mtime_ns)
    assert {int(r["trial"]) for r in read_csv(last / "frontier.csv")} == best
    assert len(read_csv(last / "trials.csv")) == 2


def test_train_then_evaluate(tmp_path, digits_cache):
    config = digits_config(tmp_path, rate="l1", limit_train=96, codecs="[]")
    out = tmp_path / "out"
    assert cli.main(["train", str(config), "--out", str(out)]) == 0
    (row,) = read_csv(out / "train.csv")
    _check_row(row)
    assert row["estimated_bpp"] == ""  # the L1 proxy is not in bits
    assert (out / "unit" / "unit.safetensors").exists() and (out / "unit" / "params.json").exists()
    assert cli.main(["evaluate", str(config), "--out", str(out)]) == 0
    (again,) = read_csv(out / "evaluate.csv")
    assert float(again["true_bpp"]) == pytest.approx(float(row["true_bpp"]), rel=1e-12)


def test_methods_are_pluggable_by_name(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "METHODS", dict(runner.METHODS))

    class Other(runner.BottleneckMethod):
        pass

    runner.register_method("other", Other)
    config = load_config(digits_config(tmp_path))
    config.train.method = "other"
    assert isinstance(runner.method_of(config), Other)
    config.train.method = "missing"
    with pytest.raises(ValueError, match="unknown method"):
        runner.method_of(config)
    with pytest.raises(ValueError, match="already registered"):
        runner.register_method("bottleneck", Other)


def test_trial_seeded_sampler_draws_per_trial():
    space = runner.TrialSeededRandomSampler(3)
    one = optuna.create_study(directions=["maximize", "minimize"], sampler=space)
    other = optuna.create_study(directions=["maximize", "minimize"], sampler=runner.TrialSeededRandomSampler(3))
    from featcodec.split import PRESETS

    first = [PRESETS["cvpr2023-classification-supervised"].suggest(one.ask()) for _ in range(4)]
    second = [PRESETS["cvpr2023-classification-supervised"].suggest(other.ask()) for _ in range(4)]
    assert first == second and len(set(first)) == 4
    for point in first:
        assert point.channels in (32, 64, 96, 128) and point.stride in (2, 4, 6)
        assert 1e-9 <= point.lam <= 1e-6 and 0.5 <= point.q_step <= 10
