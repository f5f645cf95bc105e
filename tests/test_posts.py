"""Posts: everyone logged in reads, only the author changes, pages are keyset cursors."""

import re
from urllib.parse import urljoin

import pytest

UNAUTHENTICATED = {"error": "Authentication required."}


def next_link(response):
    """The next page's URL, resolved against the URL called, as a browser's
    `new URL(link, response.url)` does."""
    match = re.fullmatch(r'<([^>]+)>; rel="next"', response.headers["Link"])
    assert match, response.headers["Link"]
    return urljoin(response.request.url, match.group(1))


def create(client, content="hello"):
    response = client.post("/posts", json={"content": content})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_create_post_is_owned_by_the_caller(signup):
    alice = signup("alice")
    response = alice.post("/posts", json={"content": "  first post  "})

    assert response.status_code == 201
    post = response.get_json()
    assert set(post) == {"id", "content", "created_at", "updated_at", "user"}
    assert post["content"] == "first post"
    assert post["user"] == {"id": alice.user["id"], "username": "alice"}
    # relative, so it resolves against the URL called: behind a proxy under /api too
    assert response.headers["Location"] == f"posts/{post['id']}"
    assert urljoin(response.request.url, response.headers["Location"]) == (
        f"http://localhost/posts/{post['id']}"
    )
    assert alice.get(f"/posts/{post['id']}").get_json() == post


@pytest.mark.parametrize(
    "extra",
    [{"user_id": 999}, {"id": 1}, {"user": {"id": 2}}, {"created_at": "2000-01-01T00:00:00Z"}],
)
def test_post_owner_and_id_cannot_be_set_from_the_body(signup, extra, sql):
    alice = signup("alice")
    signup("bobby")
    response = alice.post("/posts", json={"content": "mine", **extra})
    assert response.status_code == 422
    assert response.get_json()["errors"] == {next(iter(extra)): ["Unknown field."]}
    assert sql("SELECT count(*) FROM posts") == [(0,)]


def test_owner_headers_and_query_parameters_are_ignored(signup, sql):
    alice = signup("alice")
    bob = signup("bobby")
    response = alice.post(
        f"/posts?user_id={bob.user['id']}",
        json={"content": "mine"},
        headers={"X-User-Id": str(bob.user["id"])},
    )
    assert response.get_json()["user"]["id"] == alice.user["id"]


@pytest.mark.parametrize(
    "content, ok",
    [
        ("", False),
        ("   \n\t ", False),
        ("x", True),
        ("x" * 400, True),
        ("  " + "x" * 400 + "  ", True),
        ("x" * 401, False),
        ("ab\u0000c", False),
        ("a\ud800b", False),
        (123, False),
        (None, False),
        (True, False),
        (["x"], False),
    ],
)
def test_content_rules(signup, content, ok, sql):
    alice = signup("alice")
    response = alice.post("/posts", json={"content": content})
    assert response.status_code == (201 if ok else 422)
    if not ok:
        assert list(response.get_json()["errors"]) == ["content"]
        assert sql("SELECT count(*) FROM posts") == [(0,)]


@pytest.mark.parametrize(
    "content",
    [
        "héllo \ufeff👋 \u202e RTL",  # (a U+FEFF at either end is trimmed, as \s in JS is)
        "'); DROP TABLE posts; --",
        "100% _under_ \\back\\slash",
        "😀" * 400,
    ],
)
def test_content_round_trips_exactly(signup, content, sql):
    alice = signup("alice")
    post = create(alice, content)
    assert alice.get(f"/posts/{post['id']}").get_json()["content"] == content
    assert sql("SELECT content FROM posts") == [(content,)]


def test_missing_content_is_422(signup):
    response = signup("alice").post("/posts", json={})
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"content": ["Missing data for required field."]}


def test_owner_can_edit(signup):
    alice = signup("alice")
    post = create(alice)
    response = alice.patch(f"/posts/{post['id']}", json={"content": "edited"})

    assert response.status_code == 200
    assert response.get_json()["content"] == "edited"
    assert response.get_json()["updated_at"] >= post["updated_at"]
    assert alice.get(f"/posts/{post['id']}").get_json()["content"] == "edited"


def test_others_cannot_edit_or_delete(signup, sql):
    alice = signup("alice")
    bob = signup("bobby")
    post = create(alice, "a-post")

    patch = bob.patch(f"/posts/{post['id']}", json={"content": "pwned"})
    assert patch.status_code == 403
    assert patch.get_json() == {"error": "Only the author may change this post."}
    delete = bob.delete(f"/posts/{post['id']}")
    assert delete.status_code == 403
    assert sql("SELECT content FROM posts") == [("a-post",)]
    assert bob.get(f"/posts/{post['id']}").status_code == 200  # others may still read it


def test_non_owner_with_bad_body_still_gets_403(signup):
    alice = signup("alice")
    bob = signup("bobby")
    post = create(alice)
    assert bob.patch(f"/posts/{post['id']}", json={"content": ""}).status_code == 403


def test_owner_deletes_then_404(signup, sql):
    alice = signup("alice")
    post = create(alice)

    response = alice.delete(f"/posts/{post['id']}")
    assert response.status_code == 204
    assert response.get_data() == b""
    assert sql("SELECT count(*) FROM posts") == [(0,)]
    for method in ("get", "patch", "delete"):
        again = getattr(alice, method)(f"/posts/{post['id']}", json={"content": "x"})
        assert again.status_code == 404
        assert again.get_json() == {"error": "Post not found."}


def test_edit_validation(signup):
    alice = signup("alice")
    post = create(alice)
    for body in ({}, {"content": ""}, {"content": 5}, {"content": "ok", "user_id": 2}):
        assert alice.patch(f"/posts/{post['id']}", json=body).status_code == 422
    assert alice.get(f"/posts/{post['id']}").get_json()["content"] == "hello"


