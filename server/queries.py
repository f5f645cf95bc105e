"""The two reads every busy client makes, run with less machinery: the session lookup (on every
request) and a page of posts.

SQLAlchemy's Connection.execute() builds an execution context, a transaction and a cursor
result for every call: about 75 us, three quarters of the cost of a one-row lookup, and under
load the largest single cost of GET /check_session (README, "Benchmark"). PreparedSelect keeps
the parts that matter and does the rest once:

- the statement is a Core select, compiled by the engine's dialect on first use;
- it runs on a connection from the engine's pool (pre-ping, timeouts and reset as usual), in
  autocommit on PostgreSQL: one SELECT needs no BEGIN and ROLLBACK round trips;
- values come back through the columns' own result processors, so a row holds what the ORM
  would give (an SQLite timestamp is an aware UTC datetime, not text);
- a driver error becomes SQLAlchemy's DBAPIError, and a broken connection leaves the pool, as
  with Connection.execute();
- `executed` (a blinker signal) tells listeners the SQL it ran, since engine events such as
  before_cursor_execute do not see it.

Statements whose parameters need conversion on the way in are refused: every value bound here
is an int or a str.
"""

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from blinker import Namespace
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.engine.interfaces import DBAPIConnection, DBAPICursor
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import Select
from sqlalchemy.sql.compiler import SQLCompiler

from config import db

executed = Namespace().signal("prepared-select-executed")  # sender: the PreparedSelect

# PreparedSelect._prepare()'s (dialect, compiled, converters, row class)
Prepared = tuple[Dialect, SQLCompiler, list[tuple[int, Callable[[Any], Any]]], Any]


class PreparedSelect:
    _prepared: Prepared | None

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._prepared = None  # (dialect, compiled, [(index, result processor)], row class)

    def _prepare(self, dialect: Dialect) -> Prepared:
        compiled = self.statement.compile(dialect=dialect)
        for name, bind in compiled.binds.items():
            if bind.type.dialect_impl(dialect).bind_processor(dialect) is not None:
                raise TypeError(f"parameter {name!r} needs conversion; use Connection.execute()")
        columns = self.statement.selected_columns
        processors = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns]
        converters: list[tuple[int, Callable[[Any], Any]]] = [
            (i, process) for i, process in enumerate(processors) if process is not None
        ]
        # Any: mypy checks namedtuple() only with literal fields; these are the columns' keys
        row = cast(Any, namedtuple)("Row", [column.key for column in columns], rename=True)
        return dialect, compiled, converters, row

    def all(self, **params: Any) -> list[tuple[Any, ...]]:
        """Every row, as named tuples (fields named after the columns' keys)."""
        engine = db.engine
        prepared = self._prepared  # read once: another thread may replace it
        if prepared is None or prepared[0] is not engine.dialect:
            prepared = self._prepared = self._prepare(engine.dialect)
        dialect, compiled, converters, row = prepared
        values: Mapping[str, Any] | tuple[Any, ...]  # by name, or in order when positional
        values = compiled.construct_params(params)
        if compiled.positional:
            values = tuple(values[name] for name in cast(list[str], compiled.positiontup))
        found = self._fetch(engine, compiled.string, values)
        if executed.receivers:
            executed.send(self, statement=compiled.string, parameters=values)
        rows = []
        for record in found:
            if converters:
                record = list(record)
                for i, convert in converters:
                    if record[i] is not None:
                        record[i] = convert(record[i])
            rows.append(row._make(record))
        return rows

    def first(self, **params: Any) -> tuple[Any, ...] | None:
        rows = self.all(**params)
        return rows[0] if rows else None

    @staticmethod
    def _fetch(
        engine: Engine, sql: str, values: Mapping[str, Any] | tuple[Any, ...]
    ) -> Sequence[Any]:
        dialect = engine.dialect
        error_class = dialect.loaded_dbapi.Error
        connection: PoolProxiedConnection | None
        cursor: DBAPICursor | None
        connection = cursor = None
        autocommit = False
        try:
            connection = engine.raw_connection()
            # One SELECT needs no transaction. On PostgreSQL, autocommit saves the BEGIN and
            # ROLLBACK round trips (as SQLAlchemy's pre-ping does); SQLite begins none anyway.
            # (dbapi_connection is None only once invalidated)
            autocommit = (
                dialect.name == "postgresql"
                and not cast(DBAPIConnection, connection.dbapi_connection).autocommit
            )
            if autocommit:
                cast(DBAPIConnection, connection.dbapi_connection).autocommit = True
            cursor = connection.cursor()
            cursor.execute(sql, values)
            found = cursor.fetchall()
            cursor.close()
            # Ended here, where a failure is this request's error (a 503), and not in the pool's
            # reset, which would only log it; with no transaction open, the pool's is a no-op.
            connection.rollback()
            return found
        except error_class as e:
            gone = dialect.is_disconnect(e, getattr(connection, "dbapi_connection", None), cursor)
            if connection is not None and not gone:
                try:  # end the failed transaction here: a connection that cannot is broken
                    connection.rollback()
                except error_class:
                    gone = True
            if gone and connection is not None:
                connection.invalidate(e)
            raise DBAPIError.instance(
                sql,
                values,
                e,
                error_class,
                hide_parameters=engine.hide_parameters,  # a key's hash stays out of the logs
                connection_invalidated=gone,
                dialect=dialect,
            ) from e
        finally:
            if connection is not None:
                raw = connection.dbapi_connection  # None once invalidated
                if autocommit and raw is not None and not raw.closed:
                    try:
                        raw.autocommit = False  # as the ORM expects it
                    except error_class as e:
                        connection.invalidate(e)
                connection.close()  # back to the pool, which rolls back what is left open
