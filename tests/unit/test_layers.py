"""The layering the code promises (timedb/db/__init__.py): psycopg and psycopg_pool are imported
only inside timedb/db/, so the handlers, the CLI and the app speak to the database only through
the data layer (issue 13)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "timedb"
DRIVER = ("psycopg", "psycopg_pool")


def driver_imports(path: Path) -> list[str]:
    """The driver modules a file imports (anywhere in it, also inside functions)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom) and node.level == 0
            else []
        )
        found += [n for n in names if n.split(".")[0] in DRIVER]
    return found


def test_only_the_data_layer_imports_the_driver():
    outside = {
        str(p.relative_to(PACKAGE)): driver_imports(p)
        for p in PACKAGE.rglob("*.py")
        if "db" not in p.relative_to(PACKAGE).parts[:1]
    }
    assert {name: found for name, found in outside.items() if found} == {}


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from psycopg.conninfo import make_conninfo\n    import psycopg_pool\n")
    assert driver_imports(sample) == ["psycopg.conninfo", "psycopg_pool"]
