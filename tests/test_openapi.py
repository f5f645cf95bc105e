"""The OpenAPI document describes every route, and schemathesis finds nothing it breaks."""

import json
import os
import re
import shutil
import subprocess
import sys
from urllib.parse import urljoin

import pytest
import schemathesis
from hypothesis import HealthCheck, seed, settings
from schemathesis.config import SchemathesisConfig
from sqlalchemy import text

from authenticator import SoftAuthenticator
from config import db
from conftest import PASSWORD, ROOT, clean_database, enable_totp, flask_app
from services import environment_without, fetch, free_port, migrate, wait_until_up


def openapi_path(rule):
    path = rule.rule
    for name in rule.arguments:
        start = path.index("<")
        path = path[:start] + "{" + name + "}" + path[path.index(">", start) + 1 :]
    return path


def test_the_document_lists_every_route_and_nothing_else(app, client):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"] == "3.1.0"
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    routed = {
        (openapi_path(rule), method.lower())
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert documented == routed


def test_security_schemes_and_public_routes(client):
    document = client.get("/openapi.json").get_json()
    assert document["components"]["securitySchemes"] == {
        "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "session"},
        "bearerAuth": {"type": "http", "scheme": "bearer"},
    }
    assert document["paths"]["/login"]["post"]["security"] == []
    assert document["paths"]["/posts"]["get"]["security"] == [
        {"cookieAuth": []},
        {"bearerAuth": []},
    ]


def request_body_schemas(document):
    """Every schema a request body uses, with the component schemas it reaches through $ref."""
    components = document["components"]["schemas"]
    pending = [
        media["schema"]
        for operations in document["paths"].values()
        for operation in operations.values()
        for media in operation.get("requestBody", {}).get("content", {}).values()
    ]
    found, seen = [], set()
    while pending:
        schema = pending.pop()
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name not in seen:
                seen.add(name)
                pending.append(components[name])
            continue
        found.append(schema)
        pending.extend(schema.get("properties", {}).values())
    return found


# What a caller may leave out; the server fills them in. A generated client must say so.
OPTIONAL_FIELDS = {
    "Signup": {"email", "password_confirmation"},
    "Login": {"remember"},
    "TokenRequest": {"name", "expires_in_days"},
}
OPTIONAL_QUERY = {"listPosts": {"limit", "before", "user_id"}, "listUsers": {"limit", "q"}}


def operations(document):
    return [op for ops in document["paths"].values() for op in ops.values()]


def test_optional_request_fields_are_optional_to_generators(client):
    """No `default` on a request body's properties: openapi-typescript 7 (defaultNonNullable)
    types a property with a default as required, so a caller could not leave it out."""
    document = client.get("/openapi.json").get_json()
    for schema in request_body_schemas(document):
        for name, prop in schema.get("properties", {}).items():
            assert "default" not in prop, (name, prop)
    components = document["components"]["schemas"]
    for name, fields in OPTIONAL_FIELDS.items():
        assert fields <= set(components[name]["properties"]) - set(components[name]["required"])
    by_id = {op["operationId"]: op for op in operations(document)}
    for operation_id, names in OPTIONAL_QUERY.items():
        query = {p["name"]: p for p in by_id[operation_id]["parameters"] if p["in"] == "query"}
        assert names <= set(query)
        assert all(query[name]["required"] is False for name in names)


@pytest.mark.parametrize(
    ("path", "component"), [("/me", "Profile"), ("/admin/users/{id}", "AdminUserUpdate")]
)
def test_a_body_that_must_not_be_empty_says_so(app, client, signup, path, component):
    document = client.get("/openapi.json").get_json()
    assert document["components"]["schemas"][component]["minProperties"] == 1
    admin = signup("admin")
    enable_totp(admin)  # an admin needs a second factor (MFA_REQUIRED_ROLES)
    with app.app_context():
        db.session.execute(text("UPDATE users SET role = 'admin'"))
        db.session.commit()
    response = admin.patch(path.format(id=admin.user["id"]), json={})
    assert response.status_code == 422, response.get_json()


def test_operation_ids_are_camel_case_unique_and_links_name_them(client):
    document = client.get("/openapi.json").get_json()
    ids = [op["operationId"] for op in operations(document)]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][a-zA-Z0-9]*", i) for i in ids), ids
    linked = {
        target["operationId"]
        for op in operations(document)
        for response in op["responses"].values()
        for target in response.get("links", {}).values()
    }
    assert linked and linked <= set(ids)


