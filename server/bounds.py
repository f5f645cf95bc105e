"""Every limit on what a request may carry or a user may hold, named once and used wherever it
applies: by the schemas that check it, the tables that store it and the OpenAPI document that
states it. (A post's own limits sit beside the Post table, in models.py.)"""

MAX_ID = 2**31 - 1  # PostgreSQL INTEGER; larger ids cannot exist, so they are 404s
BODY_MAX_BYTES = 1024 * 1024  # MAX_CONTENT_LENGTH: a larger request body is a 413

USERNAME_MIN_LENGTH = 3
USERNAME_MAX_LENGTH = 30
EMAIL_MAX_LENGTH = 254  # RFC 5321's longest path
LOGIN_NAME_MAX_LENGTH = EMAIL_MAX_LENGTH  # a login names a username or an email address
PASSWORD_MIN_LENGTH = 8  # the default of the PASSWORD_MIN_LENGTH setting
PASSWORD_MAX_LENGTH = 1024  # every character counts (passwords.py pre-hashes), up to this many

CODE_MAX_LENGTH = 64  # a TOTP code or a recovery code, as typed
CREDENTIAL_ID_MAX_LENGTH = 1400  # a WebAuthn credential id (at most 1023 bytes), base64url
PASSKEY_NAME_MAX_LENGTH = 100
PASSKEYS_PER_USER = 20
LINK_TOKEN_MAX_LENGTH = 200  # what a password-reset or verification link's token may be
TOKEN_NAME_MAX_LENGTH = 100  # an API token's name
TOKEN_LIFETIME_MAX_DAYS = 3650
MAX_PER_USER = 100  # API tokens a user may hold, and sessions GET /sessions lists

PAGE_SIZE = 20  # rows a list returns unless ?limit= says otherwise
PAGE_SIZE_MAX = 100
SEARCH_MAX_LENGTH = 100  # GET /admin/users?q=

IP_MAX_LENGTH = 45  # an IPv6 address in text, with an embedded IPv4 one
USER_AGENT_MAX_LENGTH = 255  # the part of a User-Agent the history keeps
