"""Coding tables live in the state_dict: fresh-process decoding, stale and mismatched tables."""

import subprocess
import sys
import textwrap

import pytest
import torch

from featcodec.entropy import FactorizedPrior, GaussianConditional, Hyperprior, StaleTablesError


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_saved_model_decodes_identically_in_a_fresh_process(tmp_path):
    torch.manual_seed(1)
    model = Hyperprior(6).eval()
    model.update_tables()
    y = torch.randn(2, 6, 7, 5) * 6
    data = model.compress(y, q_step=0.75)
    torch.save({"state": model.state_dict(), "data": data, "y_hat": model(y, q_step=0.75)[0], "y": y},
               tmp_path / "model.pt")
    # A fresh process builds a model with other random weights, loads the
    # checkpoint, never calls update_tables, and must decode and re-encode alike.
    out = _run(f"""
        import torch
        from featcodec.entropy import Hyperprior
        saved = torch.load({str(tmp_path / "model.pt")!r})
        torch.manual_seed(99)
        model = Hyperprior(6).eval()
        model.load_state_dict(saved["state"])
        print(torch.equal(model.decompress(saved["data"], saved["y_hat"].shape, q_step=0.75), saved["y_hat"]))
        print(model.compress(saved["y"], q_step=0.75) == saved["data"])
    """)
    assert out.split() == ["True", "True"]


def test_tables_older_than_the_parameters_raise():
    model = FactorizedPrior(3).eval()
    with pytest.raises(StaleTablesError, match="no coding tables"):
        model.compress(torch.zeros(1, 3, 2, 2))
    model.update_tables()
    data = model.compress(torch.ones(1, 3, 2, 2))
    with torch.no_grad():
        model.biases[0].add_(0.1)  # a training step's worth of change
    with pytest.raises(StaleTablesError, match="older than its parameters"):
        model.compress(torch.zeros(1, 3, 2, 2))
    with pytest.raises(StaleTablesError):
        model.decompress(data, (1, 3, 2, 2))
    model.auto_update_tables = True  # asked for: rebuild instead
    y = torch.randn(1, 3, 2, 2) * 3
    assert torch.equal(model.decompress(model.compress(y), y.shape), model(y)[0])


def test_a_checkpoint_saved_before_update_tables_says_so():
    state = FactorizedPrior(3).state_dict()
    model = FactorizedPrior(3)
    model.load_state_dict(state)
    with pytest.raises(StaleTablesError, match="update_tables"):
        model.compress(torch.zeros(1, 3, 1, 1))


def test_tables_of_another_model_are_stale():
    torch.manual_seed(0)
    a, b = FactorizedPrior(3), FactorizedPrior(3)
    a.update_tables()
    b.update_tables()
    state = a.state_dict()
    state["_tables_blob"] = b.state_dict()["_tables_blob"]
    state["_tables_fingerprint"] = b.state_dict()["_tables_fingerprint"]
    fresh = FactorizedPrior(3)
    fresh.load_state_dict(state)
    with pytest.raises(StaleTablesError):
        fresh.compress(torch.zeros(1, 3, 1, 1))


def test_tables_that_do_not_fit_the_module_raise_on_load():
    small = GaussianConditional(scale_table=[0.5, 1.0, 2.0])
    small.update_tables()
    state = small.state_dict()
    default = GaussianConditional()
    with pytest.raises(ValueError, match="3 rows, this module needs 64"):
        default.load_state_dict(state)
    coarse = FactorizedPrior(3, precision=12)
    coarse.update_tables()
    with pytest.raises(ValueError, match="precision 12"):
        FactorizedPrior(3).load_state_dict(coarse.state_dict())
    state = FactorizedPrior(3).state_dict()
    state["_tables_blob"] = torch.tensor([1, 2, 3], dtype=torch.uint8)
    with pytest.raises(ValueError, match="not valid"):
        FactorizedPrior(3).load_state_dict(state)


def test_update_tables_is_deterministic():
    torch.manual_seed(3)
    model = FactorizedPrior(5)
    first = model.update_tables().to_bytes()
    assert model.update_tables().to_bytes() == first
    clone = FactorizedPrior(5)
    clone.load_state_dict(model.state_dict())
    assert clone.tables.to_bytes() == first
