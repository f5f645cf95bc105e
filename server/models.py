"""The tables, and beside User and Post the Marshmallow schemas that show them."""

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from flask import current_app
from marshmallow import fields, validate
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Dialect,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates
from sqlalchemy.types import DateTime, TypeDecorator

from bounds import (
    CREDENTIAL_ID_MAX_LENGTH,
    EMAIL_MAX_LENGTH,
    IP_MAX_LENGTH,
    PASSKEY_NAME_MAX_LENGTH,
    TOKEN_NAME_MAX_LENGTH,
    USER_AGENT_MAX_LENGTH,
    USERNAME_MAX_LENGTH,
)
from config import db
from database import Model
from field_types import BaseSchema, FastDump, Timestamp, trim, trimmed_pattern
from field_types import Text as TextField
from passwords import check_password, hash_cost, hash_password

if not TYPE_CHECKING:  # db.Model is Model, bound to Flask-SQLAlchemy's session (mypy cannot
    Model = db.Model  # follow an attribute of an instance as a base class)

CONTENT_MAX_LENGTH = 400  # a post's content, counted after trimming surrounding whitespace
CONTENT_RULE = f"Must be 1-{CONTENT_MAX_LENGTH} characters (after trimming spaces)."
KIND_MAX_LENGTH = 32  # a token's purpose, an event's type, an outbox message's kind
ROLES = ("user", "admin")
ROLE_MAX_LENGTH = 16
SUBJECT_MAX_LENGTH = 200  # an outbox message's subject
ERROR_MAX_LENGTH = 200  # the last delivery error an outbox message keeps


def utcnow() -> datetime:
    return datetime.now(UTC)


