"""The code's shape, checked: the tables are what the migrations make, each rule lives in one
place, and no library's private names are reached for."""

import ast
import warnings
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.exc import SAWarning

from config import db

SERVER = Path(__file__).resolve().parent.parent / "server"


def imported_modules(path):
    """The top-level names of the modules a file imports."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_the_tables_are_what_the_migrations_make(app):
    """The models (SQLAlchemy's typed declarations) and the migrations describe the same tables:
    a column, index or constraint added to one but not the other fails here."""
    with app.app_context(), db.engine.connect() as connection, warnings.catch_warnings():
        # SQLite cannot reflect expression indexes (lower(username)), and SQLAlchemy and
        # Alembic say so; on PostgreSQL (make test-pg, CI) they are compared too.
        warnings.simplefilter("ignore", SAWarning)
        warnings.simplefilter("ignore", UserWarning)
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)
    assert differences == []


def test_nothing_imports_the_app_module_back():
    """app.py holds the route table and the guard; the rest reads the table through the app."""
    importers = [
        path.relative_to(SERVER).as_posix()
        for path in SERVER.rglob("*.py")
        if path.name != "app.py" and "app" in set(imported_modules(path))
    ]
    assert importers == []


def test_no_resource_imports_another():
    """Logic that several resources share lives in modules named for it."""
    for path in (SERVER / "resources").glob("*.py"):
        resources = {m for m in imported_modules(path) if m.startswith("resources")}
        assert resources == set(), (path.name, resources)


def test_no_private_name_of_a_library_is_imported():
    """ruff's SLF001 finds `thing._private`; this finds `from library import _private`."""
    ours = {path.stem for path in SERVER.rglob("*.py")} | {"resources"}
    found = []
    for path in SERVER.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.split(".")[0] in ours:
                    continue
                found += [(path.name, node.module, a.name) for a in node.names if a.name[0] == "_"]
    assert found == []
