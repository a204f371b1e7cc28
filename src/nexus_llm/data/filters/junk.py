"""Junk that per-word statistics miss once they are relaxed for technical text.

The ``technical`` and ``code`` presets let through what documentation is full of (symbols, numbers,
short lines, repeated command lines, few stop words), so four cheap rules catch what the published
Gopher thresholds caught on the side: placeholder text; text that is neither prose (English function
words) nor code (symbols), such as word salad, keyword lists and dumps; pages of site boilerplate; and
encoded data. Calibration per rule and corpus: docs/data.md, "Quality presets". Each starts with a
check that costs a substring search or less, so a document without a hint of the problem pays nothing
more.
"""

from __future__ import annotations

import re

from nexus_llm.data.config import JunkFilter
from nexus_llm.data.document import DocView

# Site furniture: consent banners, legal footers, navigation and share buttons, log-in prompts.
_BOILERPLATE = re.compile(
    r"cookie|privacy (?:policy|notice|statement)|terms (?:of|and) (?:use|service|conditions)"
    r"|all rights reserved|(?:^|\W)(?:copyright|\(c\)|©) ?(?:19|20)\d\d|subscribe|newsletter"
    r"|sign (?:in|up)\b|\blog ?in\b|register now|create an account|forgot (?:your )?password|my account"
    r"|follow us|share (?:this|on)|like us on|facebook|instagram|linkedin|pinterest|twitter"
    r"|skip to (?:main )?content|back to top|read more|click here|add to (?:cart|basket)"
    r"|shopping cart|free shipping|accept (?:all|cookies)|javascript (?:is )?(?:disabled|required)"
    r"|powered by|contact us|about us|sitemap",
    re.IGNORECASE,
)
# A line of navigation: three or more short items between separators ("Home | About | Contact").
_NAV = re.compile(r"^(?:[^|»•·\n]{1,30}[|»•·]\s*){2,}[^|»•·\n]{1,30}$")
# Cheap hints, looked for first (lower-cased text): a document with none of them has no boilerplate.
_HINTS = (
    "cookie", "privacy", "terms of", "terms and", "rights reserved", "copyright", "©", "subscribe",
    "newsletter", "sign in", "sign up", "log in", "login", "follow us", "share ", "click here",
    "read more", "contact us", "about us", "cart", "|", "»", "•", "·", "skip to", "powered by",
    "facebook", "twitter", "register", "account", "javascript", "sitemap", "back to top",
)  # fmt: skip
# The commonest English function words: prose is 30-60% of them, technical writing rarely under 10%.
FUNCTION_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "then",
        "else",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "as",
        "into",
        "onto",
        "about",
        "over",
        "under",
        "between",
        "through",
        "during",
        "before",
        "after",
        "above",
        "below",
        "up",
        "down",
        "out",
        "off",
        "than",
        "so",
        "that",
        "this",
        "these",
        "those",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "have",
        "has",
        "had",
        "do",
        "does",
        "did",
        "not",
        "no",
        "nor",
        "it",
        "its",
        "they",
        "them",
        "their",
        "we",
        "our",
        "you",
        "your",
        "he",
        "she",
        "his",
        "her",
        "i",
        "me",
        "my",
        "which",
        "who",
        "whom",
        "whose",
        "what",
        "when",
        "where",
        "why",
        "how",
        "all",
        "any",
        "each",
        "can",
        "could",
        "will",
        "would",
        "shall",
        "should",
        "may",
        "might",
        "must",
        "there",
        "here",
    ]
)
_LOREM = frozenset(
    [
        "lorem",
        "ipsum",
        "dolor",
        "sit",
        "amet",
        "consectetur",
        "adipiscing",
        "elit",
        "sed",
        "do",
        "eiusmod",
        "tempor",
        "incididunt",
        "ut",
        "labore",
        "et",
        "dolore",
        "magna",
        "aliqua",
        "enim",
        "ad",
        "minim",
        "veniam",
        "quis",
        "nostrud",
        "exercitation",
        "ullamco",
        "laboris",
        "nisi",
        "aliquip",
        "ex",
        "ea",
        "commodo",
        "consequat",
        "duis",
        "aute",
        "irure",
        "in",
        "reprehenderit",
        "voluptate",
        "velit",
        "esse",
        "cillum",
        "eu",
        "fugiat",
        "nulla",
        "pariatur",
        "excepteur",
        "sint",
        "occaecat",
        "cupidatat",
        "non",
        "proident",
        "sunt",
        "culpa",
        "qui",
        "officia",
        "deserunt",
        "mollit",
        "anim",
        "id",
        "est",
        "laborum",
    ]
)
_SYMBOLS = "".join(chr(c) for c in range(33, 127) if not chr(c).isalnum()).encode()
_ENCODED_TOKEN = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}|[0-9a-fA-F]{40,}")
_LONG = 40


def lorem_ipsum(view: DocView) -> bool:
    """Placeholder text: "lorem ipsum", or a third of the words from its vocabulary."""
    text = view.text
    if "orem ipsum" in text or "OREM IPSUM" in text:
        return True
    if "dolor" not in text and "ipsum" not in text and "amet" not in text:
        return False
    words = view.words
    return bool(words) and sum(map(_LOREM.__contains__, words)) >= len(words) / 3


def function_words_ratio(view: DocView) -> float:
    words = view.words
    return sum(map(FUNCTION_WORDS.__contains__, words)) / len(words) if words else 0.0


def symbols_ratio(view: DocView) -> float:
    """Share of the non-space characters that are ASCII punctuation or symbols."""
    raw = view.text.encode("utf-8", "surrogatepass")
    visible = len(raw) - raw.count(b" ") - raw.count(b"\n") - raw.count(b"\t")
    return (len(raw) - len(raw.translate(None, _SYMBOLS))) / max(visible, 1)


def boilerplate_lines_ratio(view: DocView) -> float:
    """Share of non-empty lines that are site boilerplate or navigation."""
    lowered = view.text.lower()
    if not any(h in lowered for h in _HINTS):
        return 0.0
    lines = view.non_empty_lines
    if not lines:
        return 0.0
    hits = sum(1 for line in lines if _BOILERPLATE.search(line) or _NAV.match(line.strip()))
    return hits / len(lines)


def encoded_chars_ratio(view: DocView) -> float:
    """Share of the text's characters in base-64 or hex runs of 40 characters or more."""
    tokens = view.tokens
    if not tokens or max(map(len, tokens)) < _LONG:
        return 0.0
    encoded = 0
    for token in tokens:
        if len(token) >= _LONG:
            encoded += sum(len(m) for m in _ENCODED_TOKEN.findall(token))
    return encoded / max(len(view.text), 1)


def junk_filter(view: DocView, cfg: JunkFilter, english: bool = True) -> str | None:
    """The junk rules; the function-word rule (English words) only for ``english`` documents."""
    if cfg.drop_lorem_ipsum and lorem_ipsum(view):
        return "junk.drop_lorem_ipsum"
    if (
        english
        and function_words_ratio(view) < cfg.min_function_words_ratio
        and symbols_ratio(view) < cfg.min_symbols_ratio
    ):
        return "junk.min_function_words_ratio"
    if boilerplate_lines_ratio(view) > cfg.max_boilerplate_lines_ratio:
        return "junk.max_boilerplate_lines_ratio"
    if encoded_chars_ratio(view) > cfg.max_encoded_chars_ratio:
        return "junk.max_encoded_chars_ratio"
    return None
