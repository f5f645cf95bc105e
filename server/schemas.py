"""The request and response schemas of everything but a post: Resources load request bodies
and query strings with the first kind and dump responses with the second, and the OpenAPI
document is made from both. (UserSchema and PostSchema sit beside their tables in models.py.)"""

from typing import Any, ClassVar

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from bounds import (
    LINK_TOKEN_MAX_LENGTH,
    LOGIN_NAME_MAX_LENGTH,
    MAX_ID,
    PAGE_SIZE,
    PAGE_SIZE_MAX,
    PASSKEY_NAME_MAX_LENGTH,
    PASSWORD_MAX_LENGTH,
    SEARCH_MAX_LENGTH,
    TOKEN_LIFETIME_MAX_DAYS,
    TOKEN_NAME_MAX_LENGTH,
)
from field_types import (
    BaseSchema,
    Code,
    Email,
    FastDump,
    NewPassword,
    Password,
    StrictBoolean,
    Text,
    Timestamp,
    Username,
    WholeNumber,
    trimmed_pattern,
)
from models import ROLES, UserSchema
from passwords import password_problem


class AtLeastOne(BaseSchema):
    """A body that must name at least one of `one_of` (a PATCH): `{}` is a 422, and the OpenAPI
    document says minProperties: 1."""

    one_of: ClassVar[tuple[str, ...]] = ()

    @validates_schema
    def validate_not_empty(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data:
            raise ValidationError(f"Send at least one of: {', '.join(self.one_of)}.", "_schema")


# --- responses ---


class OwnerSchema(UserSchema):
    email = fields.String(required=True, allow_none=True)
    email_verified = fields.Boolean(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))


class AdminUserSchema(OwnerSchema):
    disabled = fields.Boolean(required=True)


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


class MessageSchema(Schema):
    message = fields.String(required=True)


class HealthSchema(Schema):
    status = fields.String(required=True)


class ReadySchema(Schema):
    status = fields.String(required=True)
    checks = fields.Dict(keys=fields.String(), values=fields.String(), required=True)


class ErrorSchema(Schema):
    error = fields.String(required=True)
    mfa_required = fields.Boolean(
        metadata={"description": "401 of a login: the password was right; a second factor next"}
    )
    reauthentication_required = fields.Boolean(
        metadata={"description": "403: confirm it is you (POST /reauthenticate), then retry"}
    )
    mfa_setup_required = fields.Boolean(
        metadata={"description": "403 of an admin route: your role needs a second factor"}
    )
    methods = fields.List(fields.String(), metadata={"description": "What the next step accepts"})


class ValidationErrorSchema(ErrorSchema):
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), required=True)


class NotReadySchema(ErrorSchema):
    checks = fields.Dict(keys=fields.String(), values=fields.String(), required=True)


# --- requests ---


class SignupSchema(BaseSchema):
    username = Username(required=True)
    password = NewPassword(required=True)
    # The lesson's sign-up form sends it; optional, and checked only when sent.
    password_confirmation = Text(load_only=True, max_length=PASSWORD_MAX_LENGTH)
    email = Email(load_default=None, allow_none=True)

    @validates_schema(skip_on_field_errors=False)
    def validate_password(self, data: dict[str, Any], **kwargs: Any) -> None:
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
    password = Password(required=True)
    remember = StrictBoolean(load_default=False)


class ProfileSchema(AtLeastOne):
    one_of = ("username", "email")

    username = Username()
    email = Email(allow_none=True)
    current_password = Password()


class PasswordChangeSchema(BaseSchema):
    current_password = Password(required=True)
    new_password = NewPassword(required=True)


class PasswordSchema(BaseSchema):
    password = Password(required=True)


class PasswordResetRequestSchema(BaseSchema):
    email = Email(required=True)


class TokenConfirmSchema(BaseSchema):
    token = Text(required=True, max_length=LINK_TOKEN_MAX_LENGTH, validate=validate.Length(1))


class PasswordResetConfirmSchema(TokenConfirmSchema):
    new_password = NewPassword(required=True)


class TokenRequestSchema(BaseSchema):
    username = Text(required=True, max_length=LOGIN_NAME_MAX_LENGTH, validate=validate.Length(1))
    password = Password(required=True)
    name = Text(
        strip=True,
        load_default="API token",
        validate=validate.Length(1, TOKEN_NAME_MAX_LENGTH),
        metadata={"pattern": trimmed_pattern(TOKEN_NAME_MAX_LENGTH)},
    )
    expires_in_days = WholeNumber(
        load_default=None, allow_none=True, validate=validate.Range(1, TOKEN_LIFETIME_MAX_DAYS)
    )
    code = Code(metadata={"description": "A second factor's code, for a user who has one."})


