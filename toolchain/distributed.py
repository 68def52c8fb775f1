"""Data-parallel training over several processes (torch.distributed, DDP).

    torchrun --nproc-per-node 2 -m mtsnn.train --epochs 5 -o model.pt       # 2 CPU processes
    torchrun --nproc-per-node 4 -m mtsnn.train --device cuda -o model.pt   # 4 GPUs, one each

``DistContext.from_environment()`` reads what torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and joins the process group: gloo on the CPU, nccl
on CUDA (each process on cuda:LOCAL_RANK). ``toolchain.train.train_model`` then

* shards the data: every rank draws the same epoch order from the seeded generator, pads it to
  a multiple of the world size by wrapping round and takes every world_size-th sample from its
  rank on (what ``torch.utils.data.DistributedSampler`` does, without copying any data);
* wraps the model in ``DistributedDataParallel``: the gradients are averaged over the ranks
  after every backward, so every rank makes the same Adam step and the models stay identical;
* reduces the epoch's loss, training accuracy and test accuracy (each rank evaluates its share
  of the test set) with one all-reduce;
* writes checkpoints and prints log lines on rank 0 only (the other ranks wait at a barrier
  while it writes).

The global batch is world_size x --batch-size (each rank takes --batch-size per step).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from mtsnn.hw_model.errors import InputError

__all__ = ["DistContext", "under_torchrun"]


def under_torchrun() -> bool:
    """True when this process was started by torchrun (or any launcher that sets WORLD_SIZE)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def _env_int(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise InputError(f"{name}: expected the launcher's integer (run under torchrun), found nothing")
        return default
    try:
        return int(value)
    except ValueError:
        raise InputError(f"{name}: expected an integer, found {value!r}") from None


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    @classmethod
    def from_environment(cls, device: torch.device) -> "DistContext":
        """Join the process group torchrun prepared. ``device``: the resolved ``--device`` (CUDA:
        this process takes cuda:LOCAL_RANK and nccl; CPU: gloo)."""
        rank, world, local = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK", 0)
        if not (world >= 1 and 0 <= rank < world):
            raise InputError(f"RANK/WORLD_SIZE: expected 0 <= RANK < WORLD_SIZE, found {rank}/{world}")
        if device.type == "cuda":
            count = torch.cuda.device_count()
            if local >= count:
                raise InputError(f"LOCAL_RANK: expected a CUDA device per process (0..{count - 1}), found {local}")
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
            backend = "nccl"
        else:
            backend = "gloo"
        if not torch_dist.is_initialized():
            init = dict(backend=backend)
            if backend == "nccl":
                init["device_id"] = device
            torch_dist.init_process_group(**init)
        return cls(rank=rank, world_size=world, local_rank=local, device=device, backend=backend)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        if self.device.type == "cuda":
            return DistributedDataParallel(model, device_ids=[self.device.index], output_device=self.device.index)
        return DistributedDataParallel(model)

    def sum_all(self, *values):
        """Sum numbers and 0-dim tensors over the ranks in one all-reduce; same types back."""
        packed = torch.stack([torch.as_tensor(v, dtype=torch.float64).to(self.device).reshape(())
                              for v in values])
        torch_dist.all_reduce(packed, op=torch_dist.ReduceOp.SUM)
        out = []
        for value, total in zip(values, packed):
            if isinstance(value, torch.Tensor):
                out.append(total.to(value.dtype))
            else:
                out.append(type(value)(total.item()))
        return tuple(out)

    def barrier(self) -> None:
        if self.device.type == "cuda":
            torch_dist.barrier(device_ids=[self.device.index])
        else:
            torch_dist.barrier()

    def close(self) -> None:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()
