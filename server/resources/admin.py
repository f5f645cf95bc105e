"""Administration: list and search users, change roles, disable accounts."""

from flask import abort, g, request
from flask_restful import Resource
from sqlalchemy import func, or_, select

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
        if "role" in data and data["role"] != user.role:
            user.role = data["role"]
            record_event(user, "role_changed")
        if data.get("disabled") and not user.disabled:
            user.disabled_at = utcnow()
            new_credentials(user)  # out at once, everywhere: also a login already under way
            end_sessions(user)
            end_tokens(user)
            record_event(user, "account_disabled")
        elif data.get("disabled") is False and user.disabled:
            user.disabled_at = None
            record_event(user, "account_enabled")
        db.session.commit()
        return admin_user_schema.dump(user), 200
