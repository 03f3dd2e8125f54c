"""Personal data detectors: e-mail addresses, phone numbers, payment cards, IBANs, national ids.

Numbers are confirmed by their check digits (python-stdnum) or dialling plans (phonenumbers);
phone numbers also need a telling shape or context, since order numbers and timestamps have
the same digits.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import luhn
from stdnum.br import cpf
from stdnum.ca import sin
from stdnum.de import idnr
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.gb import nhs
from stdnum.in_ import aadhaar
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.us import ssn

from .detector import Detector, PatternDetector, Probe, ScanText, isolated
from .engine import Match
from .heuristics import is_placeholder

__all__ = ["TEST_CARDS", "pii_detectors"]

# --------------------------------------------------------------------------- e-mail

_RESERVED_DOMAINS = re.compile(
    r"(?:^|\.)(?:example\.(?:com|net|org)|example|test|invalid|localhost|local|internal)$",
    re.IGNORECASE,
)
_NOT_TLDS = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "py", "js", "ts", "md", "rs"})
_NON_PERSONAL_LOCAL = frozenset(
    {
        "git",
        "noreply",
        "no-reply",
        "donotreply",
        "mailer-daemon",
        "firstname.lastname",
        "first.last",
        "firstname",
        "lastname",
        "name.surname",
        "username",
        "user.name",
        "someone",
        "somebody",
        "email",
        "name",
    }
)


def _email(text: ScanText, match: Match) -> bool:
    domain = (match.group(2) or "").lower()
    local = (match.group(1) or "").lower()
    if _RESERVED_DOMAINS.search(domain) or domain.rsplit(".", 1)[-1] in _NOT_TLDS:
        return False
    return local not in _NON_PERSONAL_LOCAL and not is_placeholder(local)


# --------------------------------------------------------------------------- phone numbers

_DATE_OR_TIME = re.compile(
    r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}(?:\D|$)|\d{1,2}:\d{2}"
)
_DIGITS = re.compile(r"\D")


def _phone_candidate(text: ScanText, match: Match, group: int) -> str | None:
    """The candidate number, when it stands alone and is neither a date nor a time."""
    start, end = match.start(group), match.end(group)
    if not isolated(text.text, start, end, "+/.-_"):
        return None
    raw = (match.group(group) or "").strip()
    digits = _DIGITS.sub("", raw)
    if not 7 <= len(digits) <= 15 or _DATE_OR_TIME.search(raw):
        return None
    return raw


def _international(text: ScanText, match: Match) -> bool:
    """+<country code> ...: a dialable number."""
    raw = _phone_candidate(text, match, 1)
    return raw is not None and _valid_phone(raw, None)


def _north_american(text: ScanText, match: Match) -> bool:
    """(212) 555-0123, 212-555-0123, 212.555.0123: the shape says "phone"."""
    raw = _phone_candidate(text, match, 1)
    return raw is not None and (_valid_phone(raw, "US") or _valid_phone(raw, "CA"))


def _phone_in_context(text: ScanText, match: Match) -> bool:
    """Any other number needs a word such as "phone", "call me" or "WhatsApp" just before it."""
    raw = _phone_candidate(text, match, 1)
    if raw is None:
        return False
    digits = _DIGITS.sub("", raw)
    if raw.startswith("+") or digits.startswith("00"):
        international = "+" + digits[2:] if digits.startswith("00") else raw
        return _valid_phone(international, None)
    return any(_valid_phone(raw, region) for region in _regions(digits))


def _regions(digits: str) -> tuple[str, ...]:
    """The regions whose national format the digits can be in: a trunk 0 in Europe and India,
    ten digits (or 1 and ten) in North America and for Indian mobiles."""
    if digits.startswith("0"):
        return ("GB", "DE", "FR", "IN")
    if len(digits) == 10:
        return ("US", "IN")
    if len(digits) == 11 and digits.startswith("1"):
        return ("US",)
    return ()


def _valid_phone(raw: str, region: str | None) -> bool:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(number)


_PHONE_WORDS = (
    r"phone|tel|telephone|mobile|cell|cellphone|call me|call us|call him|call her|text me"
    r"|whatsapp|signal|fax|contact|reach me|sms|ph|mob|telefon|telefonnummer|handy"
    r"|handynummer|rufnummer|portable|t[ée]l[ée]phone|m[oó]vil|celular|tel[ée]fono|numéro"
)

# --------------------------------------------------------------------------- payment cards

TEST_CARDS = frozenset(
    {
        "4242424242424242",
        "4000056655665556",
        "4111111111111111",
        "4012888888881881",
        "4222222222222",
        "4000000000000002",
        "4000000000000077",
        "4000000000000119",
        "4000000000000127",
        "4000000000000069",
        "4000000000000341",
        "4000000000003220",
        "4000002500003155",
        "4000000000009995",
        "4000000000000101",
        "4000000760000002",
        "4000001240000000",
        "4000004840008001",
        "4000000000003063",
        "4000008400001629",
        "5555555555554444",
        "2223003122003222",
        "5200828282828210",
        "5105105105105100",
        "5454545454545454",
        "5500000000000004",
        "5431111111111111",
        "378282246310005",
        "371449635398431",
        "378734493671000",
        "340000000000009",
        "370000000000002",
        "6011111111111117",
        "6011000990139424",
        "6011981111111113",
        "6011000400000000",
        "6011601160116611",
        "3056930009020004",
        "36227206271667",
        "30569309025904",
        "38520000023237",
        "3566002020360505",
        "3530111333300000",
        "3566111111111113",
        "6200000000000005",
        "6200000000000047",
        "6205500000000000004",
    }
)
"""Card numbers the payment providers publish for testing (Stripe, Braintree, Adyen, PayPal
and the card networks' documentation): they charge nobody, and they are written in docs,
tests and questions all the time, so they are not personal data."""

_CARD_PREFIX = re.compile(
    r"4|5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)|3[47]|3(?:0[0-5]|[68])|6(?:011|5|4[4-9]|2)"
    r"|35(?:2[89]|[3-8]\d)|50|5[6-8]|1"
)


def _card(text: ScanText, match: Match) -> bool:
    raw = match.group(1) or ""
    if not isolated(text.text, match.start(1), match.end(1), "-."):
        return False
    digits = raw.replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19 or len(set(digits)) < 2 or digits in TEST_CARDS:
        return False
    separators = {c for c in raw if c in " -"}
    if len(separators) > 1:
        return False  # mixed separators: a list of numbers, not one card
    return bool(_CARD_PREFIX.match(digits)) and luhn.is_valid(digits)


def _iban(text: ScanText, match: Match) -> bool:
    return isolated(text.text, match.start(1), match.end(1)) and bool(
        stdnum_iban.is_valid(match.group(1) or "")
    )


# --------------------------------------------------------------------------- national ids


@dataclass(frozen=True)
class _NationalId:
    """One national id format: its exact shape and its check."""

    shape: re.Pattern[str]
    is_valid: Callable[[str], bool]


# Formats with strong check characters or a telling layout count anywhere.
_STRONG_IDS: tuple[_NationalId, ...] = (
    _NationalId(re.compile(r"\d{3}-\d{2}-\d{4}"), ssn.is_valid),  # US SSN, formatted
    _NationalId(  # Italy codice fiscale
        re.compile(r"[A-Z]{6}\d{2}[A-EHLMPRST]\d{2}[A-Z]\d{3}[A-Z]"), codicefiscale.is_valid
    ),
    _NationalId(re.compile(r"\d{8}-?[A-Z]"), dni.is_valid),  # Spain DNI
    _NationalId(re.compile(r"[XYZ]-?\d{7}-?[A-Z]"), nie.is_valid),  # Spain NIE
    _NationalId(  # France NIR
        re.compile(r"[12] ?\d{2} ?\d{2} ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}"), nir.is_valid
    ),
    _NationalId(re.compile(r"\d{3}\.\d{3}\.\d{3}-\d{2}"), cpf.is_valid),  # Brazil CPF
    _NationalId(re.compile(r"[2-9]\d{3} \d{4} \d{4}"), aadhaar.is_valid),  # India Aadhaar
)
_STRONG_ID_CANDIDATE = (
    r"(\d{3}-\d{2}-\d{4}|[A-Z]{6}\d{2}[A-EHLMPRST]\d{2}[A-Z]\d{3}[A-Z]|\d{8}-?[A-Z]"
    r"|[XYZ]-?\d{7}-?[A-Z]|[12] ?\d{2} ?\d{2} ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}"
    r"|\d{3}\.\d{3}\.\d{3}-\d{2}|[2-9]\d{3} \d{4} \d{4})"
)

# Bare digit runs are ids only after a word that says so ("SSN", "Steuer-ID", "BSN", "NHS
# number", "national insurance"): without it, they are order numbers or amounts.
_WEAK_IDS: tuple[_NationalId, ...] = (
    _NationalId(re.compile(r"\d{9}"), ssn.is_valid),  # US SSN, bare
    _NationalId(  # UK National Insurance number (no check digit)
        re.compile(
            r"(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d\d ?\d\d ?\d\d ?[A-D]"
        ),
        lambda _: True,
    ),
    _NationalId(re.compile(r"\d{3}[- ]?\d{3}[- ]?\d{3}"), sin.is_valid),  # Canada SIN
    _NationalId(re.compile(r"\d{11}"), idnr.is_valid),  # Germany tax id
    _NationalId(re.compile(r"\d{9}"), bsn.is_valid),  # Netherlands BSN
    _NationalId(re.compile(r"\d{3}[ -]?\d{3}[ -]?\d{4}"), nhs.is_valid),  # UK NHS number
)
_ID_WORDS = (
    r"ssn|social security(?: number)?|sin|social insurance(?: number)?|steuer-?id"
    r"|steuer-?identifikationsnummer|idnr|identifikationsnummer|tax id|bsn"
    r"|burgerservicenummer|nhs(?: number)?|national insurance(?: number)?|nino|ni number"
).replace(" ", "[ _-]")  # also a column's or a field's name: nhs_number, social-security
_WEAK_ID_CANDIDATE = r"([A-Za-z]{2} ?\d\d ?\d\d ?\d\d ?[A-Da-d]|\d[\d -]{7,12}\d)"


def _valid_id(kinds: tuple[_NationalId, ...], value: str) -> bool:
    return any(kind.shape.fullmatch(value) and kind.is_valid(value) for kind in kinds)


def _strong_national_id(text: ScanText, match: Match) -> bool:
    """An id of a telling format whose check characters verify."""
    if not isolated(text.text, match.start(1), match.end(1), "-."):
        return False
    return _valid_id(_STRONG_IDS, match.group(1) or "")


def _weak_national_id(text: ScanText, match: Match) -> bool:
    """A bare number right after a word naming the id, whose check digits verify."""
    if not isolated(text.text, match.start(1), match.end(1), "-."):
        return False
    return _valid_id(_WEAK_IDS, (match.group(1) or "").upper())


# Where a number may begin (RE2 has no look-behind: the pattern consumes the character before
# and the number is group 1): not inside a longer number, word or dotted/dashed code.
_AFTER_NUMBER = r"(?:^|[^A-Za-z0-9+/._-])"
_AFTER_ID = r"(?:^|[^A-Za-z0-9.-])"


def pii_detectors() -> list[Detector]:
    return [
        PatternDetector(
            "email",
            "pii",
            (
                Probe(
                    r"(?:^|[^A-Za-z0-9_.+:/%-])([A-Za-z0-9][A-Za-z0-9._%+-]{0,63})"
                    r"@((?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24})\b",
                    _email,
                    prefilter=r"@[A-Za-z0-9-]+\.",
                ),
            ),
        ),
        PatternDetector(
            "phone",
            "pii",
            (
                Probe(
                    _AFTER_NUMBER + r"(\+\d[\d \t().-]{5,20}\d)", _international, prefilter=r"\+\d"
                ),
                Probe(
                    _AFTER_NUMBER + r"(\(\d{3}\)[ \t]?\d{3}[ \t.-]\d{4}|\d{3}[.-]\d{3}[.-]\d{4})",
                    _north_american,
                    prefilter=r"\d[.-]\d{3}[.-]\d{4}|\(\d{3}\)",
                ),
                Probe(
                    rf"(?i)\b(?:{_PHONE_WORDS})\b[^\n\d+(]{{0,30}}([+(]?\d[\d \t().-]{{5,20}}\d)",
                    _phone_in_context,
                    prefilter=rf"(?i)\b(?:{_PHONE_WORDS})\b",
                ),
            ),
        ),
        PatternDetector(
            "payment_card",
            "pii",
            # 13 to 19 digits in the groupings cards are printed with (4-4-4-4, 4-6-5, ...).
            (
                Probe(
                    _AFTER_ID + r"(\d{4}[ -]?\d{4,6}[ -]?\d{4,5}(?:[ -]?\d{1,4})?)",
                    _card,
                    prefilter=r"\d{4}[ -]?\d{4}",
                ),
            ),
        ),
        PatternDetector(
            "iban",
            "pii",
            (
                Probe(
                    r"(?:^|[^A-Za-z0-9])([A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?)",
                    _iban,
                    prefilter=r"[A-Z]\d{2} ?[A-Z0-9]{4} ?[A-Z0-9]{4}",
                ),
            ),
        ),
        PatternDetector(
            "national_id",
            "pii",
            (
                Probe(
                    _AFTER_ID + _STRONG_ID_CANDIDATE,
                    _strong_national_id,
                    prefilter=r"\d{2}",  # every strong format has two digits in a row
                ),
                Probe(
                    # the next line too: a table's header names the column its numbers are in
                    rf"(?i)\b(?:{_ID_WORDS})\b[^\d]{{0,30}}?{_WEAK_ID_CANDIDATE}",
                    _weak_national_id,
                    prefilter=rf"(?i)\b(?:{_ID_WORDS})\b",
                ),
            ),
        ),
    ]
