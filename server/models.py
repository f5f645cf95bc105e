"""Tables first, then the Marshmallow schemas that load and dump them."""

import functools
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    missing,
    validate,
    validates_schema,
)
from sqlalchemy import func
from sqlalchemy.orm import validates
from sqlalchemy.types import DateTime, TypeDecorator
from werkzeug.exceptions import UnprocessableEntity

from config import db
from passwords import check_password, hash_cost, hash_password, password_problem

MAX_ID = 2**31 - 1  # PostgreSQL INTEGER; larger ids cannot exist, so they are 404s
CONTENT_MAX_LENGTH = 400  # a post's content, counted after trimming surrounding whitespace
CONTENT_RULE = f"Must be 1-{CONTENT_MAX_LENGTH} characters (after trimming spaces)."
EMAIL_MAX_LENGTH = 254  # RFC 5321's longest path
PASSWORD_MAX_LENGTH = 1024  # every character counts (passwords.py pre-hashes), up to this many
LOGIN_NAME_MAX_LENGTH = EMAIL_MAX_LENGTH  # a login names a username or an email address
LINK_TOKEN_MAX_LENGTH = 200
SEARCH_MAX_LENGTH = 100
USERNAME_RE = re.compile(r"\A[A-Za-z0-9._-]{3,30}\Z")  # \Z: "$" would allow a final newline
ROLES = ("user", "admin")


def utcnow():
    return datetime.now(UTC)


def sha256(secret):
    """Random tokens have 256 bits of entropy, so a plain SHA-256 is enough to store them."""
    return hashlib.sha256(secret.encode()).hexdigest()


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


# --- tables ---


