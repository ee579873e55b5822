"""The case groups, in the order they run (each a module with a `GROUP`: its --only section, its
run function and its targets; see "Layout" in bench/README.md). The order matters: inserts before
growth (empty tables first), firstbyte before corrections (which add rows to the read series),
auth late (while its token exists, the main server wants tokens too); scale, opt-in, last."""

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
    auth.GROUP,
    scale.GROUP,
)
SECTIONS = tuple(group.section for group in GROUPS)
