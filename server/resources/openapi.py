"""GET /openapi.json: the document, built once from the route table and the schemas."""

from functools import cache

from flask_restful import Resource


@cache
def document():
    from app import PUBLIC_ROUTES  # the route table is complete once app.py has run
    from openapi import build_document

    return build_document(PUBLIC_ROUTES)


class OpenApiDocument(Resource):
    def get(self):
        return document(), 200
