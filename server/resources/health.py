"""Liveness and readiness, for load balancers and orchestrators: public, cheap, not throttled."""

import redis
from flask import current_app
from flask_restful import Resource
from sqlalchemy import text

from config import db

_redis_clients = {}


def database_status():
    try:
        db.session.execute(text("SELECT 1"))
        return "ok"
    except Exception:
        db.session.rollback()
        return "unreachable"


def redis_status(url):
    client = _redis_clients.get(url)
    if client is None:
        client = _redis_clients[url] = redis.Redis.from_url(
            url, socket_connect_timeout=0.5, socket_timeout=0.5
        )
    try:
        client.ping()
        return "ok"
    except redis.RedisError:
        return "unreachable"


class Health(Resource):
    def get(self):
        """The process is up (it touches nothing else)."""
        return {"status": "ok"}, 200


class Ready(Resource):
    def get(self):
        """The database (and Redis, when configured) answer: this instance can serve."""
        checks = {"database": database_status()}
        if current_app.config["REDIS_URL"]:
            checks["redis"] = redis_status(current_app.config["REDIS_URL"])
        down = [name for name, status in checks.items() if status != "ok"]
        if down:
            return {"error": f"Not ready: {', '.join(down)} unreachable.", "checks": checks}, 503
        return {"status": "ready", "checks": checks}, 200
