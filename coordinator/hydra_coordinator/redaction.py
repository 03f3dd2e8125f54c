"""Secrets out of everything shown: URLs with credentials, in the config and in messages.

A URL is taken apart, not matched with a pattern: the user information is everything before the
*last* ``@`` of the authority, so a password holding ``@`` (or ``/``, which ends the authority
for a strict parser) is masked whole; query parameters whose name says key, token, secret,
password, signature or credential are masked; a user name alone (``https://TOKEN@host``) is
masked too, except for databases, where it is the role (``postgresql://hydra@db/hydra``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, quote

__all__ = ["MASK", "ambiguous_userinfo", "redact_text", "redact_url", "redacted_data"]

MASK = "***"

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>]+")
_SECRET_PARAM = re.compile(
    r"key|token|secret|passw|pwd|auth|sig|credential|session|cookie|bearer", re.IGNORECASE
)
# schemes whose user name alone is a role, not a credential
_ROLE_SCHEMES = frozenset({"postgresql", "postgres", "mysql", "mongodb"})


def _split(url: str) -> tuple[str, str, str] | None:
    """(scheme, user information or '', the rest: host, path, query and fragment)."""
    scheme, sep, remainder = url.partition("://")
    if not sep:
        return None
    cut = next((i for i, c in enumerate(remainder) if c in "/?#"), len(remainder))
    authority = remainder[:cut]
    if "@" in authority:
        userinfo, _, host = authority.rpartition("@")
        return scheme, userinfo, host + remainder[cut:]
    last_at = remainder.rfind("@")
    if last_at > cut and _credentials_shape(authority, scheme):
        # a password holding / ? or # (unencoded): the authority ends at the last @
        return scheme, remainder[:last_at], remainder[last_at + 1 :]
    return scheme, "", remainder


def _credentials_shape(authority: str, scheme: str) -> bool:
    """Whether ``authority`` (cut at the first / ? #) can be the start of ``user:password``:
    for a web URL only when what follows the colon is not a port."""
    if scheme.lower() not in ("http", "https"):
        return True
    _, colon, after = authority.partition(":")
    return bool(colon) and not after.isdigit()


def ambiguous_userinfo(url: str) -> bool:
    """Whether the password holds characters that end a URL's authority (``/ ? #``) without
    being percent-encoded: parsers then read part of it as the host or the port."""
    parts = _split(url)
    return parts is not None and any(c in parts[1] for c in "/?#")


def _redact_query(tail: str) -> str:
    query, hash_mark, fragment = tail.partition("#")
    if not query.startswith("?"):
        return tail
    pairs = parse_qsl(query[1:], keep_blank_values=True)
    if not any(_SECRET_PARAM.search(name) for name, _ in pairs):
        return tail
    shown = "&".join(
        f"{quote(name, safe='')}={MASK if _SECRET_PARAM.search(name) else quote(value, safe='')}"
        for name, value in pairs
    )
    return f"?{shown}{hash_mark}{fragment}"


def redact_url(url: str) -> str:
    """``url`` with its credentials masked (unchanged when it holds none)."""
    parts = _split(url)
    if parts is None:
        return url
    scheme, userinfo, rest = parts
    if userinfo:
        user, colon, _ = userinfo.partition(":")
        if colon:
            clean = not any(c in user for c in "/?#@")  # else part of the password
            userinfo = f"{user}:{MASK}" if clean else MASK
        elif scheme.lower() not in _ROLE_SCHEMES:
            userinfo = MASK
        userinfo += "@"
    query = rest.find("?")
    if query != -1:
        rest = rest[:query] + _redact_query(rest[query:])
    return f"{scheme}://{userinfo}{rest}"


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (for messages, logs and details)."""
    if "://" not in text:
        return text
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


def redacted_data(value: Any) -> Any:
    """Plain data (dicts, lists, strings) with every string's URLs redacted."""
    if isinstance(value, dict):
        return {key: redacted_data(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redacted_data(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
