"""Multi-process behaviour that is not the loss's: which parallelism the trainer accepts, and how a failure on one
process stops all of them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch
import torch.distributed as dist
from accelerate import Accelerator
from accelerate.utils import DistributedType, broadcast_object_list, parse_flag_from_env
from torch import nn

logger = logging.getLogger(__name__)
T = TypeVar("T")
DDP_LAUNCH = "accelerate launch --config_file configs/accelerate/8gpu_ddp.yaml train.py"
# fp32 weights and gradients and AdamW's two moments: what each DDP process holds per parameter
BYTES_PER_PARAMETER = 4 + 4 + 8


def refuse_fsdp(accelerator: Accelerator, model: nn.Module) -> None:
    """FSDP shards a model that does not fit one device; every VisionCLIP preset fits many times over (the largest,
    flair-reference, has 132 M parameters: about 2 GB for a DDP replica with its AdamW state), and sharding would
    cost all-gathers every step for nothing. `accelerate launch` asks for FSDP through the environment, also where
    it then falls back to plain data parallelism (on CPUs), so both are checked."""
    if accelerator.distributed_type != DistributedType.FSDP and not parse_flag_from_env("ACCELERATE_USE_FSDP"):
        return
    parameters = sum(p.numel() for p in model.parameters())
    raise ValueError(
        "FSDP is not supported, nor needed: with DDP each process holds the whole model with its gradients and "
        f"AdamW state, {parameters * BYTES_PER_PARAMETER / 2**20:,.0f} MiB for this one ({parameters / 1e6:.1f} M "
        "parameters; about 2 GiB for the largest preset, flair-reference, 132 M), far below one GPU's memory. "
        f"Use DDP: {DDP_LAUNCH} ..."
    )


class ProcessFailedError(RuntimeError):
    """Raised on every process when a process failed inside `FailureBarrier.guard`."""


class FailureBarrier:
    """Stops every process together when one of them fails in code it runs alone: reading its own data, or the main
    process's evaluation and export.

    Without it, the failed process leaves and the others wait in their next collective for a partner that never
    comes: with NCCL until the watchdog fires, minutes later. Here every process reports at the end of each guarded
    block whether it failed; if any did, all of them raise `ProcessFailedError` with its message. The report goes over
    a CPU (gloo) group, so it does not wait for the GPU. The guarded code must not run collectives itself.
    """

    def __init__(self, accelerator: Accelerator):
        self.rank, self.world_size = accelerator.process_index, accelerator.num_processes
        self.group = None
        if self.world_size > 1 and dist.get_backend() != "gloo":
            self.group = dist.new_group(backend="gloo")

    @contextmanager
    def guard(self) -> Iterator[None]:
        if self.world_size == 1:
            yield
            return
        failure = None
        try:
            yield
        except Exception as error:
            failure = error
            logger.error("process %d failed", self.rank, exc_info=error)
        self._agree(failure)

    def _agree(self, failure: Exception | None) -> None:
        failed = torch.tensor([failure is not None], dtype=torch.int32)
        dist.all_reduce(failed, group=self.group)
        if not failed.item():
            return
        messages: list[str | None] = [None] * self.world_size
        mine = None if failure is None else " ".join(f"{type(failure).__name__}: {failure}".split())
        dist.all_gather_object(messages, mine, group=self.group)
        raise ProcessFailedError(
            "; ".join(
                f"process {rank} of {self.world_size} failed: {message}"
                for rank, message in enumerate(messages)
                if message is not None
            )
        ) from failure


def on_main_process(
    accelerator: Accelerator, function: Callable[[], T], errors: tuple[type[Exception], ...] = (Exception,)
) -> T:
    """A decision the main process takes for all: call `function` there only; every process returns its result or
    raises its error (one of `errors`; any other error is a bug and stays on the main process)."""
    result, failure = None, None
    if accelerator.is_main_process:
        try:
            result = function()
        except errors as error:
            failure = error
    if accelerator.num_processes > 1:
        result, failure = broadcast_object_list([result, failure])
    if failure is not None:
        raise failure
    return result
