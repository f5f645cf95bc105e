"""Real servers for the multi-instance and fault tests, and the helpers every test file and
benchmark that starts a process shares (free_port, wait_until_up, scratch_database, ...): no mocks.

- PostgresServer: a private PostgreSQL cluster (initdb into a temporary directory, pg_ctl on a
  spare loopback port), which a test may stop and start again; the shared server is never touched.
- RedisServer: a private redis-server on a spare port, which a test may stop, freeze and restart.
- Gunicorn: the documented command (`python -m gunicorn --chdir server app:app`) from the project
  root, with the output captured to a file and handed back by stop().
- Client: a tiny HTTP client (http.client, one connection per request) that keeps the session
  cookie and times every request.

Each server's cleanup stops it whatever state it is in; the fixtures call it in a finally.
"""

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"
DATABASE_TIMEOUT = 2  # the servers' DATABASE_TIMEOUT (seconds): short, so outages show fast


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, interval=0.05, what="condition"):
    """predicate() until it returns something true; that value, or a failure after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def wait_until_up(url, process, seconds=30, log=None):
    """Poll url until anything answers over HTTP (a 401 will do). An AssertionError if the
    process exits first or nothing answers in time, with the server's log (a path) when given."""

    def failure(why):
        output = f":\n{Path(log).read_text(errors='replace')}" if log is not None else ""
        return AssertionError(why + output)

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise failure(f"exited with {process.returncode} before serving {url}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError as answered:
            answered.close()
            return
        except OSError:
            time.sleep(0.1)
    raise failure(f"nothing answered at {url} within {seconds}s")


def environment_without(prefixes=(), names=()):
    """os.environ without the variables named, or whose names start with one of prefixes."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(tuple(prefixes)) and name not in names
    }


def children(pid):
    """The pids of a process's children, from /proc."""
    try:
        return [
            int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ]
    except OSError:
        pass
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


# --- PostgreSQL ---


def postgres_bin_dir():
    """The directory holding initdb and pg_ctl (PG_BIN, Debian's layout, or PATH), or None."""
    candidates = [os.environ.get("PG_BIN", "")]
    candidates += sorted(
        (str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).resolve().parent))
    for directory in filter(None, candidates):
        if all((Path(directory) / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return Path(directory)
    return None


class PostgresServer:
    """A private cluster: initdb'd on construction, started by start(), removed by cleanup().

    initdb refuses to run as root, so as root the cluster belongs to the `postgres` OS user (its
    commands run through runuser); otherwise to the current user. Either way the database
    superuser is `postgres`, trusted on loopback only. fsync stays on (the default): stopping
    with -m immediate is then a real crash, recovered from the WAL at the next start.
    """

    def __init__(self):
        self.bin = postgres_bin_dir()
        if self.bin is None:
            pytest.skip("needs PostgreSQL's initdb, pg_ctl and postgres (set PG_BIN)")
        self.as_postgres = []
        if os.geteuid() == 0:
            # util-linux puts it in sbin, which a non-login PATH (CI's) may leave out
            runuser = shutil.which("runuser", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
            if runuser is None:
                pytest.skip("running as root needs runuser to run initdb as the postgres user")
            self.as_postgres = [runuser, "-u", "postgres", "--"]
        self.dir = Path(tempfile.mkdtemp(prefix="iam-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.port = free_port()
        self.running = False
        if self.as_postgres:
            shutil.chown(self.dir, user="postgres")
        try:
            self._run(
                "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                "--locale=C", "--no-sync",  # initdb's own final sync only; the server fsyncs
            )  # fmt: skip
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def _run(self, program, *args, check=True, timeout=60):
        done = subprocess.run(
            [*self.as_postgres, str(self.bin / program), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{program} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return done

    def url(self, database="postgres"):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self):
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.dir} -c max_connections=100 "
            # after a crash, one syncfs() of the data directory's filesystem rather than an
            # fsync() of every file in it: the same guarantee, in a fraction of the time
            "-c recovery_init_sync_method=syncfs"
        )
        self._run(
            "pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "-t", "60", "start"
        )
        self.running = True

    def stop(self, mode="fast"):
        """pg_ctl stop -m fast (clients disconnected, clean shutdown) or immediate (a crash)."""
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop")
        self.running = False

    def freeze(self):
        """SIGSTOP the postmaster and every backend: the kernel still accepts connections and
        acknowledges data, but nothing answers (like `docker pause`, or a server stuck in I/O)."""
        pid = self.postmaster_pid()
        for process in [pid, *children(pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process, signal.SIGSTOP)

    def thaw(self):
        pid = self.postmaster_pid()
        if pid is not None:
            for process in [pid, *children(pid)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process, signal.SIGCONT)

    def create_database(self, name=None, template=None):
        """A new database (empty, or a copy of `template`); its URL (postgresql://...)."""
        import psycopg

        name = name or f"iam_{uuid.uuid4().hex[:12]}"
        copy = f' TEMPLATE "{template}"' if template else ""
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{copy}')
        return self.url(name)

    def drop_database(self, name):
        import psycopg

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def postmaster_pid(self):
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def cleanup(self):
        """Stop the server whatever state it is in, then remove the cluster."""
        try:
            self.thaw()  # a frozen server cannot stop
            if self.postmaster_pid() is not None:
                self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", check=False)
            pid = self.postmaster_pid()
            if pid is not None:  # pg_ctl could not stop it
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        finally:
            self.running = False
            shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def started(server_class):
    """A server_class() started, and cleaned up afterwards whatever state it is in."""
    server = server_class()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


def postgres_server():
    return started(PostgresServer)


def engine_for(database_url):
    """A SQLAlchemy engine on database_url (postgresql:// through psycopg 3)."""
    from sqlalchemy import create_engine

    return create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))


def scratch_database(server_url, prefix="iam_test"):
    """A database of one's own: a new one on the PostgreSQL server that server_url names, else
    a SQLite file in a new temporary directory. (Its URL, a function that drops it.)"""
    if not server_url.startswith("postgres"):
        directory = tempfile.mkdtemp(prefix=f"{prefix.replace('_', '-')}-")
        url = f"sqlite:///{directory}/{prefix}.db"
        return url, lambda: shutil.rmtree(directory, ignore_errors=True)
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(server_url).set(drivername="postgresql")
    admin = url.render_as_string(hide_password=False)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop():
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return url.set(database=name).render_as_string(hide_password=False), drop


# --- Redis ---


class RedisServer:
    """A private redis-server on a spare loopback port, without persistence."""

    def __init__(self):
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.skip("needs redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(self.ping, 10, what="redis-server to answer")

    def ping(self):
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return client.ping()
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self):
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGCONT)  # a frozen server cannot exit
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None

    def freeze(self):
        """SIGSTOP: the kernel still accepts connections, but nothing answers them."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self):
        self.process.send_signal(signal.SIGCONT)

    cleanup = stop


def redis_server():
    return started(RedisServer)


def delete_redis_keys(url, prefix):
    """Delete every key under prefix from the Redis at url (what a test left in a shared one)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(prefix + "*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


# --- the app ---

FLASK = [sys.executable, "-m", "flask", "--app", "server/app.py"]
GUNICORN = [sys.executable, "-m", "gunicorn", "--chdir", "server", "app:app"]  # the documented one
# Settings a test run may have in its own environment that must not leak into the servers.
FOREIGN_PREFIXES = (
    "RATELIMIT_", "REDIS_", "CORS_", "TRUSTED_", "SECRET_", "FLASK_", "MAIL_", "GUNICORN_",
    "DATABASE_", "SESSION_", "BCRYPT_", "PASSWORD_",
)  # fmt: skip
FOREIGN_NAMES = {"APP_ENV", "PORT", "BIND", "WEB_CONCURRENCY", "ACCESS_LOG", "FRONTEND_URL"}


def app_environment(database_url, **settings):
    """The environment of a server process: the test run's, minus the app's settings, plus
    development mode (what a deploy runs, with the mail sender thread: TESTING stays off) with
    cheap bcrypt and a short DATABASE_TIMEOUT, plus `settings`."""
    env = environment_without(FOREIGN_PREFIXES, FOREIGN_NAMES)
    env.update(
        APP_ENV="development",
        DATABASE_URL=database_url,
        BCRYPT_LOG_ROUNDS="4",
        DATABASE_TIMEOUT=str(DATABASE_TIMEOUT),
        PYTHONUNBUFFERED="1",
    )
    env.update({name: str(value) for name, value in settings.items()})
    return env


def migrate(database_url):
    """flask db upgrade, once, before any server starts (as the README's deploy does)."""
    done = subprocess.run(
        [*FLASK, "db", "upgrade"],
        cwd=ROOT,
        env=app_environment(database_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


class Gunicorn:
    """`python -m gunicorn --chdir server app:app` from the project root on a spare port."""

    def __init__(self, database_url, workers=2, **settings):
        self.port = free_port()
        self.workers = workers
        self.env = app_environment(
            database_url, PORT=self.port, WEB_CONCURRENCY=workers, **settings
        )
        handle, name = tempfile.mkstemp(prefix="iam-gunicorn-", suffix=".log")
        os.close(handle)
        self.log_path = Path(name)
        self.process = None
        self.output = None

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=30):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                GUNICORN,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() can end it all
            )

        def answering():
            if self.process.poll() is not None:
                pytest.fail(f"gunicorn exited with {self.process.returncode}:\n{self.log()}")
            try:
                return call(self.port, "GET", "/healthz", timeout=2).status == 200
            except OSError:
                return False

        wait_for(answering, timeout, what="gunicorn to answer")
        wait_for(lambda: len(self.worker_pids()) == self.workers, timeout, what="every worker")
        return self

    def worker_pids(self):
        return children(self.process.pid)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def stop(self):
        """SIGTERM (graceful), SIGKILL to the whole group if that takes too long; the log."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
            try:
                self.process.wait(timeout=35)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)  # stragglers of the group
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
            self.process = None
            self.output = self.log()
            self.log_path.unlink(missing_ok=True)
        return self.output

    cleanup = stop


def check_log(output):
    """No traceback, and every access-log line (one JSON object per line) parses."""
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("{")]
    access = [json.loads(line) for line in lines]
    assert access and all(isinstance(line["status"], int) for line in access)
    return access


# --- HTTP ---


@dataclass
class Response:
    status: int
    headers: dict
    body: bytes
    elapsed: float
    started: float = 0.0
    cookies: dict = field(default_factory=dict)

    @property
    def content_type(self):
        return self.headers.get("content-type", "")

    def json(self):
        return json.loads(self.body)


def session_cookie(set_cookies):
    """Of a response's Set-Cookie lines, the session's (`session=...` or `__Host-session=...`):
    a response may set others too (a sign-up or login also names the browser: `device`)."""
    [line] = [c for c in set_cookies if c.split("=", 1)[0] in ("session", "__Host-session")]
    return line


def fetch(url, method="GET", body=None, headers=None, timeout=10):
    """One request through urllib (a JSON body when given): (status, headers, body bytes),
    error statuses included; headers as http.client gives them (get_all("Set-Cookie"))."""
    headers = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


def call(port, method, path, body=None, cookie=None, timeout=15):
    """One request on a new connection; OSError / http.client.HTTPException when it breaks."""
    headers = {"Connection": "close"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if cookie:
        headers["Cookie"] = f"session={cookie}"
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        content = response.read()
        cookies = {}
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                cookies[key.strip()] = rest.split(";", 1)[0]
        return Response(
            status=response.status,
            headers={k.lower(): v for k, v in response.getheaders()},
            body=content,
            elapsed=time.monotonic() - started,
            started=started,
            cookies=cookies,
        )
    finally:
        conn.close()


class Client:
    """A caller with a session cookie, talking to one server (or, with on(), another)."""

    def __init__(self, port, cookie=None):
        self.port, self.cookie = port, cookie

    def on(self, server):
        """The same caller (the same cookie) talking to another server."""
        return Client(server.port if hasattr(server, "port") else server, self.cookie)

    def request(self, method, path, body=None, timeout=15):
        response = call(self.port, method, path, body, self.cookie, timeout)
        if "session" in response.cookies:
            self.cookie = response.cookies["session"] or None
        return response

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, body, **kwargs):
        return self.request("POST", path, body, **kwargs)

    def delete(self, path, **kwargs):
        return self.request("DELETE", path, **kwargs)

    def signup(self, username, password=PASSWORD):
        response = self.post("/signup", {"username": username, "password": password})
        assert response.status == 201, response.body
        return self

    def login(self, username, password=PASSWORD):
        return self.post("/login", {"username": username, "password": password})
