"""text/csv values answers: PostgreSQL prints them (COPY ... FORMAT csv, HEADER), timedb
passes the bytes on, block by block."""

from __future__ import annotations

from timedb import media_types
from timedb.db.values_copy import CopyStream

# rows in the first part (whole answers up to this size go out as plain responses, as JSON's
# do), then in each further part
FIRST_ROWS = 5000
BLOCK_ROWS = 32768


class CsvBody:
    """A CSV answer from a CopyStream opened with Printed.TEXT (header row, JSON-like text)."""

    media_type = media_types.CSV  # Starlette adds "; charset=utf-8"

    def __init__(self, stream: CopyStream) -> None:
        self.stream = stream
        self.count = 0

    def first(self) -> tuple[bytes, bool]:
        """The header and the first rows, and whether that is all of them."""
        head = self.stream.read(FIRST_ROWS)
        self.count = self.stream.rows
        return head, self.stream.done

    def next(self) -> bytes | None:
        """The next block of rows, or None after the last."""
        if self.stream.done:
            return None
        block = self.stream.read(BLOCK_ROWS)
        self.count = self.stream.rows
        return block

    def close(self) -> None:
        self.stream.close()
