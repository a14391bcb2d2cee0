"""The processes that fill one library together: this process alone, or the ranks of a ``torchrun`` launch
joined by Lightning Fabric (DDP: gloo on CPUs, NCCL on GPUs), so a multi-node run fills one library on shared
storage with Lightning's distributed engine rather than one of its own."""

from __future__ import annotations

import os
from typing import Any, Callable, TypeVar

import torch

from zsvc_pl.data.outputs import OutputError
from zsvc_pl.library.store import LibraryError

T = TypeVar("T")


class Ranks:
    """``rank`` of ``world`` processes; ``device`` is the one this rank encodes on (``None``: the default)."""

    def __init__(self) -> None:
        self.rank, self.world, self.device, self._fabric = 0, 1, None, None

    @classmethod
    def from_environment(cls) -> Ranks:
        """The ranks ``torchrun`` started (``WORLD_SIZE`` above 1), joined by Fabric; else this process alone."""
        ranks = cls()
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1:
            from lightning.fabric import Fabric

            local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
            fabric = Fabric(accelerator="cuda" if torch.cuda.is_available() else "cpu", devices=local,
                            num_nodes=world // local, strategy="ddp")
            fabric.launch()
            ranks.rank, ranks.world, ranks.device, ranks._fabric = fabric.global_rank, fabric.world_size, \
                fabric.device, fabric
        return ranks

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        if self.world == 1:
            return [value]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, value)
        return out

    def first(self, work: Callable[[], T]) -> T:
        """``work()`` on rank 0, its result on every rank; a mistake it raises is raised on every rank."""
        if self.world == 1:
            return work()
        result, error, failure = None, None, None
        if self.rank == 0:
            try:
                result = work()
            except Exception as e:  # told to the other ranks, which would otherwise wait for rank 0 forever
                failure, error = e, (type(e).__name__, str(e))
        result, error = self._fabric.broadcast((result, error), src=0)
        if failure is not None:
            raise failure
        if error is not None:
            kind = {"LibraryError": LibraryError, "OutputError": OutputError}.get(error[0], RuntimeError)
            raise kind(error[1])
        return result

    def barrier(self) -> None:
        if self.world > 1:
            self._fabric.barrier()