class User(db.Model):
    """Once there is an active admin (role "admin", not disabled), the database refuses any
    UPDATE or DELETE that would leave none while users remain: triggers of migration 0005,
    invisible to autogenerate (SQLite batch migrations of this table drop them; re-create)."""

    __tablename__ = "users"

    id = db.Column(db.Integer, primary_key=True)
    username = db.Column(db.String(30), nullable=False)
    _password_hash = db.Column("password_hash", db.String(255), nullable=False)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    email = db.Column(db.String(EMAIL_MAX_LENGTH))
    email_verified_at = db.Column(UTCDateTime)
    role = db.Column(db.String(16), nullable=False, default="user", server_default="user")
    disabled_at = db.Column(UTCDateTime)
    # Bumped when the password changes or the account is disabled: every session and token
    # minted under an older version stops working, even one minted a moment too late.
    auth_version = db.Column(db.Integer, nullable=False, default=0, server_default="0")

    posts = db.relationship("Post", back_populates="user", passive_deletes=True)
    sessions = db.relationship("UserSession", back_populates="user", passive_deletes=True)

    __table_args__ = (
        db.Index("uq_users_username_lower", func.lower(username), unique=True),
        # Only a verified address is anyone's: an unverified claim never blocks its owner.
        db.Index(
            "uq_users_verified_email_lower",
            func.lower(email),
            unique=True,
            sqlite_where=email_verified_at.is_not(None),
            postgresql_where=email_verified_at.is_not(None),
        ),
        db.Index("ix_users_email_lower", func.lower(email)),
        db.CheckConstraint("role IN ('user', 'admin')", name="role"),
    )

    @property
    def password_hash(self):
        raise AttributeError("Password hashes may not be viewed.")

    @password_hash.setter
    def password_hash(self, password):
        self._password_hash = hash_password(password)

    def authenticate(self, password):
        return check_password(self._password_hash, password)

    @property
    def password_cost(self):
        """The bcrypt cost the stored hash was made at (BCRYPT_LOG_ROUNDS then)."""
        return hash_cost(self._password_hash)

    @property
    def email_verified(self):
        return self.email_verified_at is not None

    @property
    def disabled(self):
        return self.disabled_at is not None

    @property
    def is_admin(self):
        return self.role == "admin"

    def __repr__(self):
        return f"<User {self.id} {self.username}>"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is making the request (g.user): the user's columns a request reads, fetched in the
    same query as the session (sessions.py) rather than as a tracked ORM object, which cost a
    quarter of a cheap request. Read-only: a Resource that changes the user, or must check
    their password, loads the row (common.caller_row())."""

    id: int
    username: str
    created_at: datetime
    email: str | None
    email_verified: bool
    role: str
    disabled: bool
    auth_version: int

    COLUMNS = (  # what the session query selects, in field order
        User.id,
        User.username,
        User.created_at,
        User.email,
        User.email_verified_at.is_not(None).label("email_verified"),
        User.role,
        User.disabled_at.is_not(None).label("disabled"),
        User.auth_version,
    )

    @classmethod
    def of(cls, user):
        return cls(*(getattr(user, field) for field in cls.__slots__))

    @property
    def is_admin(self):
        return self.role == "admin"


class Post(db.Model):
    __tablename__ = "posts"

    id = db.Column(db.Integer, primary_key=True)
    content = db.Column(db.String(CONTENT_MAX_LENGTH), nullable=False)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    updated_at = db.Column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="CASCADE"), nullable=False)

    user = db.relationship("User", back_populates="posts")

    __table_args__ = (
        db.Index("ix_posts_user_id_id", "user_id", "id"),
        # The backstop for writes that bypass the model (raw SQL); the model refuses first.
        db.CheckConstraint(
            f"length(trim(content)) >= 1 AND length(content) <= {CONTENT_MAX_LENGTH}",
            name="content_length",
        ),
    )

    @validates("content")
    def validate_content(self, key, content):
        """The lesson's model rule, the API's too: 1-400 characters once trimmed, stored trimmed.
        Raised before any SQL is sent, so a shell or a seed script cannot save a bad post."""
        if not isinstance(content, str):
            raise ValueError("Post content must be a string.")
        content = trim(content)
        if not 1 <= len(content) <= CONTENT_MAX_LENGTH:
            raise ValueError(f"Post content: {CONTENT_RULE[0].lower()}{CONTENT_RULE[1:]}")
        return content

    def __repr__(self):
        return f"<Post {self.id} by {self.user_id}>"


class SessionLifetime:
    """When a session ends, for UserSession rows and the lighter SessionRecord the session store
    reads on every request (sessions.py): both have remember, last_seen_at, expires_at,
    auth_version and user."""

    def idle_timeout(self):
        config = current_app.config
        return config["SESSION_REMEMBER_LIFETIME" if self.remember else "SESSION_IDLE_TIMEOUT"]

    @property
    def ends_at(self):
        """When it ends if unused from now on: the idle limit or the absolute one, first."""
        return min(self.expires_at, self.last_seen_at + self.idle_timeout())

    def is_live(self, now):
        """Not expired, and no password change (or other credential event) since it began."""
        return now < self.ends_at and self.auth_version == self.user.auth_version


class UserSession(SessionLifetime, db.Model):
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
    auth_version = db.Column(db.Integer, nullable=False, default=0, server_default="0")

    user = db.relationship("User", back_populates="sessions")


class ApiToken(db.Model):
    """A bearer token for scripts and apps. Shown once; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"
    PREFIX = "iam_"

    id = db.Column(db.Integer, primary_key=True)
    user_id = db.Column(
        db.Integer, db.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name = db.Column(db.String(100), nullable=False)
    token_hash = db.Column(db.String(64), nullable=False, unique=True)
    hint = db.Column(db.String(16), nullable=False)  # the first characters, to recognise it by
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    expires_at = db.Column(UTCDateTime)
    last_used_at = db.Column(UTCDateTime)
    auth_version = db.Column(db.Integer, nullable=False, default=0, server_default="0")

    user = db.relationship("User")

    def is_live(self, now):
        unexpired = self.expires_at is None or now < self.expires_at
        return unexpired and self.auth_version == self.user.auth_version and not self.user.disabled


class OneTimeToken(db.Model):
    """A link token (password reset, email verification) stored as its SHA-256; used once."""

    __tablename__ = "one_time_tokens"

    id = db.Column(db.Integer, primary_key=True)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    purpose = db.Column(db.String(32), nullable=False)
    token_hash = db.Column(db.String(64), nullable=False, unique=True)
    email = db.Column(db.String(EMAIL_MAX_LENGTH))  # the address a verification token vouches for
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    expires_at = db.Column(UTCDateTime, nullable=False)

    user = db.relationship("User")

    __table_args__ = (db.Index("ix_one_time_tokens_user_id_purpose", "user_id", "purpose"),)


class SecurityEvent(db.Model):
    __tablename__ = "security_events"

    id = db.Column(db.Integer, primary_key=True)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    type = db.Column(db.String(32), nullable=False)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    ip = db.Column(db.String(45))
    user_agent = db.Column(db.String(255))

    __table_args__ = (db.Index("ix_security_events_user_id_id", "user_id", "id"),)


class OutboxMessage(db.Model):
    """Mail waiting to be sent, written in the same transaction as the change it reports.

    Secrets are never stored here: password-reset and verification links are minted when the
    message is sent, so a row holds only where it goes and what kind it is.
    """

    __tablename__ = "outbox"

    id = db.Column(db.Integer, primary_key=True)
    kind = db.Column(db.String(32), nullable=False)  # notice, password_reset, email_verification
    to_address = db.Column(db.String(EMAIL_MAX_LENGTH), nullable=False)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="CASCADE"))
    subject = db.Column(db.String(200))
    body = db.Column(db.Text)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    attempts = db.Column(db.Integer, nullable=False, default=0)
    next_attempt_at = db.Column(UTCDateTime, nullable=False, default=utcnow, index=True)
    last_error = db.Column(db.String(200))
    # Set when delivery is given up on (MAIL_MAX_ATTEMPTS, or a refusal no retry can change): the
    # sender never picks the row again; `flask mail retry` clears it.
    failed_at = db.Column(UTCDateTime)


