#!/usr/bin/env python3
"""A fake OpenAI-compatible upstream for tests, benchmarks and NixOS VM tests.

It depends only on aiohttp and serves:

- ``GET  /v1/models``                 the models given with ``--models``
- ``POST /v1/chat/completions``       a deterministic answer, streaming or not
- ``POST /v1/embeddings``             a deterministic embedding per input
- ``POST /v1/completions``            legacy completions: ``"<name>: <prompt>"``, streaming or not
- ``GET  /info``                      text-embeddings-inference's model info
- ``GET  /_requests``                 every request received so far: path, body, its raw bytes,
                                      authorization
- ``POST /_control``                  change behaviour at run time (JSON object, see ``Behaviour``)

With ``--api-key KEY`` every ``/v1`` request without ``Authorization: Bearer KEY`` gets an
OpenAI-style 401, as a cloud API answers a wrong key.

The answer text is ``"<name>: <last user message>"`` so a test can see which upstream answered.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field, fields
from typing import Any

from aiohttp import web


@dataclass
class Behaviour:
    """What the fake does; every field can be changed through ``POST /_control``."""

    fail_status: int = 0  # answer every chat request with this status (0 = succeed)
    delay_s: float = 0.0  # wait before sending response headers
    chunks: int = 3  # stream chunks (content pieces) per answer
    chunk_delay_s: float = 0.0  # wait between stream chunks
    die_after_chunks: int = -1  # close the connection after this many chunks (-1 = never)
    include_usage: bool = True  # report usage in the response
    answer: str = ""  # fixed answer text instead of the echo
    embeddings_delay_s: float = 0.0  # wait before answering an embeddings request
    answer_bytes: int = 0  # an answer text of this many bytes (a huge answer)
    raw_answer: str = ""  # send exactly this as the 200 body (or stream), valid or not
    raw_stream: list[str] = field(
        default_factory=list
    )  # a 200 stream of these, chunk_delay_s apart
    drip_s: float = 0.0  # send a non-streamed body one byte at a time, this far apart
    bill_whole_body: bool = False  # prompt_tokens: the whole request (tools too), 4 bytes each
    hold: bool = False  # keep chat requests waiting (after recording them) until set false
    pause_after_chunks: int = -1  # a stream stops after this many pieces until set to -1


@dataclass
class FakeState:
    name: str
    models: list[str]
    log_path: str | None
    behaviour: Behaviour = field(default_factory=Behaviour)
    requests: list[dict[str, Any]] = field(default_factory=list)
    unheld: asyncio.Event = field(default_factory=asyncio.Event)  # set while hold is false
    resumed: asyncio.Event = field(default_factory=asyncio.Event)  # set while not paused

    def __post_init__(self) -> None:
        self.unheld.set()
        self.resumed.set()


STATE = web.AppKey("state", FakeState)


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


async def _read(request: web.Request) -> dict[str, Any]:
    """The request's JSON body, recorded with its raw bytes."""
    raw = await request.read()
    body: dict[str, Any] = json.loads(raw)
    _record(request, body, raw)
    return body


def _record(request: web.Request, body: dict[str, Any], raw: bytes) -> None:
    state = request.app[STATE]
    entry = {
        "path": request.path,
        "body": body,
        "raw": raw.decode("utf-8", "replace"),
        "authorization": request.headers.get("authorization"),
        "time": time.time(),
    }
    state.requests.append(entry)
    if state.log_path:
        with open(state.log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")


async def models(request: web.Request) -> web.Response:
    state = request.app[STATE]
    data = [
        {"id": m, "object": "model", "created": 0, "owned_by": state.name} for m in state.models
    ]
    return web.json_response({"object": "list", "data": data})


def _completion(state: FakeState, body: dict[str, Any], text: str) -> dict[str, Any]:
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    if state.behaviour.bill_whole_body:  # as a provider bills: every field, tools included
        prompt_tokens = len(json.dumps(body)) // 4
    completion_tokens = len(text.split())
    result: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", state.models[0] if state.models else "fake"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
    }
    if state.behaviour.include_usage:
        result["usage"] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
    return result


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    payload = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


