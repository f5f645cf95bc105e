"""Gunicorn defaults for `gunicorn --chdir server app:app`; the command line and
GUNICORN_CMD_ARGS override any of them.

It sits at the top level, not in server/, because gunicorn looks for gunicorn.conf.py in the
directory it starts in, before it applies --chdir.
"""

import json
import multiprocessing
import os
import time

from gunicorn.glogging import Logger

bind = os.environ.get("BIND", f"127.0.0.1:{os.environ.get('PORT', '5555')}")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
# Threads: a request busy in bcrypt (which releases the GIL) does not hold up the worker's others.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", 4))
timeout = 30
graceful_timeout = 30
keepalive = 5
accesslog = os.environ.get("ACCESS_LOG", "-")  # "-" is stdout; ACCESS_LOG=/path, or "" for none
if not accesslog:
    accesslog = None


class JsonAccessLogger(Logger):
    """One JSON object per request, carrying the X-Request-ID the app returned."""

    def access(self, resp, req, environ, request_time):
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
            "status": resp.status_code,
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 2),
            "user_agent": environ.get("HTTP_USER_AGENT"),
            "origin": environ.get("HTTP_ORIGIN"),
        }
        self.access_log.info(json.dumps(line))


logger_class = JsonAccessLogger
