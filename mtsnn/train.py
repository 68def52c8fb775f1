"""``python -m mtsnn.train``: training in one process, or data-parallel under torchrun.

    python -m mtsnn.train --epochs 5 -o model.pt                          # = mtsnn train
    torchrun --nproc-per-node 2 -m mtsnn.train --epochs 5 -o model.pt     # DDP, 2 CPU processes (gloo)
    torchrun --nproc-per-node 8 -m mtsnn.train --device cuda -o model.pt  # DDP, 8 GPUs (nccl)

It takes every option of ``mtsnn train`` (docs/cli.md, docs/training.md). Under torchrun each
process trains on its shard of the data (``mtsnn.toolchain.distributed``); rank 0 alone writes
the checkpoint (after every epoch, resumable with the same number of processes) and prints;
an error is printed once, by rank 0, and every rank exits with its code. Without --threads each
process takes an equal share of the CPU cores.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Sequence

from mtsnn import cli
from mtsnn.hw_model.errors import EXIT_OK, InputError, MtsnnError

__all__ = ["main"]


def _run(args, rank_box: list) -> int:
    from mtsnn import api
    from mtsnn.toolchain.device import resolve_device
    from mtsnn.toolchain.distributed import DistContext, under_torchrun

    if not under_torchrun():
        return cli.run_train(args)
    import torch

    if not hasattr(args, "threads"):
        share = max(1, (os.cpu_count() or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
        torch.set_num_threads(share)
    device = resolve_device(getattr(args, "device", "auto"))
    dist = DistContext.from_environment(device)
    rank_box.append(dist.rank)
    try:
        options = {k: v for k, v in vars(args).items() if k not in ("no_progress", "resume", "command", "device")}
        progress = not args.no_progress and dist.rank == 0
        if args.resume:
            conflicting = sorted(k for k in vars(args) if k not in cli._RESUME_KEEPS)
            if conflicting:
                raise InputError(f"--resume: continues the recorded run with its own settings; expected no other "
                                 f"training option, found --{conflicting[0].replace('_', '-')}")
            run = api.resume(args.resume, out=getattr(args, "out", None), threads=getattr(args, "threads", None),
                             compile=getattr(args, "compile", "auto"), progress=progress, dist=dist)
        else:
            run = api.train(**options, progress=progress, dist=dist)
        if dist.rank == 0:
            print(f"test accuracy (integer-exact forward, {dist.world_size} processes): {run.test_accuracy:.4f} on "
                  f"{run.test_samples} samples after {run.seconds:.1f} s of training")
            print(f"saved {run.checkpoint}")
        return EXIT_OK
    finally:
        dist.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli._parser("mtsnn.train", "Train an MT-SNN (data-parallel under torchrun)")
    cli.add_train_arguments(parser)
    args = cli._guarded_parse(parser, argv)
    if isinstance(args, int):
        return args
    rank_box: list = []
    quiet = int(os.environ.get("RANK", "0")) != 0

    def guarded() -> int:  # one error line for the whole run: rank 0's (every rank gets the same error)
        try:
            return _run(args, rank_box)
        except MtsnnError as exc:
            if quiet:
                return exc.exit_code
            raise

    return cli.run_command("mtsnn.train", guarded)


class _CallableTrainModule(types.ModuleType):
    """Importing this module makes it the attribute ``mtsnn.train``, where the API verb lives:
    called, it is that verb (``mtsnn.api.train``), as ``mtsnn.export`` is both package and verb."""

    def __call__(self, *args, **kwargs):
        from mtsnn.api import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableTrainModule

if __name__ == "__main__":
    sys.exit(main())
