"""Lists, a page at a time: newest first, with a Link to the next page (keyset pagination)."""

import posixpath
from typing import Any

from flask import request, url_for
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute

from config import db


def keyset_page(
    query: Select[Any],
    id_column: InstrumentedAttribute[int],
    args: dict[str, Any],
    endpoint: str,
    **url_args: Any,
) -> tuple[list[Any], dict[str, str]]:
    """Newest first, `limit` rows before the `before` cursor, and a Link to the next page."""
    query = query.order_by(id_column.desc()).limit(args["limit"] + 1)
    if "before" in args:
        query = query.where(id_column < args["before"])
    return next_page(list(db.session.scalars(query).all()), args, endpoint, **url_args)


def next_page(
    rows: list[Any], args: dict[str, Any], endpoint: str, **url_args: Any
) -> tuple[list[Any], dict[str, str]]:
    """rows (fetched with limit + 1) cut to `limit`, and the Link header when there is more."""
    if len(rows) <= args["limit"]:
        return rows, {}
    rows = rows[: args["limit"]]
    next_args = {**url_args, **args, "before": rows[-1].id}
    return rows, {"Link": f'<{relative_url(endpoint, **next_args)}>; rel="next"'}


def relative_url(endpoint: str, **values: Any) -> str:
    """A reference to endpoint relative to this request's URL (`posts?before=5` from /posts,
    `posts/7` from POST /posts): resolved against the URL the client called, as
    `new URL(link, response.url)` does, it lands on the same API behind a dev proxy or a path
    prefix, where an absolute URL built from the Host the API saw would not."""
    path, sep, query = url_for(endpoint, **values).partition("?")
    here = posixpath.dirname(request.script_root + request.path)
    return posixpath.relpath(path, here) + sep + query