@pytest.mark.parametrize(
    "path",
    [
        "/posts/0",
        "/posts/-1",
        "/posts/abc",
        "/posts/1.5",
        "/posts/2147483648",
        "/posts/99999999999999999999",
        "/posts/" + "9" * 5000,
    ],
)
@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_ids_outside_the_database_range_are_404(signup, path, method):
    response = getattr(signup("alice"), method)(path, json={"content": "x"})
    assert response.status_code == 404
    assert response.is_json


def test_unknown_id_is_404_for_everyone(signup):
    alice = signup("alice")
    assert alice.get("/posts/2147483647").status_code == 404
    assert alice.delete("/posts/12345").status_code == 404


def test_list_is_newest_first_with_a_keyset_link(signup):
    alice = signup("alice")
    ids = [create(alice, f"post {i}")["id"] for i in range(5)]

    first = alice.get("/posts?limit=2")
    assert first.status_code == 200
    assert [p["id"] for p in first.get_json()] == ids[::-1][:2]
    # a relative reference: the same API wherever the client reached it from
    assert first.headers["Link"] == f'<posts?limit=2&before={ids[3]}>; rel="next"'

    second = alice.get(next_link(first))
    assert [p["id"] for p in second.get_json()] == ids[::-1][2:4]
    third = alice.get(next_link(second))
    assert [p["id"] for p in third.get_json()] == ids[:1]
    assert "Link" not in third.headers


def test_list_defaults_to_20_and_caps_at_100(signup, app):
    alice = signup("alice")
    from config import db
    from models import Post

    with app.app_context():
        db.session.add_all(Post(content=f"p{i}", user_id=alice.user["id"]) for i in range(105))
        db.session.commit()
    assert len(alice.get("/posts").get_json()) == 20
    assert len(alice.get("/posts?limit=100").get_json()) == 100
    assert alice.get("/posts?limit=101").status_code == 422


def test_list_filters_by_user(signup):
    alice = signup("alice")
    bob = signup("bobby")
    create(alice, "a1")
    mine = create(bob, "b1")
    create(alice, "a2")
    response = alice.get(f"/posts?user_id={bob.user['id']}")
    assert response.get_json() == [mine]


def test_list_pages_keep_the_filter(signup):
    alice = signup("alice")
    bob = signup("bobby")
    for i in range(3):
        create(bob, f"b{i}")
        create(alice, f"a{i}")
    first = alice.get(f"/posts?user_id={bob.user['id']}&limit=2")
    assert f"user_id={bob.user['id']}" in first.headers["Link"]
    assert [p["content"] for p in alice.get(next_link(first)).get_json()] == ["b0"]


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=-1",
        "limit=abc",
        "limit=1.5",
        "before=0",
        "before=x",
        "before=2147483648",
        "user_id=abc",
        "limit=" + "9" * 5000,
    ],
)
def test_bad_list_parameters_are_422(signup, query):
    response = signup("alice").get(f"/posts?{query}")
    assert response.status_code == 422
    assert set(response.get_json()) == {"error", "errors"}


def test_unknown_list_parameters_are_ignored(signup):
    assert signup("alice").get("/posts?_=123").status_code == 200


def test_list_posts_is_an_array_without_nested_lists(signup):
    alice = signup("alice")
    create(alice)
    [post] = alice.get("/posts").get_json()
    assert all(not isinstance(value, list) for value in post.values())
    assert alice.get("/check_session").get_json().keys() == {
        "id",
        "username",
        "created_at",
        "email",
        "email_verified",
        "role",
    }


def test_deleting_a_user_deletes_their_posts(signup, sql, app):
    alice = signup("alice")
    create(alice)
    from config import db
    from models import User

    with app.app_context():
        db.session.delete(db.session.get(User, alice.user["id"]))
        db.session.commit()
    assert sql("SELECT count(*) FROM posts") == [(0,)]


def test_concurrent_deletes_give_one_204_and_404s(signup, app, sql):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    alice = signup("alice")
    post = create(alice)
    cookie = alice.get_cookie("session").value
    barrier = threading.Barrier(8)

    def attempt(_):
        client = app.test_client()
        client.set_cookie("session", cookie)
        barrier.wait()
        return client.delete(f"/posts/{post['id']}").status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(attempt, range(8)))
    assert statuses == [204] + [404] * 7
    assert sql("SELECT count(*) FROM posts") == [(0,)]


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/posts"),
        ("post", "/posts"),
        ("get", "/posts/1"),
        ("patch", "/posts/1"),
        ("delete", "/posts/1"),
    ],
)
def test_posts_need_login(client, method, path, sql):
    response = getattr(client, method)(path, json={"content": "x"})
    assert response.status_code == 401
    assert response.get_json() == UNAUTHENTICATED
    assert sql("SELECT count(*) FROM posts") == [(0,)]


@pytest.mark.parametrize(
    "content",
    ["x", " x ", "\x1cx", "\x85", "\x1f", "\ufeff", "\ufeffx\ufeff", "\u3000", "\t\n", "a\u200b"],
    ids=repr,
)
def test_blank_means_what_the_documents_pattern_says(signup, client, content):
    """The server trims exactly the whitespace the OpenAPI pattern names (ECMAScript's \\s),
    so a generated client's check and the server's answer never disagree."""
    import re

    alice = signup("alice")
    document = client.get("/openapi.json").get_json()
    pattern = document["components"]["schemas"]["PostContent"]["properties"]["content"]["pattern"]
    response = alice.post("/posts", json={"content": content})
    assert response.status_code == (201 if re.search(pattern, content) else 422)