def sha256(secret: str) -> str:
    """Random tokens have 256 bits of entropy, so a plain SHA-256 is enough to store them."""
    return hashlib.sha256(secret.encode()).hexdigest()


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python on every database (SQLite keeps no time zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None:
            value = value.astimezone(UTC)
            return value.replace(tzinfo=None) if dialect.name == "sqlite" else value
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None:
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value


# --- users ---


class User(Model):
    """Once there is an active admin (role "admin", not disabled), the database refuses any
    UPDATE or DELETE that would leave none while users remain: triggers of migration 0005,
    invisible to autogenerate (SQLite batch migrations of this table drop them; re-create)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH))
    _password_hash: Mapped[str] = mapped_column("password_hash", String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    email: Mapped[str | None] = mapped_column(String(EMAIL_MAX_LENGTH))
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    role: Mapped[str] = mapped_column(
        String(ROLE_MAX_LENGTH), default="user", server_default="user"
    )
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Bumped when the password changes or the account is disabled: every session and token
    # minted under an older version stops working, even one minted a moment too late.
    auth_version: Mapped[int] = mapped_column(default=0, server_default="0")

    posts: Mapped[list["Post"]] = relationship(back_populates="user", passive_deletes=True)
    sessions: Mapped[list["UserSession"]] = relationship(
        back_populates="user", passive_deletes=True
    )

    __table_args__ = (CheckConstraint("role IN ('user', 'admin')", name="role"),)

    @property
    def password_hash(self) -> str:
        raise AttributeError("Password hashes may not be viewed.")

    @password_hash.setter
    def password_hash(self, password: str) -> None:
        self._password_hash = hash_password(password)

    def authenticate(self, password: str) -> bool:
        return check_password(self._password_hash, password)

    @property
    def password_cost(self) -> int:
        """The bcrypt cost the stored hash was made at (BCRYPT_LOG_ROUNDS then)."""
        return hash_cost(self._password_hash)

    @property
    def email_verified(self) -> bool:
        return self.email_verified_at is not None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def __repr__(self) -> str:
        return f"<User {self.id} {self.username}>"


Index("uq_users_username_lower", func.lower(User.username), unique=True)
# Only a verified address is anyone's: an unverified claim never blocks its owner.
Index(
    "uq_users_verified_email_lower",
    func.lower(User.email),
    unique=True,
    sqlite_where=User.email_verified_at.is_not(None),
    postgresql_where=User.email_verified_at.is_not(None),
)
Index("ix_users_email_lower", func.lower(User.email))


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is making the request (g.user): the user's columns a request reads, fetched in the
    same query as the session (sessions.py) rather than as a tracked ORM object, which cost a
    quarter of a cheap request. Read-only: a Resource that changes the user, or must check
    their password, loads the row (caller.caller_row())."""

    id: int
    username: str
    created_at: datetime
    email: str | None
    email_verified: bool
    role: str
    disabled: bool
    auth_version: int

    COLUMNS: ClassVar[tuple[Any, ...]] = (  # what the session query selects, in field order
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
    def of(cls, user: User) -> "Caller":
        return cls(*(getattr(user, field) for field in cls.__slots__))

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class UserSchema(BaseSchema):
    id = fields.Integer(required=True)
    username = fields.String(required=True)
    created_at = Timestamp(required=True)


# --- posts ---


class Post(Model):
    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(primary_key=True)
    content: Mapped[str] = mapped_column(String(CONTENT_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))

    user: Mapped[User] = relationship(back_populates="posts")

    __table_args__ = (
        Index("ix_posts_user_id_id", "user_id", "id"),
        # The backstop for writes that bypass the model (raw SQL); the model refuses first.
        CheckConstraint(
            f"length(trim(content)) >= 1 AND length(content) <= {CONTENT_MAX_LENGTH}",
            name="content_length",
        ),
    )

    @validates("content")
    def validate_content(self, key: str, content: object) -> str:
        """The lesson's model rule, the API's too: 1-400 characters once trimmed, stored trimmed.
        Raised before any SQL is sent, so a shell or a seed script cannot save a bad post."""
        if not isinstance(content, str):
            raise ValueError("Post content must be a string.")
        trimmed = trim(content)
        if not 1 <= len(trimmed) <= CONTENT_MAX_LENGTH:
            raise ValueError(f"Post content: {CONTENT_RULE[0].lower()}{CONTENT_RULE[1:]}")
        return trimmed

    def __repr__(self) -> str:
        return f"<Post {self.id} by {self.user_id}>"


class AuthorSchema(BaseSchema):
    id = fields.Integer(required=True)
    username = fields.String(required=True)


class PostSchema(BaseSchema):
    """A post as every response shows it (post_dump, for one post or a page of them)."""

    id = fields.Integer(required=True)
    content = fields.String(required=True)
    created_at = Timestamp(required=True)
    updated_at = Timestamp(required=True)
    user = fields.Nested(AuthorSchema, required=True)


class PostContentSchema(BaseSchema):
    """All a client may send for a post: its content. The owner is the caller."""

    content = TextField(
        required=True,
        strip=True,
        validate=validate.Length(1, CONTENT_MAX_LENGTH, error=CONTENT_RULE),
        metadata={"pattern": trimmed_pattern(CONTENT_MAX_LENGTH)},
    )


post_schema = PostSchema()
post_dump = FastDump(post_schema)  # every post in every response
post_content_schema = PostContentSchema()


# --- sessions and tokens ---


class SessionLifetime:
    """When a session ends, for UserSession rows and the lighter SessionRecord the session store
    reads on every request (sessions.py): both have remember, last_seen_at, expires_at,
    auth_version and user."""

    if TYPE_CHECKING:  # what both have (as columns, or as fields)
        remember: bool
        last_seen_at: datetime
        expires_at: datetime
        auth_version: int
        user: Any  # a User or a Caller: what is read is auth_version

    def idle_timeout(self) -> timedelta:
        config = current_app.config
        timeout: timedelta = config[
            "SESSION_REMEMBER_LIFETIME" if self.remember else "SESSION_IDLE_TIMEOUT"
        ]
        return timeout

    @property
    def ends_at(self) -> datetime:
        """When it ends if unused from now on: the idle limit or the absolute one, first."""
        return min(self.expires_at, self.last_seen_at + self.idle_timeout())

    def is_live(self, now: datetime) -> bool:
        """Not expired, and no password change (or other credential event) since it began."""
        return now < self.ends_at and self.auth_version == self.user.auth_version


class UserSession(SessionLifetime, Model):
    """A logged-in session. The cookie holds a random key; only its SHA-256 is stored."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    remember: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ip: Mapped[str | None] = mapped_column(String(IP_MAX_LENGTH))
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_MAX_LENGTH))
    auth_version: Mapped[int] = mapped_column(default=0, server_default="0")
    # When it last proved who it is (log in, sign up, POST /reauthenticate): sensitive routes
    # want this within REAUTHENTICATION_WINDOW.
    authenticated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship(back_populates="sessions")


class ApiToken(Model):
    """A bearer token for scripts and apps. Shown once; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"
    PREFIX = "iam_"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(TOKEN_NAME_MAX_LENGTH))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))  # the first characters, to recognise it by
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    auth_version: Mapped[int] = mapped_column(default=0, server_default="0")
    authenticated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)  # as sessions'

    user: Mapped[User] = relationship()

    def is_live(self, now: datetime) -> bool:
        unexpired = self.expires_at is None or now < self.expires_at
        return unexpired and self.auth_version == self.user.auth_version and not self.user.disabled


