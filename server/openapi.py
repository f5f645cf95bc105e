"""The OpenAPI 3.1 document, built from the route table and the Marshmallow schemas in use.

Each Resource method says what it does with @operation (its id, summary, success, body, query
and the errors of its own); bodies, parameters and responses come from the same schema classes
the Resources load and dump with (apispec's marshmallow plugin), so the document cannot drift
from the validation. The other errors follow from what the route table says a route is: 401
everywhere but routes that read no credentials (a protected route without credentials, or any
route with a bearer token that names no live token), 403 for administrators' and sensitive
routes and for every state-changing method (cross-site), bodies 400, 413, 415 and 422, ids 404,
429 (with Retry-After) on throttled routes, and 503 wherever the database is read. Operation ids
are camelCase verbs (`createPost`).

Nothing here imports app, which `python server/app.py` runs as `__main__`: GET /openapi.json
hands over the route table.
"""

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin, resolver
from flask import current_app
from marshmallow import Schema
from werkzeug.routing import IntegerConverter, Rule, parse_converter_args

from bounds import PASSWORD_MIN_LENGTH
from errors import MESSAGES
from field_types import SPACE_CLASS
from routing import Route
from schemas import AtLeastOne, ErrorSchema, ValidationErrorSchema

ERROR = "Error"
INVALID = "ValidationError"
CONVERTER_RE = re.compile(r"<(?:(\w+)(?:\((.*?)\))?:)?(\w+)>")  # <converter(arguments):name>
UNSAFE_METHODS = ("post", "put", "patch", "delete")
UNKNOWN_BEARER = "An `Authorization` header that names no live token (unknown, expired or revoked)"

SchemaRef = type[Schema] | Schema | dict[str, Any] | None
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Operation:
    """What a Resource method does, for the document: `ok` is (status, response schema or None),
    `errors` the statuses of its own (with `error_schemas` for those whose body is not the
    house error), `headers` those of the success response."""

    operation_id: str
    summary: str
    ok: tuple[int, SchemaRef]
    tag: str
    body: type[Schema] | None = None
    query: type[Schema] | None = None
    errors: frozenset[int] = frozenset()
    refusal: str = "Invalid username or password"  # what the route's own 401 means
    error_schemas: Mapping[int, tuple[type[Schema], str]] = field(default_factory=dict)
    links: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, Any] = field(default_factory=dict)


OPERATIONS: dict[Callable[..., Any], Operation] = {}  # Resource method -> what it does


def operation(
    operation_id: str,
    summary: str,
    ok: tuple[int, SchemaRef],
    *,
    tag: str,
    body: type[Schema] | None = None,
    query: type[Schema] | None = None,
    errors: tuple[int, ...] = (),
    refusal: str = "Invalid username or password",
    error_schemas: Mapping[int, tuple[type[Schema], str]] | None = None,
    links: Mapping[str, Any] | None = None,
    headers: Mapping[str, Any] | None = None,
) -> Callable[[F], F]:
    """Document a Resource method (it is returned as it is: no cost per request)."""

    def document(method: F) -> F:
        OPERATIONS[method] = Operation(
            operation_id,
            summary,
            ok,
            tag,
            body,
            query,
            frozenset(errors),
            refusal,
            error_schemas or {},
            links or {},
            headers or {},
        )
        return method

    return document


def link(operation_id: str, **parameters: str) -> dict[str, Any]:
    return {"operationId": operation_id, "parameters": parameters}


PAGED = {
    "Link": {
        "description": "The next page, when there is one (RFC 8288): `<posts?limit=20&before=ID>; "
        'rel="next"`, a reference to resolve against the URL called',
        "schema": {"type": "string"},
    }
}
CREATED = {
    "Location": {
        "description": "The new resource, as a reference to resolve against the URL called",
        "required": True,
        "schema": {"type": "string", "format": "uri-reference"},
    }
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
}


def error_statuses(route: Route, method: str, rule: Rule, op: Operation, public: bool) -> set[int]:
    statuses = set(op.errors)
    if not public:
        statuses |= {401, 403} if route.admin else {401}
    elif route.credentials:
        statuses.add(401)  # the guard refuses a bad bearer token on public routes too
    if method in UNSAFE_METHODS:
        statuses.add(403)  # a cross-site request, refused
    if op.body is not None:
        statuses |= {400, 413, 415, 422}
    if op.query is not None:
        statuses.add(422)
    if rule.arguments:
        statuses.add(404)
    if method.upper() in route.sensitive | route.recent:
        statuses.add(403)  # not a recent enough authentication
    if route.throttled:
        statuses.add(429)
    if route.credentials:
        statuses.add(503)  # the session is looked up in the database
    return statuses


def error_response(status: int, op: Operation, public: bool) -> dict[str, Any]:
    if status in op.error_schemas:
        schema, description = op.error_schemas[status]
        return response(schema, description)
    description = MESSAGES[status]
    if status == 401 and public:
        own = f"{op.refusal}; or: " if 401 in op.errors else ""
        description = own + UNKNOWN_BEARER
    schema_ref = INVALID if status == 422 else ERROR
    return response(schema_ref, description, RETRY_AFTER if status == 429 else None)


