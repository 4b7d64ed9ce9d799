"""Training on several processes: torchrun's environment, DDP, and batch norm over the global batch.

``featcodec train`` and ``featcodec search`` run unchanged under ``torchrun
--nproc-per-node N``: :func:`init_from_env` reads ``RANK``/``WORLD_SIZE``/
``LOCAL_RANK`` and joins the process group (NCCL on GPUs, gloo on CPUs);
without them the run is one process and nothing here communicates.

Every rank takes ``batch_size / world_size`` items of each global batch (a
``DistributedSampler``: rank r reads items r, r + N, ... of the epoch's
permutation, so the union over ranks of step k is exactly the one-process
run's step k).  DistributedDataParallel averages the gradients, and the
unit's batch norms normalize over the global batch (:class:`GlobalBatchNorm2d`),
so N processes train the parameters one process would with the same global
batch, up to float summation order.  Only rank 0 writes files.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Distributed:
    """Where this process stands: its rank, the world's size, its device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and runs the measurements."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def local_batch(self, global_batch: int) -> int:
        """The items of one global batch this rank takes."""
        if global_batch % self.world_size:
            raise ValueError(f"batch size {global_batch} is not divisible by the {self.world_size} processes")
        return global_batch // self.world_size

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def init_from_env(device: Optional[str] = None, timeout_s: float = 1800.0) -> Distributed:
    """Joins torchrun's process group if its variables are set; one process otherwise.

    ``device``: "cpu", "cuda" or None (CUDA when available).  The backend is
    NCCL for CUDA and gloo for CPU.
    """
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    else:
        chosen = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
    return Distributed(rank, world_size, chosen)


def shutdown(context: Distributed) -> None:
    if context.active and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(context: Distributed, value: object) -> object:
    """Rank 0's ``value`` on every rank (small picklable values only: hyper-parameters, paths)."""
    if not context.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the global batch of all ranks.

    One process: exactly ``nn.BatchNorm2d``.  Several: the per-channel sums
    of x and x^2 are all-reduced (differentiably), so the normalization and
    its gradient are those of one process seeing the whole batch.  Works
    with gloo on CPUs, where ``nn.SyncBatchNorm`` does not.  The state dict
    is BatchNorm2d's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        count = torch.tensor([float(x.shape[0] * x.shape[2] * x.shape[3])], device=x.device, dtype=x.dtype)
        moments = torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), count])
        moments = all_reduce(moments)
        channels = x.shape[1]
        total = moments[-1]
        mean = moments[:channels] / total
        variance = (moments[channels:2 * channels] / total - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                momentum = 0.1 if self.momentum is None else self.momentum
                unbiased = variance * (total / (total - 1).clamp_min(1))
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased.detach())
                if self.num_batches_tracked is not None:
                    self.num_batches_tracked.add_(1)
        shape = (1, channels, 1, 1)
        y = (x - mean.view(shape)) * torch.rsqrt(variance.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def global_batch_norm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm2d replaced in place by a :class:`GlobalBatchNorm2d` (same state)."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                            child.track_running_stats, device=_device_of(child))
            replacement.load_state_dict(child.state_dict())
            replacement.train(child.training)
            setattr(module, name, replacement)
        else:
            global_batch_norm(child)
    return module


def _device_of(module: nn.Module) -> torch.device:
    for tensor in list(module.parameters()) + list(module.buffers()):
        return tensor.device
    return torch.device("cpu")


__all__ = ["Distributed", "GlobalBatchNorm2d", "broadcast_object", "global_batch_norm", "init_from_env",
           "shutdown"]
