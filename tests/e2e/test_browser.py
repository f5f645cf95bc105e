"""A real browser (Debian's Chromium, driven by Playwright) against the API under gunicorn.

The demo client in site/ is served from one origin and talks to the API on another with
fetch(..., {credentials: "include"}), as a React app would. A page on an unlisted origin then
tries to use the same cookie. The API's JSON access log (with each request's Origin) and the
database show what reached the server and that nothing changed.

The React client in client/ is built once per run (`npm ci` first when node_modules is missing
or older than package-lock.json) and driven through the proxy of `vite preview` and from another
origin; `npm run dev` is checked too.
"""

import base64
import functools
import http.server
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pyotp
import pytest
from sqlalchemy import text

from conftest import PASSWORD, ROOT
from services import (
    GUNICORN,
    Client,
    engine_for,
    environment_without,
    free_port,
    migrate,
    wait_until_up,
)

CHROMIUM = "/usr/bin/chromium"
SITE = Path(__file__).parent / "site"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"needs Debian's Chromium at {CHROMIUM} (apt-get install chromium)",
)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pipenv sync --dev)")


def serve_static(port, directory=SITE):
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop(server):
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextmanager
def running_api(database_url, tmp_path, port, **settings):
    """The API under gunicorn in development mode on 127.0.0.1:port, with its JSON access log;
    settings (CORS_ORIGINS=None unsets it) override the environment."""
    access_log, error_log = tmp_path / "access.log", tmp_path / "error.log"
    env = {
        **environment_without(("RATELIMIT_", "REDIS_")),
        "APP_ENV": "development",
        "DATABASE_URL": database_url,
        "BCRYPT_LOG_ROUNDS": "4",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        **settings,
    }
    env = {k: v for k, v in env.items() if v is not None}
    migrate(database_url)
    server = subprocess.Popen(
        [*GUNICORN, "--access-logfile", str(access_log), "--error-logfile", str(error_log)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    engine = engine_for(database_url)
    try:
        wait_until_up(base + "/check_session", server)
        yield {"base": base, "log": access_log, "db": engine}
    finally:
        engine.dispose()
        server.terminate()
        server.wait(timeout=30)
    assert "Traceback" not in error_log.read_text()


@pytest.fixture
def api(empty_database, tmp_path):
    """The API under gunicorn, with the demo client's origin in CORS_ORIGINS."""
    app_port = free_port()
    app_origin = f"http://127.0.0.1:{app_port}"
    with running_api(empty_database, tmp_path, free_port(), CORS_ORIGINS=app_origin) as server:
        static = serve_static(app_port)
        try:
            yield {**server, "app": app_origin}
        finally:
            stop(static)


@pytest.fixture
def context(browser):
    """A fresh cookie jar, closed after the test (so no connection keeps the API waiting)."""
    context = browser.new_context()
    yield context
    context.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


def rows(api, query):
    with api["db"].connect() as conn:
        return conn.execute(text(query)).all()


def sign_up_in_the_app(page, api):
    page.goto(f"{api['app']}/index.html?api={api['base']}")
    page.fill("#username", "alice")
    page.fill("#password", PASSWORD)
    page.click("#signup")
    sync_api.expect(page.locator("#whoami")).to_have_text("Logged in as alice")


def test_a_user_signs_up_posts_reloads_deletes_and_logs_out(api, context):
    page = context.new_page()
    sign_up_in_the_app(page, api)

    page.fill("#content", "hello from the browser")
    page.click("#post")
    sync_api.expect(page.locator(".post .content")).to_have_text(["hello from the browser"])
    assert rows(api, "SELECT content FROM posts") == [("hello from the browser",)]

    page.reload()  # the session cookie survives a reload
    sync_api.expect(page.locator("#whoami")).to_have_text("Logged in as alice")
    sync_api.expect(page.locator(".post .content")).to_have_text(["hello from the browser"])

    page.click(".post .delete")
    sync_api.expect(page.locator(".post")).to_have_count(0)
    assert rows(api, "SELECT count(*) FROM posts") == [(0,)]

    page.click("#logout")
    sync_api.expect(page.locator("#signup")).to_be_visible()
    page.reload()
    sync_api.expect(page.locator("#signup")).to_be_visible()  # still logged out after a reload
    assert rows(api, "SELECT count(*) FROM sessions") == [(0,)]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"], ids=["same-site", "cross-site"])
def test_a_page_on_an_unlisted_origin_can_neither_read_nor_change_anything(api, context, host):
    page = context.new_page()
    sign_up_in_the_app(page, api)
    page.fill("#content", "mine")
    page.click("#post")
    sync_api.expect(page.locator(".post .content")).to_have_text(["mine"])
    [(post_id,)] = rows(api, "SELECT id FROM posts")
    sessions_before = rows(api, "SELECT id FROM sessions")

    evil_port = free_port()
    evil = serve_static(evil_port)
    evil_origin = f"http://{host}:{evil_port}"
    try:
        attacker = context.new_page()  # same browser, same cookie jar: the user visits it
        attacker.goto(f"{evil_origin}/evil.html?api={api['base']}&post={post_id}")
        attacker.wait_for_selector("body[data-done]", state="attached", timeout=30_000)
        results = attacker.evaluate("window.results")
    finally:
        stop(evil)

    for name in ("read_session", "read_posts", "create_json", "edit", "delete", "logout"):
        assert results[name] == "blocked", (name, results)
    assert results["create_simple"] == "opaque"  # sent, but the page learns nothing

    # The server's side: nothing changed, and what reached it was refused.
    assert rows(api, "SELECT id, content FROM posts") == [(post_id, "mine")]
    assert rows(api, "SELECT id FROM sessions") == sessions_before
    assert rows(api, "SELECT username FROM users") == [("alice",)]
    lines = [json.loads(line) for line in api["log"].read_text().splitlines()]
    reached = [line for line in lines if line["origin"] == evil_origin]  # JSON access log
    writes = [
        (line["method"], line["path"], str(line["status"]))
        for line in reached
        if line["method"] in ("POST", "PUT", "PATCH", "DELETE")
    ]
    assert ("POST", "/posts", "403") in writes, reached  # simple requests did reach the server...
    assert all(status == "403" for _, _, status in writes), writes  # ...and were refused

    page.reload()  # and the user is still logged in with their post
    sync_api.expect(page.locator("#whoami")).to_have_text("Logged in as alice")
    sync_api.expect(page.locator(".post .content")).to_have_text(["mine"])


# The React client in client/, built with Vite and driven in Chromium.
#
# proxied: the page and its /api on one origin (vite preview, whose proxy forwards /api to the
#   API without changing Host), the API in development mode with CORS_ORIGINS unset.
# cross-origin: a build with VITE_API_URL=http://localhost:<api port>, served from
#   http://localhost:<another port>, which is in CORS_ORIGINS.
# cross-origin-dev-default: that build again, the API with CORS_ORIGINS unset: development mode
#   trusts loopback origins on any port.
# Page and API use the same host name, localhost: to the browser localhost and 127.0.0.1 are
# different sites, and it would not send a SameSite=Lax cookie from one to the other.

CLIENT = ROOT / "client"
PAGE_SIZE = 5  # the page's ?limit=, so that seven posts make two pages
CROSS_ORIGIN = ["cross-origin", "cross-origin-dev-default"]


def npm(*args, env=None, timeout):
    done = subprocess.run(
        ["npm", *args],
        cwd=CLIENT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="session")
def client_packages():
    """client/node_modules as package-lock.json has it: `npm ci` when missing or stale."""
    if shutil.which("npm") is None:
        pytest.skip("needs Node.js and npm to build client/")
    installed, lock = CLIENT / "node_modules" / ".package-lock.json", CLIENT / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        npm("ci", "--no-audit", "--no-fund", timeout=600)


def build_client(out_dir, api_url=None):
    env = {k: v for k, v in os.environ.items() if k != "VITE_API_URL"}
    if api_url:
        env["VITE_API_URL"] = api_url
    npm("run", "build", "--", "--outDir", str(out_dir), "--emptyOutDir", env=env, timeout=180)
    return out_dir


@pytest.fixture(scope="session")
def proxied_build(client_packages, tmp_path_factory):
    """The client as `npm run build` makes it: it calls /api on its own origin."""
    return build_client(tmp_path_factory.mktemp("client-proxied"))


@pytest.fixture(scope="session")
def cross_origin_build(client_packages, tmp_path_factory):
    """(dist, port): a build that calls the API at http://localhost:<port> directly."""
    api_port = free_port()
    dist = build_client(tmp_path_factory.mktemp("client-direct"), f"http://localhost:{api_port}")
    return dist, api_port


@contextmanager
def running(command, url, log_path, **popen):
    """A server process (in a process group of its own, stopped with it), once url answers."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **popen
        )
        try:
            wait_until_up(url, process)
            yield process
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def vite(*args, api_base, port, log_path):
    """`vite <args>` on 127.0.0.1:port with its /api proxy pointed at api_base."""
    command = [CLIENT / "node_modules" / ".bin" / "vite", *args, "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    env = {**os.environ, "API_URL": api_base}
    return running(command, f"http://127.0.0.1:{port}/", log_path, cwd=CLIENT, env=env)


@pytest.fixture
def api_settings():
    """More of the API's settings for react_app; a test parametrizes it to change them."""
    return {}


@pytest.fixture
def react_app(request, empty_database, tmp_path, api_settings):
    """The API under gunicorn (at most 2 failed logins a minute per account) and the built
    client in front of it, in the mode the test is parametrized with.

    Passkeys belong to the page's site: the relying party is localhost (an RP ID is a domain,
    never an IP address; http://localhost is a secure context) and the answers come from the
    page's origin, whichever port it is on."""
    mode = request.param
    if mode == "proxied":
        dist, api_port = request.getfixturevalue("proxied_build"), free_port()
    else:
        dist, api_port = request.getfixturevalue("cross_origin_build")
    page_port = free_port()
    app_origin = f"http://localhost:{page_port}"
    settings = {
        "RATELIMIT_LOGIN_ACCOUNT": "2 per minute",
        "CORS_ORIGINS": None,
        "WEBAUTHN_RP_ID": "localhost",
        "WEBAUTHN_ORIGINS": app_origin,
        **api_settings,
    }
    if mode == "cross-origin":
        settings["CORS_ORIGINS"] = app_origin
    with running_api(empty_database, tmp_path, api_port, **settings) as api:
        if mode == "proxied":
            preview = ("preview", "--outDir", dist, "--strictPort")
            with vite(*preview, api_base=api["base"], port=page_port, log_path=tmp_path / "vite"):
                yield {**api, "app": app_origin, "mode": mode}
            return
        static = serve_static(page_port, dist)
        try:
            yield {**api, "app": app_origin, "mode": mode}
        finally:
            stop(static)


def log_lines(api):
    return [json.loads(line) for line in api["log"].read_text().splitlines()]


def someone_elses_post(api, content):
    """bob signs up and posts, straight to the API (no Origin: curl's way)."""
    bob = Client(urlsplit(api["base"]).port).signup("bob")
    posted = bob.post("/posts", {"content": content})
    assert posted.status == 201, posted.body


def session_cookie(context):
    [cookie] = [c for c in context.cookies() if c["name"] == "session"]
    return cookie


def texts(page):
    return page.locator("#posts .post .content")


@pytest.mark.parametrize("react_app", ["proxied", *CROSS_ORIGIN], indirect=True)
def test_the_react_client_signs_up_pages_edits_deletes_and_logs_back_in(react_app, context):
    api, expect = react_app, sync_api.expect
    page = context.new_page()
    page.goto(f"{api['app']}/?limit={PAGE_SIZE}")

    # A confirmation that differs: the API's message sits by that field, and nobody signs up.
    page.fill("#signup-username", "alice")
    page.fill("#signup-password", PASSWORD)
    page.fill("#signup-password_confirmation", PASSWORD + " typo")
    page.click("#signup-submit")
    expect(page.locator("#signup-password_confirmation-error")).not_to_be_empty()
    expect(page.locator("#signup-password_confirmation")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#signup-username-error")).to_have_count(0)
    assert rows(api, "SELECT count(*) FROM users") == [(0,)]

    page.fill("#signup-password_confirmation", PASSWORD)
    page.click("#signup-submit")
    expect(page.locator("#whoami")).to_have_text("Logged in as alice")
    assert session_cookie(context)["expires"] == -1  # not remembered: ends with the browser

    # Someone else's post is listed, but only the author gets Edit and Delete.
    someone_elses_post(api, "bob was here")
    page.click("#new-post-submit")  # blank: the API's 422 message goes by the field
    expect(page.locator("#new-post-content-error")).not_to_be_empty()
    for n in range(7):
        page.fill("#new-post-content", f"post {n}")
        page.click("#new-post-submit")
        expect(texts(page).first).to_have_text(f"post {n}")
    expect(page.locator("#new-post-content-error")).to_have_count(0)
    assert rows(api, "SELECT count(*) FROM posts") == [(8,)]

    page.reload()  # still logged in; the first page is the newest five
    expect(page.locator("#whoami")).to_have_text("Logged in as alice")
    expect(texts(page)).to_have_text([f"post {n}" for n in (6, 5, 4, 3, 2)])
    page.click("#load-more")  # follows the Link header
    expect(texts(page)).to_have_text(
        [f"post {n}" for n in (6, 5, 4, 3, 2, 1, 0)] + ["bob was here"]
    )
    expect(page.locator("#load-more")).to_have_count(0)  # no Link: the last page
    pages = [
        line for line in log_lines(api) if line["path"] == "/posts" and line["method"] == "GET"
    ]
    # after sign-up, after the reload, then the page the Link named
    assert [(line["status"], "before=" in line["query"]) for line in pages] == [
        (200, False),
        (200, False),
        (200, True),
    ], pages

    bobs = page.locator(".post", has_text="bob was here")
    expect(bobs.locator(".author")).to_have_text("bob")
    expect(bobs.locator(".edit, .delete")).to_have_count(0)
    expect(page.locator(".post", has_text="post 3").locator(".edit, .delete")).to_have_count(2)

    post = page.locator(".post", has_text="post 3")
    post.locator(".edit").click()
    post.locator(".edit-content").fill("post 3, edited")
    post.locator(".save").click()
    expect(page.locator(".post", has_text="post 3, edited").locator(".content")).to_be_visible()
    page.locator(".post", has_text="post 0").locator(".delete").click()
    expect(page.locator(".post", has_text="post 0")).to_have_count(0)
    assert rows(api, "SELECT content FROM posts WHERE content LIKE 'post 3%'") == [
        ("post 3, edited",)
    ]
    assert rows(api, "SELECT count(*) FROM posts WHERE content = 'post 0'") == [(0,)]

    page.click("#logout")
    expect(page.locator("#login-submit")).to_be_visible()
    page.reload()
    expect(page.locator("#login-submit")).to_be_visible()  # still logged out after a reload
    alices = "SELECT remember FROM sessions JOIN users ON users.id = sessions.user_id"
    assert rows(api, alices + " WHERE username = 'alice'") == []

    page.fill("#login-username", "alice")
    page.fill("#login-password", PASSWORD)
    page.check("#login-remember")
    page.click("#login-submit")
    expect(page.locator("#whoami")).to_have_text("Logged in as alice")
    assert session_cookie(context)["expires"] > time.time() + 86400  # a cookie that persists
    assert [bool(r) for (r,) in rows(api, alices + " WHERE username = 'alice'")] == [True]
    page.reload()
    expect(page.locator("#whoami")).to_have_text("Logged in as alice")

    # Every write the page made reached the API from the page's origin and was accepted.
    writes = [line for line in log_lines(api) if line["method"] in ("POST", "PATCH", "DELETE")]
    assert {line["origin"] for line in writes} == {api["app"], None}, writes  # None: bob's curl
    refused = [(line["path"], line["status"]) for line in writes if line["status"] >= 400]
    assert refused == [("/signup", 422), ("/posts", 422)], writes  # the two the test meant


@pytest.mark.parametrize("react_app", ["proxied", "cross-origin"], indirect=True)
def test_the_react_client_shows_how_long_to_wait_after_too_many_failed_logins(react_app, context):
    api = react_app
    someone_elses_post(api, "bob's post")
    page = context.new_page()
    page.goto(api["app"])
    page.fill("#login-username", "bob")
    for password in ["not the password", "nor this", PASSWORD]:  # the last: right, but too late
        page.fill("#login-password", password)
        with page.expect_response(lambda r: r.url.endswith("/login")) as answer:
            page.click("#login-submit")
        if password != PASSWORD:
            sync_api.expect(page.locator("#login-error")).to_have_text(
                "Invalid username or password."
            )
    assert answer.value.status == 429
    seconds = answer.value.headers["retry-after"]
    assert 0 < int(seconds) <= 61  # a minute, rounded up, plus one
    # The page could read the header (exposed to the other origin by CORS) and says so.
    sync_api.expect(page.locator("#login-error")).to_have_text(
        f"Too many attempts. Try again in {seconds} seconds."
    )
    sync_api.expect(page.locator("#whoami")).to_have_count(0)
    posts = [line for line in log_lines(api) if line["method"] == "POST"]  # not the preflights
    assert [line["status"] for line in posts if line["path"] == "/login"] == [401, 401, 429]


def test_npm_run_dev_serves_the_app_and_proxies_api_without_changing_the_origin(
    client_packages, empty_database, tmp_path, context
):
    """`npm run dev -- --port N` (what `make client` runs) serves the app and forwards /api with
    the browser's Host: a write passes the cross-site check as same-origin, even with a
    CORS_ORIGINS that does not list the dev server (no loopback trust to lean on)."""
    port = free_port()
    listed = {"CORS_ORIGINS": "https://app.example.com"}
    with running_api(empty_database, tmp_path, free_port(), **listed) as api:
        command = ["npm", "run", "dev", "--", "--port", str(port), "--host", "127.0.0.1"]
        env = {**os.environ, "API_URL": api["base"]}
        with running(command, f"http://127.0.0.1:{port}/", tmp_path / "vite", cwd=CLIENT, env=env):
            page = f"http://localhost:{port}"
            with urllib.request.urlopen(page + "/", timeout=10) as response:
                assert b'<div id="root">' in response.read()
            with pytest.raises(urllib.error.HTTPError) as anonymous:
                urllib.request.urlopen(page + "/api/check_session", timeout=10)
            with anonymous.value as response:
                assert response.status == 401
                assert json.load(response) == {"error": "Authentication required."}
            signup = urllib.request.Request(
                page + "/api/signup",
                data=json.dumps({"username": "alice", "password": PASSWORD}).encode(),
                headers={"Content-Type": "application/json", "Origin": page},
            )
            with urllib.request.urlopen(signup, timeout=10) as response:
                assert response.status == 201
            browser_page = context.new_page()  # the dev build runs: JSX compiled on the fly
            browser_page.goto(f"{page}/")
            sync_api.expect(browser_page.locator("#login-submit")).to_be_visible()
    [line] = [line for line in log_lines(api) if line["path"] == "/signup"]
    assert (line["origin"], line["status"]) == (page, 201)


# Two factors and step-up in the React client.


def sign_up_in_the_react_client(page, api, username="alice"):
    page.goto(api["app"])
    page.fill("#signup-username", username)
    page.fill("#signup-password", PASSWORD)
    page.fill("#signup-password_confirmation", PASSWORD)
    page.click("#signup-submit")
    sync_api.expect(page.locator("#whoami")).to_have_text(f"Logged in as {username}")


def confirm_totp(page):
    """On the Security screen after "Turn on": reads the secret off the page, confirms it with
    a code from it; returns the secret and the ten recovery codes shown."""
    expect = sync_api.expect
    secret_shown = page.locator("#totp-secret")
    expect(secret_shown).to_be_visible()
    secret = secret_shown.inner_text().strip()
    # The QR code (the API's SVG, as an image) loads and has a size.
    qr = page.locator("#totp-qr")
    expect(qr).to_have_attribute("alt", "QR code of your new two-factor secret")
    page.wait_for_function("document.querySelector('#totp-qr').complete")
    assert qr.evaluate("img => img.naturalWidth") > 0
    expect(page.get_by_label("Code from your authenticator app")).to_be_focused()

    page.fill("#totp-confirm-code", "000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    page.click("#totp-confirm-submit")  # a wrong code: the API's message, by the field
    expect(page.locator("#totp-confirm-code-error")).to_have_text(
        "That code is not right (or was already used)."
    )
    page.fill("#totp-confirm-code", pyotp.TOTP(secret).now())
    page.click("#totp-confirm-submit")
    codes = page.locator("#recovery-codes-list li")
    expect(codes).to_have_count(10)
    expect(page.locator("#recovery-codes")).to_be_focused()  # for a screen reader, too
    expect(page.locator("#recovery-codes-note")).to_contain_text("only time they are shown")
    expect(page.locator("#totp-status")).to_have_text("Authenticator app (TOTP): on")
    expect(page.locator("#recovery-codes-left")).to_have_text("Recovery codes left: 10")
    expect(page.locator("#totp-setup")).to_have_count(0)
    return secret, [code.strip() for code in codes.all_inner_texts()]


def turn_on_totp(page):
    expect = sync_api.expect
    page.click("#show-security")
    expect(page.locator("#show-security")).to_have_attribute("aria-current", "page")
    expect(page.locator("#totp-status")).to_have_text("Authenticator app (TOTP): off")
    expect(page.locator("#recovery-codes-left")).to_have_count(0)
    page.click("#totp-start")
    secret, codes = confirm_totp(page)
    page.click("#recovery-codes-done")  # saved: they are not shown again
    expect(page.locator("#recovery-codes")).to_have_count(0)
    return secret, codes


def log_out_and_give_the_password(page, username="alice"):
    """Log out, then the first step of a login: the page asks for the second factor."""
    expect = sync_api.expect
    page.click("#logout")
    expect(page.locator("#login-submit")).to_be_visible()
    page.fill("#login-username", username)
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    expect(page.locator("#login-mfa")).to_be_visible()
    expect(page.locator("#whoami")).to_have_count(0)


def next_step_code(secret):
    """A code for the next 30-second step: the API takes one step of drift, and a code whose step
    is later than the last one used (the confirmation's) is new to it."""
    return pyotp.TOTP(secret).at(time.time() + 30)


@pytest.mark.parametrize("react_app", ["proxied", "cross-origin"], indirect=True)
def test_the_react_client_turns_on_totp_and_logs_in_with_a_code(react_app, context):
    api, expect = react_app, sync_api.expect
    page = context.new_page()
    sign_up_in_the_react_client(page, api)
    secret, _ = turn_on_totp(page)
    [(confirmed,)] = rows(api, "SELECT confirmed_at IS NOT NULL FROM totp_factors")
    assert confirmed
    assert rows(api, "SELECT count(*) FROM recovery_codes") == [(10,)]

    log_out_and_give_the_password(page)
    assert rows(api, "SELECT count(*) FROM pending_logins") == [(1,)]
    code_field = page.get_by_label("Code from your authenticator app")
    expect(code_field).to_be_focused()
    expect(code_field).to_have_attribute("autocomplete", "one-time-code")
    page.reload()  # a reload forgets the step; the session is not there yet
    expect(page.locator("#login-submit")).to_be_visible()
    expect(page.locator("#whoami")).to_have_count(0)
    page.fill("#login-username", "alice")
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")

    wrong = "123456" if next_step_code(secret) != "123456" else "654321"
    code_field.fill(wrong)
    page.click("#login-mfa-submit")
    expect(page.locator("#login-mfa-error")).to_have_text("That code is not right.")
    expect(page.locator("#whoami")).to_have_count(0)

    code_field.fill(next_step_code(secret))
    page.click("#login-mfa-submit")
    expect(page.locator("#whoami")).to_have_text("Logged in as alice")
    page.reload()
    expect(page.locator("#whoami")).to_have_text("Logged in as alice")
    page.click("#show-security")
    expect(page.locator("#totp-status")).to_have_text("Authenticator app (TOTP): on")

    logins = [line for line in log_lines(api) if line["path"].startswith("/login")]
    assert [(line["path"], line["status"]) for line in logins if line["method"] == "POST"] == [
        ("/login", 401),
        ("/login", 401),
        ("/login/mfa", 401),
        ("/login/mfa", 200),
    ]


@pytest.mark.parametrize("react_app", ["proxied"], indirect=True)
def test_the_react_client_logs_in_with_a_recovery_code(react_app, context):
    api, expect = react_app, sync_api.expect
    page = context.new_page()
    sign_up_in_the_react_client(page, api)
    _, codes = turn_on_totp(page)
    assert len(set(codes)) == 10

    log_out_and_give_the_password(page)
    page.click("#login-mfa-toggle")  # "Use a recovery code instead"
    expect(page.locator("#login-mfa-toggle")).to_have_text("Use your authenticator app instead")
    recovery_field = page.get_by_label("Recovery code")
    expect(recovery_field).to_be_focused()
    recovery_field.fill(codes[0])
    page.click("#login-mfa-submit")
    expect(page.locator("#whoami")).to_have_text("Logged in as alice")
    page.click("#show-security")
    expect(page.locator("#recovery-codes-left")).to_have_text("Recovery codes left: 9")

    # A recovery code works once.
    log_out_and_give_the_password(page)
    page.click("#login-mfa-toggle")
    page.fill("#login-mfa-recovery_code", codes[0])
    page.click("#login-mfa-submit")
    expect(page.locator("#login-mfa-error")).to_have_text("That code is not right.")
    page.fill("#login-mfa-recovery_code", codes[1])
    page.click("#login-mfa-submit")
    expect(page.locator("#whoami")).to_have_text("Logged in as alice")


WINDOW = 2  # REAUTHENTICATION_WINDOW, in seconds, for the step-up test


def stale():
    """Wait until the session no longer counts as recent."""
    time.sleep(WINDOW + 0.2)


@pytest.mark.parametrize("react_app", ["proxied"], indirect=True)
@pytest.mark.parametrize(
    "api_settings", [{"REAUTHENTICATION_WINDOW": str(WINDOW)}], ids=[f"window={WINDOW}s"]
)
def test_the_react_client_asks_to_confirm_it_is_you_and_retries(react_app, context):
    """A refused sensitive change (403 reauthentication_required) opens the prompt; once POST
    /reauthenticate succeeds, the change is sent again without another click."""
    api, expect = react_app, sync_api.expect
    page = context.new_page()
    sign_up_in_the_react_client(page, api)
    page.click("#show-security")
    expect(page.locator("#totp-status")).to_have_text("Authenticator app (TOTP): off")

    stale()  # the sign-up was long ago: turning TOTP on wants the password again
    page.click("#totp-start")
    dialog = page.get_by_role("dialog", name="Confirm it is you")
    expect(dialog).to_be_visible()
    expect(page.locator("#step-up-use-code")).to_have_count(0)  # no TOTP yet: password only
    expect(page.locator("#step-up-password")).to_be_focused()
    page.fill("#step-up-password", "not the password")
    page.click("#step-up-submit")
    expect(page.locator("#step-up-error")).to_have_text("That is not right.")
    expect(page.locator("#totp-secret")).to_have_count(0)
    page.fill("#step-up-password", PASSWORD)
    page.click("#step-up-submit")
    expect(dialog).to_have_count(0)
    secret, first_codes = confirm_totp(page)  # the retried POST /me/mfa/totp gave the secret
    page.click("#recovery-codes-done")
    expect(page.locator("#recovery-codes")).to_have_count(0)

    stale()  # new recovery codes: confirmed this time with a code from the app
    page.click("#recovery-codes-new")
    expect(dialog).to_be_visible()
    page.check("#step-up-use-code")
    page.fill("#step-up-code", next_step_code(secret))
    page.click("#step-up-submit")
    expect(dialog).to_have_count(0)
    expect(page.locator("#recovery-codes-list li")).to_have_count(10)
    new_codes = [code.strip() for code in page.locator("#recovery-codes-list li").all_inner_texts()]
    assert not set(new_codes) & set(first_codes)

    stale()  # turning TOTP off: Cancel, then Escape, leave it on with the API's message
    page.click("#totp-disable")
    page.click("#totp-disable-confirm")
    expect(dialog).to_be_visible()
    page.click("#step-up-cancel")
    expect(dialog).to_have_count(0)
    expect(page.locator("#security-error")).to_have_text("Please confirm it is you.")
    page.click("#totp-disable-confirm")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(page.locator("#totp-status")).to_have_text("Authenticator app (TOTP): on")
    page.click("#totp-disable-confirm")
    page.fill("#step-up-password", PASSWORD)
    page.click("#step-up-submit")
    expect(page.locator("#totp-status")).to_have_text("Authenticator app (TOTP): off")
    expect(page.locator("#security-error")).to_have_count(0)
    assert rows(api, "SELECT count(*) FROM totp_factors") == [(0,)]

    posts = [line for line in log_lines(api) if line["method"] in ("POST", "DELETE")]
    calls = [(line["method"], line["path"], line["status"]) for line in posts]
    assert calls == [
        ("POST", "/signup", 201),
        ("POST", "/me/mfa/totp", 403),
        ("POST", "/reauthenticate", 401),
        ("POST", "/reauthenticate", 204),
        ("POST", "/me/mfa/totp", 200),  # sent again by itself
        ("POST", "/me/mfa/totp/confirm", 422),
        ("POST", "/me/mfa/totp/confirm", 200),
        ("POST", "/me/mfa/recovery-codes", 403),
        ("POST", "/reauthenticate", 204),
        ("POST", "/me/mfa/recovery-codes", 200),
        ("DELETE", "/me/mfa/totp", 403),  # Cancel
        ("DELETE", "/me/mfa/totp", 403),  # Escape
        ("DELETE", "/me/mfa/totp", 403),
        ("POST", "/reauthenticate", 204),
        ("DELETE", "/me/mfa/totp", 204),
    ], calls


# Passkeys in the React client, with Chromium's virtual authenticator (the DevTools protocol's
# WebAuthn domain): a platform authenticator that keeps discoverable credentials and verifies
# the user (as a fingerprint would) without anyone touching anything.


def virtual_authenticator(context, page):
    """A virtual authenticator for page; returns a function listing the credentials it holds."""
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    options = {
        "protocol": "ctap2",
        "transport": "internal",
        "hasResidentKey": True,
        "hasUserVerification": True,
        "isUserVerified": True,
        "automaticPresenceSimulation": True,
    }
    added = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})

    def credentials():
        held = cdp.send("WebAuthn.getCredentials", {"authenticatorId": added["authenticatorId"]})
        return held["credentials"]

    return credentials


def add_a_passkey(page, name):
    """On the Security screen: name a new passkey and add it (the authenticator says yes)."""
    expect = sync_api.expect
    page.fill("#passkey-add-name", name)
    page.click("#passkey-add-submit")
    expect(page.locator("#passkey-added")).to_have_text(f"Passkey “{name}” added.")
    expect(page.locator("#passkey-add-name")).to_have_value("")


def calls(api, prefix=""):
    """(method, path, status) of the writes that reached the API, in order."""
    return [
        (line["method"], line["path"], line["status"])
        for line in log_lines(api)
        if line["method"] in ("POST", "PATCH", "DELETE") and line["path"].startswith(prefix)
    ]


@pytest.mark.parametrize("react_app", ["proxied", "cross-origin"], indirect=True)
def test_the_react_client_adds_a_passkey_and_signs_in_with_it_alone(react_app, context):
    api, expect = react_app, sync_api.expect
    page = context.new_page()
    credentials = virtual_authenticator(context, page)
    sign_up_in_the_react_client(page, api)
    page.click("#show-security")
    expect(page.locator("#passkeys-none")).to_have_text("You have no passkeys.")

    add_a_passkey(page, "Laptop")  # the sign-up was just now: no need to confirm it is you
    passkey = page.locator("#passkeys-list .passkey")
    expect(passkey).to_have_count(1)
    expect(passkey.locator(".passkey-name")).to_have_text("Laptop")
    expect(passkey.locator(".passkey-created")).to_contain_text("Added")
    expect(passkey.locator(".passkey-last-used")).to_have_text("Last used: never.")
    expect(page.locator("#passkeys-none")).to_have_count(0)
    [held] = credentials()  # a discoverable credential, for this site
    assert held["isResidentCredential"] and held["rpId"] == "localhost"
    held_id = base64.b64decode(held["credentialId"])  # the DevTools protocol's base64
    assert rows(api, "SELECT name, credential_id FROM passkeys") == [
        ("Laptop", base64.urlsafe_b64encode(held_id).decode().rstrip("="))
    ]

    # Logged out, one click and the authenticator: no name, no password typed.
    page.click("#logout")
    expect(page.locator("#login-passkey")).to_have_text("Sign in with a passkey")
    page.click("#login-passkey")
    expect(page.locator("#whoami")).to_have_text("Logged in as alice")
    expect(page.locator("#login-username")).to_have_count(0)
    page.reload()  # the session is real: /check_session says who it is
    expect(page.locator("#whoami")).to_have_text("Logged in as alice")
    page.click("#show-security")
    expect(passkey.locator(".passkey-last-used")).not_to_have_text("Last used: never.")
    [(last_used,)] = rows(api, "SELECT last_used_at IS NOT NULL FROM passkeys")
    assert last_used

    assert calls(api) == [
        ("POST", "/signup", 201),
        ("POST", "/me/passkeys/options", 200),
        ("POST", "/me/passkeys", 201),
        ("DELETE", "/logout", 204),
        ("POST", "/login/passkey/options", 200),
        ("POST", "/login/passkey", 200),
    ]
    sessions = [  # the page's own questions (not wait_until_up's)
        line["status"]
        for line in log_lines(api)
        if line["path"] == "/check_session" and "Chrome" in line["user_agent"]
    ]
    assert sessions == [401, 200]  # the first load: nobody; the reload: alice
    writes = [line for line in log_lines(api) if line["method"] in ("POST", "PATCH", "DELETE")]
    assert {line["origin"] for line in writes} == {api["app"]}


@pytest.mark.parametrize("react_app", ["proxied"], indirect=True)
def test_the_react_client_uses_a_passkey_as_the_second_step(react_app, context):
    """A user with TOTP and a passkey logs in with the password; the second step offers the code
    and the passkey, and the passkey finishes the login."""
    api, expect = react_app, sync_api.expect
    page = context.new_page()
    virtual_authenticator(context, page)
    sign_up_in_the_react_client(page, api)
    turn_on_totp(page)
    add_a_passkey(page, "Phone")

    log_out_and_give_the_password(page)
    expect(page.locator("#login-mfa-why")).to_have_text(
        "Your password was right. Now enter the 6-digit code your authenticator app shows, or "
        "use a passkey."
    )
    expect(page.get_by_label("Code from your authenticator app")).to_be_focused()
    expect(page.locator("#login-mfa-passkey")).to_have_text("Use a passkey")
    page.click("#login-mfa-passkey")
    expect(page.locator("#whoami")).to_have_text("Logged in as alice")
    page.reload()
    expect(page.locator("#whoami")).to_have_text("Logged in as alice")

    assert calls(api, "/login") == [
        ("POST", "/login", 401),
        ("POST", "/login/mfa/passkey/options", 200),
        ("POST", "/login/mfa/passkey", 200),
    ]
    assert rows(api, "SELECT count(*) FROM pending_logins") == [(0,)]


@pytest.mark.parametrize("react_app", ["proxied"], indirect=True)
def test_the_react_client_uses_a_passkey_alone_as_the_second_step(react_app, context):
    """A user whose only second factor is a passkey: the second step is the passkey itself."""
    api, expect = react_app, sync_api.expect
    page = context.new_page()
    virtual_authenticator(context, page)
    sign_up_in_the_react_client(page, api)
    page.click("#show-security")
    add_a_passkey(page, "Phone")

    log_out_and_give_the_password(page)
    expect(page.locator("#login-mfa-why")).to_have_text(
        "Your password was right. Now confirm it is you with your passkey."
    )
    expect(page.locator("#login-mfa-code")).to_have_count(0)
    expect(page.locator("#login-mfa-passkey")).to_be_focused()
    # no recovery codes were made (only TOTP's confirmation makes them unasked): none offered
    expect(page.locator("#login-mfa-toggle")).to_have_count(0)
    page.click("#login-mfa-passkey")
    expect(page.locator("#whoami")).to_have_text("Logged in as alice")
    assert calls(api, "/login") == [
        ("POST", "/login", 401),
        ("POST", "/login/mfa/passkey/options", 200),
        ("POST", "/login/mfa/passkey", 200),
    ]


@pytest.mark.parametrize("react_app", ["proxied"], indirect=True)
@pytest.mark.parametrize(
    "api_settings", [{"REAUTHENTICATION_WINDOW": str(WINDOW)}], ids=[f"window={WINDOW}s"]
)
def test_the_react_client_renames_a_passkey_and_confirms_it_is_you_with_one(react_app, context):
    """Adding a passkey on a stale session asks for the password first (no passkey yet);
    renaming needs nothing; removing it asks again, and the passkey itself says yes."""
    api, expect = react_app, sync_api.expect
    page = context.new_page()
    credentials = virtual_authenticator(context, page)
    sign_up_in_the_react_client(page, api)
    page.click("#show-security")
    expect(page.locator("#passkeys-none")).to_be_visible()

    stale()
    page.fill("#passkey-add-name", "Laptop")
    page.click("#passkey-add-submit")
    dialog = page.get_by_role("dialog", name="Confirm it is you")
    expect(dialog).to_be_visible()
    expect(page.locator("#step-up-use-passkey")).to_have_count(0)  # none yet
    page.fill("#step-up-password", PASSWORD)
    page.click("#step-up-submit")
    expect(dialog).to_have_count(0)
    expect(page.locator("#passkey-added")).to_have_text("Passkey “Laptop” added.")
    assert len(credentials()) == 1

    passkey = page.locator("#passkeys-list .passkey")
    page.get_by_role("button", name="Rename Laptop").click()
    name_field = page.get_by_label("New name for “Laptop”")
    expect(name_field).to_be_focused()
    expect(name_field).to_have_value("Laptop")
    name_field.fill("   ")  # blank: the API's message, by the field
    page.get_by_role("button", name="Save").click()
    expect(passkey.locator(".field-error")).not_to_be_empty()
    name_field.fill("Work laptop")
    page.get_by_role("button", name="Save").click()
    expect(passkey.locator(".passkey-name")).to_have_text("Work laptop")
    assert rows(api, "SELECT name FROM passkeys") == [("Work laptop",)]

    stale()
    page.get_by_role("button", name="Remove Work laptop").click()
    expect(passkey.locator(".passkey-remove-prompt")).to_contain_text(
        "Remove the passkey “Work laptop”?"
    )
    page.get_by_role("button", name="Yes, remove it").click()
    expect(dialog).to_be_visible()
    page.check("#step-up-use-passkey")
    expect(page.locator("#step-up-password")).to_have_count(0)
    page.click("#step-up-submit")
    expect(dialog).to_have_count(0)
    expect(page.locator("#passkeys-none")).to_be_visible()
    expect(page.locator("#passkeys-error")).to_have_count(0)
    assert rows(api, "SELECT count(*) FROM passkeys") == [(0,)]

    # The authenticator still holds it, but it no longer logs anyone in.
    assert len(credentials()) == 1
    page.click("#logout")
    page.click("#login-passkey")
    expect(page.locator("#login-error")).to_have_text("That passkey could not be verified.")
    expect(page.locator("#whoami")).to_have_count(0)

    assert calls(api)[1:] == [
        ("POST", "/me/passkeys/options", 403),
        ("POST", "/reauthenticate", 204),
        ("POST", "/me/passkeys/options", 200),  # sent again by itself
        ("POST", "/me/passkeys", 201),
        ("PATCH", "/me/passkeys/1", 422),
        ("PATCH", "/me/passkeys/1", 200),
        ("DELETE", "/me/passkeys/1", 403),
        ("POST", "/reauthenticate/passkey/options", 200),
        ("POST", "/reauthenticate/passkey", 204),
        ("DELETE", "/me/passkeys/1", 204),
        ("DELETE", "/logout", 204),
        ("POST", "/login/passkey/options", 200),
        ("POST", "/login/passkey", 401),
    ]
