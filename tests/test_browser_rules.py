"""CORS for the listed app only; cross-site writes refused by the server itself; headers."""

import pytest

from apprunner import run_app
from conftest import PASSWORD
from services import session_cookie

APP = "https://app.example.com"  # CORS_ORIGINS in the suite (conftest.py)
OWN = "http://localhost"  # the test client's own origin
NOT_LISTED = [
    "https://evil.example",
    "null",
    "https://app.example.com.evil.net",
    "http://app.example.com",
    "https://app.example.com:8443",
    "https://sub.app.example.com",
    "https://APP.example.com.",
]


def preflight(client, path, origin, method="DELETE", headers="content-type"):
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


def test_preflight_from_the_listed_app_is_granted_without_login(client):
    response = preflight(client, "/posts/1", APP)

    assert response.status_code == 204
    assert "Content-Type" not in response.headers
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "DELETE" in response.headers["Access-Control-Allow-Methods"]
    assert "content-type" in response.headers["Access-Control-Allow-Headers"].lower()
    assert "Origin" in response.headers["Vary"]


def test_actual_requests_from_the_listed_app_get_credentialed_cors(signup):
    alice = signup("alice")
    for response in (
        alice.get("/check_session", headers={"Origin": APP}),
        alice.post("/posts", json={"content": "hi"}, headers={"Origin": APP}),
        alice.get("/nope", headers={"Origin": APP}),  # errors too, so the app can read them
    ):
        assert response.headers["Access-Control-Allow-Origin"] == APP
        assert response.headers["Access-Control-Allow-Credentials"] == "true"
    page = alice.get("/posts?limit=1", headers={"Origin": APP})
    assert "Link" in page.headers["Access-Control-Expose-Headers"]


@pytest.mark.parametrize("origin", NOT_LISTED)
def test_other_origins_get_no_cors_grant(signup, client, origin):
    alice = signup("alice")
    responses = [
        preflight(client, "/posts/1", origin),
        preflight(client, "/login", origin, method="POST"),
        alice.get("/check_session", headers={"Origin": origin}),
    ]
    for response in responses:
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "Access-Control-Allow-Credentials" not in response.headers


def test_private_network_access_is_never_granted(client):
    response = client.options(
        "/posts",
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Private-Network": "true",
        },
    )
    assert response.headers.get("Access-Control-Allow-Private-Network", "false") == "false"


def count(sql, table):
    return sql(f"SELECT count(*) FROM {table}")[0][0]


def refused(origin):
    """The 403 names the refused origin and the setting that would allow it."""
    return {
        "error": f"Origin {origin} may not make changes here: it is neither this API's own "
        "origin (http://localhost) nor listed in CORS_ORIGINS."
    }


NO_ORIGIN = {
    "error": "Cross-site request refused: it names no origin, and only origins in CORS_ORIGINS "
    "may write."
}


@pytest.mark.parametrize(
    "headers, error, logged",
    [
        (
            {"Origin": "https://evil.example"},
            refused("https://evil.example"),
            "https://evil.example",
        ),
        ({"Origin": "null"}, refused("null"), "null"),
        (
            {"Origin": "https://app.example.com.evil.net"},
            refused("https://app.example.com.evil.net"),
            "https://app.example.com.evil.net",
        ),
        (
            {"Referer": "https://evil.example/attack.html"},
            refused("https://evil.example"),
            "https://evil.example",
        ),
        ({"Sec-Fetch-Site": "cross-site"}, NO_ORIGIN, None),
        (
            {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
            refused("https://evil.example"),
            "https://evil.example",
        ),
    ],
    ids=["origin", "null", "lookalike", "referer", "sec-fetch-site", "both"],
)
def test_cross_site_writes_are_403_and_change_nothing(signup, sql, caplog, headers, error, logged):
    alice = signup("alice")
    post_id = alice.post("/posts", json={"content": "keep"}).get_json()["id"]

    attempts = [
        alice.post("/posts", json={"content": "forged"}, headers=headers),
        alice.patch(f"/posts/{post_id}", json={"content": "forged"}, headers=headers),
        alice.delete(f"/posts/{post_id}", headers=headers),
        alice.delete("/logout", headers=headers),
        alice.post("/login", json={"username": "alice", "password": PASSWORD}, headers=headers),
        alice.post("/signup", json={"username": "mallory", "password": PASSWORD}, headers=headers),
    ]
    for response in attempts:
        assert response.status_code == 403
        assert response.get_json() == error
    # the application log names the origin of each refusal
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused ")]
    assert len(refusals) == len(attempts)
    assert all(line.endswith(f"from origin {logged!r} (not in CORS_ORIGINS)") for line in refusals)
    assert sql("SELECT content FROM posts") == [("keep",)]
    assert count(sql, "users") == 1
    assert count(sql, "sessions") == 1
    assert alice.get("/check_session").status_code == 200  # still logged in: logout was refused


def test_login_csrf_cannot_log_the_victim_into_the_attackers_account(signup, client, sql):
    signup("mallory")
    response = client.post(
        "/login",
        json={"username": "mallory", "password": PASSWORD},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert response.status_code == 403
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, Postman, other servers: no Origin at all
        {"Origin": APP, "Sec-Fetch-Site": "cross-site"},  # the listed app on another site
        {"Origin": OWN},
        {"Referer": APP + "/posts/new"},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
    ],
    ids=["no-origin", "listed-app", "own-origin", "listed-referer", "same-origin", "user-typed"],
)
def test_writes_from_allowed_places_pass(signup, headers):
    alice = signup("alice")
    response = alice.post("/posts", json={"content": "hi"}, headers=headers)
    assert response.status_code == 201
    post_id = response.get_json()["id"]
    assert alice.delete(f"/posts/{post_id}", headers=headers).status_code == 204
    assert alice.delete("/logout", headers=headers).status_code == 204


