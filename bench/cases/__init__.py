"""The case groups, in the order they run (each a module with a `GROUP`: its --only section, its
run function and its targets; see "Layout" in bench/README.md). The order matters: inserts before
growth (empty tables first), firstbyte before corrections (which add rows to the read series),
scale (opt-in) before auth, and auth last (while its token exists, the main server wants
tokens too)."""

from bench.cases import auth, backtest, bulk, corrections, firstbyte, growth, inserts, memory, reads, scale, series

GROUPS = (
    series.GROUP,
    inserts.GROUP,
    growth.GROUP,
    reads.GROUP,
    firstbyte.GROUP,
    corrections.GROUP,
    backtest.GROUP,
    bulk.GROUP,
    memory.GROUP,
    scale.GROUP,
    auth.GROUP,
)
SECTIONS = tuple(group.section for group in GROUPS)
