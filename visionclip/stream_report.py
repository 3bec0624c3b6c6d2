"""What one reader's epoch of the training stream read, rejected and could not decode, in bounded messages.

An epoch in which a reader makes no batch would otherwise repeat forever (the stream starts the next epoch), so it
is an error that names the cause: too few rows for a batch, the filter that rejected them, or the images that could
not be read (a count and a few examples). Unreadable images in an epoch that still makes batches are reported once
per reader as a count and a few examples, and again only when that count changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EXAMPLES_SHOWN = 3


class StreamError(ValueError):
    """The training stream cannot make batches; the message says why."""


@dataclass
class EpochTally:
    """Counts for one reader and one epoch (from the epoch's start)."""

    rows: int = 0
    usable: int = 0
    balanced_out: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    values_found: dict[str, set[int]] = field(default_factory=dict)
    unreadable: int = 0
    unreadable_examples: list[str] = field(default_factory=list)

    def filtered(self, column: str, value: int, allowed: set[int]) -> bool:
        """Note a row's `value` in a filtered `column`; True if the filter rejects it."""
        self.values_found.setdefault(column, set()).add(value)
        if value in allowed:
            return False
        self.rejected[column] = self.rejected.get(column, 0) + 1
        return True

    def unreadable_image(self, key: str, error: Exception) -> None:
        self.unreadable += 1
        if len(self.unreadable_examples) < EXAMPLES_SHOWN:
            self.unreadable_examples.append(f"{key}: {error}")

    def unreadable_summary(self) -> str:
        return (
            f"{self.unreadable} of {self.rows} images could not be read (e.g. {'; '.join(self.unreadable_examples)})"
        )

    def no_batch_message(
        self, reader: str, epoch: int, batch_size: int, filters: dict[str, set[int]], balance_column: str | None
    ) -> str:
        """Why `reader` made no batch in `epoch`: every count that took rows away, then what was left."""
        causes = []
        for column, allowed in filters.items():
            if self.rejected.get(column):
                share = "all " if self.rejected[column] == self.rows else ""
                causes.append(
                    f"the filter {column} in {sorted(allowed)} rejected {share}{self.rejected[column]} rows "
                    f"(values found: {sorted(self.values_found.get(column, ()))})"
                )
        if self.balanced_out:
            causes.append(f"balancing by {balance_column} dropped {self.balanced_out} rows")
        if self.unreadable:
            causes.append(self.unreadable_summary())
        if self.usable:
            causes.append(
                f"the {self.usable} usable rows are fewer than one batch of {batch_size} rows per process (each "
                "reader batches its own rows: lower --batch-size or --num-workers, or use more data)"
            )
        return f"{reader} yielded no batch in epoch {epoch}: it read {self.rows} rows; " + "; ".join(causes)
