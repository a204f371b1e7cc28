"""Personal data and secrets: find them with validated patterns, redact them or reject the document.

Kinds and what counts as one (a candidate must match the pattern *and* pass its validation):

==============  =================================================================================
``email``       ``local@domain.tld``: RFC 5322's common subset, a dotted domain with a 2+ letter TLD
``phone``       phone-shaped digits (``+CC`` international, or grouped ``(415) 555-0132``,
                ``415-555-0132``, ``415.555.0132``) that Google's libphonenumber (the
                ``phonenumbers`` package) accepts as a valid number; a bare run of 10 digits is an id
                or a timestamp far more often than a phone number and is left alone
``ip_address``  IPv4 and IPv6 addresses that parse (``ipaddress``); private, loopback, link-local,
                documentation and other non-global ranges are kept unless ``private_ip_addresses``
                (technical writing is full of ``10.0.0.1`` and ``127.0.0.1``, which identify no one)
``credit_card`` 13–19 digits, optionally grouped by spaces or dashes, with a card network's prefix
                and length (Visa, Mastercard, American Express, Discover, JCB, Diners) and a valid
                Luhn checksum
``secret``      the published formats of AWS access key ids (``AKIA``/``ASIA``... + 16), AWS secret
                keys next to their name, GitHub tokens (``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_`` +
                36, ``github_pat_``), Slack tokens (``xox[abposr]-``) and webhooks, Google API keys
                (``AIza`` + 35), Stripe live keys, and PEM private-key blocks
==============  =================================================================================

Written here instead of calling presidio-analyzer or scrubadub: ``benchmarks/data_pii.py`` runs the
three on the same planted corpus, and these patterns find as much while costing a small fraction of
their time per document (figures in docs/data.md). Both libraries need a spaCy model, downloaded at
run time, for their full pipelines; their pattern recognizers alone run offline and are what is
compared. Phone numbers are still validated by libphonenumber, the library both of them use.

Patterns run only where a match could be: one vectorised pass over a batch of documents marks the
rare spots every pattern needs (an ``@``, a dense run of digits, a long run of key characters), and
most documents have none (see :meth:`Scanner.find_batch`).
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

KINDS = ("email", "phone", "ip_address", "credit_card", "secret")
PLACEHOLDERS = {
    "email": "<EMAIL>",
    "phone": "<PHONE>",
    "ip_address": "<IP_ADDRESS>",
    "credit_card": "<CREDIT_CARD>",
    "secret": "<SECRET>",
}
# When two matches overlap, the kind earlier here wins (a key may contain digits that look like a
# phone number; a card number's digits could be read as a phone number).
PRIORITY = ("secret", "credit_card", "email", "ip_address", "phone")

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,24}(?![\w-])"
)
_SECRET = re.compile(
    "|".join(
        [
            # AWS access key ids: a 4-character type prefix and 16 base-32 characters.
            r"(?<![A-Za-z0-9])(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|A3T[A-Z0-9])[A-Z0-9]{16}(?![A-Za-z0-9])",
            # AWS secret access keys are 40 base-64 characters: only next to their name (a bare
            # 40-character string is as likely a git commit id).
            r"(?i:aws_?secret_?(?:access_?)?key(?:_id)?)[\"']?\s*[:=]\s*[\"']?(?P<aws>(?-i:[A-Za-z0-9/+]{40}))(?![A-Za-z0-9/+])",
            r"(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36}(?![A-Za-z0-9_])",
            r"(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{82}(?![A-Za-z0-9_])",
            r"(?<![A-Za-z0-9-])xox[abposr]-(?:[0-9A-Za-z]{1,40}-){1,4}[0-9A-Za-z]{6,64}(?![A-Za-z0-9-])",
            r"https://hooks\.slack\.com/services/T[A-Z0-9]{6,12}/B[A-Z0-9]{6,12}/[A-Za-z0-9]{16,32}",
            r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])",
            r"(?<![A-Za-z0-9_])[rs]k_live_[0-9A-Za-z]{24,99}(?![A-Za-z0-9_])",
        ]
    )
)
_PEM = re.compile(
    r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----[\s\S]{16,8192}?-----END (?:[A-Z]+ )?PRIVATE KEY-----"
)
# Card numbers: 13-19 digits, in groups separated by one space or dash (or none), not inside a longer
# token (a hex digest holds runs of digits that can pass Luhn).
_CARD = re.compile(r"(?<![\w.,/-])\d{4}(?:[ -]?\d{2,6}){2,4}(?![\w/]|[.,-]\d)")
_CARD_BRANDS = (
    # (prefix ranges as (low, high) on the first digits, allowed lengths)
    (((4, 4),), (13, 16, 19)),  # Visa
    (((51, 55), (2221, 2720)), (16,)),  # Mastercard
    (((34, 34), (37, 37)), (15,)),  # American Express
    (((6011, 6011), (644, 649), (65, 65)), (16, 19)),  # Discover
    (((3528, 3589),), (16, 19)),  # JCB
    (((300, 305), (36, 36), (38, 39)), (14, 16, 19)),  # Diners Club
)
_IPV4 = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w]|\.\d)"
)
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# Phone-shaped: +CC then 2-5 groups, or a North American grouping with separators.
_PHONE = re.compile(
    r"(?<![\w+.-])(?:"
    r"\+\d{1,3}(?:[ .-]?\(?\d{1,5}\)?){1,5}[ .-]?\d{2,5}"
    r"|(?:1[ .-])?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}"
    r")(?![\w]|[.-]\d)"
)


@dataclass(frozen=True)
class Match:
    kind: str
    start: int
    end: int
    text: str


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a string of digits (every card number satisfies it)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_brand_ok(digits: str) -> bool:
    """Whether a card network issues numbers with this prefix and length."""
    for ranges, lengths in _CARD_BRANDS:
        if len(digits) not in lengths:
            continue
        for low, high in ranges:
            width = len(str(low))
            if low <= int(digits[:width]) <= high:
                return True
    return False


def _is_card(candidate: str) -> bool:
    digits = candidate.replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19:
        return False
    seps = {c for c in candidate if not c.isdigit()}
    if len(seps) > 1:  # 4111 1111-1111 1111 is not how anyone writes a card number
        return False
    return card_brand_ok(digits) and luhn_ok(digits)


class Scanner:
    """Finds the configured kinds of personal data in texts and replaces them with placeholders.

    :meth:`find_batch` is the fast path: one vectorised pass over a batch of texts marks the few
    regions where a match could start (an ``@``, a dense run of digits, ``digit.digit`` three times,
    colons, a run of 20+ key characters), and the patterns run only there. :meth:`find_reference`
    runs every pattern over the whole text; the two agree (tests/data/test_pii.py checks it on a
    corpus), and the reference is what the regions are derived from.
    """

    def __init__(
        self, kinds: Iterable[str] = KINDS, private_ip_addresses: bool = False, phone_region: str = "US"
    ):
        kinds = tuple(kinds)
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown PII kind(s) {sorted(unknown)}: use {', '.join(KINDS)}")
        self.kinds = frozenset(kinds)
        self.private_ip_addresses = private_ip_addresses
        self.phone_region = phone_region

    @cached_property
    def _phonenumbers(self):
        import phonenumbers

        return phonenumbers

    # --- the patterns, over text[lo:hi]

    def _scan(self, text: str, lo: int, hi: int, found: list[Match], kinds: frozenset[str]) -> None:
        if "secret" in kinds:
            for m in _SECRET.finditer(text, lo, hi):
                if m.group("aws") is not None:
                    found.append(Match("secret", m.start("aws"), m.end("aws"), m.group("aws")))
                else:
                    found.append(Match("secret", m.start(), m.end(), m.group()))
        if "email" in kinds:
            found += [Match("email", m.start(), m.end(), m.group()) for m in _EMAIL.finditer(text, lo, hi)]
        if "credit_card" in kinds:
            found += [
                Match("credit_card", m.start(), m.end(), m.group())
                for m in _CARD.finditer(text, lo, hi)
                if _is_card(m.group())
            ]
        if "ip_address" in kinds:
            self._ips(text, lo, hi, found)
        if "phone" in kinds:
            self._phones(text, lo, hi, found)

    def _ips(self, text: str, lo: int, hi: int, found: list[Match]) -> None:
        for m in _IPV4.finditer(text, lo, hi):
            if self._ip_counts(ipaddress.IPv4Address(m.group())):
                found.append(Match("ip_address", m.start(), m.end(), m.group()))
        for m in _IPV6.finditer(text, lo, hi):
            value = m.group()
            groups = [g for g in value.split(":") if g]
            # at least three groups, and "::" or all eight: "12:30:45" is a time, not an address
            if len(groups) < 3 or ("::" not in value and value.count(":") != 7):
                continue
            try:
                address = ipaddress.IPv6Address(value)
            except ValueError:
                continue
            if self._ip_counts(address):
                found.append(Match("ip_address", m.start(), m.end(), value))

    def _ip_counts(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if self.private_ip_addresses:
            return not (address.is_unspecified or address.is_multicast)
        return address.is_global

    def _phones(self, text: str, lo: int, hi: int, found: list[Match]) -> None:
        pn = self._phonenumbers
        for m in _PHONE.finditer(text, lo, hi):
            value = m.group()
            digits = sum(c.isdigit() for c in value)
            if not 8 <= digits <= 15:
                continue
            try:
                number = pn.parse(value, self.phone_region)
            except pn.NumberParseException:
                continue
            if pn.is_valid_number(number):
                found.append(Match("phone", m.start(), m.end(), value))

    # --- whole texts

    def find_reference(self, text: str) -> list[Match]:
        """Every pattern over the whole text: simple and slow (the fast path is tested against it)."""
        found: list[Match] = []
        self._scan(text, 0, len(text), found, self.kinds)
        self._pem(text, found)
        return _resolve_overlaps(found)

    def _pem(self, text: str, found: list[Match]) -> None:
        """PEM private-key blocks span lines of base 64: looked for over the whole text."""
        if "secret" in self.kinds and "PRIVATE KEY-----" in text:
            found += [Match("secret", m.start(), m.end(), m.group()) for m in _PEM.finditer(text)]

    def find(self, text: str) -> list[Match]:
        """Non-overlapping matches in text order (overlaps resolved by ``PRIORITY``)."""
        return self.find_batch([text])[0]

    def find_batch(self, texts: list[str]) -> list[list[Match]]:
        """:meth:`find` for many texts, with one vectorised pass to find where to look."""
        out: list[list[Match]] = [[] for _ in texts]
        if not texts or not self.kinds:
            return out
        for doc, regions in sorted(_candidate_regions(texts, self.kinds).items()):
            text = texts[doc]
            found: list[Match] = []
            for group, lo, hi in regions:
                self._scan(text, lo, hi, found, self.kinds.intersection(GROUPS[group][0]))
            self._pem(text, found)
            out[doc] = _resolve_overlaps(found) if found else found
        return out

    def redact(self, text: str, matches: list[Match] | None = None) -> str:
        """``text`` with every match replaced by its kind's placeholder."""
        matches = self.find(text) if matches is None else matches
        if not matches:
            return text
        parts, last = [], 0
        for m in matches:
            parts.append(text[last : m.start])
            parts.append(PLACEHOLDERS[m.kind])
            last = m.end
        parts.append(text[last:])
        return "".join(parts)


