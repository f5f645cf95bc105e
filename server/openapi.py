"""The OpenAPI 3.1 document, built from the route table and the Marshmallow schemas in use.

Bodies, parameters and responses come from the same schema classes the Resources load and
dump with (apispec's marshmallow plugin), so the document cannot drift from the validation.
Which errors a route can return follows from what it is: 401 everywhere but the probes (a
protected route without credentials, or any route with a bearer token that names no live
token), bodies 400, 413, 415 and 422, state-changing methods 403 (cross-site), ids 404, and
429 (with Retry-After) and 503 anywhere. Operation ids are camelCase verbs (`createPost`).

GET /openapi.json reads the public routes app.py hands over in `app.extensions["public_routes"]`:
nothing here imports app, which `python server/app.py` runs as `__main__`.
"""

import json
import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields
from werkzeug.routing import IntegerConverter, parse_converter_args

import models as m
from config import MESSAGES, app
from security import UNTHROTTLED
from sessions import SESSIONLESS_PATHS

ERROR = "Error"
INVALID = "ValidationError"
CONVERTER_RE = re.compile(r"<(?:(\w+)(?:\((.*?)\))?:)?(\w+)>")  # <converter(arguments):name>


class ErrorSchema(Schema):
    error = fields.String(required=True)


class ValidationErrorSchema(ErrorSchema):
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), required=True)


class ReadySchema(Schema):
    status = fields.String(required=True)
    checks = fields.Dict(keys=fields.String(), values=fields.String(), required=True)


class NotReadySchema(ErrorSchema):
    checks = fields.Dict(keys=fields.String(), values=fields.String(), required=True)


class MessageSchema(Schema):
    message = fields.String(required=True)


class HealthSchema(Schema):
    status = fields.String(required=True)


def op(
    operation_id,
    summary,
    ok,
    *,
    body=None,
    query=None,
    errors=(),
    links=None,
    tag=None,
    headers=None,
):
    """One operation: `ok` is (status, response schema or None), `errors` the route's own,
    `headers` those of the success response."""
    return {
        "operationId": operation_id,
        "summary": summary,
        "ok": ok,
        "body": body,
        "query": query,
        "errors": set(errors),
        "links": links or {},
        "tag": tag,
        "headers": headers or {},
    }


def link(operation_id, **parameters):
    return {"operationId": operation_id, "parameters": parameters}


POST_LINKS = {
    "GetPost": link("getPost", post_id="$response.body#/id"),
    "EditPost": link("editPost", post_id="$response.body#/id"),
    "DeletePost": link("deletePost", post_id="$response.body#/id"),
}
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

