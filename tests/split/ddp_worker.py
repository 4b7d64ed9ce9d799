"""Trains the runner's bottleneck for a few steps and saves this rank's unit (run by test_distributed.py).

usage: python ddp_worker.py CONFIG OUT_FOLDER   (under torchrun for several processes)
"""

import pathlib
import sys

import torch

from featcodec.split.config import load_config
from featcodec.split.runner import Run, method_of


def main() -> None:
    torch.set_num_threads(1)
    config, out = load_config(sys.argv[1]), pathlib.Path(sys.argv[2])
    run = Run.build(config)
    method = method_of(config)
    trained = method.fit(run, method.fixed(run), out / f"fit{run.dist.world_size}")
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in trained.model.unit.state_dict().items()}
    save_file(state, str(out / f"unit_world{run.dist.world_size}_rank{run.dist.rank}.safetensors"))
    if run.dist.active:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