_DIGIT, _DOT, _COLON, _AT, _SPACE, _PLUS = 1, 2, 4, 8, 16, 32
_FLAGS = bytes(
    (_DIGIT if 48 <= b <= 57 else 0)
    | (_DOT if b == 46 else 0)
    | (_COLON if b == 58 else 0)
    | (_AT if b == 64 else 0)
    | (_SPACE if b in b" \t\n\r\x0b\x0c\x00" else 0)
    | (_PLUS if b == 43 else 0)
    for b in range(256)
)
_BLANKS = bytes(32 if _FLAGS[b] & _SPACE else 120 for b in range(256))
_LONG_TOKEN = 20  # every secret format is a whitespace-free run at least this long

# group → (the patterns its hot spots can start, context kept left and right of the spot's token)
GROUPS = {
    "email": (("email",), 0, 0),  # an address is one whitespace-free token
    "digits": (("phone", "credit_card"), 24, 24),  # "+44 20 7946 0958" spans several tokens
    "ip": (("ip_address",), 0, 0),
    "secret": (("secret",), 48, 0),  # an AWS secret key's name precedes its value
}


def _hot_spots(flags: np.ndarray, kinds: frozenset[str]) -> dict[str, np.ndarray]:
    """Positions where a match of each group could be.

    Every pattern needs something rare in ordinary prose: an ``@`` (email); three digits in a row or
    a ``+`` before a digit, with at least eight digits within 24 characters (every phone and card
    number); three
    ``digit.digit`` within 12 characters, ``::`` or seven colons within 40 (IP addresses); a
    whitespace-free run of 20 characters or more (every secret format).
    """
    spots: dict[str, np.ndarray] = {}
    n = len(flags)
    if "email" in kinds:
        spots["email"] = np.flatnonzero(flags & _AT)
    if kinds & {"phone", "credit_card", "ip_address"}:
        digit = (flags & _DIGIT).view(bool)
        if kinds & {"phone", "credit_card"}:
            plus = (flags[:-1] & _PLUS).view(bool) & digit[1:]  # "+33 1 42 19 40 33": no three in a row
            runs = np.union1d(np.flatnonzero(digit[:-2] & digit[1:-1] & digit[2:]), np.flatnonzero(plus))
            if len(runs):
                c = np.concatenate(([0], np.cumsum(digit, dtype=np.int32)))
                dense = c[np.minimum(runs + 24, n)] - c[np.maximum(runs - 21, 0)] >= 8
                spots["digits"] = runs[dense]
        if "ip_address" in kinds:
            dot = (flags & _DOT).view(bool)
            dd = np.flatnonzero(digit[:-2] & dot[1:-1] & digit[2:])
            colon = np.flatnonzero(flags & _COLON)
            spots["ip"] = np.concatenate(
                (
                    dd[:-2][dd[2:] - dd[:-2] < 12],  # three digit.digit: an IPv4 address's dots
                    colon[:-1][np.diff(colon) == 1],  # "::"
                    colon[:-6][colon[6:] - colon[:-6] < 40],  # seven colons within 40
                )
            )
    if "secret" in kinds and n > _LONG_TOKEN:
        c = np.concatenate(([0], np.cumsum((flags & _SPACE).view(bool), dtype=np.int32)))
        spots["secret"] = np.flatnonzero(c[_LONG_TOKEN:] == c[:-_LONG_TOKEN])  # no space in [i, i + 20)
    return spots


