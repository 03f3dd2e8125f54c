"""The shared, pooled HTTP client that talks to upstream servers.

Two implementations sit behind one small interface, picked by name (``upstream.client``):
``aiohttp`` (the default: the faster of the two in ``bench/``, see docs/performance.md) and
``httpx``. Both keep connections alive and hand the response over as soon as its headers
arrive, so a stream is passed through chunk by chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from ..redaction import redact_text

__all__ = [
    "CLIENTS",
    "Timeouts",
    "UpstreamClient",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamResponse",
    "UpstreamTimeout",
    "create_client",
]


class UpstreamError(Exception):
    """Talking to an upstream failed. The message (often the HTTP library's, naming the URL)
    is shown to clients and logged: credentials in it are masked."""

    def __init__(self, message: str) -> None:
        super().__init__(redact_text(message))


class UpstreamConnectError(UpstreamError):
    """The upstream could not be reached or dropped the connection."""


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer in time."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float
    read: float  # longest wait for the headers or for the next chunk


class UpstreamResponse(Protocol):
    status: int
    content_type: str

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def close(self) -> None: ...


class UpstreamClient(Protocol):
    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeouts: Timeouts
    ) -> UpstreamResponse: ...

    async def get_json(self, url: str, headers: Mapping[str, str], timeouts: Timeouts) -> Any: ...

    async def aclose(self) -> None: ...


class _AiohttpResponse:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.content_type = response.headers.get("content-type", "application/json")

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except TimeoutError as exc:
            raise UpstreamTimeout("timed out reading the response") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamConnectError(str(exc) or type(exc).__name__) from exc
        finally:
            self._response.release()

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except TimeoutError as exc:
            raise UpstreamTimeout("timed out waiting for the next chunk") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamConnectError(str(exc) or type(exc).__name__) from exc

    async def close(self) -> None:
        self._response.release()


class AiohttpClient:
    def __init__(self, max_connections: int = 0) -> None:
        connector = aiohttp.TCPConnector(limit=max_connections, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
        )

    def _timeout(self, timeouts: Timeouts) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.connect, sock_read=timeouts.read
        )

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeouts: Timeouts
    ) -> UpstreamResponse:
        try:
            response = await self._session.post(
                url, data=body, headers=dict(headers), timeout=self._timeout(timeouts)
            )
        except TimeoutError as exc:
            raise UpstreamTimeout("timed out waiting for the upstream") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamConnectError(str(exc) or type(exc).__name__) from exc
        return _AiohttpResponse(response)

    async def get_json(self, url: str, headers: Mapping[str, str], timeouts: Timeouts) -> Any:
        try:
            async with self._session.get(
                url, headers=dict(headers), timeout=self._timeout(timeouts)
            ) as response:
                if response.status >= 400:
                    raise UpstreamConnectError(f"HTTP {response.status}")
                return await response.json(content_type=None)
        except TimeoutError as exc:
            raise UpstreamTimeout("timed out") from exc
        except (aiohttp.ClientError, ValueError) as exc:
            raise UpstreamConnectError(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        await self._session.close()


class _HttpxResponse:
    def __init__(self, response: Any) -> None:
        self._response = response
        self.status = int(response.status_code)
        self.content_type = str(response.headers.get("content-type", "application/json"))

    async def read(self) -> bytes:
        import httpx

        try:
            return bytes(await self._response.aread())
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout("timed out reading the response") from exc
        except httpx.HTTPError as exc:
            raise UpstreamConnectError(str(exc) or type(exc).__name__) from exc
        finally:
            await self._response.aclose()

    async def chunks(self) -> AsyncIterator[bytes]:
        import httpx

        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout("timed out waiting for the next chunk") from exc
        except httpx.HTTPError as exc:
            raise UpstreamConnectError(str(exc) or type(exc).__name__) from exc

    async def close(self) -> None:
        await self._response.aclose()


class HttpxClient:
    def __init__(self, max_connections: int = 0) -> None:
        import httpx

        limits = httpx.Limits(
            max_connections=max_connections or None, max_keepalive_connections=256
        )
        self._client = httpx.AsyncClient(limits=limits, http2=False)

    def _timeout(self, timeouts: Timeouts) -> Any:
        import httpx

        return httpx.Timeout(timeouts.read, connect=timeouts.connect, pool=None)

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeouts: Timeouts
    ) -> UpstreamResponse:
        import httpx

        request = self._client.build_request(
            "POST", url, content=body, headers=dict(headers), timeout=self._timeout(timeouts)
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout("timed out waiting for the upstream") from exc
        except httpx.HTTPError as exc:
            raise UpstreamConnectError(str(exc) or type(exc).__name__) from exc
        return _HttpxResponse(response)

    async def get_json(self, url: str, headers: Mapping[str, str], timeouts: Timeouts) -> Any:
        import httpx

        try:
            response = await self._client.get(
                url, headers=dict(headers), timeout=self._timeout(timeouts)
            )
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout("timed out") from exc
        except httpx.HTTPError as exc:
            raise UpstreamConnectError(str(exc) or type(exc).__name__) from exc
        if response.status_code >= 400:
            raise UpstreamConnectError(f"HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError as exc:
            raise UpstreamConnectError("invalid JSON") from exc

    async def aclose(self) -> None:
        await self._client.aclose()


CLIENTS: dict[str, Callable[[], UpstreamClient]] = {"aiohttp": AiohttpClient, "httpx": HttpxClient}


def create_client(name: str) -> UpstreamClient:
    try:
        factory = CLIENTS[name]
    except KeyError:
        raise ValueError(
            f"unknown upstream client {name!r}; expected one of {sorted(CLIENTS)}"
        ) from None
    return factory()
