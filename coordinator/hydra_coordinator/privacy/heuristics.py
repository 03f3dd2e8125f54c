"""Heuristics on candidate values: placeholders, references, randomness.

Every function here reads a bounded prefix of its value (candidates can be megabytes long),
so a check costs at most a few microseconds.
"""

from __future__ import annotations

import math
import re

from detect_secrets.filters.heuristic import is_potential_uuid, is_sequential_string

__all__ = ["char_classes", "is_placeholder", "is_reference", "looks_random", "shannon_entropy"]

_PLACEHOLDER_MAX = 256  # longer values are no placeholders (unless one repeated character)
_PLACEHOLDER_RE = re.compile(
    r"""
    (?:^|[^a-z0-9])(?:your|my|fake|todo|test|dummy|foo|bar)(?:[^a-z]|$)
    |example|sample|placeholder|changeme|change_me|redacted|replace_?me|insert_?your
    |xxxx|\*\*\*|\.\.\.|<[^<>]{0,64}>|^\[[^\[\]]{0,64}\]$|\$\{|\{\{|%\(
    |^(?:pass(?:word|wd)?|secret|token|api[_-]?key|key|none|null|nil|true|false|undefined
        |yes|no|on|off|enabled|disabled|empty|unset|required|optional|string|str|env|value|here
        |1234(?:5678?)?|password123|admin)$
    """,
    re.IGNORECASE | re.VERBOSE,
)
_REFERENCE_RE = re.compile(
    r"os\.environ|getenv|process\.env|env\(|ENV\[|secrets\.|vault:|getpass|\binput\(|keyring\."
)


def is_placeholder(value: str) -> bool:
    """True for values that only stand in for a secret in docs and templates.

    Examples: ``YOUR_API_KEY``, ``<password>``, ``${DB_PASSWORD}``, ``xxxxxxxx``,
    ``sk-...``, ``os.environ["TOKEN"]``, a value made of one repeated character.
    """
    stripped = value.strip("'\"`;,")
    if len(set(stripped[:_PLACEHOLDER_MAX].lower())) <= 2:
        return True
    if len(stripped) > _PLACEHOLDER_MAX:
        return False
    if _variable(stripped):
        return True
    return bool(_PLACEHOLDER_RE.search(stripped) or _REFERENCE_RE.search(stripped))


# A variable standing in for the value: $DB_PASS, $password, ${...}, $(...), %(name)s, %NAME%,
# {name}. A "$" or "%" before a word that mixes upper case, lower case and digits
# ("$Zp3kL9qW2") is more likely the first character of a password than a variable's name.
_VARIABLE = re.compile(
    r"""\$(?:\{|\()|%\(|\{\{?\s*[A-Za-z_][\w.]*\s*\}
    |\$(?P<dollar>[A-Za-z_]\w*)\b|%(?P<percent>[A-Za-z_]\w*)%|%[sd]\b""",
    re.VERBOSE,
)


def _variable(value: str) -> bool:
    """Whether ``value`` starts with a variable's name (see ``_VARIABLE``)."""
    match = _VARIABLE.match(value)
    if match is None:
        return False
    name = match.group("dollar") or match.group("percent")
    if name is None:
        return True
    mixed = any(c.isupper() for c in name) and any(c.islower() for c in name)
    return not (mixed and any(c.isdigit() for c in name))


_IDENTIFIER_PATH = re.compile(r"[A-Za-z_$][A-Za-z0-9_]*(?:(?:\.|->|::)[A-Za-z_][A-Za-z0-9_]*)+")


def is_reference(value: str) -> bool:
    """True for values that name another value instead of being one: ``settings.DB_PASSWORD``,
    ``self.token``, ``get_secret()``, ``$DB_PASS``, ``%(password)s``, ``{password}``."""
    if len(value) > _PLACEHOLDER_MAX:
        return False
    if value.endswith(")") and "(" in value:
        return True
    if _variable(value) or _REFERENCE_RE.search(value):
        return True
    return bool(_IDENTIFIER_PATH.fullmatch(value))


def char_classes(value: str) -> int:
    """How many of lower case, upper case, digits and other characters ``value`` has."""
    lower = upper = digit = other = False
    for char in value[:_PLACEHOLDER_MAX]:
        if char.islower():
            lower = True
        elif char.isupper():
            upper = True
        elif char.isdigit():
            digit = True
        else:
            other = True
    return lower + upper + digit + other


_ENTROPY_MAX = 1024  # characters read to estimate a value's entropy


def shannon_entropy(value: str) -> float:
    """Shannon entropy of (the first KB of) ``value`` in bits per character."""
    value = value[:_ENTROPY_MAX]
    if not value:
        return 0.0
    counts: dict[str, int] = {}
    for char in value:
        counts[char] = counts.get(char, 0) + 1
    size = len(value)
    return -sum(n / size * math.log2(n / size) for n in counts.values())


_HEX_LIMIT = 3.0
_BASE64_LIMIT = 4.5
_HEX = frozenset("0123456789abcdefABCDEF")


def is_hex(value: str) -> bool:
    return all(c in _HEX for c in value[:_ENTROPY_MAX])


def looks_random(value: str, *, quoted: bool) -> bool:
    """True for high-entropy strings that are not hashes, UUIDs, paths or sequences.

    Quoted strings need letters and digits; bare tokens need upper case, lower case and
    digits. The base64 limit is lowered for short tokens, whose entropy is bounded by
    log2(length). These are detect-secrets' limits (4.5 bits/char for base64, 3.0 for hex).
    """
    head = value[:_ENTROPY_MAX]
    if is_sequential_string(head) or is_potential_uuid(head) or is_placeholder(value):
        return False
    if head.count("/") > 2 or head.count("-") > 4 or head.count("_") > 4:
        return False  # paths, slugs, identifiers
    if is_hex(head):
        return shannon_entropy(head) > _HEX_LIMIT and not head.isdigit()
    classes = (
        any(c.isdigit() for c in head)
        + any(c.islower() for c in head)
        + any(c.isupper() for c in head)
    )
    needed = 2 if quoted else 3
    limit = min(_BASE64_LIMIT, math.log2(len(head)) - 0.7)
    return classes >= needed and any(c.isdigit() for c in head) and shannon_entropy(head) > limit
