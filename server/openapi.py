"""The OpenAPI 3.1 document, built from the route table and the Marshmallow schemas in use.

Bodies, parameters and responses come from the same schema classes the Resources load and
dump with (apispec's marshmallow plugin), so the document cannot drift from the validation.
Which errors a route can return follows from what it is: protected routes 401, bodies 400,
413, 415 and 422, state-changing methods 403 (cross-site), ids 404, and 429 and 503 anywhere.
"""

import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields

import models as m
from config import MESSAGES, app

ERROR = "Error"
INVALID = "ValidationError"


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


def op(summary, ok, *, body=None, query=None, errors=(), links=None, tag=None, headers=None):
    """One operation: `ok` is (status, response schema or None), `errors` the route's own."""
    return {
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
        "description": 'RFC 8288 `<...?before=ID>; rel="next"` when there is more',
        "schema": {"type": "string"},
    }
}

# (endpoint, method) -> operation. A test checks it covers app.url_map exactly.
OPERATIONS = {
    ("signup", "post"): op(
        "Create an account and log in",
        (201, m.OwnerSchema),
        body=m.SignupSchema,
        tag="Authentication",
    ),
    ("login", "post"): op(
        "Log in (username or verified email)",
        (200, m.OwnerSchema),
        body=m.LoginSchema,
        errors=[401],
        tag="Authentication",
    ),
    ("logout", "delete"): op(
        "Log out: delete this session (or revoke this bearer token)",
        (204, None),
        tag="Authentication",
    ),
    ("check_session", "get"): op("Who is logged in", (200, m.OwnerSchema), tag="Authentication"),
    ("posts", "get"): op(
        "List posts, newest first",
        (200, m.PostSchema(many=True)),
        query=m.PostQuerySchema,
        headers=PAGED,
        tag="Posts",
    ),
    ("posts", "post"): op(
        "Create a post",
        (201, m.PostSchema),
        body=m.PostContentSchema,
        links=POST_LINKS,
        tag="Posts",
    ),
    ("post", "get"): op("Read a post", (200, m.PostSchema), tag="Posts"),
    ("post", "patch"): op(
        "Edit your post", (200, m.PostSchema), body=m.PostContentSchema, tag="Posts"
    ),
    ("post", "delete"): op("Delete your post (admins: any post)", (204, None), tag="Posts"),
    ("sessions", "get"): op(
        "Your live sessions", (200, m.SessionSchema(many=True)), tag="Sessions and tokens"
    ),
    ("sessions", "delete"): op(
        "End every session but this one", (204, None), tag="Sessions and tokens"
    ),
    ("session", "delete"): op("End one of your sessions", (204, None), tag="Sessions and tokens"),
    ("tokens", "get"): op(
        "Your API tokens (no secrets)", (200, m.TokenSchema(many=True)), tag="Sessions and tokens"
    ),
    ("tokens", "post"): op(
        "Create an API token with your username and password (shown once)",
        (201, m.NewTokenSchema),
        body=m.TokenRequestSchema,
        errors=[401],
        links={"RevokeToken": link("revokeToken", token_id="$response.body#/id")},  # noqa: S106
        tag="Sessions and tokens",
    ),
    ("token", "delete"): op("Revoke an API token", (204, None), tag="Sessions and tokens"),
    ("me", "get"): op("Your account", (200, m.OwnerSchema), tag="Account"),
    ("me", "patch"): op(
        "Change username or email", (200, m.OwnerSchema), body=m.ProfileSchema, tag="Account"
    ),
    ("me", "delete"): op(
        "Delete your account (needs the password)",
        (204, None),
        body=m.PasswordSchema,
        tag="Account",
    ),
    ("my_password", "put"): op(
        "Change your password", (204, None), body=m.PasswordChangeSchema, tag="Account"
    ),
    ("email_verification", "post"): op(
        "Mail a link to confirm your email address", (202, MessageSchema), tag="Account"
    ),
    ("security_events", "get"): op(
        "Your security history, newest first",
        (200, m.SecurityEventSchema(many=True)),
        query=m.PageQuerySchema,
        headers=PAGED,
        tag="Account",
    ),
    ("password_reset", "post"): op(
        "Ask for a password-reset link (same answer for any address)",
        (202, MessageSchema),
        body=m.PasswordResetRequestSchema,
        tag="Account",
    ),
    ("password_reset_confirm", "post"): op(
        "Set a new password with a reset link's token",
        (204, None),
        body=m.PasswordResetConfirmSchema,
        tag="Account",
    ),
    ("email_verification_confirm", "post"): op(
        "Confirm an email address with a link's token",
        (200, m.OwnerSchema),
        body=m.TokenConfirmSchema,
        tag="Account",
    ),
    ("admin_users", "get"): op(
        "List and search users",
        (200, m.AdminUserSchema(many=True)),
        query=m.AdminUserQuerySchema,
        headers=PAGED,
        tag="Administration",
    ),
    ("admin_user", "patch"): op(
        "Change a user's role, or disable them",
        (200, m.AdminUserSchema),
        body=m.AdminUserUpdateSchema,
        tag="Administration",
    ),
    ("healthz", "get"): op("Liveness: the process is up", (200, HealthSchema), tag="Operations"),
    ("readyz", "get"): op(
        "Readiness: the database (and Redis) answer",
        (200, ReadySchema),
        errors=[503],
        tag="Operations",
    ),
    ("openapi", "get"): op("This document", (200, None), tag="Operations"),
}

