"""A real browser (Debian's Chromium, driven by Playwright) against the API under gunicorn.

The demo client in site/ is served from one origin and talks to the API on another with
fetch(..., {credentials: "include"}), as a React app would. A page on an unlisted origin then
tries to use the same cookie. The API's JSON access log (with each request's Origin) and the
database show what reached the server and that nothing changed.
"""

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from conftest import PASSWORD, ROOT, free_port

CHROMIUM = "/usr/bin/chromium"
SITE = Path(__file__).parent / "site"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"needs Debian's Chromium at {CHROMIUM} (apt-get install chromium)",
)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pipenv sync --dev)")


def serve_static(port):
    handler = functools.partial(QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop(server):
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def api(empty_database, tmp_path):
    """The API under gunicorn, with the demo client's origin in CORS_ORIGINS."""
    app_port, api_port = free_port(), free_port()
    app_origin = f"http://127.0.0.1:{app_port}"
    access_log = tmp_path / "access.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RATELIMIT_", "REDIS_"))},
        "APP_ENV": "development",
        "DATABASE_URL": empty_database,
        "CORS_ORIGINS": app_origin,
        "BCRYPT_LOG_ROUNDS": "4",
        "PORT": str(api_port),
        "WEB_CONCURRENCY": "1",
    }
    migrate = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "server/app.py", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr
    error_log = tmp_path / "error.log"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--chdir",
            "server",
            "app:app",
            "--access-logfile",
            str(access_log),
            "--error-logfile",
            str(error_log),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{api_port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/check_session", timeout=1).close()
        except urllib.error.HTTPError as refused:  # 401: it is up
            refused.close()
            break
        except OSError:
            time.sleep(0.1)
    static = serve_static(app_port)
    engine = create_engine(empty_database.replace("postgresql://", "postgresql+psycopg://", 1))
    yield {"base": base, "app": app_origin, "log": access_log, "db": engine}
    engine.dispose()
    stop(static)
    server.terminate()
    server.wait(timeout=30)
    assert "Traceback" not in error_log.read_text()


@pytest.fixture
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


def test_a_user_signs_up_posts_reloads_deletes_and_logs_out(api, browser):
    page = browser.new_context().new_page()
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
def test_a_page_on_an_unlisted_origin_can_neither_read_nor_change_anything(api, browser, host):
    context = browser.new_context()
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
