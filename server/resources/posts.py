"""Posts: everyone logged in reads, the author edits, the author or an admin deletes."""

from flask import abort, g, request
from flask_restful import Resource
from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import joinedload

from common import caller_row, json_body, next_page, relative_url
from config import db, no_content
from models import Post, User, post_content_schema, post_query_schema, post_schema
from queries import PreparedSelect

# GET /posts is the hottest read: its four statements (with or without `before`, `user_id`)
# are prepared once, and return plain rows, since nothing on a listed post is changed.
_LIST = (
    select(
        Post.id,
        Post.content,
        Post.created_at,
        Post.updated_at,
        User.id.label("author_id"),
        User.username.label("author_username"),
    )
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


def get_post(post_id, check_owner=False, admin_may=False):
    """The post, 404 if it does not exist, then 403 if the caller may not change it."""
    post = db.session.scalar(
        select(Post).options(joinedload(Post.user, innerjoin=True)).where(Post.id == post_id)
    )
    if post is None:
        abort(404, "Post not found.")
    if check_owner and post.user_id != g.user.id and not (admin_may and g.user.is_admin):
        abort(403, "Only the author may change this post.")
    return post


class PostList(Resource):
    def get(self):
        args = post_query_schema.load(request.args)
        statement = LIST_POSTS["before" in args, "user_id" in args]
        rows = statement.all(**{**args, "limit": args["limit"] + 1})
        rows, headers = next_page(rows, args, "posts")
        # PostSchema's output, built straight from the rows (a test holds the two equal); the
        # JSON provider writes the datetimes as Timestamp would.
        posts = [
            {
                "id": id_,
                "content": content,
                "created_at": created_at,
                "updated_at": updated_at,
                "user": {"id": author_id, "username": author_username},
            }
            for id_, content, created_at, updated_at, author_id, author_username in rows
        ]
        return posts, 200, headers

    def post(self):
        data = post_content_schema.load(json_body())
        post = Post(content=data["content"], user=caller_row())
        db.session.add(post)
        db.session.commit()
        return post_schema.dump(post), 201, {"Location": relative_url("post", post_id=post.id)}


class PostItem(Resource):
    def get(self, post_id):
        return post_schema.dump(get_post(post_id)), 200

    def patch(self, post_id):
        post = get_post(post_id, check_owner=True)
        post.content = post_content_schema.load(json_body())["content"]
        db.session.commit()
        return post_schema.dump(post), 200

    def delete(self, post_id):
        post = get_post(post_id, check_owner=True, admin_may=True)
        if db.session.execute(delete(Post).where(Post.id == post.id)).rowcount != 1:
            abort(404, "Post not found.")  # a concurrent delete got there first
        db.session.commit()
        return no_content()
