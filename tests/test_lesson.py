"""The Flask IAM lesson's own code runs unchanged: its model tests, its sign-up form's body and
its `session_transaction()` tests, on SQLite and PostgreSQL."""

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from config import db
from conftest import PASSWORD
from models import Post, User

# --- Post content is validated by the model ---


@pytest.fixture
def author(app):
    with app.app_context():
        user = User(username="lesson", password_hash=PASSWORD)
        db.session.add(user)
        db.session.commit()
        return user.id


@pytest.mark.parametrize(
    "content", ["", "   ", "\n\t ", "x" * 401, " " + "x" * 401 + " ", None, 7], ids=repr
)
def test_the_model_refuses_bad_content_before_any_sql(app, author, queries, content):
    """The lesson's model test: Post(content="") raises, and nothing reaches the database."""
    with app.app_context(), queries() as statements:
        with pytest.raises(ValueError, match="Post content"):
            Post(content=content, user_id=author)
        post = Post(content="fine", user_id=author)
        with pytest.raises(ValueError, match="Post content"):
            post.content = content  # assignment after construction too
        assert statements == []
        db.session.rollback()
    with app.app_context():
        assert db.session.scalar(text("SELECT count(*) FROM posts")) == 0


def test_the_model_keeps_good_content_trimmed(app, author):
    with app.app_context():
        db.session.add_all(
            [Post(content="  hi  ", user_id=author), Post(content="x" * 400, user_id=author)]
        )
        db.session.commit()
        rows = db.session.execute(text("SELECT content FROM posts ORDER BY id")).all()
    assert rows == [("hi",), ("x" * 400,)]


def test_the_table_refuses_blank_content_that_bypasses_the_model(app, author):
    """The CHECK constraint is the backstop for raw SQL."""
    with app.app_context():
        for content in ("", "   "):
            with pytest.raises(IntegrityError, match="(?i)check"):
                db.session.execute(
                    text(
                        "INSERT INTO posts (content, created_at, updated_at, user_id) "
                        "VALUES (:content, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, :user_id)"
                    ),
                    {"content": content, "user_id": author},
                )
            db.session.rollback()


def test_the_table_refuses_over_long_content_that_bypasses_the_model(app, author):
    """SQLite does not enforce VARCHAR(400); the CHECK does (PostgreSQL refuses either way)."""
    with app.app_context():
        with pytest.raises(Exception, match="(?i)check|too long"):
            db.session.execute(
                text(
                    "INSERT INTO posts (content, created_at, updated_at, user_id) "
                    "VALUES (:content, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, :user_id)"
                ),
                {"content": "x" * 401, "user_id": author},
            )
        db.session.rollback()


# --- Signup accepts password_confirmation ---


def test_signup_with_a_matching_confirmation(client, sql):
    body = {"username": "alice", "password": PASSWORD, "password_confirmation": PASSWORD}
    response = client.post("/signup", json=body)
    assert response.status_code == 201, response.get_json()
    assert "password_confirmation" not in response.get_json()
    assert client.get("/check_session").get_json()["username"] == "alice"


@pytest.mark.parametrize("confirmation", [PASSWORD + "x", "", PASSWORD.upper()])
def test_signup_with_a_different_confirmation_is_422_on_that_field(client, sql, confirmation):
    body = {"username": "alice", "password": PASSWORD, "password_confirmation": confirmation}
    response = client.post("/signup", json=body)
    assert response.status_code == 422
    assert response.get_json() == {
        "error": "Invalid fields: password_confirmation.",
        "errors": {"password_confirmation": ["Does not match the password."]},
    }
    assert sql("SELECT count(*) FROM users") == [(0,)]


def test_a_confirmation_that_is_not_a_string_is_422(client, sql):
    body = {"username": "alice", "password": PASSWORD, "password_confirmation": 12345678}
    response = client.post("/signup", json=body)
    assert response.status_code == 422
    assert list(response.get_json()["errors"]) == ["password_confirmation"]
    assert sql("SELECT count(*) FROM users") == [(0,)]


def test_the_openapi_document_lists_password_confirmation_as_optional(client):
    document = client.get("/openapi.json").get_json()
    schema = document["paths"]["/signup"]["post"]["requestBody"]["content"]["application/json"]
    schema = schema["schema"]
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert "password_confirmation" in schema["properties"]
    assert "password_confirmation" not in schema.get("required", [])


# --- session["user_id"] naming no user is "logged out" ---


@pytest.mark.parametrize("user_id", [999_999, 2**31, -1, 0, "1", None, 1.0], ids=repr)
def test_a_session_naming_no_user_is_logged_out(app, client, sql, user_id):
    with client.session_transaction() as session:  # never an exception
        session["user_id"] = user_id
    for path in ("/check_session", "/me", "/posts"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.get_json() == {"error": "Authentication required."}
    assert client.post("/posts", json={"content": "x"}).status_code == 401
    assert sql("SELECT count(*) FROM sessions") == [(0,)]


def test_a_session_whose_user_was_deleted_meanwhile_is_logged_out(app, signup, sql):
    alice = signup("alice")
    user_id = alice.user["id"]
    with app.app_context():
        db.session.execute(text("DELETE FROM users WHERE id = :id"), {"id": user_id})
        db.session.commit()
    assert alice.get("/check_session").status_code == 401
    with alice.session_transaction() as session:  # and setting it by hand again
        session["user_id"] = user_id
    assert alice.get("/check_session").status_code == 401
    assert alice.get("/posts").status_code == 401
    assert sql("SELECT count(*) FROM sessions") == [(0,)]
