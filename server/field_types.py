"""The field types the schemas share, the base schema, and FastDump (a schema's dump, compiled).

Each field's metadata is what the OpenAPI document shows, so the document states the rules that
run.
"""

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

from email_validator import EmailNotValidError, validate_email
from marshmallow import Schema, ValidationError, fields, missing, validate
from sqlalchemy import ColumnElement

from bounds import (
    CODE_MAX_LENGTH,
    EMAIL_MAX_LENGTH,
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    USERNAME_MAX_LENGTH,
    USERNAME_MIN_LENGTH,
)
from errors import InvalidInput

USERNAME_CHARACTERS = "A-Za-z0-9._-"
USERNAME_PATTERN = f"[{USERNAME_CHARACTERS}]{{{USERNAME_MIN_LENGTH},{USERNAME_MAX_LENGTH}}}"
USERNAME_RE = re.compile(rf"\A{USERNAME_PATTERN}\Z")  # \Z: "$" would allow a final newline
NO_NUL = "^[^\\u0000]*$"
# What "surrounding whitespace" means, for the trimming the server does and the pattern the
# OpenAPI document states alike: exactly what \s matches in ECMAScript regular expressions
# (JSON Schema's dialect), not Python's str.strip(), which also takes \x1c-\x1f and \x85 and
# leaves U+FEFF.
WHITESPACE = "\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
SPACE_CLASS = r"[\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
TRIM_RE = re.compile(f"\\A[{WHITESPACE}]+|[{WHITESPACE}]+\\Z")


def trim(value: str) -> str:
    """value without surrounding whitespace (WHITESPACE)."""
    return TRIM_RE.sub("", value)


def trimmed_pattern(longest: int) -> str:
    """JSON Schema for "1 to `longest` characters once surrounding whitespace is trimmed"."""
    space, solid = SPACE_CLASS, SPACE_CLASS.replace("[", "[^\\u0000", 1)
    return rf"^{space}*{solid}(?:[^\u0000]{{0,{longest - 2}}}{solid})?{space}*$"


def full_match(regex: re.Pattern[str], message: str) -> Callable[[str], None]:
    """Like validate.Regexp, but the whole value must match (Regexp only anchors the start)."""

    def check(value: str) -> None:
        if not regex.fullmatch(value):
            raise ValidationError(message)

    return check


