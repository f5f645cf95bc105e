"""Work per request must not grow with the data: statement counts and query plans.

Timings are measured by the benchmark (README, "Benchmark"), not here; these tests pin the
causes of slowness that do not depend on the machine.
"""

import pytest

from config import db
from conftest import BACKEND, PASSWORD


def seed(app, users, posts_per_user):
    """Bulk rows straight into the tables (bcrypt would make thousands of sign-ups slow)."""
    from models import Post, User
    from passwords import hash_password

    with app.app_context():
        password_hash = hash_password(PASSWORD)
        new_users = [
            User(username=f"seed{i}_{users}", _password_hash=password_hash) for i in range(users)
        ]
        db.session.add_all(new_users)
        db.session.flush()
        db.session.add_all(
            Post(content=f"post {n}", user_id=user.id)
            for user in new_users
            for n in range(posts_per_user)
        )
        db.session.commit()


def statements_for(queries, client, path):
    with queries() as statements:
        response = client.get(path)
    assert response.status_code == 200
    return len(statements)


@pytest.mark.parametrize("path", ["/check_session", "/posts?limit=20", "/posts?limit=20&before=50"])
def test_statement_count_does_not_grow_with_data(app, signup, queries, path):
    alice = signup("alice")
    for _ in range(3):
        alice.post("/posts", json={"content": "mine"})
    seed(app, users=5, posts_per_user=5)
    small = statements_for(queries, alice, path)

    seed(app, users=50, posts_per_user=40)
    for _ in range(30):
        alice.post("/posts", json={"content": "more of mine"})
    large = statements_for(queries, alice, path)

    assert small == large
    expected = 1 if path == "/check_session" else 2  # session+user in one join, then the page
    assert large == expected


def test_check_session_does_not_list_the_users_posts(signup):
    alice = signup("alice")
    for _ in range(3):
        alice.post("/posts", json={"content": "x"})
    body = alice.get("/check_session").get_json()
    assert body.keys() == {"id", "username", "created_at", "email", "email_verified", "role"}


def explain(app, statement, params):
    with app.app_context():
        connection = db.session.connection()
        if BACKEND == "sqlite":
            rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
            return "\n".join(str(row[-1]) for row in rows)
        connection.exec_driver_sql("ANALYZE posts; ANALYZE users")
        rows = connection.exec_driver_sql("EXPLAIN " + statement, params).all()
        return "\n".join(row[0] for row in rows)


def captured_page_query(app, client, path):
    """The SQL (and its parameters) that the request ran against the posts table."""
    from queries import executed

    captured = []

    def capture(sender, statement, parameters):
        if "FROM posts" in statement:
            captured.append((statement, parameters))

    executed.connect(capture)
    try:
        assert client.get(path).status_code == 200
    finally:
        executed.disconnect(capture)
    [(statement, parameters)] = captured
    return statement, parameters


def db_engine(app):
    with app.app_context():
        return db.engine


def bulk_posts(app, user_id, count):
    """Many posts in one statement, so the planner sees a table where a full scan would hurt."""
    with app.app_context():
        db.session.execute(
            db.text(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
                "INSERT INTO posts (content, created_at, updated_at, user_id) "
                "SELECT 'bulk', '2026-01-01 00:00:00', '2026-01-01 00:00:00', :user_id FROM n"
            ),
            {"count": count, "user_id": user_id},
        )
        db.session.commit()


@pytest.mark.parametrize(
    "query",
    [
        "limit=20",
        "limit=20&before=100",
        "limit=20&user_id={uid}",
        "limit=20&user_id={uid}&before=100",
    ],
)
def test_post_pages_are_read_through_an_index_without_sorting(app, signup, query):
    alice = signup("alice")
    bob = signup("bobby")
    bulk_posts(app, alice.user["id"], 20_000)
    bulk_posts(app, bob.user["id"], 200)
    statement, parameters = captured_page_query(
        app, alice, "/posts?" + query.format(uid=bob.user["id"])
    )
    plan = explain(app, statement, parameters)

    if BACKEND == "sqlite":
        assert "TEMP B-TREE" not in plan, plan  # no sort of the whole table
        assert "SCAN users" not in plan, plan
        if "user_id" in query:
            assert "USING INDEX ix_posts_user_id_id" in plan or "COVERING INDEX" in plan, plan
    else:
        assert "Sort" not in plan and "Seq Scan on posts" not in plan, plan
        assert "Index Scan" in plan, plan


# --- per-request work removed for the benchmark: each stays correct ---


def test_listed_posts_match_the_schema(app, signup):
    """GET /posts builds its items from rows, not through PostSchema: each must equal the
    schema's dump of the same post, timestamps (with their microseconds) and author included."""
    from models import Post, post_schema

    client = signup()
    for text in ("first", "second ü", "third"):
        assert client.post("/posts", json={"content": text}).status_code == 201
    listed = client.get("/posts").get_json()
    with app.app_context():
        posts = [db.session.get(Post, item["id"]) for item in listed]
        assert all(post.created_at.microsecond for post in posts[:1])  # truncated, not rounded
        expected = [post_schema.dump(post) for post in posts]
    assert listed == expected
    assert [p["content"] for p in listed] == ["third", "second ü", "first"]