def _candidate_regions(texts: list[str], kinds: frozenset[str]) -> dict[int, list[tuple[str, int, int]]]:
    """document → [(group, lo, hi), ...]: where each group's patterns could match.

    A region is the whitespace-delimited token holding a hot spot, with the group's context on either
    side, widened again to whitespace, so that no token is cut (a pattern sees the region as if it
    were the whole text, and its lookbehinds still see the text before it). Characters map one to one
    onto bytes (``encode("ascii", "replace")`` turns each non-ASCII character into one ``?``), so
    positions in the flags are positions in the text.
    """
    joined = "\x00".join(texts)
    encoded = joined.encode("ascii", "replace")
    flags = np.frombuffer(encoded.translate(_FLAGS), dtype=np.uint8)
    spots = {g: s for g, s in _hot_spots(flags, kinds).items() if len(s)}
    out: dict[int, list[tuple[str, int, int]]] = {}
    if not spots:
        return out
    blanks = encoded.translate(_BLANKS)  # whitespace (and the separators) as b" ", the rest b"x"
    doc_starts = np.concatenate(([0], np.cumsum([len(t) + 1 for t in texts]))).tolist()
    for group, starts in spots.items():
        _, left, right = GROUPS[group]
        starts = np.unique(starts)
        docs = np.searchsorted(doc_starts, starts, side="right") - 1
        last_hi = -1
        for spot, d in zip(starts.tolist(), docs.tolist(), strict=True):
            if spot < last_hi:
                continue  # inside the region just made
            base, end = doc_starts[d], doc_starts[d + 1] - 1
            lo = blanks.rfind(b" ", base, max(spot - left, base)) + 1 or base
            hi = blanks.find(b" ", min(spot + right, end), end)
            hi = end if hi < 0 else hi
            lo = max(lo, base)
            regions = out.setdefault(d, [])
            if regions and regions[-1][0] == group and lo - base <= regions[-1][2]:
                regions[-1] = (group, regions[-1][1], hi - base)
            else:
                regions.append((group, lo - base, hi - base))
            last_hi = hi
    return out


