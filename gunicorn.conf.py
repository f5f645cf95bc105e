"""Gunicorn reads ./gunicorn.conf.py from the directory it starts in, before --chdir: this
hands it the real configuration, server/gunicorn.conf.py."""

import runpy
from pathlib import Path

_settings = runpy.run_path(str(Path(__file__).resolve().parent / "server" / "gunicorn.conf.py"))
globals().update({k: v for k, v in _settings.items() if not k.startswith("_")})
