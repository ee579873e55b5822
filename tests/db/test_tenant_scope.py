"""The label scope of a request (timedb.db.tenant) in the data layer: series outside it do not exist.

Each lookup is run twice under the same scope: before an out-of-scope series exists and after it
was created (unscoped, as another tenant would); the answers, or the problems raised, must be the
same. The SQL of unscoped requests must not change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from timedb.db import bulk, tenant
from timedb.db import series as db
from timedb.db.read_query import ReadSpec
from timedb.db.values_read import many_series, one_series
from timedb.errors import AmbiguousSeries, Forbidden, SeriesNotFound, TimedbError

ACME = {"tenant": "acme"}
OTHER = {"tenant": "other"}


@pytest.fixture
def conn(clean_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(clean_db, autocommit=True) as c:
        yield c


def make(
    conn: psycopg.Connection, name: str, labels: dict[str, str], unit: str = "MW", overlapping: bool = False
) -> int:
    """A series created unscoped (as an administrator or another tenant would)."""
    sid, created = db.create_series(
        conn, name=name, unit=unit, labels=labels, description=None, overlapping=overlapping, retention="medium"
    )
    assert created
    return sid


def outcome(call: Callable[[], Any]) -> Any:
    """What call returns, or (class, detail, extra) of the TimedbError it raises."""
    try:
        return call()
    except TimedbError as exc:
        return type(exc), exc.detail, exc.extra


def series_count(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM series_table").fetchone()[0]


@pytest.fixture
def acme(conn: psycopg.Connection) -> dict[str, int]:
    """Two in-scope series, of two sites."""
    return {"a": make(conn, "wind", {**ACME, "site": "a"}), "b": make(conn, "solar", {**ACME, "site": "b"})}


def lookups(ids: list[int]) -> dict[str, Callable[[psycopg.Connection], Any]]:
    """Every series lookup of the data layer, aimed at `ids` (in-scope and not) and at 'hidden'."""
    return {
        "list": lambda c: db.list_series(c, db.SeriesFilter()),
        "list by name": lambda c: db.list_series(c, db.SeriesFilter(name="hidden")),
        "list by label": lambda c: db.list_series(c, db.SeriesFilter(labels={"site": "x"})),
        "list by id": lambda c: db.list_series(c, db.SeriesFilter(series_id=ids[-1])),
        "list paged": lambda c: db.list_series(c, db.SeriesFilter(), limit=1, after=("a", "MW", 0)),
        "count": lambda c: db.count_series(c, db.SeriesFilter()),
        "count by label": lambda c: db.count_series(c, db.SeriesFilter(labels={"site": "x"})),
        "label values": lambda c: db.label_values(c, "site", db.SeriesFilter()),
        "tenant values": lambda c: db.label_values(c, "tenant", db.SeriesFilter()),
        "get_by_ids": lambda c: db.get_by_ids(c, ids),
        "get_series": lambda c: db.get_series(c, ids[-1]),
        "resolve_one by id": lambda c: db.resolve_one(c, db.SeriesFilter(series_id=ids[-1])),
        "resolve_one by name": lambda c: db.resolve_one(c, db.SeriesFilter(name="hidden")),
        "resolve_one by labels": lambda c: db.resolve_one(c, db.SeriesFilter(labels={"site": "x"})),
        "resolve_many by id": lambda c: db.resolve_many(c, [{"series_id": i} for i in ids], 10),
        "resolve_many by name": lambda c: db.resolve_many(c, [{"name": "hidden"}], 10),
        "list_matching": lambda c: db.list_matching(c, db.SeriesFilter(), 10),
        "list_matching by name": lambda c: db.list_matching(c, db.SeriesFilter(name="hidden"), 10),
        "resolve_keys by id": lambda c: bulk.resolve_keys(c, list(ids)),
        "resolve_keys by name": lambda c: bulk.resolve_keys(c, [("hidden", (("site", "x"),))]),
        "read plan by id": lambda c: one_series(db.SeriesFilter(series_id=ids[-1]), ReadSpec())(c)[1],
        "read plan by name": lambda c: one_series(db.SeriesFilter(name="hidden"), ReadSpec())(c)[1],
        "multi read plan": lambda c: many_series([{"series_id": i} for i in ids], None, ReadSpec(), 10, [])(c)[1],
        "multi read filter": lambda c: many_series(None, db.SeriesFilter(), ReadSpec(), 10, [])(c)[1],
        "patch": lambda c: db.update_series(c, ids[-1], {"description": "changed"}),
    }


@pytest.mark.parametrize("what", sorted(lookups([0])))
def test_a_series_outside_the_scope_answers_as_if_it_did_not_exist(conn, acme, what):
    hidden_id = acme["b"] + 1  # the id the hidden series will get
    call = lookups([acme["a"], hidden_id])[what]
    with tenant.scoped(ACME):
        before = outcome(lambda: call(conn))
    assert make(conn, "hidden", {**OTHER, "site": "x"}) == hidden_id
    with tenant.scoped(ACME):
        after = outcome(lambda: call(conn))
    assert after == before
    # and unscoped, the series is there (the lookups do find it)
    assert outcome(lambda: call(conn)) != before


def test_lists_counts_and_label_values_hold_only_series_inside_the_scope(conn, acme):
    make(conn, "wind", {**OTHER, "site": "z"})
    make(conn, "wind", {"site": "a"})  # no tenant label at all
    with tenant.scoped(ACME):
        assert [s["series_id"] for s in db.list_series(conn, db.SeriesFilter())] == [acme["b"], acme["a"]]
        assert [s["series_id"] for s in db.list_series(conn, db.SeriesFilter(name="wind"))] == [acme["a"]]
        assert db.count_series(conn, db.SeriesFilter()) == 2
        assert db.count_series(conn, db.SeriesFilter(labels={"site": "a"})) == 1
        assert db.label_values(conn, "site", db.SeriesFilter()) == ["a", "b"]
        assert db.label_values(conn, "tenant", db.SeriesFilter()) == ["acme"]
        # a filter on the scope's own key with another value matches nothing
        assert db.list_series(conn, db.SeriesFilter(labels=OTHER)) == []
        assert db.count_series(conn, db.SeriesFilter(labels=OTHER)) == 0
    assert db.count_series(conn, db.SeriesFilter()) == 4
    assert db.label_values(conn, "tenant", db.SeriesFilter()) == ["acme", "other"]
    with tenant.scoped({"site": "a"}):  # a scope is any labels object
        assert db.count_series(conn, db.SeriesFilter(name="wind")) == 2


def test_ambiguity_counts_only_series_inside_the_scope(conn, acme):
    make(conn, "wind", {**OTHER, "site": "a"})
    with tenant.scoped(ACME):
        assert db.resolve_one(conn, db.SeriesFilter(name="wind"))["series_id"] == acme["a"]
        assert db.resolve_one(conn, db.SeriesFilter(labels={"site": "a"}))["series_id"] == acme["a"]
        assert db.resolve_many(conn, [{"name": "wind"}], 10)[0]["series_id"] == acme["a"]
        assert bulk.resolve_keys(conn, [("wind", ())])[("wind", ())]["series_id"] == acme["a"]
    # unscoped, the same names are ambiguous
    with pytest.raises(AmbiguousSeries):
        db.resolve_one(conn, db.SeriesFilter(name="wind"))
    with pytest.raises(AmbiguousSeries):
        db.resolve_many(conn, [{"name": "wind"}], 10)
    # two in-scope matches: the problem names those two only
    second = make(conn, "wind", {**ACME, "site": "c"})
    with tenant.scoped(ACME), pytest.raises(AmbiguousSeries) as caught:
        db.resolve_one(conn, db.SeriesFilter(name="wind"))
    assert "match 2 series" in caught.value.detail
    assert [m["series_id"] for m in caught.value.extra["matches"]] == [acme["a"], second]


def test_creating_a_series_outside_the_scope_is_forbidden(conn):
    with tenant.scoped(ACME):
        sid, created = db.create_series(
            conn,
            name="wind",
            unit="MW",
            labels={**ACME, "site": "a"},
            description=None,
            overlapping=False,
            retention="medium",
        )
        assert created
        for labels in ({}, {"site": "a"}, OTHER, {"tenant": "acme2"}):
            with pytest.raises(Forbidden) as caught:
                db.create_series(
                    conn, name="wind", unit="MW", labels=labels, description=None, overlapping=False, retention="medium"
                )
            assert caught.value.detail == 'This token may only create series whose labels contain {"tenant":"acme"}.'
        # getting the existing series again works (it is inside the scope by construction)
        assert db.create_series(
            conn,
            name="wind",
            unit="MW",
            labels={"site": "a", **ACME},
            description=None,
            overlapping=False,
            retention="medium",
        ) == (sid, False)
    assert series_count(conn) == 1


def test_bulk_creation_lists_every_item_outside_the_scope(conn):
    def item(labels: dict[str, str]) -> db.NewSeries:
        return db.NewSeries(
            name="wind", unit="MW", labels=labels, description=None, overlapping=False, retention="medium"
        )

    with tenant.scoped(ACME):
        with pytest.raises(Forbidden) as caught:
            db.create_many(conn, [item(ACME), item(OTHER), item({**ACME, "site": "a"}), item({})])
        assert [e["index"] for e in caught.value.extra["errors"]] == [1, 3]
        assert caught.value.detail.startswith(
            'Items outside this token\'s scope (labels must contain {"tenant":"acme"}): 2 of 4; nothing was created'
        )
        assert series_count(conn) == 0
        assert [created for _, created in db.create_many(conn, [item(ACME), item({**ACME, "x": "y"})])] == [True, True]
    assert series_count(conn) == 2


def test_a_patch_cannot_move_a_series_out_of_the_scope(conn, acme):
    sid = acme["a"]
    with tenant.scoped(ACME):
        for patch in ({"labels": {"tenant": "other"}}, {"labels": {"tenant": None}}, {"labels": None}):
            with pytest.raises(Forbidden) as caught:
                db.update_series(conn, sid, patch)
            assert '{"tenant":"acme"}' in caught.value.detail
        changed = db.update_series(conn, sid, {"labels": {"site": None, "kind": "x"}, "description": "d"})
        assert changed["labels"] == {**ACME, "kind": "x"}
    stored = conn.execute("SELECT labels, description FROM series_table WHERE series_id = %s", (sid,)).fetchone()
    assert stored == ({**ACME, "kind": "x"}, "d")


def test_a_patch_of_a_series_outside_the_scope_changes_nothing(conn, acme):
    hidden = make(conn, "hidden", OTHER)
    with tenant.scoped(ACME), pytest.raises(SeriesNotFound) as caught:
        db.update_series(conn, hidden, {"labels": ACME, "description": "mine now"})
    assert caught.value.detail == f"No series has series_id={hidden}."
    stored = conn.execute("SELECT labels, description FROM series_table WHERE series_id = %s", (hidden,)).fetchone()
    assert stored == (OTHER, None)


def test_unscoped_statements_are_unchanged(conn):
    assert tenant.current() is None
    where, params = db.SeriesFilter().where()
    assert where.as_string(conn) == "TRUE" and params == {}
    where, params = db.SeriesFilter(name="w", labels={"a": "b"}).where()
    assert where.as_string(conn) == "name = %(name)s AND labels @> %(labels)s"
    assert set(params) == {"name", "labels"}
    query, params = db.resolve_statement(Jsonb([]))
    assert query is db.RESOLVE_MANY and set(params) == {"items"}
    assert "@>" not in db.RESOLVE_MANY.as_string(conn).replace("s.labels @> coalesce", "")


def test_scoped_statements_filter_in_sql(conn):
    with tenant.scoped(ACME):
        where, params = db.SeriesFilter().where()
        assert where.as_string(conn) == "TRUE AND labels @> %(tenant_scope)s"
        where, params = db.SeriesFilter(name="w").where()
        assert where.as_string(conn) == "name = %(name)s AND labels @> %(tenant_scope)s"
        assert params["tenant_scope"].obj == ACME
        query, params = db.resolve_statement(Jsonb([]))
        assert query.as_string(conn).count("AND s.labels @> %(tenant_scope)s") == 2
        assert params["tenant_scope"].obj == ACME


def test_a_scoped_label_lookup_can_use_the_labels_index(conn):
    conn.execute(
        "INSERT INTO series_table (name, labels) SELECT 's' || i, jsonb_build_object('tenant', 't' || i) "
        "FROM generate_series(1, 5000) i"
    )
    conn.execute("ANALYZE series_table")
    with tenant.scoped({"tenant": "t7"}):
        where, params = db.SeriesFilter().where()
        plan = conn.execute(b"EXPLAIN SELECT * FROM series_table WHERE " + where.as_bytes(conn), params).fetchall()
    assert "series_labels_idx" in "\n".join(r[0] for r in plan)


def test_idempotency_keys_are_namespaced_by_scope():
    assert tenant.namespaced("k") == "k" and tenant.namespaced(None) is None
    with tenant.scoped({"b": "2", "a": "1"}):
        assert tenant.namespaced("k") == '{"a":"1","b":"2"}\nk'
        assert tenant.namespaced(None) is None
    with tenant.scoped({}):  # an empty scope is no scope
        assert tenant.current() is None and tenant.namespaced("k") == "k"
