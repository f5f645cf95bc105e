"""Liveness and readiness, for load balancers and orchestrators: public, cheap, not throttled."""

from typing import Any

import redis
from flask import current_app
from flask_restful import Resource
from sqlalchemy import text

from config import db
from openapi import operation
from schemas import HealthSchema, NotReadySchema, ReadySchema

TAG = "Operations"
redis_clients: dict[str, redis.Redis] = {}


def database_status() -> str:
    try:
        db.session.execute(text("SELECT 1"))
        return "ok"
    except Exception:
        db.session.rollback()
        return "unreachable"


def redis_status(url: str) -> str:
    client = redis_clients.get(url)
    if client is None:
        client = redis_clients[url] = redis.Redis.from_url(
            url, socket_connect_timeout=0.5, socket_timeout=0.5
        )
    try:
        client.ping()
        return "ok"
    except redis.RedisError:
        return "unreachable"


class Health(Resource):
    @operation("checkHealth", "Liveness: the process is up", (200, HealthSchema), tag=TAG)
    def get(self) -> tuple[dict[str, Any], int]:
        """The process is up (it touches nothing else)."""
        return {"status": "ok"}, 200


class Ready(Resource):
    @operation(
        "checkReadiness",
        "Readiness: the database (and Redis) answer",
        (200, ReadySchema),
        errors=(503,),
        error_schemas={503: (NotReadySchema, "Not ready")},
        tag=TAG,
    )
    def get(self) -> tuple[dict[str, Any], int]:
        """The database (and Redis, when configured) answer: this instance can serve."""
        checks = {"database": database_status()}
        if current_app.config["REDIS_URL"]:
            checks["redis"] = redis_status(current_app.config["REDIS_URL"])
        down = [name for name, status in checks.items() if status != "ok"]
        if down:
            return {"error": f"Not ready: {', '.join(down)} unreachable.", "checks": checks}, 503
        return {"status": "ready", "checks": checks}, 200
