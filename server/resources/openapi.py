"""GET /openapi.json: the document, built once from the route table and the schemas."""

from typing import Any

from flask_restful import Resource

from openapi import build_document, operation
from routing import routes

TAG = "Operations"


class OpenApiDocument(Resource):
    document: dict[str, Any] | None = None  # built on the first request, once the table is whole

    @operation("getOpenApiDocument", "This document", (200, {"type": "object"}), tag=TAG)
    def get(self) -> tuple[dict[str, Any], int]:
        if OpenApiDocument.document is None:
            OpenApiDocument.document = build_document(routes())
        return OpenApiDocument.document, 200