# --- schemas ---
#
# Request schemas (load) and response schemas (dump) are separate classes, and the metadata on
# each field is what the OpenAPI document shows, so the document states the rules that run.

NO_NUL = "^[^\\u0000]*$"
# What "surrounding whitespace" means, for the trimming the server does and the pattern the
# OpenAPI document states alike: exactly what \s matches in ECMAScript regular expressions
# (JSON Schema's dialect), not Python's str.strip(), which also takes \x1c-\x1f and \x85 and
# leaves U+FEFF.
WHITESPACE = "\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
SPACE_CLASS = r"[\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
TRIM_RE = re.compile(f"\\A[{WHITESPACE}]+|[{WHITESPACE}]+\\Z")


def trim(value):
    """value without surrounding whitespace (WHITESPACE)."""
    return TRIM_RE.sub("", value)


def trimmed_pattern(longest):
    """JSON Schema for "1 to `longest` characters once surrounding whitespace is trimmed"."""
    space, solid = SPACE_CLASS, SPACE_CLASS.replace("[", "[^\\u0000", 1)
    return rf"^{space}*{solid}(?:[^\u0000]{{0,{longest - 2}}}{solid})?{space}*$"


def full_match(regex, message):
    """Like validate.Regexp, but the whole value must match (Regexp only anchors the start)."""

    def check(value):
        if not regex.fullmatch(value):
            raise ValidationError(message)

    return check


class Text(fields.String):
    """A string PostgreSQL can store (no NUL, no lone surrogate), optionally trimmed."""

    default_error_messages = {"bad_chars": "Must not contain NUL or unpaired surrogate characters."}

    def __init__(self, *, strip=False, max_length=None, metadata=None, **kwargs):
        metadata = {"pattern": NO_NUL, **(metadata or {})}
        if max_length is not None:
            metadata.setdefault("maxLength", max_length)
        super().__init__(metadata=metadata, **kwargs)
        self.strip, self.max_length = strip, max_length

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if self.max_length is not None and len(value) > self.max_length:
            # Checked first: no parser, regex or hasher ever sees a value past its bound.
            raise ValidationError(f"Longer than maximum length {self.max_length}.")
        if "\x00" in value:
            raise self.make_error("bad_chars")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise self.make_error("bad_chars") from None
        return trim(value) if self.strip else value


