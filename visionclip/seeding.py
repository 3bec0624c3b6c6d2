"""Seeds that are the same in every process: Python's `hash` is salted per process, so it cannot seed anything
that must repeat across workers, ranks or runs."""

from __future__ import annotations

import hashlib
from typing import Any


def stable_seed(*parts: Any) -> int:
    """A process-independent 64-bit seed from any printable parts."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")