class OneTimeToken(Model):
    """A link token (password reset, email verification) stored as its SHA-256; used once."""

    __tablename__ = "one_time_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(KIND_MAX_LENGTH))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # the address a verification token vouches for
    email: Mapped[str | None] = mapped_column(String(EMAIL_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()

    __table_args__ = (Index("ix_one_time_tokens_user_id_purpose", "user_id", "purpose"),)


# --- second factors ---


class TotpFactor(Model):
    """A user's TOTP secret, encrypted (mfa.py), pending until a first code confirms it."""

    __tablename__ = "totp_factors"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    secret: Mapped[str] = mapped_column(String(255))  # Fernet token of the base32 secret
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_step: Mapped[int | None] = mapped_column(BigInteger)  # the last time step accepted


class RecoveryCode(Model):
    """One of a user's recovery codes, as its keyed hash (mfa.py); used once."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("user_id", "code_hash"),)


class PendingLogin(Model):
    """A login whose password was right, waiting for its second factor. Its cookie holds a
    random key; only the key's SHA-256 is stored."""

    __tablename__ = "pending_logins"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    remember: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    failures: Mapped[int] = mapped_column(default=0, server_default="0")
    auth_version: Mapped[int]  # the user's, when the password was checked

    user: Mapped[User] = relationship()


class Passkey(Model):
    """A WebAuthn credential of a user: a second factor, and a login by itself."""

    __tablename__ = "passkeys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    credential_id: Mapped[str] = mapped_column(String(CREDENTIAL_ID_MAX_LENGTH), unique=True)
    public_key: Mapped[str] = mapped_column(Text)  # COSE_Key, base64url
    sign_count: Mapped[int] = mapped_column(BigInteger)
    user_handle: Mapped[str] = mapped_column(String(100))  # base64url, the same for the user's
    name: Mapped[str] = mapped_column(String(PASSKEY_NAME_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


class WebauthnChallenge(Model):
    """A challenge sent with WebAuthn options, until it is answered (once) or expires."""

    __tablename__ = "webauthn_challenges"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # its cookie's key, hashed
    purpose: Mapped[str] = mapped_column(String(KIND_MAX_LENGTH))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    challenge: Mapped[str] = mapped_column(String(128))  # base64url
    user_handle: Mapped[str | None] = mapped_column(String(100))  # what creation options named
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class KnownDevice(Model):
    """A browser a user has logged in from: its cookie's key, hashed (known_devices.py)."""

    __tablename__ = "known_devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    device_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("user_id", "device_hash"),)


# --- history and mail ---


class SecurityEvent(Model):
    __tablename__ = "security_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(KIND_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(IP_MAX_LENGTH))
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_MAX_LENGTH))

    __table_args__ = (Index("ix_security_events_user_id_id", "user_id", "id"),)


class OutboxMessage(Model):
    """Mail waiting to be sent, written in the same transaction as the change it reports.

    Secrets are never stored here: password-reset and verification links are minted when the
    message is sent, so a row holds only where it goes and what kind it is.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    # notice, password_reset, email_verification
    kind: Mapped[str] = mapped_column(String(KIND_MAX_LENGTH))
    to_address: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    subject: Mapped[str | None] = mapped_column(String(SUBJECT_MAX_LENGTH))
    body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    last_error: Mapped[str | None] = mapped_column(String(ERROR_MAX_LENGTH))
    # Set when delivery is given up on (MAIL_MAX_ATTEMPTS, or a refusal no retry can change): the
    # sender never picks the row again; `flask mail retry` clears it.
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