class Username(Text):
    def __init__(self, **kwargs):
        message = "Must be 3-30 characters of letters, digits, '.', '_' or '-'."
        super().__init__(
            validate=full_match(USERNAME_RE, message),
            metadata={"pattern": "^[A-Za-z0-9._-]{3,30}$"},  # the same rule, in JSON Schema's regex
            **kwargs,
        )


class NewPassword(Text):
    """Checked against the password policy by the schema or Resource (it needs the user)."""

    def __init__(self, **kwargs):
        metadata = {"minLength": 8, "maxLength": PASSWORD_MAX_LENGTH}
        super().__init__(load_only=True, metadata=metadata, **kwargs)


def stored_email(value: str) -> str:
    """The one form an address is stored, looked up and mailed in: lowercased (the same
    comparison on every database), with the domain in ASCII (IDNA), which every mail server
    takes. A non-ASCII local part has no ASCII form; it can only be mailed over SMTPUTF8.
    email_validator bounds this very form (local part, "@", ASCII domain) at 254 octets.
    Raises EmailNotValidError."""
    address = validate_email(value, check_deliverability=False)
    if address.ascii_email is not None:
        return address.ascii_email.lower()
    return f"{address.local_part.lower()}@{address.ascii_domain}"


def email_lookup(value: str) -> str:
    """What a typed address is compared with (`lower(email) == ...`): its stored form, so any
    spelling of the same address finds it; text that is no address is just lowercased."""
    try:
        return stored_email(value)
    except EmailNotValidError:
        return value.lower()


