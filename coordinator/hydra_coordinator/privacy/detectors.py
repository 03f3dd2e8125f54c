"""Built-in detectors for secrets and personal data in chat requests.

Every detector answers one question, "does this text contain X?", and never
returns or stores the matched text: callers only learn the detector's name and
category. Detection is layered for speed:

1. a cheap *hint* (plain substring test) skips a detector entirely when the
   text cannot contain a match (``"AKIA"`` for AWS keys, ``"@"`` for e-mails);
   each hint is tested after one of its rarest characters (a ``memchr``);
2. a *gate* checks a necessary condition on the text's shape, computed once
   per text and shared (:class:`ScanText`): enough digits, a run of digits
   long enough for a card, a long token for high-entropy strings;
3. a regular expression (mostly the ones maintained by Yelp's detect-secrets)
   finds candidates;
4. a *validator* rejects look-alikes: documentation placeholders, template
   references, numbers whose check digits do not verify (python-stdnum), phone
   numbers that are not dialable (phonenumbers).

detect-secrets plugins are used through ``analyze_string`` only, which is pure:
it reads none of detect-secrets' global settings, so scans never leak state
into each other. Detector objects are immutable and safe to share between
threads; :func:`builtin_detectors` builds a fresh set on every call.

Hints and gates only ever skip work: a detector whose gate fails could not
have fired, so results are the same as running every regular expression.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, Protocol, runtime_checkable

import phonenumbers
from detect_secrets.filters.heuristic import is_potential_uuid, is_sequential_string
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.base import BasePlugin, RegexBasedDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.keyword import KeywordDetector
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector
from stdnum import iban as stdnum_iban
from stdnum import luhn
from stdnum.br import cpf
from stdnum.ca import sin
from stdnum.de import idnr
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.in_ import aadhaar
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.us import ssn

Category = Literal["secret", "pii"]
CATEGORIES: tuple[Category, ...] = ("secret", "pii")


@dataclass(frozen=True)
class Finding:
    """A detector that fired on a request: its name and category, never the match."""

    detector: str
    category: Category


class Detector(Protocol):
    """Anything that can tell whether a text contains one kind of sensitive data."""

    @property
    def name(self) -> str: ...

    @property
    def category(self) -> Category: ...

    def scan(self, text: str) -> bool:
        """Return True when ``text`` contains at least one confirmed match."""
        ...


@runtime_checkable
class SharedScanDetector(Detector, Protocol):
    """A detector that can reuse per-text facts computed once for all detectors."""

    def scan_shared(self, text: ScanText) -> bool:
        """Same answer as ``scan(text.text)``."""
        ...


# --------------------------------------------------------------------------- shared text facts

# ASCII digits become "0", letters "A" / "a"; other bytes (punctuation, "?" for
# non-ASCII characters) stay as they are.
_SHAPE_TABLE = bytes.maketrans(
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    b"0" * 10 + b"A" * 26 + b"a" * 26,
)
# Digits become "0", everything else "x", except the separators numbers are
# written with, which are deleted: "+1 (555) 010-9999" becomes "00000109999".
_NUMBER_TABLE = bytes(ord("0") if byte in b"0123456789" else ord("x") for byte in range(256))
_NUMBER_SEPARATORS = b" \t().+-"
_TOKEN_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_=-"
# Token characters (``[A-Za-z0-9+/_=-]``) become "t", everything else ".".
_TOKEN_TABLE = bytes(ord("t") if byte in _TOKEN_CHARS else ord(".") for byte in range(256))
_NON_ASCII_DIGIT = re.compile(r"[^\D0-9]")  # ``\d`` matches every Unicode decimal digit


class ScanText:
    """One text and cheap facts about it, each computed at most once.

    Detectors' gates share these facts, so a request pays for one pass per
    fact instead of one regular expression per detector. Not thread-safe:
    make one per text and scan.
    """

    __slots__ = (
        "_ascii",
        "_ascii_done",
        "_lower",
        "_numbers",
        "_shape",
        "_tokens",
        "_words",
        "text",
    )

    def __init__(self, text: str) -> None:
        self.text = text
        self._lower: str | None = None
        self._ascii: bytes | None = None
        self._ascii_done = False
        # Facts are kept as str: a substring test on str is cheaper than on bytes.
        self._shape: str | None = None
        self._numbers: str | None = None
        self._tokens: str | None = None
        self._words: dict[str, bool] = {}

    @property
    def lower(self) -> str:
        """The text in lower case."""
        if self._lower is None:
            self._lower = self.text.lower()
        return self._lower

    def has_word(self, words: tuple[str, ...]) -> bool:
        """Whether any lower-case word occurs in the lower-cased text (True for no words).

        Each word is looked up at most once per text: detectors share word lists.
        """
        if not words:
            return True
        found = self._words
        for word in words:
            hit = found.get(word)
            if hit is None:
                hit = found[word] = word in self.lower
            if hit:
                return True
        return False

    @property
    def _ascii_bytes(self) -> bytes | None:
        """The text as ASCII, non-ASCII characters as ``?``; None with non-ASCII digits.

        ``\\d`` matches every Unicode decimal digit, so digit gates need them all.
        """
        if not self._ascii_done:
            self._ascii_done = True
            text = self.text
            if text.isascii():
                self._ascii = text.encode("ascii")
            elif not _NON_ASCII_DIGIT.search(text):
                self._ascii = text.encode("ascii", "replace")
        return self._ascii

    def has_shape(self, fragment: str) -> bool:
        """Whether ``fragment`` occurs in the text's shape (True when it has no shape).

        The shape has one byte per character: ``0`` for a digit, ``A`` / ``a``
        for a letter, other ASCII characters as they are, ``?`` for the others.
        """
        if self._shape is None:
            ascii_bytes = self._ascii_bytes
            if ascii_bytes is None:
                return True
            self._shape = ascii_bytes.translate(_SHAPE_TABLE).decode("ascii")
        return fragment in self._shape

    def has_digits(self, count: int) -> bool:
        """Whether ``count`` digits occur with only number separators between them.

        The separators are `` \\t().+-`` (the ones of phone, card and id numbers);
        True when unknown (non-ASCII digits).
        """
        if self._numbers is None:
            ascii_bytes = self._ascii_bytes
            if ascii_bytes is None:
                return True
            self._numbers = ascii_bytes.translate(_NUMBER_TABLE, _NUMBER_SEPARATORS).decode("ascii")
        return "0" * count in self._numbers

    def has_token(self, length: int) -> bool:
        """Whether a run of ``length`` characters of ``[A-Za-z0-9+/_=-]`` occurs."""
        if self._tokens is None:
            tokens = self.text.encode("ascii", "replace").translate(_TOKEN_TABLE)
            self._tokens = tokens.decode("ascii")
        return "t" * length in self._tokens


# --------------------------------------------------------------------------- helpers

_PLACEHOLDER_RE = re.compile(
    r"""
    (?:^|[^a-z0-9])(?:your|my|fake|todo|test|dummy|foo|bar)(?:[^a-z]|$)
    |example|sample|placeholder|changeme|change_me|redacted|replace_?me|insert_?your
    |xxxx|\*\*\*|\.\.\.|<[^>]*>|^\[[^\]]*\]$|\$\{|\{\{|%\(|^\$[a-z_]
    |^(?:pass(?:word|wd)?|secret|token|api[_-]?key|key|none|null|nil|true|false|undefined
        |required|optional|string|str|env|value|here|1234(?:5678?)?|password123|admin)$
    """,
    re.IGNORECASE | re.VERBOSE,
)
_REFERENCE_RE = re.compile(r"(?:os\.environ|getenv|process\.env|env\(|ENV\[|secrets\.|vault:)")


def is_placeholder(value: str) -> bool:
    """True for values that only stand in for a secret in docs and templates.

    Examples: ``YOUR_API_KEY``, ``<password>``, ``${DB_PASSWORD}``, ``xxxxxxxx``,
    ``sk-...``, ``os.environ["TOKEN"]``, a value made of one repeated character.
    """
    stripped = value.strip("'\"`;,")
    if len(set(stripped.lower())) <= 2:
        return True
    return bool(_PLACEHOLDER_RE.search(stripped) or _REFERENCE_RE.search(stripped))


def shannon_entropy(value: str) -> float:
    """Shannon entropy of ``value`` in bits per character."""
    if not value:
        return 0.0
    counts: dict[str, int] = {}
    for char in value:
        counts[char] = counts.get(char, 0) + 1
    size = len(value)
    return -sum(n / size * math.log2(n / size) for n in counts.values())


def _preceding(text: str, start: int, width: int = 40) -> str:
    """The lower-cased ``width`` characters before ``start`` (context for validators)."""
    return text[max(0, start - width) : start].lower()


def _isolated(text: str, match: re.Match[str], extra: str, *, alnum: bool) -> bool:
    """True when the characters around ``match`` are neither alphanumeric nor in ``extra``.

    Validators check boundaries here instead of with look-behinds in the
    pattern: a pattern that starts with a character class lets ``re`` skip
    ahead quickly, which matters on every request.
    """
    for index in (match.start() - 1, match.end()):
        if 0 <= index < len(text):
            char = text[index]
            if char in extra or (alnum and char.isalnum()):
                return False
    return True


# Characters from most to least frequent in prose and code; any other is rarer.
_FREQUENT = "etaoinsrhldcumfpgwybvkxjqz ETAOINSRHLDCUMFPGWYBVKXJQZ"

Probe = tuple[str, str]
"""A hint and one of its rarest characters, tested first (a single-character test is a memchr)."""


def _probes(hints: tuple[str, ...]) -> tuple[Probe, ...]:
    def rarity(char: str) -> int:
        index = _FREQUENT.find(char)
        return len(_FREQUENT) if index < 0 else index

    return tuple((max(hint, key=rarity), hint) for hint in hints)


def _has_hint(text: str, probes: tuple[Probe, ...]) -> bool:
    """Whether any hint occurs in ``text`` (True when there are no hints)."""
    if not probes:
        return True
    for char, hint in probes:  # noqa: SIM110 (any() over a generator is slower here)
        if char in text and hint in text:
            return True
    return False


def _has_word(lowered: str, words: tuple[str, ...]) -> bool:
    """Whether any lower-case word occurs in ``lowered``.

    A substring test on the lower-cased text is much cheaper than an IGNORECASE regex.
    """
    return any(word in lowered for word in words)


Gate = Callable[[ScanText], bool]
"""A cheap necessary condition: False only when the detector cannot fire on the text."""


Validator = Callable[[str, re.Match[str]], bool]
"""Confirms one regex match: receives the whole text and the match."""


@dataclass(frozen=True)
class RegexDetector:
    """A detector made of a hint, a regular expression and an optional validator.

    ``hints`` (any substring must occur), ``words`` (any lower-case word must
    occur, ignoring case) and ``gate`` (a necessary condition on the shared
    :class:`ScanText` facts) skip the pattern on texts that cannot contain a match.
    """

    name: str
    category: Category
    pattern: re.Pattern[str]
    hints: tuple[str, ...] = ()
    validate: Validator | None = None
    words: tuple[str, ...] = ()
    gate: Gate | None = None
    _probes: tuple[Probe, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_probes", _probes(self.hints))

    def scan(self, text: str) -> bool:
        """True when any match of the pattern passes the validator."""
        return self.scan_shared(ScanText(text))

    def scan_shared(self, text: ScanText) -> bool:
        """Like :meth:`scan`, reusing the facts already computed for ``text``."""
        raw = text.text
        if not _has_hint(raw, self._probes):
            return False
        if self.gate is not None and not self.gate(text):
            return False
        if not text.has_word(self.words):
            return False
        validate = self.validate
        for match in self.pattern.finditer(raw):  # noqa: SIM110 (hot path, as above)
            if validate is None or validate(raw, match):
                return True
        return False


@dataclass(frozen=True)
class PluginDetector:
    """A detector backed by detect-secrets plugins, with extra regexes of our own.

    Candidates from the plugins and the extra patterns (first group if any, else
    the whole match) are confirmed by ``accept`` (default: not a placeholder).
    With ``line_words`` set, plugins only see the lines containing one of those
    words (ignoring case): detect-secrets' keyword regexes are slow on long texts.
    """

    name: str
    category: Category
    plugins: tuple[BasePlugin, ...]
    hints: tuple[str, ...] = ()
    extra: tuple[re.Pattern[str], ...] = ()
    accept: Callable[[str], bool] | None = None
    line_words: tuple[str, ...] = ()
    value_group: int = 0
    gate: Gate | None = None
    _probes: tuple[Probe, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_probes", _probes(self.hints))

    def scan(self, text: str) -> bool:
        """True when any candidate value is accepted."""
        return self.scan_shared(ScanText(text))

    def scan_shared(self, text: ScanText) -> bool:
        """Like :meth:`scan`, reusing the facts already computed for ``text``."""
        if not _has_hint(text.text, self._probes):
            return False
        if self.gate is not None and not self.gate(text):
            return False
        accept = self.accept or _not_placeholder
        return any(accept(value) for value in self._candidates(text))

    def _candidates(self, text: ScanText) -> Iterable[str]:
        for chunk in self._chunks(text):
            for plugin in self.plugins:
                yield from self._plugin_values(plugin, chunk)
        for pattern in self.extra:
            for match in pattern.finditer(text.text):
                yield match.group(1) if pattern.groups else match.group(0)

    def _plugin_values(self, plugin: BasePlugin, text: str) -> Iterable[str]:
        """Values found by one plugin.

        Regex plugins are run through their own ``denylist`` so the whole match
        is seen (their ``analyze_string`` yields capture groups, which for some
        plugins is only the token prefix, e.g. ``ghp``); with ``value_group``
        set, that group (when the pattern has it) is the value instead.
        """
        if not isinstance(plugin, RegexBasedDetector):
            yield from plugin.analyze_string(text)
            return
        for pattern in plugin.denylist:
            group = self.value_group if pattern.groups >= self.value_group else 0
            for match in pattern.finditer(text):
                yield match.group(group)

    def _chunks(self, text: ScanText) -> Iterable[str]:
        """The whole text, or only the lines that contain one of ``line_words``."""
        words = self.line_words
        if not words:
            yield text.text
        elif text.has_word(words):
            yield from (line for line in text.text.splitlines() if _has_word(line.lower(), words))


def _not_placeholder(value: str) -> bool:
    return not is_placeholder(value)


# --------------------------------------------------------------------------- secrets

_PRIVATE_KEY_RE = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----\s*"
    r"(?:[A-Za-z0-9-]+: [^\n]*\n\s*)*"  # optional PEM headers (Proc-Type, DEK-Info)
    r"[A-Za-z0-9+/=]{40,}"
    r"|PuTTY-User-Key-File-\d+:[^\n]*\n(?:[^\n]*\n){0,6}?"
    r"Private-Lines: \d+\s*\n\s*[A-Za-z0-9+/=]{40,}"
)
_ANTHROPIC_RE = re.compile(r"sk-ant-(?:api03|admin01|oat01|ort01)-[A-Za-z0-9_-]{40,}")
_OPENAI_EXTRA = (
    re.compile(r"(?<![\w-])sk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{40,}"),
    re.compile(r"(?<![\w-])sk-[A-Za-z0-9]{48}(?![\w-])"),
)
_GITHUB_FINE_GRAINED = re.compile(r"github_pat_[A-Za-z0-9_]{82}")
_GOOGLE_API_KEY = re.compile(r"AIza[0-9A-Za-z_-]{35}(?![\w-])")
_HUGGINGFACE = re.compile(r"(?<![\w-])hf_[A-Za-z]{34}(?![\w-])")

_SECRET_WORDS = ("pass", "pwd", "secret", "token", "key", "auth", "credential", "contrase")
_DOTENV_LINE = re.compile(
    r"""^[ \t]*(?:export[ \t]+)?
    [A-Za-z0-9_.-]*(?:PASSWORD|PASSWD|PASS|PWD|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY
        |CREDENTIALS?|AUTH)[A-Za-z0-9_.-]*
    [ \t]*[=:][ \t]*(?P<q>['"]?)(?P<value>[^\s'"#]{6,})(?P=q)[ \t]*(?:\#[^\n]*)?$""",
    re.IGNORECASE | re.MULTILINE | re.VERBOSE,
)
_URL_PASSWORD_NO_USER = re.compile(r"://:([^\s@/:]{4,})@")  # redis://:secret@host
_CONNSTRING_PASSWORD = re.compile(
    r"(?:^|[;\s\"'])(?:password|pwd)[ \t]*=[ \t]*(?P<value>[^;'\"\s]{4,})[ \t]*(?:;|$)",
    re.IGNORECASE | re.MULTILINE,
)


def _confirm_dotenv(text: str, match: re.Match[str]) -> bool:
    value = match.group("value")
    return not is_placeholder(value) and not value.replace(".", "").isdigit()


def _confirm_connstring(text: str, match: re.Match[str]) -> bool:
    return not is_placeholder(match.group("value"))


_HASH_CONTEXT = re.compile(
    r"sha\d*|md5|hash|digest|checksum|commit|\brev\b|revision|integrity|etag|nonce|uuid"
    r"|\bid\b|_id\b|fingerprint|narhash|vendorhash|cargohash|\bsri\b"
)
_TOKEN_RE = re.compile(r"(?<![A-Za-z0-9+/_=.-])[A-Za-z0-9+/_=-]{32,}(?![A-Za-z0-9+/_=.-])")
_QUOTED_RE = re.compile(r"""(['"`])([A-Za-z0-9+/_=-]{20,})\1""")
_HEX_LIMIT = 3.0
_BASE64_LIMIT = 4.5


def _looks_random(value: str, *, quoted: bool) -> bool:
    """True for high-entropy strings that are not hashes, UUIDs, paths or sequences.

    Quoted strings need letters and digits; bare tokens need upper case, lower
    case and digits. The base64 limit is lowered for short tokens, whose
    entropy is bounded by log2(length).
    """
    if is_sequential_string(value) or is_potential_uuid(value) or is_placeholder(value):
        return False
    if value.count("/") > 2 or value.count("-") > 4 or value.count("_") > 4:
        return False  # paths, slugs, identifiers
    if all(c in "0123456789abcdefABCDEF" for c in value):
        return shannon_entropy(value) > _HEX_LIMIT and not value.isdigit()
    classes = (
        any(c.isdigit() for c in value)
        + any(c.islower() for c in value)
        + any(c.isupper() for c in value)
    )
    needed = 2 if quoted else 3
    limit = min(_BASE64_LIMIT, math.log2(len(value)) - 0.7)
    return classes >= needed and any(c.isdigit() for c in value) and shannon_entropy(value) > limit


def _confirm_high_entropy(text: str, match: re.Match[str]) -> bool:
    value = match.group(match.lastindex or 0)
    if _HASH_CONTEXT.search(_preceding(text, match.start(), 30)):
        return False
    if all(c in "0123456789abcdefABCDEF" for c in value) and match.lastindex is None:
        return False  # bare (unquoted) hex in prose is usually a hash or an id
    return _looks_random(value, quoted=match.lastindex is not None)


@dataclass(frozen=True)
class HighEntropyDetector:
    """Random-looking tokens: quoted strings (detect-secrets' rule) and long bare tokens.

    Quoted base64 over 4.5 bits/char and quoted hex over 3.0 bits/char (the
    limits of detect-secrets' high-entropy plugins, with its sequence and UUID
    heuristics) count, as do unquoted base64-like tokens of 32+
    characters with mixed case and digits. Hashes (in a ``sha256 = ...``,
    ``commit``, ``integrity`` context), UUIDs, paths and sequences do not.
    """

    name: str = "high_entropy"
    category: Category = "secret"

    def scan(self, text: str) -> bool:
        """True when any quoted or bare token passes the randomness checks."""
        return self.scan_shared(ScanText(text))

    def scan_shared(self, text: ScanText) -> bool:
        """Like :meth:`scan`; skips texts without a 20-character token (both patterns need one)."""
        if not text.has_token(20):
            return False
        raw = text.text
        for pattern in (_QUOTED_RE, _TOKEN_RE):
            for match in pattern.finditer(raw):
                if _confirm_high_entropy(raw, match):
                    return True
        return False


# --------------------------------------------------------------------------- personal data

_EMAIL_RE = re.compile(
    r"(?<![\w.+:/-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?P<domain>(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24})\b"
)
_RESERVED_DOMAINS = re.compile(
    r"(?:^|\.)(?:example\.(?:com|net|org)|example|test|invalid|localhost|local|internal)$",
    re.IGNORECASE,
)
_NOT_TLDS = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "py", "js", "ts", "md", "rs"})
_NON_PERSONAL_LOCAL = frozenset({"git", "noreply", "no-reply", "donotreply", "mailer-daemon"})


def _confirm_email(text: str, match: re.Match[str]) -> bool:
    domain = match.group("domain").lower()
    local = match.group(0).split("@", 1)[0].lower()
    if _RESERVED_DOMAINS.search(domain) or domain.rsplit(".", 1)[-1] in _NOT_TLDS:
        return False
    return local not in _NON_PERSONAL_LOCAL and not is_placeholder(local)


_PHONE_RE = re.compile(r"[+(\d][\d \t().+-]{5,19}\d")
_PHONE_CONTEXT = re.compile(
    r"phone|tel\b|tel\.|telephone|mobile|cell|call me|call us|text me|whatsapp|fax|contact|"
    r"telefon|handy|portable|móvil|celular"
)
_PHONE_REGIONS = ("US", "GB", "DE", "FR", "IN")


def _confirm_phone(text: str, match: re.Match[str]) -> bool:
    if not _isolated(text, match, "+/.-_", alnum=True):
        return False
    raw = match.group(0).strip()
    digits = re.sub(r"\D", "", raw)
    if not 7 <= len(digits) <= 15:
        return False
    if raw.startswith(("+", "00")):
        return _valid_phone("+" + digits.removeprefix("00") if raw.startswith("00") else raw, None)
    if len(digits) < 10:
        return False  # national numbers without a country code have 10+ digits here
    formatted = bool(re.search(r"[\s().-]", raw))
    if not formatted and not _PHONE_CONTEXT.search(_preceding(text, match.start())):
        return False  # a bare run of digits is an id, an amount or a timestamp
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}", raw):
        return False  # dates
    return any(_valid_phone(raw, region) for region in _PHONE_REGIONS)


def _valid_phone(raw: str, region: str | None) -> bool:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(number)


# 13 to 19 digits in the groupings cards are printed with (4-4-4-4, 4-6-5, ...).
_CARD_RE = re.compile(r"\d{4}[ -]?\d{4,6}[ -]?\d{4,5}(?:[ -]?\d{1,4})?")
_CARD_PREFIX = re.compile(
    r"4|5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)|3[47]|3(?:0[0-5]|[68])|6(?:011|5|4[4-9]|2)"
    r"|35(?:2[89]|[3-8]\d)|50|5[6-8]|1"
)


def _confirm_card(text: str, match: re.Match[str]) -> bool:
    raw = match.group(0)
    if not _isolated(text, match, "-.", alnum=True):
        return False
    digits = raw.replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19 or len(set(digits)) < 2:
        return False
    separators = {c for c in raw if c in " -"}
    if len(separators) > 1:
        return False  # mixed separators: a list of numbers, not one card
    return bool(_CARD_PREFIX.match(digits)) and luhn.is_valid(digits)


_IBAN_RE = re.compile(r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?")


def _confirm_iban(text: str, match: re.Match[str]) -> bool:
    return _isolated(text, match, "", alnum=True) and bool(stdnum_iban.is_valid(match.group(0)))


@dataclass(frozen=True)
class _NationalId:
    """One national id format: its exact shape, its check, words it needs nearby."""

    shape: re.Pattern[str]
    is_valid: Callable[[str], bool]
    context: re.Pattern[str] | None = None  # required before weak (bare-digit) formats


def _shape(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_NATIONAL_IDS: tuple[_NationalId, ...] = (
    # US social security number: formatted, or bare with "ssn" nearby.
    _NationalId(_shape(r"\d{3}-\d{2}-\d{4}"), ssn.is_valid),
    _NationalId(_shape(r"\d{9}"), ssn.is_valid, re.compile(r"ssn|social security")),
    # UK National Insurance number (no check digit; needs words nearby).
    _NationalId(
        _shape(
            r"(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d\d ?\d\d ?\d\d ?[A-D]"
        ),
        lambda _: True,
        re.compile(r"national insurance|\bnino\b|\bni\b|n\.i\."),
    ),
    # Italy codice fiscale, Spain DNI/NIE, France NIR: strong check characters.
    _NationalId(_shape(r"[A-Z]{6}\d{2}[A-EHLMPRST]\d{2}[A-Z]\d{3}[A-Z]"), codicefiscale.is_valid),
    _NationalId(_shape(r"\d{8}-?[A-Z]"), dni.is_valid),
    _NationalId(_shape(r"[XYZ]-?\d{7}-?[A-Z]"), nie.is_valid),
    _NationalId(_shape(r"[12] ?\d{2} ?\d{2} ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}"), nir.is_valid),
    # Brazil CPF, India Aadhaar: formatted with their usual separators.
    _NationalId(_shape(r"\d{3}\.\d{3}\.\d{3}-\d{2}"), cpf.is_valid),
    _NationalId(_shape(r"[2-9]\d{3} \d{4} \d{4}"), aadhaar.is_valid),
    # Canada SIN, Germany tax id, Netherlands BSN: weak formats, need words nearby.
    _NationalId(
        _shape(r"\d{3}[- ]?\d{3}[- ]?\d{3}"), sin.is_valid, re.compile(r"\bsin\b|social insurance")
    ),
    _NationalId(
        _shape(r"\d{11}"), idnr.is_valid, re.compile(r"steuer|idnr|identifikationsnummer|tax id")
    ),
    _NationalId(_shape(r"\d{9}"), bsn.is_valid, re.compile(r"\bbsn\b|burgerservicenummer")),
)

# Two passes find every candidate; each is then checked against the shapes above.
# Each regex starts with one character class so ``re`` skips ahead quickly; at one
# position the first alternative that matches wins, so longer shapes come first.
# Each pass comes with the gate that every match passes (see ScanText.has_digits
# and has_shape): its fewest digits between separators, else a shape fragment.
# The first pass needs 8 ("2A" of a Corsican NIR is followed by 8 digits), the
# second 6 (UK NINO) unless a codice fiscale ([A-Z]{6}\d{2}...) matches.
_ID_CANDIDATES: tuple[tuple[re.Pattern[str], int, str], ...] = (
    (
        re.compile(
            r"\d(?:\d{2}-\d{2}-\d{4}|\d{2}\.\d{3}\.\d{3}-\d{2}|\d{2}[- ]\d{3}[- ]\d{3}"
            r"|\d{3} \d{4} \d{4}| \d{2} \d{2} (?:\d{2}|2[AB]) \d{3} \d{3} \d{2}|\d{7}-?[A-Z]"
            r"|\d{8,14})"
        ),
        8,
        "",
    ),
    (
        re.compile(
            r"[A-Z](?:-?\d{7}-?[A-Z]|[A-Z]{5}\d{2}[A-EHLMPRST]\d{2}[A-Z]\d{3}[A-Z]"
            r"|[A-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D])"
        ),
        6,
        "AAAAAA00",
    ),
)


@dataclass(frozen=True)
class NationalIdDetector:
    """National identity numbers whose check digits verify (python-stdnum).

    Formats with strong check characters match anywhere; weak formats (bare
    digit runs) need a telling word such as "SSN" or "Steuer-ID" just before.
    """

    name: str = "national_id"
    category: Category = "pii"
    kinds: tuple[_NationalId, ...] = _NATIONAL_IDS

    def scan(self, text: str) -> bool:
        """True when any candidate has a known shape and validates."""
        return self.scan_shared(ScanText(text))

    def scan_shared(self, text: ScanText) -> bool:
        """Like :meth:`scan`; each candidate regex only runs when its gate passes."""
        raw = text.text
        for candidates, digits, fragment in _ID_CANDIDATES:
            if not text.has_digits(digits) and not (fragment and text.has_shape(fragment)):
                continue
            for match in candidates.finditer(raw):
                if _isolated(raw, match, "-.", alnum=True) and self._valid(raw, match):
                    return True
        return False

    def _valid(self, text: str, match: re.Match[str]) -> bool:
        value = match.group(0)
        for kind in self.kinds:
            if not kind.shape.fullmatch(value):
                continue
            if kind.context and not kind.context.search(_preceding(text, match.start())):
                continue
            if kind.is_valid(value):
                return True
        return False


# --------------------------------------------------------------------------- registry


def _secret(
    name: str,
    plugins: tuple[BasePlugin, ...],
    hints: tuple[str, ...] = (),
    *,
    extra: tuple[re.Pattern[str], ...] = (),
    accept: Callable[[str], bool] | None = None,
    line_words: tuple[str, ...] = (),
    value_group: int = 0,
    gate: Gate | None = None,
) -> PluginDetector:
    return PluginDetector(
        name, "secret", plugins, hints, extra, accept, line_words, value_group, gate
    )


def _not_example(value: str) -> bool:
    """AWS documents its sample keys with an ``EXAMPLE`` suffix."""
    return "EXAMPLE" not in value.upper() and not is_placeholder(value)


_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}")


def _confirm_jwt(text: str, match: re.Match[str]) -> bool:
    """Header and payload must decode to JSON (detect-secrets' formal check)."""
    return bool(JwtTokenDetector.is_formally_valid(match.group(0)))


_AWS_HINTS = ("AKIA", "ASIA", "ABIA", "ACCA", "A3T", "aws", "AWS")


# Gates: each states a necessary condition of the detector's patterns (see the
# patterns for the numbers); False means the detector cannot fire on the text.


def _phone_gate(text: ScanText) -> bool:
    return text.has_digits(7)  # confirmed numbers have 7 to 15 digits


def _card_gate(text: ScanText) -> bool:
    return text.has_digits(13)  # 13 to 19 digits, separated by " " or "-"


def _iban_gate(text: ScanText) -> bool:
    return text.has_shape("AA00")  # [A-Z]{2}\d{2}


def _telegram_gate(text: ScanText) -> bool:
    return text.has_shape("00000000:")  # \d{8,10}:


_DISCORD_GATE = re.compile(r"\.[a-zA-Z\d_-]{6}\.")  # starts with a literal: a fast scan


def _discord_gate(text: ScanText) -> bool:
    return _DISCORD_GATE.search(text.text) is not None


def _token_gate(length: int) -> Gate:
    """Every match contains a run of ``length`` characters of ``[A-Za-z0-9+/_=-]``."""

    def gate(text: ScanText) -> bool:
        return text.has_token(length)

    return gate


_GITHUB_HINTS = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")


def _secret_detectors() -> list[Detector]:
    """Provider keys and tokens first (specific, cheap), generic heuristics last."""
    return [
        RegexDetector("private_key", "secret", _PRIVATE_KEY_RE, ("PRIVATE KEY", "PuTTY-User")),
        _secret(
            "aws_access_key",
            (AWSKeyDetector(),),
            _AWS_HINTS,
            accept=_not_example,
            value_group=1,
        ),
        _secret(
            "github_token", (GitHubTokenDetector(),), _GITHUB_HINTS, extra=(_GITHUB_FINE_GRAINED,)
        ),
        _secret(
            "gitlab_token",
            (GitLabTokenDetector(),),
            ("gl", "GR1348941"),
            gate=_token_gate(25),  # prefix and 20+ characters, e.g. glpat-[A-Za-z0-9_-]{20,50}
        ),
        _secret("openai_key", (OpenAIDetector(),), ("sk-",), extra=_OPENAI_EXTRA),
        RegexDetector("anthropic_key", "secret", _ANTHROPIC_RE, ("sk-ant-",)),
        RegexDetector("google_api_key", "secret", _GOOGLE_API_KEY, ("AIza",)),
        RegexDetector("huggingface_token", "secret", _HUGGINGFACE, ("hf_",)),
        _secret("slack_token", (SlackDetector(),), ("xox", "XOX", "hooks.slack.com")),
        _secret("stripe_key", (StripeDetector(),), ("k_live_",)),
        _secret("sendgrid_key", (SendGridDetector(),), ("SG.",)),
        _secret(
            "twilio_key", (TwilioKeyDetector(),), ("AC", "SK"), gate=_token_gate(34)
        ),  # (AC|SK)[a-z0-9]{32}
        _secret("npm_token", (NpmDetector(),), ("_authToken",)),
        _secret("pypi_token", (PypiTokenDetector(),), ("pypi-",)),
        _secret("discord_token", (DiscordBotTokenDetector(),), (".",), gate=_discord_gate),
        _secret("telegram_token", (TelegramBotTokenDetector(),), (":",), gate=_telegram_gate),
        _secret("mailchimp_key", (MailchimpDetector(),), ("-us",)),
        _secret("square_token", (SquareOAuthDetector(),), ("sq0csp-",)),
        _secret("azure_storage_key", (AzureStorageKeyDetector(),), ("AccountKey=",)),
        RegexDetector("jwt", "secret", _JWT_RE, ("eyJ",), _confirm_jwt),
        _ConnectionStringDetector(),
        RegexDetector(
            "dotenv_password", "secret", _DOTENV_LINE, ("=", ":"), _confirm_dotenv, _SECRET_WORDS
        ),
        _secret(
            "password_assignment",
            (KeywordDetector(),),
            ("=", ":", "("),
            line_words=_SECRET_WORDS,
        ),
        HighEntropyDetector(),
    ]


def _pii_detectors() -> list[Detector]:
    return [
        RegexDetector("email", "pii", _EMAIL_RE, ("@",), _confirm_email),
        RegexDetector("phone", "pii", _PHONE_RE, (), _confirm_phone, gate=_phone_gate),
        RegexDetector("payment_card", "pii", _CARD_RE, (), _confirm_card, gate=_card_gate),
        RegexDetector("iban", "pii", _IBAN_RE, (), _confirm_iban, gate=_iban_gate),
        NationalIdDetector(),
    ]


@dataclass(frozen=True)
class _ConnectionStringDetector:
    """Passwords in URLs (``scheme://user:pass@host``) and ``Password=...;`` strings."""

    name: str = "connection_string_password"
    category: Category = "secret"
    url: PluginDetector = field(
        default_factory=lambda: PluginDetector(
            "connection_string_password",
            "secret",
            (BasicAuthDetector(),),
            ("://",),
            (_URL_PASSWORD_NO_USER,),
            value_group=1,
        )
    )
    keyvalue: RegexDetector = field(
        default_factory=lambda: RegexDetector(
            "connection_string_password",
            "secret",
            _CONNSTRING_PASSWORD,
            ("=",),
            _confirm_connstring,
            ("pass", "pwd"),
        )
    )

    def scan(self, text: str) -> bool:
        """True for a URL with a real password or a ``Password=`` key-value pair."""
        return self.scan_shared(ScanText(text))

    def scan_shared(self, text: ScanText) -> bool:
        """Like :meth:`scan`, reusing the facts already computed for ``text``."""
        return self.url.scan_shared(text) or self.keyvalue.scan_shared(text)


def builtin_detectors() -> dict[str, Detector]:
    """A fresh set of every built-in detector, keyed by name, in a stable order."""
    return {d.name: d for d in [*_secret_detectors(), *_pii_detectors()]}


DETECTOR_CATEGORIES: MappingProxyType[str, Category] = MappingProxyType(
    {name: detector.category for name, detector in builtin_detectors().items()}
)
"""Every built-in detector name and its category (read-only)."""


def detector_names(selectors: Iterable[str]) -> list[str]:
    """Expand detector names and category names ("secret", "pii") into detector names.

    Raises ``ValueError`` naming the first unknown selector.
    """
    names: list[str] = []
    for selector in selectors:
        if selector in CATEGORIES:
            expanded = [n for n, c in DETECTOR_CATEGORIES.items() if c == selector]
        elif selector in DETECTOR_CATEGORIES:
            expanded = [selector]
        else:
            raise ValueError(f"unknown detector {selector!r}")
        names.extend(n for n in expanded if n not in names)
    return names