def test_servers_resolve_against_the_document_url(client):
    """A relative server URL: through a dev proxy at /api, the paths stay under /api."""
    document = client.get("/openapi.json").get_json()
    [server] = document["servers"]
    base = urljoin("http://localhost:5173/api/openapi.json", server["url"])
    assert urljoin(base, "posts") == "http://localhost:5173/api/posts"
    assert urljoin(urljoin("http://127.0.0.1:5555/openapi.json", server["url"]), "posts") == (
        "http://127.0.0.1:5555/posts"
    )


def test_created_and_throttled_responses_document_their_headers(client, signup):
    document = client.get("/openapi.json").get_json()
    alice = signup("alice")
    created = {
        ("/signup", "post"): client.post("/signup", json={"username": "bob", "password": PASSWORD}),
        ("/posts", "post"): alice.post("/posts", json={"content": "hello"}),
        ("/tokens", "post"): client.post(
            "/tokens", json={"username": "alice", "password": PASSWORD}
        ),
        ("/me/passkeys", "post"): alice.post(
            "/me/passkeys",
            json={
                "credential": SoftAuthenticator().create(
                    alice.post("/me/passkeys/options").get_json(), "https://app.example.com"
                )
            },
        ),
    }
    documented_201 = {
        (path, method)
        for path, ops in document["paths"].items()
        for method, op in ops.items()
        if "201" in op["responses"]
    }
    assert documented_201 == set(created)
    for (path, method), response in created.items():
        assert response.status_code == 201
        headers = document["paths"][path][method]["responses"]["201"].get("headers", {})
        assert ("Location" in headers) == ("Location" in response.headers), path
        if "Location" in headers:
            assert headers["Location"]["required"] is True
    assert "Location" in document["paths"]["/posts"]["post"]["responses"]["201"]["headers"]
    for op in operations(document):
        if "429" in op["responses"]:
            retry_after = op["responses"]["429"]["headers"]["Retry-After"]
            assert retry_after["required"] is True
            assert retry_after["schema"]["type"] == "integer"


def routes(app):
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule, method


@pytest.mark.parametrize("authorization", ["Bearer iam_" + "x" * 43, "Basic YWxpY2U6cHc="])
def test_every_status_an_unknown_token_gets_is_documented(app, client, authorization):
    """Whatever Authorization a caller sends, each route answers a status its entry lists."""
    document = client.get("/openapi.json").get_json()
    for rule, method in routes(app):
        path = openapi_path(rule)
        url = re.sub(r"\{\w+\}", "1", path)
        body = {"json": {}} if method in ("POST", "PUT", "PATCH", "DELETE") else {}
        response = client.open(url, method=method, headers={"Authorization": authorization}, **body)
        documented = document["paths"][path][method.lower()]["responses"]
        assert str(response.status_code) in documented, (method, path, response.get_json())


def test_probes_ignore_authorization_and_stay_database_free(client, queries):
    bad = {"Authorization": "Bearer iam_" + "x" * 43}
    for path in ("/healthz", "/openapi.json"):
        client.get(path)  # the document is built once, on the first request
        with queries() as statements:
            response = client.get(path, headers=bad)
        assert response.status_code == 200
        assert statements == [], path
    with queries() as statements:
        response = client.get("/readyz", headers=bad)
    assert response.status_code == 200
    assert len(statements) == 1  # its own SELECT 1, no token lookup
    document = client.get("/openapi.json").get_json()
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert "401" not in document["paths"][path]["get"]["responses"]


