"""The ceiling for `make bench`: a Flask endpoint that returns a constant JSON object, served by
the same gunicorn settings as the API. Nothing the API does can be faster than this."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return {"status": "ok"}
