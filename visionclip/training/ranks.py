"""Decisions that every process must share: taken once by the main process, or agreed on by all, so that an error
in one process stops every process instead of leaving the others waiting at the next collective call."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object

T = TypeVar("T")


def on_main_process(
    accelerator: Accelerator, function: Callable[[], T], errors: tuple[type[Exception], ...] = (Exception,)
) -> T:
    """Call `function` on the main process only; every process returns its result or raises its error (one of
    `errors`; any other error is a bug and stays on the main process)."""
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


def agree(accelerator: Accelerator, failure: Exception | None, wrap: Callable[[str], Exception]) -> None:
    """A barrier at which each process reports its `failure` (None if it has none). If any process failed, every
    process raises `wrap(message)`, the message naming the processes that failed and why; a failed process
    chains its own error."""
    if accelerator.num_processes == 1:
        messages = [None if failure is None else str(failure)]
    else:
        messages = gather_object([None if failure is None else f"process {accelerator.process_index}: {failure}"])
    reported = [message for message in messages if message is not None]
    if reported:
        raise wrap("; ".join(reported)) from failure
