"""The hot path: send a request (chat, legacy completions or embeddings) to the chosen backends
in order and pass the answer back.

- What goes upstream is the parsed body, re-serialised (:func:`forwarded_body`): exactly what
  the privacy scan read, never the client's raw bytes.
- The upstream's bytes are passed through unchanged; a stream chunk by chunk.
- A failure before the first byte (connect error, timeout, 5xx, upstream 429, the upstream
  refusing the coordinator's own key, no model known to ask for) moves on to the next candidate;
  another 4xx from the upstream is the client's problem and comes back as it is.
- A backend that dies mid-stream ends the stream with an error event, never a hang.
- :meth:`Proxy.forward` records every response it returns (once per request); when it raises,
  nothing is recorded yet and ``Call.tried`` names the backend tried last.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse

from .backends.answers import SseCheck, parse_answer, read_capped
from .backends.backend import Backend, QueueFull
from .backends.client import Timeouts, UpstreamConnectError, UpstreamResponse, UpstreamTimeout
from .backends.pool import BackendPool
from .errors import (
    BadGateway,
    ClientClosedRequest,
    GatewayTimeout,
    HydraError,
    ServiceUnavailable,
    TooManyRequests,
)
from .routing.router import VIRTUAL_MODELS, Decision
from .telemetry import Recorder, RequestRecord
from .tokens import TokenCounter

__all__ = ["CHAT", "COMPLETIONS", "EMBEDDINGS", "Call", "Proxy", "forwarded_body"]

# The OpenAI endpoints the coordinator forwards, as paths under a backend's base_url
CHAT = "chat/completions"
COMPLETIONS = "completions"
EMBEDDINGS = "embeddings"
_ENDPOINT_NAMES = {CHAT: "chat", COMPLETIONS: "completions", EMBEDDINGS: "embeddings"}

log = logging.getLogger("hydra_coordinator.backends")

_SSE_TAIL = 8192  # bytes of a stream kept to find the final usage chunk
_DONE = b"data: [DONE]"


def forwarded_body(body: dict[str, Any], model: str) -> bytes:
    """The bytes sent to an upstream: the parsed request body with the upstream's model name,
    serialised again. The privacy scan reads that same parsed body, so nothing reaches an
    upstream that the scan did not see: the client's own bytes are never passed through (with a
    duplicate JSON key, the scan would read one value and the upstream the other). Costs about
    a microsecond per KB (orjson)."""
    return orjson.dumps({**body, "model": model})


@dataclass(slots=True)
class Call:
    """One client request on its way through the proxy. ``raw`` is the client's body as it
    came, for its size only: what goes upstream is :func:`forwarded_body`."""

    request_id: str
    key_id: str | None
    body: dict[str, Any]
    raw: bytes
    model: str
    stream: bool
    decision: Decision
    started: float
    endpoint: str = CHAT  # the path under the backend's base_url
    tried: str | None = None  # the backend tried last, when forward() raises


def _usage(payload: dict[str, Any]) -> tuple[int | None, int | None]:
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return None, None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (
        prompt if isinstance(prompt, int) else None,
        completion if isinstance(completion, int) else None,
    )


def _usage_from_body(body: bytes) -> tuple[int | None, int | None]:
    if b'"usage"' not in body:
        return None, None
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    return _usage(payload) if isinstance(payload, dict) else (None, None)


_TAIL_USAGE = re.compile(rb'"usage"\s*:\s*(\{(?:[^{}]|\{[^{}]*\})*\})')


def _usage_from_tail(tail: bytes) -> tuple[int | None, int | None]:
    """The usage object near the end of a body too large to parse whole."""
    found = _TAIL_USAGE.findall(tail)
    if not found:
        return None, None
    try:
        usage = orjson.loads(found[-1])
    except orjson.JSONDecodeError:
        return None, None
    return _usage({"usage": usage}) if isinstance(usage, dict) else (None, None)


_FINISH_REASON = re.compile(rb'"finish_reason"\s*:\s*"([a-z_]+)"')


def _finish_reason(answer: bytes) -> str | None:
    """The last finish_reason in a body or a stream's tail (no JSON parse needed)."""
    found = _FINISH_REASON.findall(answer[-_SSE_TAIL:])
    return found[-1].decode() if found else None


_STREAM_KEEP = 1 << 20  # bytes of a stream kept to count its tokens when usage is missing