def _resolve_overlaps(found: list[Match]) -> list[Match]:
    rank = {k: i for i, k in enumerate(PRIORITY)}
    chosen: list[Match] = []
    for m in sorted(found, key=lambda m: (rank[m.kind], m.start)):
        if all(m.end <= c.start or m.start >= c.end for c in chosen):
            chosen.append(m)
    return sorted(chosen, key=lambda m: m.start)


def count(matches: Iterable[Match]) -> Counter[str]:
    return Counter(m.kind for m in matches)


def mask(value: str) -> str:
    """A match shown in a report without repeating it: its first and last characters, stars between."""
    if len(value) <= 4:
        return "*" * len(value)
    keep = 2 if len(value) > 12 else 1
    return value[:keep] + "*" * (len(value) - 2 * keep) + value[-keep:]


def sample(text: str, match: Match, matches: list[Match], width: int = 40) -> str:
    """The match's surroundings, with every match in them redacted (the one in question masked)."""
    lo, hi = max(0, match.start - width), min(len(text), match.end + width)
    parts, last = [], lo
    for m in matches:
        if m.end <= lo or m.start >= hi:
            continue
        parts.append(text[last : max(m.start, lo)])
        parts.append(f"[{mask(m.text)} → {PLACEHOLDERS[m.kind]}]" if m is match else PLACEHOLDERS[m.kind])
        last = min(m.end, hi)
    parts.append(text[last:hi])
    return ("…" if lo else "") + "".join(parts).replace("\n", " ") + ("…" if hi < len(text) else "")