# (endpoint, method) -> operation. A test checks it covers app.url_map exactly.
OPERATIONS = {
    ("signup", "post"): op(
        "signUp",
        "Create an account and log in",
        (201, m.OwnerSchema),
        body=m.SignupSchema,
        tag="Authentication",
    ),
    ("login", "post"): op(
        "logIn",
        "Log in (username or verified email)",
        (200, m.OwnerSchema),
        body=m.LoginSchema,
        errors=[401],
        tag="Authentication",
    ),
    ("logout", "delete"): op(
        "logOut",
        "Log out: delete this session (or revoke this bearer token)",
        (204, None),
        tag="Authentication",
    ),
    ("check_session", "get"): op(
        "checkSession", "Who is logged in", (200, m.OwnerSchema), tag="Authentication"
    ),
    ("posts", "get"): op(
        "listPosts",
        "List posts, newest first",
        (200, m.PostSchema(many=True)),
        query=m.PostQuerySchema,
        headers=PAGED,
        tag="Posts",
    ),
    ("posts", "post"): op(
        "createPost",
        "Create a post",
        (201, m.PostSchema),
        body=m.PostContentSchema,
        links=POST_LINKS,
        headers=CREATED,
        tag="Posts",
    ),
    ("post", "get"): op("getPost", "Read a post", (200, m.PostSchema), tag="Posts"),
    ("post", "patch"): op(
        "editPost", "Edit your post", (200, m.PostSchema), body=m.PostContentSchema, tag="Posts"
    ),
    ("post", "delete"): op(
        "deletePost", "Delete your post (admins: any post)", (204, None), tag="Posts"
    ),
    ("sessions", "get"): op(
        "listSessions",
        "Your live sessions",
        (200, m.SessionSchema(many=True)),
        tag="Sessions and tokens",
    ),
    ("sessions", "delete"): op(
        "endOtherSessions", "End every session but this one", (204, None), tag="Sessions and tokens"
    ),
    ("session", "delete"): op(
        "endSession", "End one of your sessions", (204, None), tag="Sessions and tokens"
    ),
    ("tokens", "get"): op(
        "listTokens",
        "Your API tokens (no secrets)",
        (200, m.TokenSchema(many=True)),
        tag="Sessions and tokens",
    ),
    ("tokens", "post"): op(
        "createToken",
        "Create an API token with your username and password (shown once)",
        (201, m.NewTokenSchema),
        body=m.TokenRequestSchema,
        errors=[401],
        links={"RevokeToken": link("revokeToken", token_id="$response.body#/id")},  # noqa: S106
        tag="Sessions and tokens",
    ),
    ("token", "delete"): op(
        "revokeToken", "Revoke an API token", (204, None), tag="Sessions and tokens"
    ),
    ("me", "get"): op("getMe", "Your account", (200, m.OwnerSchema), tag="Account"),
    ("me", "patch"): op(
        "updateMe",
        "Change username or email",
        (200, m.OwnerSchema),
        body=m.ProfileSchema,
        tag="Account",
    ),
    ("me", "delete"): op(
        "deleteMe",
        "Delete your account (needs the password)",
        (204, None),
        body=m.PasswordSchema,
        errors=[409],  # the last active admin, while other accounts exist
        tag="Account",
    ),
    ("my_password", "put"): op(
        "changePassword",
        "Change your password",
        (204, None),
        body=m.PasswordChangeSchema,
        tag="Account",
    ),
    ("email_verification", "post"): op(
        "requestEmailVerification",
        "Mail a link to confirm your email address",
        (202, MessageSchema),
        tag="Account",
    ),
    ("security_events", "get"): op(
        "listSecurityEvents",
        "Your security history, newest first",
        (200, m.SecurityEventSchema(many=True)),
        query=m.PageQuerySchema,
        headers=PAGED,
        tag="Account",
    ),
    ("password_reset", "post"): op(
        "requestPasswordReset",
        "Ask for a password-reset link (same answer for any address)",
        (202, MessageSchema),
        body=m.PasswordResetRequestSchema,
        tag="Account",
    ),
    ("password_reset_confirm", "post"): op(
        "confirmPasswordReset",
        "Set a new password with a reset link's token",
        (204, None),
        body=m.PasswordResetConfirmSchema,
        tag="Account",
    ),
    ("email_verification_confirm", "post"): op(
        "confirmEmailVerification",
        "Confirm an email address with a link's token",
        (200, m.OwnerSchema),
        body=m.TokenConfirmSchema,
        tag="Account",
    ),
    ("admin_users", "get"): op(
        "listUsers",
        "List and search users",
        (200, m.AdminUserSchema(many=True)),
        query=m.AdminUserQuerySchema,
        headers=PAGED,
        tag="Administration",
    ),
    ("admin_user", "patch"): op(
        "updateUser",
        "Change a user's role, or disable them",
        (200, m.AdminUserSchema),
        body=m.AdminUserUpdateSchema,
        errors=[409],  # it would leave no active admin
        tag="Administration",
    ),
    ("healthz", "get"): op(
        "checkHealth", "Liveness: the process is up", (200, HealthSchema), tag="Operations"
    ),
    ("readyz", "get"): op(
        "checkReadiness",
        "Readiness: the database (and Redis) answer",
        (200, ReadySchema),
        errors=[503],
        tag="Operations",
    ),
    ("openapi", "get"): op("getOpenApiDocument", "This document", (200, None), tag="Operations"),
}

# Errors that depend on what the route is, beyond the rules in the module docstring.
OWNER_CHECKED = {("post", "patch"), ("post", "delete")}
ADMIN_ONLY = {("admin_users", "get"), ("admin_user", "patch")}
REAUTHENTICATED = {("me", "delete"), ("me", "patch"), ("my_password", "put")}
NO_DATABASE = {("healthz", "get"), ("openapi", "get")}
# Bodies whose @validates_schema refuses `{}` ("Send at least one of: ..."), which apispec
# cannot read from the schema class.
NOT_EMPTY = (m.ProfileSchema, m.AdminUserUpdateSchema)
UNKNOWN_BEARER = "An `Authorization` header that names no live token (unknown, expired or revoked)"


