"""Response bodies of values reads, one module per format; all streamed from the data layer.

A body is made in blocking steps, run in worker threads: `first()` gives the start of the
body and whether that is all of it (then it is sent as a plain response), `next()` the
following parts until None, and `close()` (always called) releases the read.
"""

from __future__ import annotations

from typing import Protocol


class Body(Protocol):
    media_type: str
    # rows counted so far (for the log of an aborted response)
    count: int

    def first(self) -> tuple[bytes, bool]: ...

    def next(self) -> bytes | None: ...

    def close(self) -> None: ...