def _message_text(message: Any) -> str:
    if not isinstance(message, dict):
        return ""
    parts = [message.get("content") or message.get("text") or ""]
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            parts.append(str(function.get("arguments") or ""))
    return "".join(p for p in parts if isinstance(p, str))


def _answer_text(body: bytes) -> str:
    """The text of a chat completion's choices."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    choices = payload.get("choices") if isinstance(payload, dict) else None
    return "".join(_choice_text(c, "message") for c in choices or () if isinstance(c, dict))


def _choice_text(choice: dict[str, Any], part: str) -> str:
    """A chat choice's ``message`` (or stream ``delta``), or a legacy completion's ``text``."""
    if part in choice:
        return _message_text(choice.get(part))
    text = choice.get("text")
    return text if isinstance(text, str) else ""


def _input_text(body: dict[str, Any]) -> str:
    """What a legacy completion's ``prompt`` or an embedding request's ``input`` says."""
    value = body.get("prompt", body.get("input"))
    items = value if isinstance(value, list) else [value]
    return "\n".join(item for item in items if isinstance(item, str))


def _stream_text(stream: bytes) -> str:
    """The text of a chat completion stream's deltas."""
    pieces = []
    for line in stream.split(b"\n"):
        if not line.startswith(b"data:") or line.strip() == b"data: [DONE]":
            continue
        try:
            payload = orjson.loads(line[5:])
        except orjson.JSONDecodeError:
            continue  # a line cut at the end of what was kept
        for choice in payload.get("choices") or () if isinstance(payload, dict) else ():
            if isinstance(choice, dict):
                pieces.append(_choice_text(choice, "delta"))
    return "".join(pieces)


def _usage_from_stream_tail(tail: bytes) -> tuple[int | None, int | None]:
    for event in reversed(tail.split(b"\n\n")):
        line = event.strip()
        if line.startswith(b"data:") and b'"usage"' in line:
            return _usage_from_body(line[5:].strip())
    return None, None


def _prompt(body: dict[str, Any]) -> str | None:
    """What telemetry.store_prompts keeps: the messages, a completion's prompt or the input."""
    for field in ("messages", "prompt", "input"):
        if field in body:
            return orjson.dumps(body[field]).decode()
    return None


@dataclass(slots=True)
class _StreamState:
    tail: bytes  # the last bytes of the stream, where the usage chunk is
    seen: bytearray  # the stream from the start, up to _STREAM_KEEP bytes, to count tokens
    size: int = 0  # bytes streamed in all
    error: str | None = None
    recorded: bool = False
    complete: bool = False  # the upstream's answer ended as it should

    def add(self, chunk: bytes) -> None:
        self.tail = (self.tail + chunk)[-_SSE_TAIL:]
        self.size += len(chunk)
        if len(self.seen) < _STREAM_KEEP:
            self.seen += chunk


@dataclass(frozen=True, slots=True)
class _Retry:
    """An attempt failed before the first byte; ``error`` is what to answer if none succeeds.
    ``attempt`` is the failure as a record for the sinks that learn from backends' outcomes
    (None when it says nothing about the backend: its queue was full, no model known).
    ``tried``: the request reached the backend (its queue, at least): its record names it."""

    error: HydraError | Response
    backend: Backend
    attempt: RequestRecord | None = None
    tried: bool = True