# Errors that depend on what the route is, beyond the rules in the module docstring.
OWNER_CHECKED = {("post", "patch"), ("post", "delete")}
ADMIN_ONLY = {("admin_users", "get"), ("admin_user", "patch")}
REAUTHENTICATED = {("me", "delete"), ("me", "patch"), ("my_password", "put")}
UNTHROTTLED = {("healthz", "get"), ("readyz", "get"), ("openapi", "get")}
NO_DATABASE = {("healthz", "get"), ("openapi", "get")}
OPERATION_IDS = {
    ("post", "get"): "getPost",
    ("post", "patch"): "editPost",
    ("post", "delete"): "deletePost",
    ("token", "delete"): "revokeToken",
}


def _error_statuses(endpoint, method, rule, operation, public):
    statuses = set(operation["errors"])
    if not public:
        statuses |= {401, 403} if (endpoint, method) in ADMIN_ONLY else {401}
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
    if (endpoint, method) not in UNTHROTTLED:
        statuses.add(429)
    if (endpoint, method) not in NO_DATABASE:
        statuses.add(503)
    if endpoint in ("email_verification",):
        statuses.add(422)
    if (endpoint, method) == ("admin_user", "patch") or endpoint in ("session", "token"):
        statuses.add(404)
    return statuses


def _response(status, schema, description, headers=None):
    response = {"description": description}
    if schema is not None:
        response["content"] = {"application/json": {"schema": schema}}
    if headers:
        response["headers"] = headers
    return response


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
        path = re.sub(r"<(?:[^<>:]+:)?(\w+)>", r"{\1}", rule.rule)  # <int(...):id> -> {id}
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            key = (rule.endpoint, method.lower())
            operation = OPERATIONS[key]
            public = (rule.endpoint, method) in public_routes
            entry = {
                "operationId": OPERATION_IDS.get(key, f"{method.lower()}_{rule.endpoint}"),
                "summary": operation["summary"],
                "tags": [operation["tag"]],
                "security": [] if public else [{"cookieAuth": []}, {"bearerAuth": []}],
                "parameters": [
                    {
                        "in": "path",
                        "name": name,
                        "required": True,
                        "schema": {
                            "type": "integer",
                            "minimum": converter.min,
                            "maximum": converter.max,
                        },
                    }
                    for name, converter in rule._converters.items()
                ],
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
                if key == ("readyz", "get") and error == 503:
                    entry["responses"]["503"] = _response(503, NotReadySchema, "Not ready")
                    continue
                schema = INVALID if error == 422 else ERROR
                entry["responses"][str(error)] = _response(error, schema, MESSAGES[error])
            paths.setdefault(path, {})[method.lower()] = entry
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    _apply_configured_limits(document)
    return document


def _apply_configured_limits(document):
    """What the schemas alone cannot say: PASSWORD_MIN_LENGTH is configuration, and a trimmed
    field's length counts after trimming, which its pattern states (so no raw min/maxLength)."""
    minimum = app.config["PASSWORD_MIN_LENGTH"]
    for schema in document["components"]["schemas"].values():
        for name, prop in schema.get("properties", {}).items():
            if name in ("password", "new_password") and prop.get("minLength") == 8:
                prop["minLength"] = minimum
            if prop.get("pattern", "").startswith(r"^\s*[^\s"):
                prop.pop("minLength", None)
                prop.pop("maxLength", None)
