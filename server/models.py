"""Tables first, then the Marshmallow schemas that load and dump them."""

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime
from functools import cache

from flask import current_app
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates
from sqlalchemy import func
from sqlalchemy.types import DateTime, TypeDecorator
from werkzeug.exceptions import UnprocessableEntity

from config import bcrypt, db

MAX_ID = 2**31 - 1  # PostgreSQL INTEGER; larger ids cannot exist, so they are 404s
USERNAME_RE = re.compile(r"\A[A-Za-z0-9._-]{3,30}\Z")  # \Z: "$" would allow a final newline


def utcnow():
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in Python on every database (SQLite keeps no time zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            value = value.astimezone(UTC)
            return value.replace(tzinfo=None) if dialect.name == "sqlite" else value
        return value

    def process_result_value(self, value, dialect):
        if value is not None:
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value


# --- passwords: bcrypt over a keyed pre-hash, so nothing is truncated at 72 bytes ---


def _prehash(password):
    """base64(HMAC-SHA384) is 64 ASCII bytes: under bcrypt's 72, and keyed against shucking."""
    key = current_app.config["PASSWORD_PEPPER"].encode() or b"flask-iam-api/password/v1"
    return base64.b64encode(hmac.new(key, password.encode(), hashlib.sha384).digest())


def hash_password(password):
    return bcrypt.generate_password_hash(_prehash(password)).decode()


def check_password(password_hash, password):
    return bcrypt.check_password_hash(password_hash, _prehash(password))


@cache
def _dummy_hash(rounds):
    return bcrypt.generate_password_hash(b"no such user", rounds).decode()


def password_matches(user, password):
    """Exactly one bcrypt check whether or not the user exists, so timing tells nothing."""
    if user is None:
        check_password(_dummy_hash(current_app.config["BCRYPT_LOG_ROUNDS"]), password)
        return False
    return user.authenticate(password)


# --- tables ---


class User(db.Model):
    __tablename__ = "users"

    id = db.Column(db.Integer, primary_key=True)
    username = db.Column(db.String(30), nullable=False)
    _password_hash = db.Column("password_hash", db.String(255), nullable=False)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)

    posts = db.relationship("Post", back_populates="user", passive_deletes=True)
    sessions = db.relationship("UserSession", back_populates="user", passive_deletes=True)

    __table_args__ = (db.Index("uq_users_username_lower", func.lower(username), unique=True),)

    @property
    def password_hash(self):
        raise AttributeError("Password hashes may not be viewed.")

    @password_hash.setter
    def password_hash(self, password):
        self._password_hash = hash_password(password)

    def authenticate(self, password):
        return check_password(self._password_hash, password)

    def __repr__(self):
        return f"<User {self.id} {self.username}>"


class Post(db.Model):
    __tablename__ = "posts"

    id = db.Column(db.Integer, primary_key=True)
    content = db.Column(db.String(400), nullable=False)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    updated_at = db.Column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="CASCADE"), nullable=False)

    user = db.relationship("User", back_populates="posts")

    __table_args__ = (db.Index("ix_posts_user_id_id", "user_id", "id"),)

    def __repr__(self):
        return f"<Post {self.id} by {self.user_id}>"


class UserSession(db.Model):
    """A logged-in session. The cookie holds a random key; only its SHA-256 is stored."""

    __tablename__ = "sessions"

    id = db.Column(db.Integer, primary_key=True)
    key_hash = db.Column(db.String(64), nullable=False, unique=True)
    user_id = db.Column(
        db.Integer, db.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    remember = db.Column(db.Boolean, nullable=False, default=False)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    last_seen_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    expires_at = db.Column(UTCDateTime, nullable=False)
    ip = db.Column(db.String(45))
    user_agent = db.Column(db.String(255))

    user = db.relationship("User", back_populates="sessions")

    def idle_timeout(self):
        config = current_app.config
        return config["SESSION_REMEMBER_LIFETIME" if self.remember else "SESSION_IDLE_TIMEOUT"]

    def is_live(self, now):
        return now < self.expires_at and now < self.last_seen_at + self.idle_timeout()


# --- schemas ---


class Text(fields.String):
    """A string PostgreSQL can store (no NUL, no lone surrogate), optionally trimmed."""

    default_error_messages = {"bad_chars": "Must not contain NUL or unpaired surrogate characters."}

    def __init__(self, *, strip=False, **kwargs):
        super().__init__(**kwargs)
        self.strip = strip

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in value:
            raise self.make_error("bad_chars")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise self.make_error("bad_chars") from None
        return value.strip() if self.strip else value


class StrictBoolean(fields.Boolean):
    """Only JSON true and false: never "yes", 1 or "0"."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class Timestamp(fields.DateTime):
    def __init__(self, **kwargs):
        super().__init__(format="%Y-%m-%dT%H:%M:%SZ", dump_only=True, **kwargs)


class InvalidInput(UnprocessableEntity):
    def __init__(self, errors, description=None):
        super().__init__(description)
        self.errors = errors


class BaseSchema(Schema):
    """Every validation failure becomes the house 422 body; Resources need no try/except."""

    def handle_error(self, error, data, **kwargs):
        fields_ = ", ".join(sorted(error.messages)) if isinstance(error.messages, dict) else ""
        raise InvalidInput(error.messages, f"Invalid fields: {fields_}." if fields_ else None)


class UserSchema(BaseSchema):
    id = fields.Integer(dump_only=True)
    username = fields.String(dump_only=True)
    created_at = Timestamp()


class SignupSchema(BaseSchema):
    username = Text(
        required=True,
        validate=validate.Regexp(
            USERNAME_RE, error="Must be 3-30 characters of letters, digits, '.', '_' or '-'."
        ),
    )
    password = Text(required=True, load_only=True)

    @validates("password")
    def validate_password(self, value, **kwargs):
        low, high = (current_app.config[k] for k in ("PASSWORD_MIN_LENGTH", "PASSWORD_MAX_LENGTH"))
        if len(value) < low:
            raise ValidationError(f"Must be at least {low} characters.")
        if len(value) > high:
            raise ValidationError(f"Must be at most {high} characters.")


class LoginSchema(BaseSchema):
    username = Text(required=True, validate=validate.Length(1, 254))
    password = Text(required=True, load_only=True, validate=validate.Length(1, 1024))
    remember = StrictBoolean(load_default=False)


class PostSchema(BaseSchema):
    id = fields.Integer(dump_only=True)
    content = Text(
        required=True,
        strip=True,
        validate=validate.Length(1, 400, error="Must be 1-400 characters (after trimming spaces)."),
    )
    created_at = Timestamp()
    updated_at = Timestamp()
    user = fields.Nested(UserSchema(only=("id", "username")), dump_only=True)


class PostQuerySchema(BaseSchema):
    class Meta:
        unknown = EXCLUDE  # query strings often carry cache-busters; ignore what we don't read

    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))
    before = fields.Integer(validate=validate.Range(1, MAX_ID))
    user_id = fields.Integer(validate=validate.Range(1, MAX_ID))


user_schema = UserSchema()
owner_schema = UserSchema()  # the owner's view; grows email and role with the account issue
signup_schema = SignupSchema()
login_schema = LoginSchema()
post_schema = PostSchema()
posts_schema = PostSchema(many=True)
post_query_schema = PostQuerySchema()