class PageQuerySchema(BaseSchema):
    class Meta:
        unknown = EXCLUDE  # query strings often carry cache-busters; ignore what we don't read

    limit = fields.Integer(load_default=PAGE_SIZE, validate=validate.Range(1, PAGE_SIZE_MAX))
    before = fields.Integer(validate=validate.Range(1, MAX_ID))


class PostQuerySchema(PageQuerySchema):
    user_id = fields.Integer(validate=validate.Range(1, MAX_ID))


class AdminUserQuerySchema(PageQuerySchema):
    q = Text(max_length=SEARCH_MAX_LENGTH)


class AdminUserUpdateSchema(AtLeastOne):
    one_of = ("role", "disabled", "mfa")

    role = fields.String(validate=validate.OneOf(ROLES))
    disabled = StrictBoolean()
    mfa = StrictBoolean(
        validate=validate.Equal(False, error="An administrator can only turn factors off."),
        metadata={"description": "false: remove every second factor of the user."},
    )


# --- second factors ---


class OneOf(BaseSchema):
    """A body with exactly one of `one_of`."""

    one_of: ClassVar[tuple[str, ...]] = ()

    @validates_schema
    def validate_exactly_one(self, data: dict[str, Any], **kwargs: Any) -> None:
        if sum(name in data for name in self.one_of) != 1:
            raise ValidationError(f"Send exactly one of: {', '.join(self.one_of)}.", "_schema")


class CodeSchema(BaseSchema):
    code = Code(required=True)


class SecondFactorSchema(OneOf):
    one_of = ("code", "recovery_code")

    code = Code()
    recovery_code = Code()


class ReauthenticationSchema(OneOf):
    one_of = ("password", "code")

    password = Password()
    code = Code()


class PasskeyAnswerSchema(BaseSchema):
    credential = fields.Dict(
        required=True,
        metadata={"description": "The authenticator's answer: PublicKeyCredential.toJSON()"},
    )


class PasskeyLoginSchema(PasskeyAnswerSchema):
    remember = StrictBoolean(load_default=False)


class PasskeyNameSchema(BaseSchema):
    name = Text(
        required=True,
        strip=True,
        validate=validate.Length(1, PASSKEY_NAME_MAX_LENGTH),
        metadata={"pattern": trimmed_pattern(PASSKEY_NAME_MAX_LENGTH)},
    )


class NewPasskeySchema(PasskeyAnswerSchema):
    name = Text(
        strip=True,
        load_default="Passkey",
        validate=validate.Length(1, PASSKEY_NAME_MAX_LENGTH),
        metadata={"pattern": trimmed_pattern(PASSKEY_NAME_MAX_LENGTH)},
    )


class PasskeySchema(BaseSchema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    created_at = Timestamp(required=True)
    last_used_at = Timestamp(required=True, allow_none=True)


class MfaStatusSchema(BaseSchema):
    totp = fields.Boolean(required=True)
    passkeys = fields.Integer(required=True)
    recovery_codes_left = fields.Integer(required=True)
    required = fields.Boolean(required=True)


class TotpSetupSchema(BaseSchema):
    secret = fields.String(required=True)
    otpauth_uri = fields.String(required=True)
    qr_svg = fields.String(required=True)


class RecoveryCodesSchema(BaseSchema):
    recovery_codes = fields.List(fields.String(), required=True)


owner_schema = OwnerSchema()
owner_dump = FastDump(owner_schema)  # GET /check_session, GET /me: a Caller, read fast
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
post_query_schema = PostQuerySchema()
page_query_schema = PageQuerySchema()
admin_user_query_schema = AdminUserQuerySchema()
admin_user_update_schema = AdminUserUpdateSchema()
code_schema = CodeSchema()
second_factor_schema = SecondFactorSchema()
passkey_answer_schema = PasskeyAnswerSchema()
passkey_login_schema = PasskeyLoginSchema()
passkey_name_schema = PasskeyNameSchema()
new_passkey_schema = NewPasskeySchema()
passkey_schema = PasskeySchema()
passkeys_schema = PasskeySchema(many=True)
reauthentication_schema = ReauthenticationSchema()
