"""Bearer-key authentication as a pure ASGI middleware (cheap on the hot path).

Keys come from files; only their SHA-256 digests are kept. A presented key is hashed and compared
in constant time against every known digest. The key id (first 12 hex digits of the digest) is
what telemetry and logs see, never the key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import Unauthorized, answer_error

__all__ = ["ApiKeys", "AuthMiddleware", "key_id"]


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class ApiKeys:
    """Client keys and admin keys (which are client keys too, and see every key's data)."""

    def __init__(self, keys: Iterable[str], admin: Iterable[str] = ()) -> None:
        admin = list(admin)
        self._digests = [hashlib.sha256(k.encode()).digest() for k in (*keys, *admin)]
        self._admins = frozenset(key_id(k) for k in admin)

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def is_admin(self, ident: str | None) -> bool:
        """Whether a caller may see every key's data: an admin key's id, or anyone when there
        are no keys at all (loopback only, one user) or no key applies (stdio: the local user)."""
        if not self.enabled or ident is None:
            return True
        return ident in self._admins

    def identify(self, authorization: str | None) -> str | None:
        """The key id for an ``Authorization`` header value, or None if it is not a known key."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        digest = hashlib.sha256(token.strip().encode()).digest()
        match = False
        for known in self._digests:  # no early exit: the time does not depend on which matched
            match |= hmac.compare_digest(digest, known)
        return digest.hex()[:12] if match else None


class AuthMiddleware:
    """Requires a known bearer key on every HTTP path except the public ones."""

    def __init__(self, app: ASGIApp, keys: ApiKeys, public_paths: Iterable[str]) -> None:
        self.app = app
        self.keys = keys
        self.public = frozenset(public_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys.enabled:
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        ident = self.keys.identify(header)
        if scope["path"] in self.public:  # served either way; a valid key may see more
            if ident is not None:
                scope.setdefault("state", {})["key_id"] = ident
            await self.app(scope, receive, send)
            return
        if ident is None:
            message = "missing API key" if header is None else "invalid API key"
            response = answer_error(
                scope,
                Unauthorized(f"{message}: send 'Authorization: Bearer <key>'"),
                {"www-authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["key_id"] = ident
        await self.app(scope, receive, send)
