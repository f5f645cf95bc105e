"""Administration: list and search users, change roles, disable accounts."""

from flask import abort, g, request
from flask_restful import Resource
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from common import (
    end_sessions,
    end_tokens,
    json_body,
    keyset_page,
    new_credentials,
    record_event,
    require_admin,
)
from config import db
from models import (
    User,
    admin_user_query_schema,
    admin_user_schema,
    admin_user_update_schema,
    admin_users_schema,
    invalid,
    utcnow,
)

LAST_ADMIN = "That would leave no active administrator. Make another user an admin first."


def leaves_no_admin(error):
    """Is this the database's refusal to remove the last active admin (migration 0005)?"""
    return isinstance(error, IntegrityError) and "users_last_admin" in str(error.orig)


def keep_an_admin():
    """Write the pending change to the user now, before anything else: the database refuses one
    that would leave no active admin, whatever runs at the same moment; that is a 409."""
    try:
        db.session.flush()
    except IntegrityError as e:
        db.session.rollback()
        if not leaves_no_admin(e):
            raise
        abort(409, LAST_ADMIN)


class AdminUserList(Resource):
    def get(self):
        require_admin()
        args = admin_user_query_schema.load(request.args)
        query = select(User)
        if args.get("q"):
            q = args["q"].lower()
            query = query.where(
                or_(
                    func.lower(User.username).contains(q, autoescape=True),
                    func.lower(User.email).contains(q, autoescape=True),
                )
            )
        users, headers = keyset_page(query, User.id, args, "admin_users")
        return admin_users_schema.dump(users), 200, headers


class AdminUserItem(Resource):
    def patch(self, user_id):
        require_admin()
        user = db.session.get(User, user_id)
        if user is None:
            abort(404, "User not found.")
        data = admin_user_update_schema.load(json_body())
        if user.id == g.user.id:
            raise invalid("_schema", "You cannot change your own role or disable yourself.")
        events = []
        if "role" in data and data["role"] != user.role:
            user.role = data["role"]
            events.append("role_changed")
        if data.get("disabled") and not user.disabled:
            user.disabled_at = utcnow()
            new_credentials(user)  # out at once, everywhere: also a login already under way
            events.append("account_disabled")
        elif data.get("disabled") is False and user.disabled:
            user.disabled_at = None
            events.append("account_enabled")
        keep_an_admin()
        if "account_disabled" in events:
            end_sessions(user)
            end_tokens(user)
        for type_ in events:
            record_event(user, type_)
        db.session.commit()
        return admin_user_schema.dump(user), 200