def _error_event(message: str, code: str) -> bytes:
    payload = {"error": {"message": message, "type": "upstream_error", "code": code}}
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class Proxy:
    def __init__(
        self, pool: BackendPool, recorder: Recorder, tokens: TokenCounter | None = None
    ) -> None:
        self.pool = pool
        self.recorder = recorder
        self.store_prompts = False  # telemetry.store_prompts: put the messages in the record
        self.max_answer_bytes = 16 * 1024 * 1024  # limits.max_answer_bytes
        self.tokens = tokens or TokenCounter()

    def _headers(self, call: Call, backend: Backend) -> dict[str, str]:
        return {
            "x-hydra-route": backend.kind,
            "x-hydra-backend": backend.name,
            "x-hydra-request-id": call.request_id,
        }

    def _payload(self, call: Call, model: str) -> bytes:
        return forwarded_body(call.body, model)

    def _finish(
        self,
        call: Call,
        backend: Backend,
        model: str,
        status: int,
        *,
        ttft: float | None,
        answer: bytes = b"",
        error: str | None = None,
        stream: tuple[bytes, int] | None = None,
        parsed: dict[str, Any] | None = None,
        passed_through: int | None = None,
    ) -> None:
        """Record the request. ``answer`` is the upstream's body (``parsed``: as JSON), or a
        stream's tail; ``stream`` is the stream's first bytes and its whole size (to count
        tokens); ``passed_through`` the size of a body too large to keep (``answer``: its
        tail)."""
        prompt = completion = None
        finish_reason = None
        estimated = False
        if status == 200 and answer:
            if parsed is not None:
                prompt, completion = _usage(parsed)
            elif passed_through is not None:
                prompt, completion = _usage_from_tail(answer)
            else:
                prompt, completion = (
                    _usage_from_stream_tail(answer) if stream else _usage_from_body(answer)
                )
            finish_reason = _finish_reason(answer)
            if call.endpoint == EMBEDDINGS and completion is None:
                completion = 0  # an embedding has no completion; its usage has prompt_tokens
            if prompt is None or completion is None:  # no usage reported: count ourselves
                estimated = True
                if prompt is None:
                    prompt = self._count_prompt(call.body)
                if completion is None:
                    completion = (
                        passed_through // 4  # about 4 bytes a token
                        if passed_through is not None
                        else self._count_answer(answer, stream)
                    )
        price = backend.config.price_per_mtok
        cost = None
        if prompt is not None or completion is not None:
            cost = ((prompt or 0) * price.input + (completion or 0) * price.output) / 1e6
        self.recorder.record(
            RequestRecord(
                request_id=call.request_id,
                key_id=call.key_id,
                route=backend.kind,
                backend=backend.name,
                model=model,
                status=status,
                stream=call.stream,
                latency_s=time.perf_counter() - call.started,
                ttft_s=ttft,
                confidence=call.decision.confidence,
                reasons=call.decision.reasons,
                prompt_tokens=prompt,
                completion_tokens=completion,
                cost_usd=cost,
                error=error,
                task_class=call.decision.task_class,
                usage_estimated=estimated,
                finish_reason=finish_reason,
                prompt=_prompt(call.body) if self.store_prompts else None,
                endpoint=_ENDPOINT_NAMES[call.endpoint],
            )
        )

    def _count_prompt(self, body: dict[str, Any]) -> int:
        messages = body.get("messages")
        if messages is not None:
            return self.tokens.count_messages(messages)
        return self.tokens.count(_input_text(body))

    def _count_answer(self, answer: bytes, stream: tuple[bytes, int] | None) -> int:
        if stream is None:
            return self.tokens.count(_answer_text(answer))
        seen, size = stream
        counted = self.tokens.count(_stream_text(seen))
        return counted if len(seen) >= size else round(counted * size / max(1, len(seen)))

    def _failed(self, backend: Backend, kind: str, *, trip: bool = True) -> None:
        self.recorder.metrics.upstream_errors.labels(backend.name, kind).inc()
        if trip:
            was_open = backend.breaker_open
            backend.record_failure()
            if backend.breaker_open and not was_open:
                log.warning(
                    "backend %s is down: %d requests in a row failed (last: %s); requests skip "
                    "it for %gs, then one tries it again",
                    backend.name,
                    backend.failures,
                    kind,
                    backend.cooldown_s,
                )

    def _succeeded(self, backend: Backend) -> None:
        if backend.failures >= backend.failure_threshold:
            log.info("backend %s is healthy again (a request succeeded)", backend.name)
        backend.record_success()

    def _failure(
        self,
        call: Call,
        backend: Backend,
        error: HydraError | Response,
        *,
        model: str,
        error_class: str | None = None,
    ) -> _Retry:
        """A failed attempt, with its record for the sinks that learn from outcomes."""
        if isinstance(error, HydraError):
            status, error_class = error.status, error_class or error.code
        else:
            status = error.status_code
        attempt = RequestRecord(
            request_id=call.request_id,
            key_id=call.key_id,
            route=backend.kind,
            backend=backend.name,
            model=model,
            status=status,
            stream=call.stream,
            latency_s=time.perf_counter() - call.started,
            confidence=call.decision.confidence,
            reasons=call.decision.reasons,
            error=error_class,
            task_class=call.decision.task_class,
            endpoint=_ENDPOINT_NAMES[call.endpoint],
        )
        return _Retry(error, backend, attempt)

    async def forward(self, call: Call) -> Response:
        """Try each candidate in turn until one answers."""
        if not call.decision.candidates:
            raise ServiceUnavailable(
                f"no healthy {call.decision.route} backend can take this request"
            )
        failed: _Retry | None = None
        for name in call.decision.candidates:
            if failed is not None and failed.attempt is not None:
                self.recorder.attempt(failed.attempt)  # failover moves on from it
            outcome = await self._attempt(call, self.pool[name])
            if isinstance(outcome, Response):
                return outcome
            failed = outcome
        assert failed is not None  # there was at least one candidate
        if isinstance(failed.error, Response):  # the upstream's own error, passed through
            assert failed.attempt is not None
            self.recorder.record(failed.attempt)
            return failed.error
        call.tried = failed.backend.name if failed.tried else None
        raise failed.error

    async def _attempt(self, call: Call, backend: Backend) -> Response | _Retry:
        model = backend.upstream_model(call.model, embeddings=call.endpoint == EMBEDDINGS)
        if model in VIRTUAL_MODELS:  # nothing listed, nothing configured: never send "auto"
            return _Retry(
                ServiceUnavailable(
                    f"backend {backend.name!r} knows no model to ask for {call.model!r}: its "
                    "/models listed none (or has not answered yet) and its `models` key is "
                    "empty; set `models` (or `default_model`) for it in the configuration",
                    code="no_model_known",
                ),
                backend,
                tried=False,
            )
        try:
            await backend.acquire()
        except QueueFull as exc:
            busy = TooManyRequests(
                str(exc), code="backend_busy", headers={"retry-after": str(exc.retry_after)}
            )
            return _Retry(busy, backend)
        return await self._try(call, backend, model)

    async def _try(self, call: Call, backend: Backend, model: str) -> Response | _Retry:
        """One attempt, holding an acquired slot (released here)."""
        payload = self._payload(call, model)
        headers = {"content-type": "application/json", **self.pool.auth_headers(backend)}
        timeouts = Timeouts(backend.config.connect_timeout_s, backend.config.timeout_s)
        url = f"{backend.config.base_url}/{call.endpoint}"
        try:
            upstream = await self.pool.client.post(url, payload, headers, timeouts)
        except UpstreamTimeout:
            backend.release()
            self._failed(backend, "timeout")
            return self._failure(
                call,
                backend,
                GatewayTimeout(f"backend {backend.name!r} did not answer in time"),
                model=model,
            )
        except UpstreamConnectError as exc:
            backend.release()
            self._failed(backend, "connect")
            return self._failure(
                call,
                backend,
                BadGateway(f"backend {backend.name!r} is unreachable: {exc}"),
                model=model,
            )
        except BaseException:  # cancelled: the client left, or the request's deadline passed
            backend.release()
            raise
        if upstream.status >= 500 or upstream.status == 429:
            return await self._upstream_refused(call, backend, upstream, model)
        if upstream.status in (401, 403):
            return await self._key_refused(call, backend, upstream, model)
        if call.stream and upstream.status == 200:
            return await self._stream(call, backend, upstream, model)
        return await self._whole(call, backend, upstream, model)

    async def _drain(self, backend: Backend, upstream: UpstreamResponse) -> bytes:
        try:
            return await upstream.read()
        except (UpstreamTimeout, UpstreamConnectError):
            return b""
        finally:
            backend.release()

    async def _upstream_refused(
        self, call: Call, backend: Backend, upstream: UpstreamResponse, model: str
    ) -> _Retry:
        body = await self._drain(backend, upstream)
        busy = upstream.status == 429
        self._failed(backend, "status", trip=not busy)
        response = Response(
            body or b'{"error": {"message": "upstream error", "type": "upstream_error"}}',
            upstream.status,
            media_type=upstream.content_type,
            headers=self._headers(call, backend),
        )
        return self._failure(call, backend, response, model=model, error_class="upstream_status")

    async def _key_refused(
        self, call: Call, backend: Backend, upstream: UpstreamResponse, model: str
    ) -> _Retry:
        """The upstream's own 401/403: the coordinator's key for it is wrong, not the client's
        (which the coordinator checked): a 502 that names the backend."""
        await self._drain(backend, upstream)
        self._failed(backend, "auth")
        error = BadGateway(
            f"backend {backend.name!r} refused the coordinator's API key (its upstream answered "
            f"HTTP {upstream.status}); check that backend's api_key_file (or api_key_env)",
            code="upstream_auth_failed",
        )
        return self._failure(call, backend, error, model=model)

    async def _whole(
        self, call: Call, backend: Backend, upstream: UpstreamResponse, model: str
    ) -> Response | _Retry:
        try:
            body, rest = await read_capped(upstream, self.max_answer_bytes)
        except (UpstreamTimeout, UpstreamConnectError) as exc:
            backend.release()
            await upstream.close()
            timed_out = isinstance(exc, UpstreamTimeout)
            self._failed(backend, "timeout" if timed_out else "connect")
            error: HydraError = (
                GatewayTimeout(f"backend {backend.name!r} did not finish in time")
                if timed_out
                else BadGateway(f"backend {backend.name!r} dropped the answer: {exc}")
            )
            return self._failure(call, backend, error, model=model)
        except BaseException:  # cancelled: the client left, or the deadline passed
            backend.release()
            await upstream.close()
            raise
        if rest is not None:  # larger than limits.max_answer_bytes: passed on as it comes
            self._succeeded(backend)
            return self._pass_through(call, backend, upstream, model, first=body, rest=rest)
        backend.release()
        await upstream.close()
        parsed = None
        if upstream.status == 200:
            parsed = parse_answer(body, _ENDPOINT_NAMES[call.endpoint])
            if parsed is None:
                self._failed(backend, "invalid")
                invalid = BadGateway(
                    f"backend {backend.name!r} answered 200 with a body that is not a valid "
                    "answer (not JSON, cut short, or not of the endpoint's shape)",
                    code="upstream_invalid_answer",
                )
                return self._failure(call, backend, invalid, model=model)
        self._succeeded(backend)
        ttft = time.perf_counter() - call.started
        self._finish(
            call,
            backend,
            model,
            upstream.status,
            ttft=ttft,
            answer=body,
            parsed=parsed,
            error=None if upstream.status < 400 else "upstream_client_error",
        )
        return Response(
            body,
            upstream.status,
            media_type=upstream.content_type,
            headers=self._headers(call, backend),
        )

    def _pass_through(
        self,
        call: Call,
        backend: Backend,
        upstream: UpstreamResponse,
        model: str,
        *,
        first: bytes,
        rest: AsyncIterator[bytes],
    ) -> Response:
        """An answer over ``limits.max_answer_bytes``: relayed as it arrives (nothing cached or
        stored), recorded from its size and the usage near its end."""
        ttft = time.perf_counter() - call.started
        state = _StreamState(first[-_SSE_TAIL:], bytearray(), len(first))

        async def relay() -> AsyncIterator[bytes]:
            yield first
            try:
                async for chunk in rest:
                    state.tail = (state.tail + chunk)[-_SSE_TAIL:]
                    state.size += len(chunk)
                    yield chunk
            except (UpstreamTimeout, UpstreamConnectError):
                self._failed(backend, "stream")
                state.error = "upstream_cut"
                return
            state.complete = True

        def done(gone: bool) -> None:
            backend.release()
            if state.recorded:
                return
            state.recorded = True
            error = state.error
            if error is None and not state.complete:  # the client left, or the deadline passed
                error = ClientClosedRequest.code if gone else "timeout"
            self._finish(
                call,
                backend,
                model,
                upstream.status,
                ttft=ttft,
                answer=bytes(state.tail),
                error=error,
                passed_through=state.size,
            )

        return _RelayResponse(
            relay(),
            upstream,
            done,
            status_code=upstream.status,
            headers=self._headers(call, backend),
            media_type=upstream.content_type,
        )

    async def _stream(
        self, call: Call, backend: Backend, upstream: UpstreamResponse, model: str
    ) -> Response | _Retry:
        chunks = upstream.chunks()
        check = SseCheck()
        try:
            first = await anext(chunks)
        except (UpstreamTimeout, UpstreamConnectError, StopAsyncIteration) as exc:
            await upstream.close()
            backend.release()
            timed_out = isinstance(exc, UpstreamTimeout)
            self._failed(backend, "timeout" if timed_out else "connect")
            error = (GatewayTimeout if timed_out else BadGateway)(
                f"backend {backend.name!r} failed before the first byte"
            )
            return self._failure(call, backend, error, model=model)
        except BaseException:  # cancelled before the first chunk
            backend.release()
            await upstream.close()
            raise
        if not check.feed(first):  # nothing sent yet: fail over
            await upstream.close()
            backend.release()
            self._failed(backend, "invalid")
            invalid = BadGateway(
                f"backend {backend.name!r} answered 200 with a stream that is not valid "
                f"server-sent events ({check.invalid})",
                code="upstream_invalid_answer",
            )
            return self._failure(call, backend, invalid, model=model)
        self._succeeded(backend)
        relay = _StreamRelay(self, call, backend, model, check)
        return _RelayResponse(
            relay.relay(first, chunks),
            upstream,
            relay.done,
            headers=self._headers(call, backend),
            media_type=upstream.content_type,
        )


