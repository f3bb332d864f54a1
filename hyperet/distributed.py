r"""Data-parallel training over several processes (``torchrun``): DDP, sharding, gathers.

``torchrun --nproc-per-node N -m hyperet.cli train ...`` starts N processes; the CLI calls
:func:`init_from_env` (gloo on CPU, NCCL on CUDA) and :func:`hyperet.train.train` then runs the
same recipe on every rank:

- every rank builds the same data and model (same seed) and draws the same *global* batch of
  ``batch_size`` indices from the seeded samplers; :func:`shard` keeps this rank's contiguous
  ``batch_size / N`` rows, so the data order - and resume - do not depend on N;
- the stage's loss runs inside :class:`~torch.nn.parallel.DistributedDataParallel`
  (:func:`data_parallel`), which averages the gradients over the ranks;
- per-token means are re-weighted so that the averaged gradient is that of the global mean
  (:func:`weighted_share`): with :math:`n_r` supervised tokens on rank :math:`r`,
  :math:`N = \sum_r n_r` and world size :math:`W`, rank :math:`r` returns
  :math:`\ell_r n_r W / N`; DDP's average of the gradients is then
  :math:`\nabla \sum_r n_r \ell_r / N`, the gradient of the one-process loss;
- contrastive losses see the global batch: :func:`gather_rows` concatenates every rank's rows
  (an all-gather whose backward sums the gradients of all ranks, as
  ``torch.distributed.nn.all_gather``), and
  every rank computes the full loss (so it equals the one-process loss; the gradient reaching
  rank :math:`r`'s rows is :math:`W` times its share, which DDP's average divides back);
- the logged loss is the average over ranks (:func:`average`), identical on every rank, so the
  non-finite guard stops every rank at the same step;
- rank 0 alone writes the run directory (:func:`on_main`, errors re-raised on every rank), and
  every rank waits for its checkpoints (:func:`barrier`).

With one process (no process group) every function here returns its input unchanged: a
one-process run is bitwise the run it was before this module existed.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

T = TypeVar("T")
#: How long a collective may wait for the other ranks before the run fails.
TIMEOUT = datetime.timedelta(minutes=10)


def launched_by_torchrun() -> bool:
    """Whether the environment describes a multi-process launch (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: torch.device) -> None:
    """Join the process group described by torchrun's environment (gloo on CPU, NCCL on CUDA).

    A no-op with one process or when a group already exists.
    """
    if not launched_by_torchrun() or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)


def shutdown() -> None:
    """Leave the process group (if any)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def is_active() -> bool:
    """Whether more than one process trains together."""
    return dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes files and prints."""
    return rank() == 0


def barrier() -> None:
    if is_active():
        dist.barrier()


def check_divisible(batch_size: int, where: str) -> None:
    """Refuse a global batch that does not split evenly over the ranks."""
    if batch_size % world_size():
        raise ValueError(
            f"{where}: batch size {batch_size} does not split over {world_size()} processes "
            "(it is the global batch; choose a multiple of the process count)"
        )


def shard_slice(n: int) -> slice:
    """This rank's rows of a global batch of ``n`` (contiguous, ``n / world_size`` rows)."""
    per = n // world_size()
    return slice(rank() * per, (rank() + 1) * per)


def shard(items: np.ndarray) -> np.ndarray:
    """This rank's rows of the global batch ``items`` (all of them with one process)."""
    if not is_active():
        return items
    return items[shard_slice(len(items))]


class _GatherRows(torch.autograd.Function):
    """All-gather along the first axis; backward: sum the gradients of all ranks, keep ours.

    What ``torch.distributed.nn.all_gather`` does (deprecated in torch 2.13), with one
    ``all_reduce`` in the backward pass, which every backend supports.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        parts = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rows = shard_slice(x.shape[0] * world_size())
        return torch.cat(parts)  # (W b, ...)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        total = grad.contiguous().clone()
        dist.all_reduce(total)  # d(sum over ranks of their losses) / d(gathered rows)
        return total[ctx.rows]  # (b, ...)


def gather_rows(x: Tensor) -> Tensor:
    """Every rank's ``x`` ``(b, ...)`` concatenated in rank order ``(W b, ...)``, with gradients.

    In the backward pass the gradient of this rank's rows is summed over the ranks' losses.
    """
    if not is_active():
        return x
    if dist.get_backend() == "nccl" and x.device.type != "cuda":  # NCCL gathers GPU tensors only
        x = x.to(torch.device("cuda", torch.cuda.current_device()))
    out: Tensor = _GatherRows.apply(x)
    return out


def weighted_share(loss: Tensor, weight: float) -> Tensor:
    """This rank's share of a global weighted mean: ``loss * weight * W / sum of weights``."""
    if not is_active():
        return loss
    total = torch.tensor([float(weight)], dtype=torch.float64, device=loss.device)
    dist.all_reduce(total)
    return loss * (float(weight) * world_size() / float(total))


def average(value: float) -> float:
    """The mean of ``value`` over the ranks (float64 sum, identical on every rank)."""
    if not is_active():
        return value
    total = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        total = total.cuda()
    dist.all_reduce(total)
    return float(total) / world_size()


def on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` on rank 0 only; its result - or its exception - reaches every rank."""
    if not is_active():
        return fn(*args, **kwargs)
    box: list[Any] = [None]
    if is_main():
        try:
            box[0] = (fn(*args, **kwargs), None)
        except Exception as caught:  # re-raised on every rank below
            box[0] = (None, caught)
    dist.broadcast_object_list(box, src=0)
    result, failure = box[0]
    if failure is not None:
        raise failure
    out: T = result
    return out


class _Step(nn.Module):
    """Runs a stage's loss closure as the forward of a module DDP can wrap."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, loss: Callable[..., Tensor], *args: Any) -> Tensor:
        return loss(*args)


def data_parallel(model: nn.Module, loss: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """``loss`` run through DistributedDataParallel over ``model``'s trainable parameters.

    Call it once per stage, after the stage set what trains (DDP registers the parameters
    that require gradients when it is built). With one process: ``loss`` itself.
    """
    if not is_active():
        return loss
    device = next(model.parameters()).device
    wrapped = nn.parallel.DistributedDataParallel(
        _Step(model),
        device_ids=[device] if device.type == "cuda" else None,
        find_unused_parameters=False,  # every trainable parameter is used at every step
    )

    def step(*args: Any) -> Tensor:
        out: Tensor = wrapped(loss, *args)
        return out

    return step