class Email(Text):
    """A deliverable-looking address (no DNS lookups), in its stored form (`stored_email`)."""

    def __init__(self, **kwargs):
        super().__init__(max_length=EMAIL_MAX_LENGTH, metadata={"format": "email"}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        try:
            return stored_email(value)
        except EmailNotValidError as error:
            raise ValidationError(str(error)) from None


class WholeNumber(fields.Integer):
    """A JSON number that is whole, as JSON Schema's "integer" is: 138 or 138.0, never 138.5,
    "138" or true."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        if isinstance(value, float) and not value.is_integer():
            raise self.make_error("invalid")
        return int(value)


class StrictBoolean(fields.Boolean):
    """Only JSON true and false: never "yes", 1 or "0"."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class Timestamp(fields.DateTime):
    """ISO 8601 UTC to the second: 2026-11-21T22:43:45Z."""

    def __init__(self, **kwargs):
        # No custom `format`: apispec documents the default as "date-time", which this is.
        pattern = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"
        super().__init__(dump_only=True, metadata={"pattern": pattern}, **kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else self.text(value)

    @staticmethod
    def text(value):
        # isoformat: the same text as strftime("%Y-%m-%dT%H:%M:%SZ"), in two thirds of the time
        if value.tzinfo is not UTC:  # the database's values already are
            value = value.astimezone(UTC)
        return value.isoformat(timespec="seconds")[:19] + "Z"


class FastDump:
    """schema.dump(), compiled once for the hot responses: for each field, the key to read and
    its conversion (int, str, bool or Timestamp.text: what those fields' _serialize does to a
    value that is not None), without marshmallow's per-value dispatch, about five times faster.
    Built from the schema's fields, so its output cannot drift from the schema or the OpenAPI
    document made from it; a schema using what this does not do (dump hooks, dotted attributes,
    defaults, other field types) is refused, not approximated."""

    CONVERSIONS = {
        fields.Integer: int,
        fields.String: str,
        fields.Boolean: bool,
        Timestamp: Timestamp.text,
    }

    def __init__(self, schema):
        if any(  # marshmallow's decorators mark hook methods with __marshmallow_hook__
            "dump" in str(getattr(getattr(type(schema), name), "__marshmallow_hook__", ""))
            for name in dir(type(schema))
            if not name.startswith("__")
        ):
            raise TypeError(f"{type(schema).__name__} has dump hooks")
        self.plan = []
        for name, field in schema.dump_fields.items():
            attribute = field.attribute or name
            if (
                "." in attribute
                or field.dump_default is not missing
                or getattr(field, "as_string", False)
                or type(field) not in self.CONVERSIONS
            ):
                raise TypeError(f"{type(schema).__name__}.{name} is not a plain field")
            key = field.data_key if field.data_key is not None else name
            self.plan.append((key, attribute, self.CONVERSIONS[type(field)]))

    def one(self, obj):
        get = obj.get if isinstance(obj, dict) else functools.partial(getattr, obj)
        out = {}
        for key, attribute, convert in self.plan:
            value = get(attribute, missing)
            if value is not missing:
                out[key] = None if value is None else convert(value)
        return out


class InvalidInput(UnprocessableEntity):
    def __init__(self, errors, description=None):
        super().__init__(description)
        self.errors = errors


def invalid(field, message):
    """A 422 about one field, shaped like a schema's."""
    return InvalidInput({field: [message]}, message)


class BaseSchema(Schema):
    """Every validation failure becomes the house 422 body; Resources need no try/except."""

    def handle_error(self, error, data, **kwargs):
        fields_ = ", ".join(sorted(error.messages)) if isinstance(error.messages, dict) else ""
        raise InvalidInput(error.messages, f"Invalid fields: {fields_}." if fields_ else None)


# --- responses ---


class UserSchema(BaseSchema):
    id = fields.Integer(required=True)
    username = fields.String(required=True)
    created_at = Timestamp(required=True)


class OwnerSchema(UserSchema):
    email = fields.String(required=True, allow_none=True)
    email_verified = fields.Boolean(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))


class AdminUserSchema(OwnerSchema):
    disabled = fields.Boolean(required=True)


class AuthorSchema(BaseSchema):
    id = fields.Integer(required=True)
    username = fields.String(required=True)


class PostSchema(BaseSchema):
    id = fields.Integer(required=True)
    content = fields.String(required=True)
    created_at = Timestamp(required=True)
    updated_at = Timestamp(required=True)
    user = fields.Nested(AuthorSchema, required=True)


class TokenSchema(BaseSchema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    hint = fields.String(required=True)
    created_at = Timestamp(required=True)
    expires_at = Timestamp(required=True, allow_none=True)
    last_used_at = Timestamp(required=True, allow_none=True)


class NewTokenSchema(BaseSchema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    token = fields.String(required=True)
    created_at = Timestamp(required=True)
    expires_at = Timestamp(required=True, allow_none=True)


class SessionSchema(BaseSchema):
    id = fields.Integer(required=True)
    created_at = Timestamp(required=True)
    last_seen_at = Timestamp(required=True)
    expires_at = Timestamp(required=True, attribute="ends_at")
    ip = fields.String(required=True, allow_none=True)
    user_agent = fields.String(required=True, allow_none=True)
    current = fields.Boolean(required=True)


class SecurityEventSchema(BaseSchema):
    id = fields.Integer(required=True)
    type = fields.String(required=True)
    created_at = Timestamp(required=True)
    ip = fields.String(required=True, allow_none=True)
    user_agent = fields.String(required=True, allow_none=True)


# --- requests ---


class SignupSchema(BaseSchema):
    username = Username(required=True)
    password = NewPassword(required=True)
    # The lesson's sign-up form sends it; optional, and checked only when sent.
    password_confirmation = Text(load_only=True, max_length=PASSWORD_MAX_LENGTH)
    email = Email(load_default=None, allow_none=True)

    @validates_schema(skip_on_field_errors=False)
    def validate_password(self, data, **kwargs):
        """The policy needs the other fields: a password may not be the username or email."""
        errors = {}
        if "password" in data:
            if problem := password_problem(
                data["password"], data.get("username"), data.get("email")
            ):
                errors["password"] = [problem]
        confirmation = data.get("password_confirmation")
        if "password" in data and confirmation not in (None, data["password"]):
            errors["password_confirmation"] = ["Does not match the password."]
        if errors:
            raise ValidationError(errors)


class LoginSchema(BaseSchema):
    username = Text(required=True, max_length=LOGIN_NAME_MAX_LENGTH, validate=validate.Length(1))
    password = Text(
        required=True, load_only=True, max_length=PASSWORD_MAX_LENGTH, validate=validate.Length(1)
    )
    remember = StrictBoolean(load_default=False)


class ProfileSchema(BaseSchema):
    username = Username()
    email = Email(allow_none=True)
    current_password = Text(
        load_only=True, max_length=PASSWORD_MAX_LENGTH, validate=validate.Length(1)
    )

    @validates_schema
    def validate_not_empty(self, data, **kwargs):
        if not data:
            raise ValidationError("Send at least one of: username, email.", "_schema")


class PasswordChangeSchema(BaseSchema):
    current_password = Text(
        required=True, load_only=True, max_length=PASSWORD_MAX_LENGTH, validate=validate.Length(1)
    )
    new_password = NewPassword(required=True)


class PasswordSchema(BaseSchema):
    password = Text(
        required=True, load_only=True, max_length=PASSWORD_MAX_LENGTH, validate=validate.Length(1)
    )


class PasswordResetRequestSchema(BaseSchema):
    email = Email(required=True)


class TokenConfirmSchema(BaseSchema):
    token = Text(required=True, max_length=LINK_TOKEN_MAX_LENGTH, validate=validate.Length(1))


class PasswordResetConfirmSchema(TokenConfirmSchema):
    new_password = NewPassword(required=True)


class TokenRequestSchema(BaseSchema):
    username = Text(required=True, max_length=LOGIN_NAME_MAX_LENGTH, validate=validate.Length(1))
    password = Text(
        required=True, load_only=True, max_length=PASSWORD_MAX_LENGTH, validate=validate.Length(1)
    )
    name = Text(
        strip=True,
        load_default="API token",
        validate=validate.Length(1, 100),
        metadata={"pattern": trimmed_pattern(100)},
    )
    expires_in_days = WholeNumber(
        load_default=None, allow_none=True, validate=validate.Range(1, 3650)
    )


class PostContentSchema(BaseSchema):
    """All a client may send for a post: its content. The owner is the caller."""

    content = Text(
        required=True,
        strip=True,
        validate=validate.Length(1, CONTENT_MAX_LENGTH, error=CONTENT_RULE),
        metadata={"pattern": trimmed_pattern(CONTENT_MAX_LENGTH)},
    )


class PageQuerySchema(BaseSchema):
    class Meta:
        unknown = EXCLUDE  # query strings often carry cache-busters; ignore what we don't read

    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))
    before = fields.Integer(validate=validate.Range(1, MAX_ID))


class PostQuerySchema(PageQuerySchema):
    user_id = fields.Integer(validate=validate.Range(1, MAX_ID))


class AdminUserQuerySchema(PageQuerySchema):
    q = Text(max_length=SEARCH_MAX_LENGTH)


class AdminUserUpdateSchema(BaseSchema):
    role = fields.String(validate=validate.OneOf(ROLES))
    disabled = StrictBoolean()

    @validates_schema
    def validate_not_empty(self, data, **kwargs):
        if not data:
            raise ValidationError("Send at least one of: role, disabled.", "_schema")


user_schema = UserSchema()
owner_schema = OwnerSchema()
admin_user_schema = AdminUserSchema()
admin_users_schema = AdminUserSchema(many=True)
signup_schema = SignupSchema()
login_schema = LoginSchema()
profile_schema = ProfileSchema()
password_change_schema = PasswordChangeSchema()
password_schema = PasswordSchema()
password_reset_request_schema = PasswordResetRequestSchema()
password_reset_confirm_schema = PasswordResetConfirmSchema()
token_confirm_schema = TokenConfirmSchema()
token_request_schema = TokenRequestSchema()
tokens_schema = TokenSchema(many=True)
new_token_schema = NewTokenSchema()
sessions_schema = SessionSchema(many=True)
events_schema = SecurityEventSchema(many=True)
post_schema = PostSchema()
posts_schema = PostSchema(many=True)
owner_dump = FastDump(owner_schema)  # GET /check_session, GET /me
post_content_schema = PostContentSchema()
post_query_schema = PostQuerySchema()
page_query_schema = PageQuerySchema()
admin_user_query_schema = AdminUserQuerySchema()
admin_user_update_schema = AdminUserUpdateSchema()