def _error_statuses(endpoint, method, rule, operation, public):
    statuses = set(operation["errors"])
    if not public:
        statuses |= {401, 403} if (endpoint, method) in ADMIN_ONLY else {401}
    elif rule.rule not in SESSIONLESS_PATHS:
        statuses.add(401)  # the guard refuses a bad bearer token on public routes too
    if method in ("post", "put", "patch", "delete"):
        statuses.add(403)  # a cross-site request, refused
    if operation["body"] is not None:
        statuses |= {400, 413, 415, 422}
    if operation["query"] is not None:
        statuses.add(422)
    if rule.arguments:
        statuses.add(404)
    if (endpoint, method) in OWNER_CHECKED | REAUTHENTICATED:
        statuses.add(403)
    if endpoint not in UNTHROTTLED:
        statuses.add(429)
    if (endpoint, method) not in NO_DATABASE:
        statuses.add(503)
    if endpoint in ("email_verification",):
        statuses.add(422)
    if (endpoint, method) == ("admin_user", "patch") or endpoint in ("session", "token"):
        statuses.add(404)
    return statuses


def _error_response(key, status, operation, public):
    if key == ("readyz", "get") and status == 503:
        return _response(503, NotReadySchema, "Not ready")
    description = MESSAGES[status]
    if status == 401 and public:
        own = "Invalid username or password; or: " if 401 in operation["errors"] else ""
        description = own + UNKNOWN_BEARER
    schema = INVALID if status == 422 else ERROR
    return _response(status, schema, description, RETRY_AFTER if status == 429 else None)


def _response(status, schema, description, headers=None):
    response = {"description": description}
    if schema is not None:
        response["content"] = {"application/json": {"schema": schema}}
    if headers:
        response["headers"] = headers
    return response


def _path_parameters(rule):
    """`{name}` for each `<converter(args):name>` of the rule, typed from its converter, read
    through werkzeug's public API (the rule text, parse_converter_args, url_map.converters)."""
    parameters = []
    for converter, arguments, name in CONVERTER_RE.findall(rule.rule):
        args, kwargs = parse_converter_args(arguments) if arguments else ((), {})
        instance = app.url_map.converters[converter or "default"](app.url_map, *args, **kwargs)
        if not isinstance(instance, IntegerConverter):
            raise TypeError(f"{rule.rule}: document the {converter!r} converter")
        schema = {"type": "integer"}
        schema.update(
            {
                k: v
                for k, v in (("minimum", instance.min), ("maximum", instance.max))
                if v is not None
            }
        )
        parameters.append({"in": "path", "name": name, "required": True, "schema": schema})
    return parameters


def build_document(public_routes):
    cookie = app.config["SESSION_COOKIE_NAME"]
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
    paths = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = CONVERTER_RE.sub(r"{\3}", rule.rule)  # <int(...):id> -> {id}
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            key = (rule.endpoint, method.lower())
            operation = OPERATIONS[key]
            public = (rule.endpoint, method) in public_routes
            entry = {
                "operationId": operation["operationId"],
                "summary": operation["summary"],
                "tags": [operation["tag"]],
                "security": [] if public else [{"cookieAuth": []}, {"bearerAuth": []}],
                "parameters": _path_parameters(rule),
                "responses": {},
            }
            if operation["query"] is not None:
                entry["parameters"].append({"in": "query", "schema": operation["query"]})
            if operation["body"] is not None:
                entry["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": operation["body"]}},
                }
            status, schema = operation["ok"]
            ok = _response(status, schema, "Success", operation["headers"])
            if operation["links"]:
                ok["links"] = operation["links"]
            if key == ("openapi", "get"):
                ok["content"] = {"application/json": {"schema": {"type": "object"}}}
            entry["responses"][str(status)] = ok
            for error in sorted(_error_statuses(*key, rule, operation, public)):
                entry["responses"][str(error)] = _error_response(key, error, operation, public)
            paths.setdefault(path, {})[method.lower()] = entry
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    _apply_configured_limits(document)
    _state_request_defaults_in_words(document)
    return document


def _apply_configured_limits(document):
    """What the schemas alone cannot say: PASSWORD_MIN_LENGTH is configuration, a body that
    must not be empty, and a trimmed field's length counts after trimming, which its pattern
    states (so no raw min/maxLength)."""
    minimum = app.config["PASSWORD_MIN_LENGTH"]
    schemas = document["components"]["schemas"]
    for schema_class in NOT_EMPTY:
        schemas[schema_class.__name__.removesuffix("Schema")]["minProperties"] = 1
    for schema in schemas.values():
        for name, prop in schema.get("properties", {}).items():
            if name in ("password", "new_password") and prop.get("minLength") == 8:
                prop["minLength"] = minimum
            if prop.get("pattern", "").startswith(f"^{m.SPACE_CLASS}*"):  # trimmed_pattern()
                prop.pop("minLength", None)
                prop.pop("maxLength", None)


def _state_request_defaults_in_words(document):
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
    seen = set()
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
