"""Serve a blocking chunk iterator without blocking the event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio.to_thread


async def stream_in_thread(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Pull each chunk in a worker thread; close the iterator however the stream ends.

    run_sync waits for the running pull to return even when the client goes away,
    so the iterator is never closed while a thread is still inside it.
    """
    try:
        while True:
            chunk = await anyio.to_thread.run_sync(next, chunks, None)
            if chunk is None:
                return
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