class Text(fields.String):
    """A string PostgreSQL can store (no NUL, no lone surrogate), optionally trimmed."""

    default_error_messages = {"bad_chars": "Must not contain NUL or unpaired surrogate characters."}

    def __init__(
        self,
        *,
        strip: bool = False,
        max_length: int | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        metadata = {"pattern": NO_NUL, **(metadata or {})}
        if max_length is not None:
            metadata.setdefault("maxLength", max_length)
        super().__init__(metadata=metadata, **kwargs)
        self.strip, self.max_length = strip, max_length

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
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
    def __init__(self, **kwargs: Any) -> None:
        message = (
            f"Must be {USERNAME_MIN_LENGTH}-{USERNAME_MAX_LENGTH} characters of letters, digits, "
            "'.', '_' or '-'."
        )
        super().__init__(
            validate=full_match(USERNAME_RE, message),
            metadata={"pattern": f"^{USERNAME_PATTERN}$"},  # the same rule, in JSON Schema
            **kwargs,
        )


class Password(Text):
    """A password as typed (at least one character), never sent back."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("validate", validate.Length(1))
        super().__init__(load_only=True, max_length=PASSWORD_MAX_LENGTH, **kwargs)


class Code(Text):
    """A code from an authenticator app or a recovery code, as typed (spaces and dashes are
    ignored when it is checked)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(load_only=True, max_length=CODE_MAX_LENGTH, **kwargs)


class NewPassword(Text):
    """Checked against the password policy by the schema or Resource (it needs the user). Its
    minLength, the default of PASSWORD_MIN_LENGTH, is the setting's in the OpenAPI document."""

    def __init__(self, **kwargs: Any) -> None:
        metadata = {"minLength": PASSWORD_MIN_LENGTH, "maxLength": PASSWORD_MAX_LENGTH}
        super().__init__(load_only=True, metadata=metadata, **kwargs)


def stored_email(value: str) -> str:
    """The one form an address is stored, looked up and mailed in: lowercased (the same
    comparison on every database), with the domain in ASCII (IDNA), which every mail server
    takes. A non-ASCII local part has no ASCII form; it can only be mailed over SMTPUTF8.
    email_validator bounds this very form (local part, "@", ASCII domain) at 254 octets.
    Raises EmailNotValidError."""
    address = validate_email(value, check_deliverability=False)
    if address.ascii_email is not None:
        return str(address.ascii_email).lower()
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

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=EMAIL_MAX_LENGTH, metadata={"format": "email"}, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        value = super()._deserialize(value, attr, data, **kwargs)
        try:
            return stored_email(value)
        except EmailNotValidError as error:
            raise ValidationError(str(error)) from None


class WholeNumber(fields.Integer):
    """A JSON number that is whole, as JSON Schema's "integer" is: 138 or 138.0, never 138.5,
    "138" or true."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        if isinstance(value, float) and not value.is_integer():
            raise self.make_error("invalid")
        return int(value)


class StrictBoolean(fields.Boolean):
    """Only JSON true and false: never "yes", 1 or "0"."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class Timestamp(fields.DateTime):
    """ISO 8601 UTC to the second: 2026-11-21T22:43:45Z."""

    def __init__(self, **kwargs: Any) -> None:
        # No custom `format`: apispec documents the default as "date-time", which this is.
        pattern = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"
        super().__init__(dump_only=True, metadata={"pattern": pattern}, **kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else self.text(value)

    @staticmethod
    def text(value: datetime) -> str:
        # isoformat: the same text as strftime("%Y-%m-%dT%H:%M:%SZ"), in two thirds of the time
        if value.tzinfo is not UTC:  # the database's values already are
            value = value.astimezone(UTC)
        return value.isoformat(timespec="seconds")[:19] + "Z"


class BaseSchema(Schema):
    """Every validation failure becomes the house 422 body; Resources need no try/except."""

    def handle_error(self, error: ValidationError, data: Any, **kwargs: Any) -> NoReturn:
        fields_ = ", ".join(sorted(error.messages)) if isinstance(error.messages, dict) else ""
        raise InvalidInput(error.messages, f"Invalid fields: {fields_}." if fields_ else None)


Plan = list[tuple[str, str, "Callable[[Any], Any] | FastDump"]]


class FastDump:
    """schema.dump(), compiled once: for each field, the key to write, the attribute to read
    and its conversion (int, str, bool or Timestamp.text: what those fields' _serialize does to
    a value that is not None; a nested schema's own FastDump), without marshmallow's per-value
    dispatch, about five times faster. Built from the schema's fields, so its output cannot
    drift from the schema or the OpenAPI document made from it; a schema using what this does
    not do (dump hooks, dotted attributes, defaults, lists, other field types) is refused, not
    approximated.

    one(obj) dumps an object (or a dict); columns() and rows() dump rows of a Core select
    without making objects: columns() is what to select, rows() turns the rows into JSON."""

    CONVERSIONS: dict[type[fields.Field[Any]], Callable[[Any], Any]] = {
        fields.Integer: int,
        fields.String: str,
        fields.Boolean: bool,
        Timestamp: Timestamp.text,
    }

    # What a column must hold for rows() to pass its values on as they are, by conversion.
    HOLDS: dict[Callable[[Any], Any], type] = {
        int: int,
        str: str,
        bool: bool,
        Timestamp.text: datetime,
    }

    def __init__(self, schema: Schema) -> None:
        name = type(schema).__name__
        if any(  # marshmallow's decorators mark hook methods with __marshmallow_hook__
            "dump" in str(getattr(getattr(type(schema), attr), "__marshmallow_hook__", ""))
            for attr in dir(type(schema))
            if not attr.startswith("__")
        ):
            raise TypeError(f"{name} has dump hooks")
        self.plan: Plan = []
        for field_name, field in schema.dump_fields.items():
            attribute = field.attribute or field_name
            if "." in attribute or field.dump_default is not missing:
                raise TypeError(f"{name}.{field_name} is not a plain field")
            key = field.data_key if field.data_key is not None else field_name
            if isinstance(field, fields.Nested) and not field.many:
                if not isinstance(field.schema, Schema):
                    raise TypeError(f"{name}.{field_name} nests no schema")
                self.plan.append((key, attribute, FastDump(field.schema)))
            elif type(field) in self.CONVERSIONS and not getattr(field, "as_string", False):
                self.plan.append((key, attribute, self.CONVERSIONS[type(field)]))
            else:
                raise TypeError(f"{name}.{field_name} is not a plain field")
        self.read_row: Callable[[Sequence[Any]], dict[str, Any]] | None = None

    def one(self, obj: Any) -> dict[str, Any]:
        get = obj.get if isinstance(obj, dict) else functools.partial(getattr, obj)
        out: dict[str, Any] = {}
        for key, attribute, convert in self.plan:
            value = get(attribute, missing)
            if value is not missing:
                if value is None:
                    out[key] = None
                elif isinstance(convert, FastDump):
                    out[key] = convert.one(value)
                else:
                    out[key] = convert(value)
        return out

    def columns(self, table: Any, **nested: Any) -> list[ColumnElement[Any]]:
        """The columns of table (and of the table named for each nested field) that rows()
        reads, in its order. Each column must hold what its field shows (an int for an Integer,
        a datetime for a Timestamp...), since rows() passes the values on as they are."""
        selected: list[ColumnElement[Any]] = []
        for key, attribute, convert in self.plan:
            if isinstance(convert, FastDump):
                selected.extend(
                    column.label(f"{key}_{column.key}")
                    for column in convert.columns(nested[attribute])
                )
                continue
            column = getattr(table, attribute)
            python_type = column.type.python_type
            expected = self.HOLDS[convert]
            if not (isinstance(python_type, type) and issubclass(python_type, expected)):
                raise TypeError(f"{column} holds {python_type}, not what its field shows")
            selected.append(column)
        return selected

    def rows(self, rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
        """Each row, selected with columns(), as one() would dump the object it stands for:
        the values as the database gave them (columns() checked their types), datetimes
        included, which the JSON provider writes as Timestamp does."""
        read = self.read_row
        if read is None:
            read = self.read_row = self.row_reader()
        return [read(row) for row in rows]

    def row_reader(self) -> Callable[[Sequence[Any]], dict[str, Any]]:
        """A function that reads this schema's fields from a row selected with columns(). Rows
        take a schema whose plain fields come first, then nested schemas of plain fields only
        (PostSchema: its columns, then its author's)."""
        plain = [key for key, _, convert in self.plan if not isinstance(convert, FastDump)]
        keys, index = tuple(plain), len(plain)
        nested = []  # (key, its keys, first column, column after)
        for key, _, convert in self.plan[len(plain) :]:
            inner = convert.plan if isinstance(convert, FastDump) else None
            if inner is None or any(isinstance(c, FastDump) for _, _, c in inner):
                raise TypeError("rows() reads plain fields, then nested schemas of plain fields")
            nested.append((key, tuple(k for k, _, _ in inner), index, index + len(inner)))
            index += len(inner)

        def read(row: Sequence[Any]) -> dict[str, Any]:
            out = dict(zip(keys, row))  # noqa: B905 (stops at the shorter: the plain ones)
            for key, inner_keys, begin, end in nested:
                out[key] = dict(zip(inner_keys, row[begin:end]))  # noqa: B905 (as many)
            return out

        if len(nested) != 1:
            return read
        ((one, one_keys, one_begin, one_end),) = nested

        # The same, a third faster; zip's strict= keyword would cost as much again.
        def read_one_nested(row: Sequence[Any]) -> dict[str, Any]:
            out = dict(zip(keys, row))  # noqa: B905
            out[one] = dict(zip(one_keys, row[one_begin:one_end]))  # noqa: B905
            return out

        return read_one_nested