# --- the document as the server serves it when started as the Flask lesson starts it ---


def child_environment(database_url, port):
    env = environment_without(("FLASK_", "WERKZEUG_"))
    env.update(APP_ENV="testing", DATABASE_URL=database_url, PORT=str(port))
    return env


def get(url, headers=None):
    """(status, parsed JSON body) of a GET, error statuses included."""
    status, _, body = fetch(url, headers=headers)
    return status, json.loads(body)


@pytest.fixture(scope="module")
def python_app_py(tmp_path_factory):
    """`python server/app.py` (the lesson's way) on a free port, with a migrated SQLite file."""
    port, directory = free_port(), tmp_path_factory.mktemp("served")
    database_url = f"sqlite:///{directory}/app.db"
    migrate(database_url)
    env = child_environment(database_url, port)
    log = directory / "server.log"
    with log.open("w") as stderr:
        server = subprocess.Popen(
            [sys.executable, "server/app.py"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/healthz", server, log=log)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_python_app_py_serves_the_same_document(python_app_py, client):
    status, document = get(f"{python_app_py}/openapi.json")
    assert status == 200
    assert document == client.get("/openapi.json").get_json()
    assert get(f"{python_app_py}/check_session") == (401, {"error": "Authentication required."})


OPENAPI_TYPESCRIPT = "openapi-typescript@7.13.0"


def typescript_members(source, interface, name, depth):
    """{member: optional?} of `name: {...}` inside `export interface <interface>`, its members
    `depth` levels of 4 spaces in (openapi-typescript's own layout)."""
    block = source[source.index(f"export interface {interface} {{") :]
    block = block[block.index(f"\n{' ' * 4 * (depth - 1)}{name}: {{") :]
    block = block[: block.index(f"\n{' ' * 4 * (depth - 1)}}};")]
    members = re.findall(rf"\n {{{4 * depth}}}\"?([\w-]+)\"?(\??): ", block)
    return {member: optional == "?" for member, optional in members}


@pytest.mark.skipif(shutil.which("npx") is None, reason="needs Node.js (npx)")
def test_generated_typescript_lets_callers_omit_optional_fields(python_app_py, tmp_path):
    """The real generator on the served document: optional fields come out as `name?:`."""
    out = tmp_path / "api.d.ts"
    done = subprocess.run(
        ["npx", "--yes", OPENAPI_TYPESCRIPT, f"{python_app_py}/openapi.json", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    source = out.read_text()
    _, document = get(f"{python_app_py}/openapi.json")
    components = document["components"]["schemas"]
    for name, fields in OPTIONAL_FIELDS.items():
        members = typescript_members(source, "components", name, 3)
        required = set(components[name]["required"])
        assert members == {field: field not in required for field in components[name]["properties"]}
        assert all(members[field] for field in fields), (name, members)
    for schema in ("Owner", "Post", "NewToken"):  # responses: every field is there
        assert not any(typescript_members(source, "components", schema, 3).values()), schema
    for operation_id, names in OPTIONAL_QUERY.items():
        query = source[source.index(f"\n    {operation_id}: {{") :]
        query = query[query.index("query?: {") : query.index("};")]
        assert all(f" {name}?: " in query for name in names), query


# Well-formed data may still break a rule no schema can state (a taken username, a used link,
# a password on the breach list): the API answers 422 then, and that is not a failure.
# Another seed explores other data: SCHEMATHESIS_SEED=7 pytest tests/test_openapi.py
SEED = int(os.environ.get("SCHEMATHESIS_SEED", "20261123"))
CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": SEED,
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "422", "429"]
            }
        },
    }
)
schema = schemathesis.openapi.from_wsgi("/openapi.json", flask_app, config=CONFIG)
bearer_schema = schemathesis.openapi.from_wsgi("/openapi.json", flask_app, config=CONFIG)
FUZZER = {"username": "fuzzer", "password": PASSWORD}


