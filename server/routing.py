"""What a route is: its URL, its Resource, and what is special about it. app.py lists every
route once (ROUTES); the login guard, the throttle, the session store and the OpenAPI document
read what they need from that one table, through the app (nothing imports app back)."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from flask import Flask, current_app
from flask_restful import Api, Resource

from bounds import MAX_ID

ID = f"int(min=1, max={MAX_ID})"  # the converter of every id in a URL: /posts/<ID:post_id>


@dataclass(frozen=True)
class Route:
    """One URL of the API.

    public: the methods anyone may call; the others need a session or a bearer token.
    admin: administrators only (the guard answers anyone else 403).
    sensitive: the methods that take the current password in the body; for a user with a second
        factor they also need a recent authentication (stepup.py).
    recent: the methods that need a recent authentication from whoever calls them (a caller
        who has none gets 403 {"reauthentication_required": true}).
    throttled: under RATELIMIT_DEFAULT, per caller (probes, polled by load balancers, are not).
    credentials: reads the session cookie and bearer token; a route without (the probes)
        answers whatever credentials come along, without a database lookup.
    """

    url: str
    resource: type[Resource]
    endpoint: str
    public: frozenset[str] = frozenset()
    admin: bool = False
    sensitive: frozenset[str] = frozenset()
    recent: frozenset[str] = frozenset()
    throttled: bool = True
    credentials: bool = True


def add_routes(app: Flask, api: Api, routes: Iterable[Route]) -> None:
    """Register each route with Flask-RESTful, and keep the table where the rest reads it."""
    table = {}
    for route in routes:
        if route.admin and route.public:
            raise ValueError(f"{route.url}: a route for administrators cannot be public")
        api.add_resource(route.resource, route.url, endpoint=route.endpoint)
        table[route.endpoint] = route
    app.extensions["routes"] = table
    # The session store opens a session before Flask has matched the URL to its endpoint, so it
    # reads these by path; they are fixed paths (no converters), which add_routes checks.
    app.extensions["paths_without_credentials"] = frozenset(
        route.url for route in table.values() if not route.credentials
    )
    if any("<" in path for path in app.extensions["paths_without_credentials"]):
        raise ValueError("a route without credentials must have a fixed path")


def routes() -> Mapping[str, Route]:
    """The route table, by endpoint."""
    table: Mapping[str, Route] = current_app.extensions["routes"]
    return table


def route_of(endpoint: str | None) -> Route | None:
    """The route an endpoint belongs to (None for a URL the API does not have)."""
    return None if endpoint is None else routes().get(endpoint)


def without_credentials(path: str) -> bool:
    """Is path a route that reads no credentials (a probe)?"""
    paths: frozenset[str] = current_app.extensions["paths_without_credentials"]
    return path in paths