def test_json_provider_writes_datetimes_as_the_schema_does(app):
    """The orjson provider writes any datetime (naive ones are UTC) as Timestamp does, and
    hands what orjson refuses (an integer past 64 bits) to the json module, same datetimes."""
    import json
    from datetime import UTC, datetime

    from field_types import Timestamp

    moment = datetime(2026, 11, 23, 12, 30, 5, 999_999, tzinfo=UTC)
    text = Timestamp.text(moment)
    assert text == "2026-11-23T12:30:05Z"
    for big in (1, 2**70):
        body = {
            "at": moment,
            "naive": moment.replace(tzinfo=None),
            "big": big,
            "errors": {0: ["x"]},
        }
        with app.test_request_context():
            response = app.json.response(body)
        assert response.mimetype == "application/json"
        assert json.loads(response.get_data()) == {
            "at": text,
            "naive": text,
            "big": big,
            "errors": {"0": ["x"]},
        }
        assert json.loads(app.json.dumps(body))["at"] == text


def test_fast_owner_dump_matches_the_schema_for_callers_and_rows(app, signup):
    """GET /check_session and GET /me dump the Caller read with the session: the same JSON as
    OwnerSchema's dump of the User row, verified address and admin role included."""
    from models import Caller, User
    from schemas import owner_dump, owner_schema

    client = signup("alice", email="alice@example.com")
    with app.app_context():
        user = db.session.scalar(db.select(User))
        user.role, user.email_verified_at = "admin", user.created_at
        db.session.commit()
        expected = owner_schema.dump(user)
        assert owner_dump.one(user) == owner_dump.one(Caller.of(user)) == expected
    assert expected["email_verified"] is True and expected["role"] == "admin"
    assert client.get("/check_session").get_json() == expected == client.get("/me").get_json()


def test_timestamps_are_utc_whatever_zone_the_value_is_in():
    from datetime import UTC, datetime, timedelta, timezone

    from field_types import Timestamp

    noon_utc = datetime(2026, 11, 23, 12, 0, 0, 999, tzinfo=UTC)
    in_paris = noon_utc.astimezone(timezone(timedelta(hours=1)))
    assert Timestamp.text(noon_utc) == Timestamp.text(in_paris) == "2026-11-23T12:00:00Z"


def test_fast_dump_refuses_what_it_cannot_reproduce():
    from marshmallow import Schema, fields, post_dump

    from field_types import FastDump

    class Hooked(Schema):
        id = fields.Integer()

        @post_dump
        def wrap(self, data, **kwargs):
            return {"data": data}

    class Dotted(Schema):
        name = fields.String(attribute="user.name")

    class Defaulted(Schema):
        name = fields.String(dump_default="x")

    class Other(Schema):
        price = fields.Decimal()

    class Listed(Schema):
        tags = fields.Nested(Hooked, many=True)

    for schema in (Hooked(), Dotted(), Defaulted(), Other(), Listed()):
        with pytest.raises(TypeError):
            FastDump(schema)


def test_flask_asks_whether_a_function_is_async_once(app, monkeypatch):
    """JsonFlask.ensure_sync remembers inspect's answer per code object (Flask asks for every
    hook on every request): bound methods and closures made per request share one entry, so the
    cache cannot grow with traffic; async functions are still spotted."""
    import inspect

    from jsonapp import JsonFlask

    asked = []
    real = inspect.iscoroutinefunction
    monkeypatch.setattr(inspect, "iscoroutinefunction", lambda f: asked.append(f) or real(f))

    class View:
        def get(self):
            return "sync"

    def callback_for(n):  # as after_this_request: a new closure on every request
        def callback(response):
            return (response, n)

        return callback

    entries = len(JsonFlask.is_async_by_code)
    first, second = View().get, View().get  # a new bound method per request, as Flask-RESTful
    assert app.ensure_sync(first) is first and app.ensure_sync(second) is second
    assert app.ensure_sync(first)() == "sync" and len(asked) == 1
    callbacks = [callback_for(n) for n in range(100)]
    assert [app.ensure_sync(c)("r") for c in callbacks] == [("r", n) for n in range(100)]
    assert len(asked) == 2 and len(JsonFlask.is_async_by_code) == entries + 2

    async def view():
        return "async"

    with pytest.raises(RuntimeError, match="async"):  # Flask's answer without its async extra
        app.ensure_sync(view)


def test_in_memory_rate_limits_start_no_thread_and_still_expire(time_machine):
    """limits' MemoryStorage starts a timer thread whenever none runs (a tenth of a page's
    throughput under gunicorn); SweptMemoryStorage sweeps inline and still forgets windows."""
    import threading

    from limits import parse
    from limits.strategies import MovingWindowRateLimiter

    from ratelimit import SweptMemoryStorage

    time_machine.move_to("2026-01-01 00:00:00", tick=False)
    storage = SweptMemoryStorage()
    limiter = MovingWindowRateLimiter(storage)
    limit = parse("3 per second")
    threads = threading.active_count()
    assert [limiter.hit(limit, "k") for _ in range(4)] == [True, True, True, False]
    assert threading.active_count() == threads  # no timer started
    stats = limiter.get_window_stats(limit, "k")
    assert stats.remaining == 0 and stats.reset_time == 1767225601.0  # the window's end
    time_machine.shift(2)
    assert limiter.hit(limit, "other")  # the next use after a second sweeps stale keys away
    assert "k" not in storage.events and limiter.hit(limit, "k")


def test_fast_dump_reads_rows_only_from_columns_holding_what_the_fields_show():
    """rows() passes values on as the database gives them, so columns() refuses a column
    whose values are not what its field shows."""
    from marshmallow import Schema, fields

    from field_types import FastDump
    from models import Post

    class Mismatched(Schema):
        content = fields.Integer()

    with pytest.raises(TypeError, match="Post.content"):
        FastDump(Mismatched()).columns(Post)
