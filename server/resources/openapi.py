"""GET /openapi.json: the document, built once from the route table and the schemas."""

from functools import cache

from flask import current_app
from flask_restful import Resource

from openapi import build_document


@cache
def document(public_routes):
    return build_document(public_routes)


class OpenApiDocument(Resource):
    def get(self):
        # app.py hands the route table over when it is complete; importing app from here would
        # load it a second time under `python server/app.py` (as "app" beside "__main__").
        return document(current_app.extensions["public_routes"]), 200