class _StreamRelay:
    """A stream on its way from an upstream to the client: each event checked, the end held
    back until the request is recorded, a failure or a cut ending in an error event."""

    def __init__(
        self, proxy: Proxy, call: Call, backend: Backend, model: str, check: SseCheck
    ) -> None:
        self.proxy, self.call, self.backend, self.model = proxy, call, backend, model
        self.check = check
        self.ttft = time.perf_counter() - call.started
        self.state = _StreamState(b"", bytearray())

    def record(self, error: str | None = None) -> None:
        """Record the request once; ``error`` overrides the stream's own error class."""
        state = self.state
        if state.recorded:
            return
        state.recorded = True
        self.proxy._finish(
            self.call,
            self.backend,
            self.model,
            200,
            ttft=self.ttft,
            answer=state.tail,
            error=error or (f"stream_{state.error}" if state.error else None),
            stream=(bytes(state.seen), state.size),
        )

    def broken(self, kind: str, what: str) -> bytes:
        """The error event that ends a stream the upstream broke; the backend's failure."""
        self.proxy._failed(self.backend, "stream" if kind in ("timeout", "stream") else kind)
        self.state.error = kind
        return _error_event(f"backend {self.backend.name!r} {what}", f"upstream_{kind}")

    async def relay(self, first: bytes, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        # The end of the stream (`data: [DONE]`, an error event, the end of the body) is held
        # back until the request is recorded: a client that saw its stream end is in the
        # telemetry spool. Every other chunk passes through at once.
        state, check = self.state, self.check
        state.add(first)
        held: list[bytes] = []
        if _DONE in first:
            held.append(first)
        else:
            yield first
        try:
            async for chunk in chunks:
                state.add(chunk)
                if not check.feed(chunk):
                    held.append(self.broken("invalid", f"sent an invalid event ({check.invalid})"))
                    break
                if held or _DONE in chunk:
                    held.append(chunk)
                else:
                    yield chunk
            else:
                if not check.complete():
                    held.append(self.broken("truncated", "ended the stream without [DONE]"))
        except (UpstreamTimeout, UpstreamConnectError) as exc:
            kind = "timeout" if isinstance(exc, UpstreamTimeout) else "stream"
            held.append(self.broken(kind, f"failed mid-stream ({kind})"))
        state.complete = True
        self.record()
        for chunk in held:
            yield chunk

    def done(self, gone: bool) -> None:
        self.backend.release()
        if not self.state.complete and not self.state.recorded:
            if gone and self.state.error is None:
                # the client left before the end: nothing is known of the backend's answer
                self.record(ClientClosedRequest.code)
                return
            self.state.error = self.state.error or "timeout"  # cut by the request's deadline
        self.record()


class _RelayResponse(StreamingResponse):
    """A streaming response that always closes the upstream and runs ``done(gone)`` exactly
    once, whether the stream ends, fails, or the client goes away (``gone``).

    Starlette's own streaming response starts an anyio task group per response to notice a
    client that disconnects (uvicorn speaks ASGI 2.3); a plain task that waits for
    ``http.disconnect`` costs far less on the hot path. The relay stops at the next chunk after
    the client left, and the upstream's connection is closed, freeing its GPU slot."""

    def __init__(
        self, content: AsyncIterator[bytes], upstream: UpstreamResponse, done: Any, **kwargs: Any
    ) -> None:
        super().__init__(content, **kwargs)
        self._content = content
        self._upstream = upstream
        self._done = done
        self._cleaned = False

    async def _cleanup(self, gone: bool) -> None:
        if self._cleaned:
            return
        self._cleaned = True
        await self._upstream.close()
        self._done(gone)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            async for chunk in self._content:
                if gone.is_set():
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            else:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away while we wrote
        finally:
            watcher.cancel()
            aclose = getattr(self._content, "aclose", None)
            if aclose is not None:
                await aclose()
            await self._cleanup(gone.is_set())