def response(
    schema: SchemaRef | str, description: str, headers: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    described: dict[str, Any] = {"description": description}
    if schema is not None:
        described["content"] = {"application/json": {"schema": schema}}
    if headers:
        described["headers"] = headers
    return described


def path_parameters(rule: Rule) -> list[dict[str, Any]]:
    """`{name}` for each `<converter(args):name>` of the rule, typed from its converter, read
    through werkzeug's public API (the rule text, parse_converter_args, url_map.converters)."""
    url_map = current_app.url_map
    parameters = []
    for converter, arguments, name in CONVERTER_RE.findall(rule.rule):
        args, kwargs = parse_converter_args(arguments) if arguments else ((), {})
        instance = url_map.converters[converter or "default"](url_map, *args, **kwargs)
        if not isinstance(instance, IntegerConverter):
            raise TypeError(f"{rule.rule}: document the {converter!r} converter")
        schema: dict[str, Any] = {"type": "integer"}
        schema.update(
            {
                k: v
                for k, v in (("minimum", instance.min), ("maximum", instance.max))
                if v is not None
            }
        )
        parameters.append({"in": "path", "name": name, "required": True, "schema": schema})
    return parameters


def build_document(routes: Mapping[str, Route]) -> dict[str, Any]:
    """The document for the app's URL map, each rule read with its route's record."""
    cookie = current_app.config["SESSION_COOKIE_NAME"]
    spec = APISpec(
        title="Flask IAM API",
        version="1.0.0",
        openapi_version="3.1.0",
        plugins=[MarshmallowPlugin()],
        info={
            "description": "Sign up, log in with a session cookie or a bearer token, own your "
            'posts. Errors are {"error"} (+ "errors" per field on 422).'
        },
        # Relative: resolved against this document's URL, so the paths stay right behind a dev
        # proxy or a path prefix (/api/openapi.json -> /api/posts), as Link and Location do.
        servers=[{"url": "."}],
    )
    spec.components.security_scheme(
        "cookieAuth", {"type": "apiKey", "in": "cookie", "name": cookie}
    )
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    spec.components.schema(ERROR, schema=ErrorSchema)
    spec.components.schema(INVALID, schema=ValidationErrorSchema)
    paths: dict[str, dict[str, Any]] = {}
    bodies: list[type[Schema]] = []
    for rule in current_app.url_map.iter_rules():
        route = routes[rule.endpoint]
        path = CONVERTER_RE.sub(r"{\3}", rule.rule)  # <int(...):id> -> {id}
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            op = OPERATIONS[getattr(route.resource, method.lower())]
            public = method in route.public
            entry: dict[str, Any] = {
                "operationId": op.operation_id,
                "summary": op.summary,
                "tags": [op.tag],
                "security": [] if public else [{"cookieAuth": []}, {"bearerAuth": []}],
                "parameters": path_parameters(rule),
                "responses": {},
            }
            if op.query is not None:
                entry["parameters"].append({"in": "query", "schema": op.query})
            if op.body is not None:
                bodies.append(op.body)
                entry["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": op.body}},
                }
            status, schema = op.ok
            ok = response(schema, "Success", op.headers)
            if op.links:
                ok["links"] = op.links
            entry["responses"][str(status)] = ok
            for error in sorted(error_statuses(route, method.lower(), rule, op, public)):
                entry["responses"][str(error)] = error_response(error, op, public)
            paths.setdefault(path, {})[method.lower()] = entry
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    apply_configured_limits(document, [body for body in bodies if issubclass(body, AtLeastOne)])
    state_request_defaults_in_words(document)
    return document


def apply_configured_limits(document: dict[str, Any], not_empty: list[type[Schema]]) -> None:
    """What the schemas alone cannot say: PASSWORD_MIN_LENGTH is configuration, a body that
    must not be empty, and a trimmed field's length counts after trimming, which its pattern
    states (so no raw min/maxLength)."""
    minimum = current_app.config["PASSWORD_MIN_LENGTH"]
    schemas = document["components"]["schemas"]
    for schema_class in not_empty:
        schemas[resolver(schema_class)]["minProperties"] = 1  # apispec's name for it
    for schema in schemas.values():
        for name, prop in schema.get("properties", {}).items():
            if (
                name in ("password", "new_password")
                and prop.get("minLength") == PASSWORD_MIN_LENGTH
            ):
                prop["minLength"] = minimum
            if prop.get("pattern", "").startswith(f"^{SPACE_CLASS}*"):  # trimmed_pattern()
                prop.pop("minLength", None)
                prop.pop("maxLength", None)


def state_request_defaults_in_words(document: dict[str, Any]) -> None:
    """A request body's optional fields carry no `default`, which generators read as "always
    present" (openapi-typescript 7, by its defaultNonNullable, types a component property with a
    default as required): the server fills it in, so the caller may leave it out. The default
    is said in the description instead. Query parameters keep theirs: `required: false` rules."""
    schemas = document["components"]["schemas"]
    pending = [
        media["schema"]
        for operations in document["paths"].values()
        for operation in operations.values()
        for media in operation.get("requestBody", {}).get("content", {}).values()
    ]
    seen: set[str] = set()
    while pending:
        schema = pending.pop()
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name not in seen:
                seen.add(name)
                pending.append(schemas[name])
            continue
        for prop in schema.get("properties", {}).values():
            if "default" in prop:
                said = f"Optional (default: {json.dumps(prop.pop('default'))})."
                prop["description"] = (
                    f"{prop['description']} {said}" if "description" in prop else said
                )
            pending.append(prop)
        pending.extend(s for s in (schema.get("items"),) if isinstance(s, dict))
