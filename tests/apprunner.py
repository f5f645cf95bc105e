"""Run the app in a child process with an environment of its own.

Settings such as TRUSTED_PROXY_COUNT, REDIS_URL or the rate limits are read when the app is
imported, so a test that needs other values starts a fresh interpreter: run_app(steps, env)
applies the migrations to a new SQLite file, sends each step through Flask's test client and
returns [{"status", "headers", "body"}, ...] and the child's stderr.
"""

import json
import os
import subprocess
import sys

from services import ROOT, environment_without

CHILD = r"""
import json, os, sys
sys.path.insert(0, os.path.join(os.environ["IAM_ROOT"], "server"))
import flask_migrate
from app import app
with app.app_context():
    flask_migrate.upgrade()
clients, results = {}, []
for step in json.loads(sys.stdin.read()):
    client = clients.setdefault(step.get("client", "default"), app.test_client())
    environ = {"REMOTE_ADDR": step.get("addr", "10.0.0.1")}
    response = client.open(step["path"], method=step.get("method", "GET"), json=step.get("json"),
                           headers=step.get("headers", {}), environ_overrides=environ)
    results.append({"status": response.status_code, "headers": dict(response.headers),
                    "set_cookie": response.headers.getlist("Set-Cookie"),
                    "body": response.get_json(silent=True)})
print(json.dumps(results))
"""


def run_app(steps, env, tmp_path, timeout=120):
    child_env = environment_without(
        ("RATELIMIT_", "REDIS_", "CORS_", "TRUSTED_", "SECRET_", "FLASK_", "MAIL_")
    )
    child_env.update(
        IAM_ROOT=str(ROOT),
        APP_ENV="testing",
        DATABASE_URL=f"sqlite:///{tmp_path}/child-{os.getpid()}-{id(steps)}.db",
        BCRYPT_LOG_ROUNDS="4",
    )
    child_env.update(env)
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        input=json.dumps(steps),
        env=child_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr
