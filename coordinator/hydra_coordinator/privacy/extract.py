"""Everything a request sends upstream, as the texts the detectors read.

The proxy forwards the parsed body (re-serialised), so whatever is in it reaches the upstream:
every key and every string, whatever field it is in (messages, tools and their schemas,
``response_format``, ``metadata``, ``stop``, ``user``, unknown fields, ...). The walk renders
the whole body, keys included, one ``key: value`` per line, so that detectors also see the
context a key gives (``"db_password": "..."`` reads as ``db_password: ...``).

Besides that rendering, the scan reads:

* the conversation joined where its parts meet: the messages' text (``content``, text parts,
  tool call arguments, ``prompt``, ``input``) around each seam, glued and with a space, so a
  token or a number split across two messages or parts is seen whole;
* decoded payloads: ``data:`` URLs and base64 strings whose content is text, JSON held in a
  string (tool arguments), percent-encoded text (URLs);
* of each of these texts, the NFKC-normalised form without invisible format characters
  (zero-width spaces and joiners, soft hyphens, bidi controls), when it differs: fullwidth
  letters and digits become ASCII, an invisible character no longer splits a token.

Binary payloads (images, audio, PDFs, archives: recognised by their media type or their first
bytes) are not scanned: what a picture shows is out of scope.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any
from urllib.parse import unquote

import orjson

from .heuristics import is_placeholder

__all__ = ["UpstreamText", "decode_base64_text", "normalise", "upstream_text"]

# Keys whose string values are the conversation's text (messages, parts, tool arguments,
# legacy completion prompts, embedding inputs, /route queries).
_CONVERSATION_KEYS = frozenset(
    {"content", "text", "arguments", "prompt", "input", "refusal", "reasoning_content", "query"}
)
_JSON_DEPTH = 4  # JSON inside a string inside JSON ...: decoded this many levels deep
_BLOB_MIN = 64  # a string of this many base64 characters or more may be a whole payload
_BINARY_MIN = 256  # ... and a binary file (shorter random base64 may well be a key)

# File signatures of binary payloads a chat request carries (images, audio, documents).
_BINARY_MAGIC = (
    b"\x89PNG",
    b"\xff\xd8\xff",  # JPEG
    b"GIF8",
    b"RIFF",  # WAV, WebP, AVI
    b"OggS",
    b"fLaC",
    b"ID3",  # MP3 with tags
    b"\xff\xfb",  # MP3 frame
    b"\xff\xf3",
    b"\xff\xf2",
    b"%PDF",
    b"PK\x03\x04",  # zip, docx, xlsx
    b"\x1f\x8b",  # gzip
    b"\x1aE\xdf\xa3",  # WebM, Matroska
    b"BM",  # BMP
    b"II*\x00",  # TIFF
    b"MM\x00*",
)
_TEXT_MEDIA = re.compile(
    r"text/|application/(?:json|xml|yaml|x-yaml|toml|javascript|x-sh|x-shellscript|sql|csv"
    r"|x-www-form-urlencoded|x-pem-file|x-x509|pkcs8)|[+](?:json|xml)\b",
    re.IGNORECASE,
)
_BASE64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-\n\r"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")


_PLANE_2, _PLANE_14, _PLANE_15 = 0x20000, 0xE0000, 0xF0000


def _format_chars() -> str:
    """A regex class of the characters to drop after NFKC: Unicode's format characters (Cf:
    zero-width space and joiners, soft hyphen, bidi controls, tags) plus the other invisible
    default-ignorable ones (variation selectors, Hangul fillers, combining grapheme joiner)."""
    ranges: list[tuple[int, int]] = []
    # Cf characters live in planes 0, 1 and 14 only (2-3 hold ideographs, 4-13 nothing yet,
    # 15-16 private use): reading those 0.2 M code points instead of 1.1 M saves ~0.1 s of start
    for code in itertools.chain(range(_PLANE_2), range(_PLANE_14, _PLANE_15)):
        if unicodedata.category(chr(code)) == "Cf":
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    ranges += [(0x034F, 0x034F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F)]
    ranges += [(0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFFA0, 0xFFA0), (0xE0100, 0xE01EF)]
    return "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)


_INVISIBLE = re.compile(f"[{_format_chars()}]+")


def normalise(text: str, check: Callable[[], None] | None = None) -> str:
    """``text`` in NFKC without invisible format characters (ASCII text is returned as is).

    A long text is normalised in pieces of about 64 KB, cut before an ASCII character that
    another ASCII character follows (nothing composes across such a cut), with ``check()``
    between them (the scan's budget)."""
    if text.isascii():
        return text
    pieces = []
    start = 0
    while start < len(text):
        end = _piece_end(text, start + _NORMALISE_PIECE)
        pieces.append(_INVISIBLE.sub("", unicodedata.normalize("NFKC", text[start:end])))
        start = end
        if check is not None:
            check()
    return "".join(pieces)


_NORMALISE_PIECE = 64 * 1024
_SAFE_CUT_WINDOW = 4096


def _piece_end(text: str, end: int) -> int:
    """Where a piece may end, at or after ``end``: before two ASCII characters in a row."""
    if end >= len(text):
        return len(text)
    for cut in range(end, min(len(text) - 1, end + _SAFE_CUT_WINDOW)):
        if text[cut].isascii() and text[cut + 1].isascii():
            return cut
    return min(len(text), end + _SAFE_CUT_WINDOW)


def decode_base64_text(token: str) -> str | None:
    """The text a base64 (standard or URL-safe) token encodes, or None when it is not text."""
    stripped = token.rstrip("=")
    if len(stripped) % 4 == 1:
        return None
    padded = stripped + "=" * (-len(stripped) % 4)
    altchars = b"-_" if ("-" in padded or "_" in padded) else None
    try:
        raw = base64.b64decode(padded, altchars=altchars, validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    if len(text) < 4 or _CONTROL.search(text):
        return None
    return text


@dataclass(frozen=True, slots=True)
class UpstreamText:
    """The texts to scan for one request (see the module docstring).

    ``encoded`` holds strings with percent-escapes: the scan decodes them (in pieces, within
    its CPU budget) and reads them as ``decoded`` texts too.
    """

    fields: str
    conversation: str
    decoded: tuple[str, ...]
    encoded: tuple[str, ...] = ()

    def texts(self) -> Iterator[str]:
        """Each text but the encoded ones."""
        for text in (self.fields, self.conversation, *self.decoded):
            if text:
                yield text


def upstream_text(body: Mapping[str, Any], tick: Callable[[], None] | None = None) -> UpstreamText:
    """Everything in ``body`` that is sent upstream, as texts to scan; ``tick`` is called for
    every value walked (the scan's budget)."""
    walk = _Walk(tick)
    walk.run(body)
    return UpstreamText(
        "\n".join(walk.lines), _seams(walk.talk), tuple(walk.decoded), tuple(walk.encoded)
    )


_SEAM = 256  # characters on each side of a seam: longer than any token the detectors know


def _seams(parts: list[str]) -> str:
    """The text around each place where two parts of the conversation meet, the parts joined
    once without a separator (a token, a number or an address split across two messages is
    whole there) and once with a space (a sentence continued in the next message). Short
    parts are kept whole, so a value split across three parts is whole too. Where a part ends
    a sentence and the next begins a new one, or a part ends in a template's placeholder
    ("[value]"), nothing was split: no window. Everything else
    of the joined conversation is in the parts themselves, which are scanned anyway."""
    windows: list[str] = []
    chain: list[str] = []
    for before, after in pairwise(parts):
        if _sentence_break(before, after) or _ends_in_template(before):
            _close(chain, windows)
            chain = []
            continue
        if not chain:
            chain = [before[-_SEAM:]]
        if len(after) <= 2 * _SEAM:
            chain.append(after)  # a short part: the next seam may continue the same value
        else:
            chain.append(after[:_SEAM])
            _close(chain, windows)
            chain = []
    _close(chain, windows)
    return "\n".join(windows)


def _close(chain: list[str], windows: list[str]) -> None:
    if len(chain) > 1:
        windows += ["".join(chain), " ".join(chain)]


_SENTENCE_ENDS = ".!?\u3002"


# a template's placeholder closing a part: "password = [value]", "token: <your token>"
_TEMPLATE_TAIL = 140  # a placeholder the pattern takes and some white space after it
_TEMPLATE_END = re.compile(r"(?:\[[^\[\]\n]{1,64}\]|<[^<>\n]{1,64}>|\{\{?[^{}\n]{1,64}\}\}?)$")


def _ends_in_template(before: str) -> bool:
    """A part that ends in a placeholder closed by its bracket: the value is whole, and joined
    to the next part it would read as a value that is not a placeholder ("[value]ok")."""
    found = _TEMPLATE_END.search(before[-_TEMPLATE_TAIL:].rstrip())
    return found is not None and is_placeholder(found.group())


def _sentence_break(before: str, after: str) -> bool:
    """A part that ends a sentence followed by one that starts afresh (a new line, a capital)."""
    end = before.rstrip()[-1:]
    start = after[:1]
    return bool(end) and end in _SENTENCE_ENDS and (start.isspace() or start.isupper())


def percent_decoded(text: str, check: Callable[[], None]) -> str:
    """``text`` with percent-escapes decoded, in pieces with ``check()`` between them."""
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + _PERCENT_PIECE)
        while end < len(text) and "%" in text[end - 2 : end]:
            end -= 1  # never split an escape
        pieces.append(unquote(text[start:end]))
        start = end
        check()
    return "".join(pieces)


_PERCENT_PIECE = 64 * 1024


class _Walk:
    """A depth-first walk of a JSON value in document order (iterative: any depth)."""

    __slots__ = ("decoded", "encoded", "lines", "talk", "tick")

    def __init__(self, tick: Callable[[], None] | None) -> None:
        self.lines: list[str] = []
        self.talk: list[str] = []
        self.decoded: list[str] = []
        self.encoded: list[str] = []
        self.tick = tick

    def run(self, root: object) -> None:
        # (key, value, is conversation text, JSON-in-string depth)
        stack: list[tuple[str | None, object, bool, int]] = [(None, root, False, 0)]
        lines, tick = self.lines, self.tick
        while stack:
            if tick is not None:
                tick()
            key, value, talk, depth = stack.pop()
            if type(value) is str:
                self._string(key, value, talk, depth, stack)
            elif isinstance(value, Mapping):
                if key is not None:
                    lines.append(f"{key}:")
                for field, item in reversed(list(value.items())):
                    name = str(field)
                    stack.append((name, item, name in _CONVERSATION_KEYS, depth))
            elif isinstance(value, list | tuple):
                for item in reversed(value):
                    stack.append((key, item, talk, depth))
            elif isinstance(value, bool) or value is None:
                if key is not None:
                    lines.append(key)
            else:  # numbers (a phone number can be one) and anything else JSON cannot hold
                lines.append(f"{key}: {value}" if key is not None else str(value))

    def _string(
        self,
        key: str | None,
        value: str,
        talk: bool,
        depth: int,
        stack: list[tuple[str | None, object, bool, int]],
    ) -> None:
        prefix = "" if key is None else f"{key}: "
        if value.startswith("data:"):
            self.lines.append(prefix + self._data_url(value))
            return
        if len(value) >= _BLOB_MIN and _is_base64_blob(value):
            decoded = _decode_blob(value)
            if decoded is not None:  # text or binary: the blob itself is not what matters
                if decoded:
                    self.decoded.append(decoded)
                self.lines.append(prefix + "<payload>")
                return
        if talk:
            self.talk.append(value)
        if depth < _JSON_DEPTH and value[:1] in "{[" and value[-1:] in "}]":
            try:
                parsed = orjson.loads(value)
            except orjson.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict | list):
                stack.append((key, parsed, talk, depth + 1))
                return
        self.lines.append(prefix + value)
        if "%" in value and _PERCENT.search(value):
            self.encoded.append(value)

    def _data_url(self, value: str) -> str:
        """The header of a ``data:`` URL; its payload decoded into ``decoded`` when it is text."""
        header, comma, payload = value.partition(",")
        if not comma:
            return value
        media = header[5:]
        if not media.endswith(";base64"):
            self.encoded.append(payload)
            return header + ","
        if _TEXT_MEDIA.match(media):
            text: str | None = _lenient_base64(payload)
        else:
            text = decode_base64_text(payload.strip())
            if text is None and not _is_binary(payload):
                return value  # neither text nor a known binary format: scan it as it is
        if text:
            self.decoded.append(text)
        return header + ","