def logged_in_admin():
    """A test client logged in (with a cookie) as the fuzzer, a real user and an admin, so that
    admin routes are exercised too; it signs up again when a case deleted the account."""
    client = flask_app.test_client()
    if client.post("/signup", json=FUZZER).status_code != 201:
        assert client.post("/login", json=FUZZER).status_code == 200
    with flask_app.app_context():
        db.session.execute(text("UPDATE users SET role = 'admin' WHERE username = 'fuzzer'"))
        db.session.commit()
    return client


def still_works(cookie=None, token=None):
    """Whether credentials a case left behind still make the fuzzer an admin: cases log out,
    revoke tokens, delete the account, demote... and schemathesis asks for credentials for
    every case it generates (thousands), so they are renewed only when something ended them."""
    client = flask_app.test_client()
    if cookie is not None:
        client.set_cookie("session", cookie)
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    response = client.get("/check_session", headers=headers)
    return response.status_code == 200 and response.get_json()["role"] == "admin"


@schema.auth(refresh_interval=None)  # asked for each case; see still_works()
class LoggedIn:
    """The fuzzer, logged in with a session cookie."""

    cookie = None

    def get(self, case, ctx):
        if self.cookie is None or not still_works(cookie=self.cookie):
            self.cookie = logged_in_admin().get_cookie("session").value
        return self.cookie

    def set(self, case, data, ctx):
        case.cookies = {**(case.cookies or {}), "session": data}


@bearer_schema.auth(refresh_interval=None)  # asked for each case; see still_works()
class BearerToken:
    """The fuzzer with a real API token from POST /tokens, and no cookie."""

    token = None

    def get(self, case, ctx):
        if self.token is None or not still_works(token=self.token):
            logged_in_admin()
            with flask_app.app_context():  # earlier tokens: keep under the per-user limit
                db.session.execute(
                    text(
                        "DELETE FROM api_tokens WHERE user_id IN "
                        "(SELECT id FROM users WHERE username = 'fuzzer')"
                    )
                )
                db.session.commit()
            response = flask_app.test_client().post("/tokens", json=FUZZER)
            assert response.status_code == 201, response.get_json()
            self.token = response.get_json()["token"]
        return self.token

    def set(self, case, data, ctx):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture(autouse=True)
def admins_without_a_second_factor(monkeypatch):
    """The fuzzer is an admin with a password only, so that the admin routes are exercised past
    the 403 that asks an admin to set up a second factor (test_mfa.py tests that 403)."""
    monkeypatch.setitem(flask_app.config, "MFA_REQUIRED_ROLES", [])


FUZZ_SETTINGS = settings(
    max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


@schema.parametrize()
@FUZZ_SETTINGS
def test_every_operation_against_its_document(case):
    case.call_and_validate()


@bearer_schema.parametrize()
@FUZZ_SETTINGS
def test_every_operation_with_a_bearer_token(case):
    case.call_and_validate()


STATEFUL_SETTINGS = settings(
    max_examples=40,
    stateful_step_count=6,
    deadline=None,
    derandomize=True,  # the seed below takes precedence; it is what SCHEMATHESIS_SEED changes
    suppress_health_check=list(HealthCheck),
)


@seed(SEED)
class Workflow(schema.as_state_machine()):
    """Sequences along the document's links: create a post, then read, edit, delete it..."""

    def setup(self):
        clean_database()  # every scenario starts from the same state, so replays are faithful


@seed(SEED)
class BearerWorkflow(bearer_schema.as_state_machine()):
    """The same sequences, as a script with an API token would make them."""

    def setup(self):
        clean_database()


TestStatefulWorkflows = Workflow.TestCase
TestStatefulWorkflows.settings = STATEFUL_SETTINGS
TestStatefulBearerWorkflows = BearerWorkflow.TestCase
TestStatefulBearerWorkflows.settings = settings(STATEFUL_SETTINGS, max_examples=20)
