"""Gunicorn defaults for `gunicorn --chdir server app:app`; the command line and
GUNICORN_CMD_ARGS override any of them.

It sits at the top level, not in server/, because gunicorn looks for gunicorn.conf.py in the
directory it starts in, before it applies --chdir.
"""

import multiprocessing
import os

bind = os.environ.get("BIND", f"127.0.0.1:{os.environ.get('PORT', '5555')}")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
worker_class = (
    "gthread"  # threads keep a slow bcrypt hash from blocking the worker's other requests
)
threads = int(os.environ.get("GUNICORN_THREADS", 4))
timeout = 30
graceful_timeout = 30
keepalive = 5
accesslog = "-"
