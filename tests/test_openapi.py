"""The OpenAPI document describes every route, and schemathesis finds nothing it breaks."""

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from sqlalchemy import text

from config import db
from conftest import PASSWORD, clean_database, flask_app


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


# Well-formed data may still break a rule no schema can state (a taken username, a used link,
# a password on the breach list): the API answers 422 then, and that is not a failure.
CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": 20261123,
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "422", "429"]
            }
        },
    }
)
schema = schemathesis.openapi.from_wsgi("/openapi.json", flask_app, config=CONFIG)


@schema.auth(refresh_interval=None)  # log in afresh for each case: cases log out, reset...
class LoggedIn:
    """A real user (an admin, so admin routes are exercised too), logged in with a cookie."""

    def get(self, case, ctx):
        client = flask_app.test_client()
        body = {"username": "fuzzer", "password": PASSWORD}
        if client.post("/signup", json=body).status_code != 201:
            assert client.post("/login", json=body).status_code == 200
        with flask_app.app_context():
            db.session.execute(text("UPDATE users SET role = 'admin' WHERE username = 'fuzzer'"))
            db.session.commit()
        return client.get_cookie("session").value

    def set(self, case, data, ctx):
        case.cookies = {**(case.cookies or {}), "session": data}


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_every_operation_against_its_document(case):
    case.call_and_validate()


class Workflow(schema.as_state_machine()):
    """Sequences along the document's links: create a post, then read, edit, delete it..."""

    def setup(self):
        clean_database()  # every scenario starts from the same state, so replays are faithful


TestStatefulWorkflows = Workflow.TestCase
TestStatefulWorkflows.settings = settings(
    max_examples=40,
    stateful_step_count=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