def _is_base64_blob(value: str) -> bool:
    if not value.isascii():
        return False
    data = value.encode("ascii")
    return not data.translate(None, _BASE64_CHARS)


def _is_binary(payload: str) -> bool:
    """Whether a base64 payload starts with the signature of a binary file format."""
    head = payload[:24].strip()
    head = head[: len(head) - len(head) % 4]
    try:
        raw = base64.b64decode(head, altchars=b"-_" if "-" in head or "_" in head else None)
    except (binascii.Error, ValueError):
        return False
    return raw.startswith(_BINARY_MAGIC) or raw[4:8] == b"ftyp"


def _lenient_base64(payload: str) -> str | None:
    """A base64 payload declared as text, decoded even with stray bytes; None if not base64."""
    compact = "".join(payload.split())
    try:
        raw = base64.b64decode(compact + "=" * (-len(compact) % 4), altchars=b"-_")
    except (binascii.Error, ValueError):
        return None
    return raw.decode("utf-8", "replace")


def _decode_blob(value: str) -> str | None:
    """A whole-string base64 payload: its text, "" for a known binary format, None otherwise
    (random-looking data is scanned as it is: it may be a key)."""
    compact = value.replace("\n", "").replace("\r", "")
    if len(compact) >= _BINARY_MIN and _is_binary(compact):
        return ""
    return decode_base64_text(compact)
