"""The first stage of the training stream: which rows one process reads, in which order, and where it stands.

A process has `max(1, num_workers)` readers (one per DataLoader worker), each with its own parts of the data
(`plan_reader_parts`: the rank/worker split). Each epoch a reader reads its parts in a new order through a shuffle
buffer of undecoded rows. Where each reader stands (`StreamPosition`) is the resume state: `state_dict` records it
with the layout (world size, worker count, data files) it is valid for, `load_state_dict` refuses another layout.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .seeding import stable_seed
from .stream_parts import StreamPosition, plan_reader_parts, read_part


class FileSource:
    """The rows of one process's readers, epoch by epoch, shuffled, with each reader's position."""

    def __init__(
        self,
        files: list[str],
        *,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        seed: int = 0,
        shuffle_buffer: int = 1000,
        token: str | bool | None = None,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if not files:
            raise ValueError("No data files")
        self.files, self.token = list(files), token
        self.rank, self.world_size, self.num_workers = rank, world_size, num_workers
        self.seed, self.shuffle_buffer = seed, max(1, shuffle_buffer)
        self.readers_per_process = max(1, num_workers)
        layout = f"{world_size} process(es) x {self.readers_per_process} DataLoader worker(s)"
        first = rank * self.readers_per_process
        self.reader_parts = plan_reader_parts(self.files, world_size * self.readers_per_process, token, layout)[
            first : first + self.readers_per_process
        ]
        self.data_digest = hashlib.sha1("\n".join(Path(f).name for f in self.files).encode()).hexdigest()[:16]
        self.epoch = 0  # the latest epoch this process has consumed a batch of (or starts at)
        self._start: dict[int, StreamPosition] = {}  # where each worker starts (set_epoch, load_state_dict)
        self._consumed: dict[int, StreamPosition] = {}  # where each worker stood after its last consumed batch

    def reader(self, worker: int) -> int:
        """The global index of `worker`'s reader among all processes' readers."""
        return self.rank * self.readers_per_process + worker

    def describe_reader(self, worker: int) -> str:
        return (
            f"reader {self.reader(worker)} of {self.world_size * self.readers_per_process} (process {self.rank}, "
            f"worker {worker})"
        )

    # ------------------------------------------------------------------------------------------ epochs, state
    def set_epoch(self, epoch: int) -> None:
        """Start every worker at the beginning of `epoch`, forgetting any position."""
        self.epoch = epoch
        self._start = {worker: StreamPosition(epoch) for worker in range(self.readers_per_process)}
        self._consumed = {}

    def record(self, worker: int, position: StreamPosition) -> None:
        """Note that `worker`'s reading stood at `position` after a consumed batch."""
        self._consumed[worker] = position
        self.epoch = max(self.epoch, position.epoch)

    def position(self, worker: int) -> StreamPosition:
        """Where `worker` continues: after its last consumed batch, else where it was set to start."""
        return self._consumed.get(worker) or self._start.get(worker) or StreamPosition(self.epoch)

    def state_dict(self) -> dict[str, Any]:
        """This process's position, JSON-serialisable, with the layout it is valid for."""
        return {
            "world_size": self.world_size,
            "rank": self.rank,
            "num_workers": self.num_workers,
            "data_digest": self.data_digest,
            "epoch": self.epoch,
            "workers": [self.position(worker).to_dict() for worker in range(self.readers_per_process)],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from `state_dict()` of the same layout; refuses another world size, worker count or data."""
        missing = [key for key in ("world_size", "rank", "num_workers", "data_digest", "workers") if key not in state]
        if missing:
            raise ValueError(
                f"cannot resume the data stream: its saved state lacks {', '.join(missing)} (saved by an older "
                "version, whose positions cannot be mapped onto this stream's readers exactly)"
            )
        saved_readers = max(1, int(state["num_workers"]))
        mismatches = [
            (f"world size {state['world_size']}", f"{self.world_size}", state["world_size"] != self.world_size),
            (f"rank {state['rank']}", f"rank {self.rank}", state["rank"] != self.rank),
            (
                f"--num-workers {state['num_workers']}",
                f"--num-workers {self.num_workers}",
                saved_readers != self.readers_per_process,
            ),
            ("other data files", "these", state["data_digest"] != self.data_digest),
        ]
        for saved, current, differs in mismatches:
            if differs:
                raise ValueError(
                    f"cannot resume the data stream: the checkpoint was saved with {saved}, this run has {current}; "
                    "each reader's position only holds for the same processes, DataLoader workers and data files "
                    "(resume with those, or start a new run)"
                )
        self.epoch = int(state["epoch"])
        self._start = {worker: StreamPosition.from_dict(p) for worker, p in enumerate(state["workers"])}
        self._consumed = {}

    # --------------------------------------------------------------------------------------------- reading
    def rows(self, worker: int, start: StreamPosition) -> Iterator[tuple[dict[str, Any], StreamPosition]]:
        """One epoch of `worker`'s undecoded rows from `start` (an epoch's beginning or a saved position), through
        the shuffle buffer; each row comes with the position reading had reached when it left the buffer."""
        epoch, reader = start.epoch, self.reader(worker)
        parts = list(self.reader_parts[worker])
        random.Random(stable_seed(self.seed, epoch, reader, "files")).shuffle(parts)
        read_up_to = [start]

        def read() -> Iterator[dict[str, Any]]:
            for index in range(start.part, len(parts)):
                skip = start.row if index == start.part else 0
                for row_number, row in enumerate(read_part(parts[index], skip, self.token), start=skip + 1):
                    read_up_to[0] = StreamPosition(epoch, index, row_number)
                    yield row

        for row in self._shuffled(read(), random.Random(stable_seed(self.seed, epoch, reader, "buffer"))):
            yield row, read_up_to[0]

    def _shuffled(self, rows: Iterator[dict[str, Any]], rng: random.Random) -> Iterator[dict[str, Any]]:
        """Reservoir-style shuffle buffer. Rows held in it when a checkpoint is taken are skipped on resume."""
        buffer: list[dict[str, Any]] = []
        for row in rows:
            if len(buffer) < self.shuffle_buffer:
                buffer.append(row)
                if len(buffer) < self.shuffle_buffer:
                    continue
            index = rng.randrange(len(buffer))
            buffer[index], buffer[-1] = buffer[-1], buffer[index]
            yield buffer.pop()
        rng.shuffle(buffer)
        yield from buffer
