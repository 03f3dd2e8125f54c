"""OpenAI endpoints the coordinator does not serve answer 404 with a message naming the
endpoint and what it does serve, instead of a bare "Not Found"."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..errors import NotFound

__all__ = ["SUPPORTED", "router"]

router = APIRouter()

SUPPORTED = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models")

# OpenAI API families, to say which part of the API a request was for
_KNOWN = {
    "responses": "the Responses API",
    "images": "image generation",
    "audio": "audio (speech, transcription, translation)",
    "files": "files",
    "uploads": "uploads",
    "batches": "batches",
    "fine_tuning": "fine-tuning",
    "moderations": "moderations",
    "assistants": "the Assistants API",
    "threads": "the Assistants API",
    "vector_stores": "vector stores",
    "realtime": "the Realtime API",
    "evals": "evals",
    "containers": "containers",
    "conversations": "conversations",
}


@router.api_route(
    "/v1/{rest:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)
async def unsupported(request: Request, rest: str) -> Response:
    endpoint = f"{request.method} /v1/{rest}"
    family = _KNOWN.get(rest.split("/", 1)[0])
    what = f" ({family})" if family else ""
    raise NotFound(
        f"{endpoint}{what} is not supported by the Hydra coordinator; it serves "
        + ", ".join(SUPPORTED),
        code="unsupported_endpoint",
    )
