"""Administration: list and search users, change roles, disable accounts. The route table marks
these routes admin-only, and the guard enforces it."""

from typing import Any

from flask import abort, g, request
from flask_restful import Resource
from sqlalchemy import func, or_, select

from admins import keep_an_admin
from config import db
from credentials import new_credentials
from errors import invalid
from events import record_event
from inputs import json_body
from mailer import notify_owner
from mfa import remove_factors
from models import User, utcnow
from openapi import PAGED, operation
from pages import keyset_page
from schemas import (
    AdminUserQuerySchema,
    AdminUserSchema,
    AdminUserUpdateSchema,
    admin_user_query_schema,
    admin_user_schema,
    admin_user_update_schema,
    admin_users_schema,
)
from sessions import end_sessions
from tokens import end_tokens

TAG = "Administration"


class AdminUserList(Resource):
    @operation(
        "listUsers",
        "List and search users",
        (200, AdminUserSchema(many=True)),
        query=AdminUserQuerySchema,
        headers=PAGED,
        tag=TAG,
    )
    def get(self) -> tuple[Any, int, dict[str, str]]:
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
    @operation(
        "updateUser",
        "Change a user's role, or disable them",
        (200, AdminUserSchema),
        body=AdminUserUpdateSchema,
        errors=(409,),  # it would leave no active admin
        tag=TAG,
    )
    def patch(self, user_id: int) -> tuple[dict[str, Any], int]:
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
        if data.get("mfa") is False and remove_factors(user.id):
            events.append("mfa_disabled")
            notify_owner(
                user,
                "Your second factors were removed",
                "An administrator removed the second factors of your account (TOTP, passkeys "
                "and recovery codes): logging in now takes your password alone. Set a factor up "
                "again in your security settings.\n",
            )
        keep_an_admin()
        if "account_disabled" in events:
            end_sessions(user)
            end_tokens(user)
        for type_ in events:
            record_event(user, type_)
        db.session.commit()
        return admin_user_schema.dump(user), 200