def test_reads_are_not_refused_cross_site(signup):
    # the browser hides the answer from the page (no CORS grant); nothing changes on the server
    alice = signup("alice")
    response = alice.get("/check_session", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
@pytest.mark.parametrize("path", ["/posts", "/login", "/signup"])
def test_simple_form_posts_cannot_change_state_even_from_the_own_origin(
    signup, sql, content_type, path
):
    """HTML forms can only send these types; the JSON-only rule answers 415."""
    alice = signup("alice")
    response = alice.post(
        path,
        data='{"username":"alice","password":"correct horse battery","content":"x"}',
        headers={"Content-Type": content_type, "Origin": OWN},
    )
    assert response.status_code == 415
    assert count(sql, "posts") == 0 and count(sql, "sessions") == 1


EXPECTED_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


def test_every_response_carries_the_security_headers(signup, client):
    alice = signup("alice")
    responses = [
        alice.get("/check_session"),
        alice.get("/posts"),
        alice.delete("/posts/999"),
        client.get("/check_session"),
        client.get("/nope"),
        client.put("/login"),
        client.post("/login", data="x", content_type="text/plain"),
        preflight(client, "/posts", APP),
    ]
    for response in responses:
        for name, value in EXPECTED_HEADERS.items():
            assert response.headers.get(name) == value, (response.status, name)
        assert response.headers["Cache-Control"] == "no-store"
        assert "Cookie" in response.headers.get("Vary", "")
        assert "Strict-Transport-Security" not in response.headers  # only in production


def test_session_cookie_attributes_in_development(client):
    response = client.post("/signup", json={"username": "alice", "password": PASSWORD})
    header = session_cookie(response.headers.getlist("Set-Cookie"))
    assert header.startswith("session=")
    assert "; HttpOnly" in header and "; SameSite=Lax" in header and "; Path=/" in header
    assert "Secure" not in header and "Domain" not in header


LOOPBACK = [
    "http://localhost:5173",
    "http://127.0.0.1:3000",
    "http://[::1]:8080",
    "http://localhost",
]


def loopback_steps(origin):
    return [
        {
            "method": "OPTIONS",
            "path": "/posts",
            "headers": {
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        },
        {
            "method": "POST",
            "path": "/signup",
            "headers": {"Origin": origin},
            "json": {"username": "alice", "password": PASSWORD},
        },
        {
            "method": "POST",
            "path": "/posts",
            "headers": {"Origin": origin},
            "json": {"content": "from a dev server"},
        },
        {"method": "GET", "path": "/check_session", "headers": {"Origin": origin}},
    ]


@pytest.mark.parametrize("origin", LOOPBACK)
def test_development_trusts_loopback_origins_at_any_port_when_none_are_listed(tmp_path, origin):
    """APP_ENV=development with CORS_ORIGINS unset: a Vite or CRA dev server works at once."""
    results, stderr = run_app(loopback_steps(origin), {"APP_ENV": "development"}, tmp_path)
    preflight_, signup_, post, check = results
    assert preflight_["status"] == 204
    assert [signup_["status"], post["status"], check["status"]] == [201, 201, 200]
    for response in results:
        assert response["headers"]["Access-Control-Allow-Origin"] == origin
        assert response["headers"]["Access-Control-Allow-Credentials"] == "true"
    startup = [line for line in stderr.splitlines() if "loopback origins" in line]
    assert len(startup) == 1, stderr  # the startup log says so, in one line


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost.evil.example:5173",
        "https://localhost:5173",
        "http://127.0.0.2:3000",
        "http://10.0.0.1:5173",
        "http://evil.example",
    ],
)
def test_development_trusts_only_loopback(tmp_path, origin):
    results, _ = run_app(loopback_steps(origin), {"APP_ENV": "development"}, tmp_path)
    assert [r["status"] for r in results[1:3]] == [403, 403]
    assert all("Access-Control-Allow-Origin" not in r["headers"] for r in results)


@pytest.mark.parametrize(
    "env",
    [
        {"APP_ENV": "development", "CORS_ORIGINS": "https://app.example.com"},
        {"APP_ENV": "testing"},
    ],
    ids=["development-with-a-list", "testing"],
)
def test_an_explicit_list_or_another_environment_trusts_no_loopback_origin(tmp_path, env):
    results, stderr = run_app(loopback_steps("http://localhost:5173"), env, tmp_path)
    assert [r["status"] for r in results[1:3]] == [403, 403]
    assert all("Access-Control-Allow-Origin" not in r["headers"] for r in results)
    assert "loopback origins" not in stderr


def test_production_trusts_only_its_list(tmp_path):
    env = {
        "APP_ENV": "production",
        "SECRET_KEY": "x" * 40,
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "MAIL_SERVER": "127.0.0.1",
        "BCRYPT_LOG_ROUNDS": "12",
        "CORS_ORIGINS": "https://app.example.com",
        "MFA_ENCRYPTION_KEY": "a2V5LWZvci1lbmNyeXB0aW5nLXRvdHAtc2VjcmV0cy0=",
    }
    steps = [loopback_steps(origin)[0] for origin in ("http://localhost:5173", APP)]
    results, stderr = run_app(steps, env, tmp_path)
    assert "Access-Control-Allow-Origin" not in results[0]["headers"]
    assert results[1]["headers"]["Access-Control-Allow-Origin"] == APP
    assert "loopback origins" not in stderr
