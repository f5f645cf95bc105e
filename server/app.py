"""The login guard, the helpers it shares with the Resources, the Resources, and the route table."""

from flask import abort, g, request, session, url_for
from flask_restful import Resource
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from config import api, app, db, no_content
from models import (
    MAX_ID,
    USERNAME_RE,
    InvalidInput,
    Post,
    User,
    login_schema,
    owner_schema,
    password_matches,
    post_query_schema,
    post_schema,
    posts_schema,
    signup_schema,
)
from security import (
    add_security_headers,
    login_throttles,
    refuse_cross_site_writes,
    signup_throttle,
)
from sessions import ServerSessionInterface

app.session_interface = ServerSessionInterface()
app.before_request(refuse_cross_site_writes)
app.after_request(add_security_headers)

PUBLIC_ENDPOINTS = {"signup", "login"}
INVALID_LOGIN = "Invalid username or password."


@app.before_request
def require_login():
    """Load the caller into g.user; refuse every non-public route to anonymous callers."""
    user_id = session.get("user_id")
    g.user = db.session.get(User, user_id) if user_id else None
    if request.endpoint is None or request.endpoint in PUBLIC_ENDPOINTS:
        return  # unknown URLs and wrong methods still get their own 404 and 405
    if request.method == "OPTIONS":
        return
    if g.user is None:
        abort(401)


def json_body():
    """The request's JSON object, or the house 400/415 (never a 500 on deep nesting)."""
    try:
        data = request.get_json()
    except UnsupportedMediaType:
        abort(415)
    except BadRequest:
        abort(400, "Request body is not valid JSON.")
    except RecursionError:
        abort(400, "Request body is nested too deeply.")
    if not isinstance(data, dict):
        abort(400, "Request body must be a JSON object.")
    return data


def log_in(user, remember=False):
    """Start a fresh session for user: the session store issues a new id for it."""
    session.clear()
    session["user_id"] = user.id
    session.permanent = remember


def find_user(username):
    if not USERNAME_RE.fullmatch(username):
        return None
    return db.session.scalar(select(User).where(func.lower(User.username) == username.lower()))


def get_post(post_id, check_owner=False):
    """The post, 404 if it does not exist, then 403 if the caller may not change it."""
    post = db.session.scalar(
        select(Post).options(joinedload(Post.user, innerjoin=True)).where(Post.id == post_id)
    )
    if post is None:
        abort(404, "Post not found.")
    if check_owner and post.user_id != g.user.id:
        abort(403, "Only the author may change this post.")
    return post


class Signup(Resource):
    decorators = [signup_throttle]

    def post(self):
        data = signup_schema.load(json_body())
        user = User(username=data["username"], password_hash=data["password"])
        db.session.add(user)
        try:
            db.session.commit()
        except IntegrityError:  # the unique index on lower(username) decides races
            db.session.rollback()
            taken = "That username is taken."
            raise InvalidInput({"username": [taken]}, taken) from None
        log_in(user)
        return owner_schema.dump(user), 201


class Login(Resource):
    decorators = login_throttles

    def post(self):
        data = login_schema.load(json_body())
        user = find_user(data["username"])
        if not password_matches(user, data["password"]):
            abort(401, INVALID_LOGIN)
        log_in(user, data["remember"])
        return owner_schema.dump(user), 200


class Logout(Resource):
    def delete(self):
        session.clear()
        return no_content()


class CheckSession(Resource):
    def get(self):
        return owner_schema.dump(g.user), 200


class PostList(Resource):
    def get(self):
        args = post_query_schema.load(request.args)
        query = (
            select(Post)
            .options(joinedload(Post.user, innerjoin=True))
            .order_by(Post.id.desc())
            .limit(args["limit"] + 1)  # one extra row says whether there is a next page
        )
        if "before" in args:
            query = query.where(Post.id < args["before"])
        if "user_id" in args:
            query = query.where(Post.user_id == args["user_id"])
        posts = db.session.scalars(query).all()
        headers = {}
        if len(posts) > args["limit"]:
            posts = posts[: args["limit"]]
            next_args = {**args, "before": posts[-1].id}
            headers["Link"] = f'<{url_for("postlist", _external=True, **next_args)}>; rel="next"'
        return posts_schema.dump(posts), 200, headers

    def post(self):
        data = post_schema.load(json_body())
        post = Post(content=data["content"], user=g.user)
        db.session.add(post)
        db.session.commit()
        return post_schema.dump(post), 201, {"Location": url_for("postitem", post_id=post.id)}


class PostItem(Resource):
    def get(self, post_id):
        return post_schema.dump(get_post(post_id)), 200

    def patch(self, post_id):
        post = get_post(post_id, check_owner=True)
        post.content = post_schema.load(json_body())["content"]
        db.session.commit()
        return post_schema.dump(post), 200

    def delete(self, post_id):
        post = get_post(post_id, check_owner=True)
        if db.session.execute(delete(Post).where(Post.id == post.id)).rowcount != 1:
            abort(404, "Post not found.")  # a concurrent delete got there first
        db.session.commit()
        return no_content()


POST_ID = f"<int(min=1, max={MAX_ID}):post_id>"

api.add_resource(Signup, "/signup", endpoint="signup")
api.add_resource(Login, "/login", endpoint="login")
api.add_resource(Logout, "/logout", endpoint="logout")
api.add_resource(CheckSession, "/check_session", endpoint="check_session")
api.add_resource(PostList, "/posts", endpoint="postlist")
api.add_resource(PostItem, f"/posts/{POST_ID}", endpoint="postitem")

if __name__ == "__main__":
    app.run(port=5555)
