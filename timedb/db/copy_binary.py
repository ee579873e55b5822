"""PostgreSQL's binary COPY format, written column by column from Arrow arrays.

A binary COPY row is a 16-bit field count and, per field, a 32-bit length and the value's
big-endian bytes (NULL: length -1, no bytes). With 8-byte fields (int8, float8, timestamptz)
every row of one null pattern has the same width, so a block of rows is one row template
repeated and each column is copied into it with a strided memoryview assignment (in C, no
Python object per row). Rows are grouped by null pattern; COPY does not care about row order.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterator, Sequence
from typing import TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

# PostgreSQL timestamps count microseconds from 2000-01-01 UTC
PG_EPOCH_US = 946_684_800_000_000
SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)
BLOCK_ROWS = 1 << 16

# a column: an Arrow array, a constant (the same value in every row) or None (NULL)
Column: TypeAlias = "pa.Array | int | float | None"

_FIELD = struct.pack(">i", 8) + bytes(8)
_NULL = struct.pack(">i", -1)


def pg_timestamps(us: pa.Array) -> pa.Array:
    """int64 microseconds since 1970 as PostgreSQL's microseconds since 2000."""
    return pc.subtract(us, PG_EPOCH_US)


def _big_endian(col: pa.Array) -> array[int]:
    """The 8-byte values of a fixed-width column (nulls: any bytes), byte-swapped."""
    buf = col.buffers()[1]
    assert buf is not None
    out = array("q")
    out.frombytes(memoryview(buf)[col.offset * 8 : (col.offset + len(col)) * 8])
    out.byteswap()
    return out


def _block(rows: int, columns: Sequence[Column]) -> bytearray:
    """`rows` rows of columns without nulls (an int or float: the same value in every row;
    None: NULL)."""
    template = bytearray(struct.pack(">h", len(columns)))
    for c in columns:
        if c is None:
            template += _NULL
        elif isinstance(c, pa.Array):
            template += _FIELD
        else:
            template += struct.pack(">i", 8) + struct.pack(">d" if isinstance(c, float) else ">q", c)
    out = template * rows
    # 2-byte units: the row width and every field offset are even
    units = memoryview(out).cast("H")
    width = len(template) // 2
    position = 1
    for c in columns:
        if c is None:
            position += 2
            continue
        if isinstance(c, pa.Array):
            values = memoryview(_big_endian(c)).cast("B").cast("H")
            for k in range(4):
                units[position + 2 + k :: width] = values[k::4]
        position += 6
    return out


def encode(columns: Sequence[Column]) -> Iterator[bytes | bytearray]:
    """The binary COPY data (signature to trailer) of rows given as int64/float64 columns (an
    int or float stands for a constant column), in blocks of BLOCK_ROWS rows."""
    yield SIGNATURE
    total = len(next(c for c in columns if isinstance(c, pa.Array)))  # type: ignore[arg-type]
    for start in range(0, total, BLOCK_ROWS):
        part = [c.slice(start, BLOCK_ROWS) if isinstance(c, pa.Array) else c for c in columns]
        yield from _by_null_pattern(part)
    yield TRAILER


def _by_null_pattern(columns: list[Column]) -> Iterator[bytearray]:
    """Blocks of rows that share a null pattern."""
    mixed = [i for i, c in enumerate(columns) if isinstance(c, pa.Array) and 0 < c.null_count < len(c)]
    rows = len(next(c for c in columns if isinstance(c, pa.Array)))  # type: ignore[arg-type]
    if not mixed:
        yield _block(rows, [None if isinstance(c, pa.Array) and c.null_count else c for c in columns])
        return
    # a pattern number per row: bit j set when the j-th mixed column is null
    bits = [pc.if_else(pc.is_null(columns[i]), 1 << bit, 0) for bit, i in enumerate(mixed)]
    pattern = bits[0]
    for more in bits[1:]:
        pattern = pc.add(pattern, more)
    for p in pc.unique(pattern).to_pylist():
        mask = pc.equal(pattern, p)
        part = [pc.filter(c, mask) if isinstance(c, pa.Array) else c for c in columns]
        rows = pc.sum(mask.cast(pa.int64())).as_py()
        yield _block(rows, [None if isinstance(c, pa.Array) and c.null_count else c for c in part])


def unpack(data: bytes | bytearray | memoryview, fields: int) -> list[pa.Array]:
    """int64 columns of records of `fields` big-endian 8-byte values each (PostgreSQL's
    int8send/float8send/timestamptz_send output concatenated); float8 columns come back as
    their bits: `.view(pa.float64())`."""
    width = 8 * fields
    if len(data) % width:
        raise ValueError(f"{len(data)} bytes are not records of {width} bytes")
    rows = len(data) // width
    units = memoryview(data).cast("B").cast("H")
    out = []
    for j in range(fields):
        values = array("q", bytes(8 * rows))
        target = memoryview(values).cast("B").cast("H")
        for k in range(4):
            target[k::4] = units[4 * j + k :: 4 * fields]
        values.byteswap()
        out.append(pa.Array.from_buffers(pa.int64(), rows, [None, pa.py_buffer(values)]))
    return out
