"""A web page is not a client: Host and Origin checks for every HTTP request.

- **Host** (against DNS rebinding): a page on ``evil.example`` whose name is rebound to
  127.0.0.1 sends ``Host: evil.example``. Accepted are IP addresses (a rebound name never is
  one), ``localhost`` and names under ``.localhost``, this machine's host name (also with
  ``.local``) and ``listen.allowed_hosts``. Anything else is 421. Checked when there are no
  API keys (the loopback default, where a rebound page could use the API) or when
  ``listen.allowed_hosts`` is set; with keys alone a rebound page has no key, and the check
  would only break names the coordinator is reached by (a reverse proxy, a container's).
- **Origin** (against cross-site requests, e.g. a ``text/plain`` POST that needs no CORS
  preflight): a browser request from another origin (``Origin`` not this server's, or
  ``Sec-Fetch-Site: cross-site``/``same-site``) is 403 unless ``listen.cors_origins`` allows
  the origin; allowed origins get CORS headers (Starlette's ``CORSMiddleware``), preflights
  included. Clients that are not browsers send neither header and are not affected.

It sits outside authentication, so preflights (which carry no key) are answered.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import ListenConfig
from ..errors import Forbidden, HydraError, answer_error

__all__ = ["BrowserGuard", "MisdirectedRequest"]

# the response headers a browser client may read
_EXPOSED = ["x-hydra-route", "x-hydra-backend", "x-hydra-request-id", "x-hydra-cache"]
_CACHE_LIMIT = 256


class MisdirectedRequest(HydraError):
    status, type, code = 421, "invalid_request_error", "host_not_allowed"


def _host_name(host: str) -> str:
    """``host`` without its port, lower case (``[::1]:8092`` -> ``[::1]``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


class BrowserGuard:
    def __init__(self, app: ASGIApp, listen: ListenConfig, keys_enabled: bool) -> None:
        self.app = app
        self.check_host = not keys_enabled or bool(listen.allowed_hosts)
        names = [n.strip().lower().rstrip(".") for n in listen.allowed_hosts]
        self.any_host = "*" in names
        machine = socket.gethostname().lower()
        self.names = {
            "localhost",
            machine,
            f"{machine}.local",
            machine.split(".")[0],
            *(n for n in names if n and not n.startswith(".")),
        }
        self.suffixes = (".localhost", *(n for n in names if n.startswith(".")))
        self.allowed: dict[bytes, bool] = {}  # Host headers seen and accepted (bounded)
        origins = [o.rstrip("/") for o in listen.cors_origins]
        self.any_origin = "*" in origins
        self.origins = frozenset(o.lower() for o in origins)
        self.cors: ASGIApp | None = None
        if origins:
            self.cors = CORSMiddleware(
                app,
                allow_origins=origins,
                allow_methods=["*"],
                allow_headers=["*"],
                expose_headers=_EXPOSED,
            )

    def host_allowed(self, host: bytes) -> bool:
        if host in self.allowed:
            return True
        name = _host_name(host.decode("latin-1"))
        ok = self.any_host or name in self.names or name.endswith(self.suffixes) or _is_ip(name)
        if ok and len(self.allowed) < _CACHE_LIMIT:
            self.allowed[host] = True
        return ok

    def _same_origin(self, origin: str, host: bytes | None) -> bool:
        if host is None:
            return False
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc == host.decode("latin-1").lower()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = origin = site = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"origin":
                origin = value
            elif name == b"sec-fetch-site":
                site = value
        if host is not None and self.check_host and not self.host_allowed(host):
            shown = host.decode("latin-1")[:100]
            error: HydraError = MisdirectedRequest(
                f"this server is not {shown!r}; add the name to listen.allowed_hosts to use it"
            )
            await answer_error(scope, error)(scope, receive, send)
            return
        if origin is None and site in (None, b"same-origin", b"none"):
            await self.app(scope, receive, send)  # not a browser, or not cross-origin
            return
        text = (origin or b"").decode("latin-1").rstrip("/").lower()
        if origin is not None and (self.any_origin or text in self.origins):
            await (self.cors or self.app)(scope, receive, send)
            return
        # Sec-Fetch-Site is set by the browser (a page cannot forge it); without it (older
        # browsers) the Origin must be this server's own
        if site == b"same-origin" or (site is None and self._same_origin(text, host)):
            await self.app(scope, receive, send)
            return
        who = text[:100] if origin is not None else "another site"
        error = Forbidden(
            f"cross-origin request from {who} refused; to allow a web front end, add its "
            "origin to listen.cors_origins",
            code="origin_not_allowed",
        )
        await answer_error(scope, error)(scope, receive, send)