async def _stream(
    request: web.Request, state: FakeState, body: dict[str, Any], text: str
) -> web.StreamResponse:
    behaviour = state.behaviour
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    model = str(body.get("model", "fake"))
    words = text.split(" ")
    per_chunk = max(1, -(-len(words) // max(1, behaviour.chunks)))
    pieces = [" ".join(words[i : i + per_chunk]) for i in range(0, len(words), per_chunk)]
    await response.write(_chunk(model, {"role": "assistant", "content": ""}))
    for index, piece in enumerate(pieces):
        if index == behaviour.die_after_chunks:
            assert request.transport is not None
            request.transport.close()
            return response
        if index == behaviour.pause_after_chunks:
            await state.resumed.wait()
        if behaviour.chunk_delay_s:
            await asyncio.sleep(behaviour.chunk_delay_s)
        await response.write(
            _chunk(model, {"content": piece + (" " if index < len(pieces) - 1 else "")})
        )
    await response.write(_chunk(model, {}, "stop"))
    if behaviour.include_usage and (body.get("stream_options") or {}).get("include_usage"):
        usage = _completion(state, body, text).get("usage")
        payload = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [],
            "usage": usage,
        }
        await response.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def chat(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    body = await _read(request)
    await state.unheld.wait()
    behaviour = state.behaviour
    if behaviour.delay_s:
        await asyncio.sleep(behaviour.delay_s)
    if behaviour.fail_status:
        error = {
            "error": {
                "message": f"{state.name} failing on purpose",
                "type": "server_error",
                "code": behaviour.fail_status,
            }
        }
        return web.json_response(error, status=behaviour.fail_status)
    if behaviour.raw_stream:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for piece in behaviour.raw_stream:
            await response.write(piece.encode())
            await asyncio.sleep(behaviour.chunk_delay_s)
        await response.write_eof()
        return response
    if behaviour.raw_answer:
        kind = "text/event-stream" if body.get("stream") else "application/json"
        return web.Response(body=behaviour.raw_answer.encode(), content_type=kind)
    text = behaviour.answer or f"{state.name}: {_last_user_text(body)}"
    if behaviour.answer_bytes:
        text = "x" * behaviour.answer_bytes
    if body.get("stream"):
        return await _stream(request, state, body, text)
    if behaviour.drip_s:
        return await _drip(request, json.dumps(_completion(state, body, text)).encode(), behaviour)
    return web.json_response(_completion(state, body, text))


async def _drip(request: web.Request, payload: bytes, behaviour: Behaviour) -> web.StreamResponse:
    """A body sent one byte at a time: an upstream that never times out between reads."""
    response = web.StreamResponse(headers={"content-type": "application/json"})
    response.content_length = len(payload)
    await response.prepare(request)
    for index in range(len(payload)):
        await response.write(payload[index : index + 1])
        await asyncio.sleep(behaviour.drip_s)
    await response.write_eof()
    return response


async def legacy_completions(request: web.Request) -> web.StreamResponse:
    """OpenAI's legacy ``/v1/completions``: the answer is ``"<name>: <prompt>"`` as ``text``."""
    state = request.app[STATE]
    body = await _read(request)
    prompt = body.get("prompt")
    text = f"{state.name}: {' '.join(prompt) if isinstance(prompt, list) else prompt}"
    model = str(body.get("model", "fake"))

    def choice(piece: str, finish: str | None) -> dict[str, Any]:
        return {"index": 0, "text": piece, "logprobs": None, "finish_reason": finish}

    base = {"id": "cmpl-fake", "object": "text_completion", "created": 0, "model": model}
    if not body.get("stream"):
        usage = {"prompt_tokens": len(str(prompt).split()), "completion_tokens": len(text.split())}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return web.json_response({**base, "choices": [choice(text, "stop")], "usage": usage})
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    words = text.split(" ")
    for index, word in enumerate(words):
        piece = word + (" " if index < len(words) - 1 else "")
        await response.write(
            b"data: " + json.dumps({**base, "choices": [choice(piece, None)]}).encode() + b"\n\n"
        )
    await response.write(
        b"data: " + json.dumps({**base, "choices": [choice("", "stop")]}).encode() + b"\n\n"
    )
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def info(request: web.Request) -> web.Response:
    """text-embeddings-inference's ``GET /info`` (it has no ``/v1/models``)."""
    state = request.app[STATE]
    return web.json_response({"model_id": state.models[0] if state.models else "fake"})


async def embeddings(request: web.Request) -> web.Response:
    body = await _read(request)
    delay = request.app[STATE].behaviour.embeddings_delay_s
    if delay:
        await asyncio.sleep(delay)
    inputs = body.get("input")
    items = inputs if isinstance(inputs, list) else [inputs]
    data = []
    for index, item in enumerate(items):
        digest = hashlib.sha256(str(item).encode()).digest()
        data.append(
            {
                "object": "embedding",
                "index": index,
                "embedding": [(b - 128) / 128 for b in digest[:16]],
            }
        )
    tokens = sum(len(str(item).split()) for item in items)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    model = body.get("model", "fake")
    return web.json_response({"object": "list", "data": data, "model": model, "usage": usage})


async def list_requests(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].requests)


async def control(request: web.Request) -> web.Response:
    state = request.app[STATE]
    changes = await request.json()
    known = {f.name for f in fields(Behaviour)}
    if changes.get("reset"):
        state.behaviour = Behaviour()
        state.requests.clear()
    for key, value in changes.items():
        if key in known:
            setattr(state.behaviour, key, value)
    if state.behaviour.hold:
        state.unheld.clear()
    else:
        state.unheld.set()
    if state.behaviour.pause_after_chunks >= 0:
        state.resumed.clear()
    else:
        state.resumed.set()
    return web.json_response(state.behaviour.__dict__)


def _require_key(key: str) -> Any:
    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/v1/") and request.headers.get("authorization") != (
            f"Bearer {key}"
        ):
            error = {
                "error": {
                    "message": "Incorrect API key provided",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            }
            return web.json_response(error, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    return check


def make_app(
    name: str, models_: list[str], log_path: str | None = None, api_key: str | None = None
) -> web.Application:
    app = web.Application(middlewares=[_require_key(api_key)] if api_key else [])
    app[STATE] = FakeState(name=name, models=models_, log_path=log_path)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/completions", legacy_completions)
    app.router.add_get("/info", info)
    app.router.add_get("/_requests", list_requests)
    app.router.add_post("/_control", control)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18000)
    parser.add_argument("--name", default="fake")
    parser.add_argument("--models", default="fake-model", help="comma-separated model ids")
    parser.add_argument("--log", default=None, help="append every request as a JSON line here")
    parser.add_argument("--api-key", default=None, help="answer 401 without this bearer key")
    args = parser.parse_args()
    app = make_app(args.name, [m for m in args.models.split(",") if m], args.log, args.api_key)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
