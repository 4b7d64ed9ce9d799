"""DDP on CPUs: two gloo processes train the unit one process would with the same global batch."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import torch

from .runner_configs import digits_config

WORKER = pathlib.Path(__file__).with_name("ddp_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args, tmp_path, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update(env_extra or {})
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path, digits_cache):
    # L1 rate with the straight-through quantizer: no random noise, so the runs are comparable.
    config = digits_config(tmp_path, rate="l1", limit_train=96, batch_size=32)
    env = {"XDG_CACHE_HOME": str(digits_cache)}
    _run([sys.executable, str(WORKER), str(config), str(tmp_path)], tmp_path, env)
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
          "--master-port", str(_free_port()), str(WORKER), str(config), str(tmp_path)], tmp_path, env)
    from safetensors.torch import load_file

    single = load_file(str(tmp_path / "unit_world1_rank0.safetensors"))
    ranks = [load_file(str(tmp_path / f"unit_world2_rank{r}.safetensors")) for r in (0, 1)]
    assert set(single) == set(ranks[0]) == set(ranks[1])
    for key, value in single.items():
        if not value.is_floating_point():
            assert torch.equal(value, ranks[0][key]) and torch.equal(value, ranks[1][key]), key
            continue
        scale = float(value.abs().max()) or 1.0
        for rank in ranks:  # summation order differs across processes: relative to the tensor's magnitude
            assert float((rank[key] - value).abs().max()) <= 1e-4 * scale, key
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    # Training moved the unit, so the agreement is not that of untouched initial weights.
    from featcodec.split import make_unit

    torch.manual_seed(0)
    initial = make_unit("dws", 64, 8, 2).state_dict()
    assert not torch.equal(initial["encoder.layers.1.conv.weight"], single["encoder.layers.1.conv.weight"])
    assert not torch.equal(initial["encoder.layers.1.bn.running_mean"], single["encoder.layers.1.bn.running_mean"])
    # Only rank 0 wrote the training checkpoint.
    assert (tmp_path / "fit2" / "train.pt").exists()
