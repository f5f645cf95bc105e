"""Posts: everyone logged in reads, the author edits, the author or an admin deletes."""

from typing import Any

from flask import Response, abort, g, request
from flask_restful import Resource
from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import joinedload

from caller import caller_row
from config import db
from database import rows_affected
from inputs import json_body
from jsonapp import no_content
from mfa import require_factor_for_role
from models import Post, PostContentSchema, PostSchema, User, post_content_schema, post_dump
from openapi import CREATED, PAGED, link, operation
from pages import next_page, relative_url
from queries import PreparedSelect
from schemas import PostQuerySchema, post_query_schema

TAG = "Posts"
POST_LINKS = {
    "GetPost": link("getPost", post_id="$response.body#/id"),
    "EditPost": link("editPost", post_id="$response.body#/id"),
    "DeletePost": link("deletePost", post_id="$response.body#/id"),
}

# GET /posts is the hottest read: its four statements (with or without `before`, `user_id`)
# are prepared once and return plain rows of the columns PostSchema shows (post_dump.columns),
# which post_dump.rows() turns into the same JSON as for one post.
_LIST = (
    select(*post_dump.columns(Post, user=User))
    .join(User, User.id == Post.user_id)
    .order_by(Post.id.desc())
    .limit(bindparam("limit"))
)
LIST_POSTS = {
    (before, by_user): PreparedSelect(
        _LIST.where(
            *([Post.id < bindparam("before")] if before else []),
            *([Post.user_id == bindparam("user_id")] if by_user else []),
        )
    )
    for before in (False, True)
    for by_user in (False, True)
}


def get_post(post_id: int, check_owner: bool = False, admin_may: bool = False) -> Post:
    """The post, 404 if it does not exist, then 403 if the caller may not change it."""
    post = db.session.scalar(
        select(Post).options(joinedload(Post.user, innerjoin=True)).where(Post.id == post_id)
    )
    if post is None:
        abort(404, "Post not found.")
    if check_owner and post.user_id != g.user.id:
        if not (admin_may and g.user.is_admin):
            abort(403, "Only the author may change this post.")
        require_factor_for_role(g.user)  # an admin's power, as on the admin routes
    return post


class PostList(Resource):
    @operation(
        "listPosts",
        "List posts, newest first",
        (200, PostSchema(many=True)),
        query=PostQuerySchema,
        headers=PAGED,
        tag=TAG,
    )
    def get(self) -> tuple[list[dict[str, Any]], int, dict[str, str]]:
        args = post_query_schema.load(request.args)
        statement = LIST_POSTS["before" in args, "user_id" in args]
        rows = statement.all(**{**args, "limit": args["limit"] + 1})
        rows, headers = next_page(rows, args, "posts")
        return post_dump.rows(rows), 200, headers

    @operation(
        "createPost",
        "Create a post",
        (201, PostSchema),
        body=PostContentSchema,
        links=POST_LINKS,
        headers=CREATED,
        tag=TAG,
    )
    def post(self) -> tuple[dict[str, Any], int, dict[str, str]]:
        post = Post(**post_content_schema.load(json_body()), user=caller_row())
        db.session.add(post)
        db.session.commit()
        return post_dump.one(post), 201, {"Location": relative_url("post", post_id=post.id)}


class PostItem(Resource):
    @operation("getPost", "Read a post", (200, PostSchema), tag=TAG)
    def get(self, post_id: int) -> tuple[dict[str, Any], int]:
        return post_dump.one(get_post(post_id)), 200

    @operation(
        "editPost",
        "Edit your post",
        (200, PostSchema),
        body=PostContentSchema,
        errors=(403,),  # not the author
        tag=TAG,
    )
    def patch(self, post_id: int) -> tuple[dict[str, Any], int]:
        post = get_post(post_id, check_owner=True)
        for name, value in post_content_schema.load(json_body()).items():
            setattr(post, name, value)
        db.session.commit()
        return post_dump.one(post), 200

    @operation(
        "deletePost",
        "Delete your post (admins: any post)",
        (204, None),
        errors=(403,),  # not the author, nor an admin
        tag=TAG,
    )
    def delete(self, post_id: int) -> Response:
        post = get_post(post_id, check_owner=True, admin_may=True)
        if rows_affected(db.session, delete(Post).where(Post.id == post.id)) != 1:
            abort(404, "Post not found.")  # a concurrent delete got there first
        db.session.commit()
        return no_content()
