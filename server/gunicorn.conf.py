"""Gunicorn defaults for `gunicorn --chdir server app:app`; the command line and
GUNICORN_CMD_ARGS override any of them.

Gunicorn looks for ./gunicorn.conf.py in the directory it starts in, before it applies --chdir:
the top-level gunicorn.conf.py loads this file, so both `gunicorn --chdir server app:app` from
the project and `gunicorn app:app` from server/ read it.
"""

import json
import multiprocessing
import os
import time
from collections.abc import MutableMapping
from datetime import timedelta
from typing import Any

from gunicorn.glogging import Logger

bind = os.environ.get("BIND", f"127.0.0.1:{os.environ.get('PORT', '5555')}")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
# Threads: a request busy in bcrypt (which releases the GIL) does not hold up the worker's others.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", 4))
timeout = 30
graceful_timeout = 30
keepalive = 5
# The control socket (gunicornc) lives at one path per user: two instances on one machine would
# fight over it. Nothing here uses it.
control_socket_disable = True
# "-" is stdout; ACCESS_LOG=/path, or "" for none
accesslog: str | None = os.environ.get("ACCESS_LOG", "-") or None


class JsonAccessLogger(Logger):
    """One JSON object per request, carrying the X-Request-ID the app returned."""

    def access(
        self, resp: Any, req: Any, environ: MutableMapping[str, Any], request_time: timedelta
    ) -> None:
        if not self.access_log_enabled:
            return
        request_id = next((v for k, v in resp.headers if k.lower() == "x-request-id"), None)
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "request_id": request_id,
            "remote": environ.get("REMOTE_ADDR"),
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "query": environ.get("QUERY_STRING") or None,
            # resp.status ("503 SERVICE UNAVAILABLE"): gunicorn's own error pages lack status_code
            "status": int(str(resp.status).split(None, 1)[0]),
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 2),
            "user_agent": environ.get("HTTP_USER_AGENT"),
            "origin": environ.get("HTTP_ORIGIN"),
        }
        self.access_log.info(json.dumps(line))


logger_class = JsonAccessLogger
