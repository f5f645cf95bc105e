"""What the README promises about the HTTP protocol, checked against gunicorn itself: a chunked
body over 1 MB is a 413 like an announced one, and which answers come from gunicorn."""

import http.client
import json

import pytest

from services import Gunicorn, check_log, migrate

LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    database = f"sqlite:///{tmp_path_factory.mktemp('protocol')}/app.db"
    migrate(database)
    server = Gunicorn(database, workers=1, RATELIMIT_ENABLED="false")
    try:
        yield server.start()
    finally:
        output = server.stop()
    check_log(output)


def send(server, method, path, body, chunked, headers=()):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest(method, path)
        conn.putheader("Content-Type", "application/json")
        for name, value in headers:
            conn.putheader(name, value)
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
        else:
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders()
        try:
            if chunked:
                for start in range(0, len(body), 65536):
                    chunk = body[start : start + 65536]
                    conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                conn.send(b"0\r\n\r\n")
            else:
                conn.send(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (413) and closed before reading it all: read the answer
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        conn.close()


def body_of(size):
    """A JSON object of exactly `size` bytes."""
    head = b'{"username": "'
    tail = b'", "password": "correct horse battery"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
@pytest.mark.parametrize("size", [LIMIT + 1, 2 * LIMIT, 10 * LIMIT])
def test_a_body_over_1_mb_is_413_however_it_is_sent(server, chunked, size):
    status, content_type, body = send(server, "POST", "/signup", body_of(size), chunked)
    assert status == 413
    assert content_type == "application/json"
    assert json.loads(body) == {"error": "Request body is too large (the limit is 1 MB)."}


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_body_of_exactly_1_mb_is_read_whole(server, chunked):
    status, _, body = send(server, "POST", "/signup", body_of(LIMIT), chunked)
    assert status == 422  # read to its end and judged: the username is too long
    assert list(json.loads(body)["errors"]) == ["username"]


def raw(server, request):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.connect()
        conn.sock.sendall(request)
        return conn.sock.recv(65536).decode(errors="replace")
    finally:
        conn.close()


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"NOT A REQUEST\r\n\r\n", 400),
    ],
    ids=["uri-too-long", "header-too-large", "malformed"],
)
def test_what_gunicorn_itself_refuses_is_as_the_readme_says(server, request_bytes, status):
    """gunicorn answers these before the app is called, with its own small HTML page; the
    README's Errors section lists them (no hook of gunicorn's makes them JSON cleanly)."""
    answer = raw(server, request_bytes)
    assert answer.startswith(f"HTTP/1.1 {status} ")
    assert "Traceback" not in answer
