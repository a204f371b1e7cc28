"""C4 rules (Raffel et al. 2020, section 2.2): line rules edit the text, document rules drop it."""

from __future__ import annotations

import re

from nexus_llm.data.config import C4Filter
from nexus_llm.data.document import DocView

TERMINAL = (".", "!", "?", '"', "'", "”", "’")
POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
_SENTENCE_END = re.compile(r"[.!?]+(?:[\"'”’)\]]*)(?=\s|$)")


def c4_document_filter(view: DocView, cfg: C4Filter) -> str | None:
    """Whole-document rules: placeholder text and code-like pages."""
    lowered = view.text.lower()
    if cfg.drop_lorem_ipsum and "lorem ipsum" in lowered:
        return "c4.drop_lorem_ipsum"
    if cfg.drop_curly_bracket and "{" in view.text:
        return "c4.drop_curly_bracket"
    return None


def keep_line(line: str, cfg: C4Filter) -> bool:
    words = line.split()
    if len(words) < cfg.min_words_per_line:
        return False
    if any(len(w) > cfg.max_word_length for w in words):
        return False
    if not line.endswith(TERMINAL) or line.endswith(("...", "…")):
        return False
    lowered = line.lower()
    if cfg.drop_javascript_lines and "javascript" in lowered:
        return False
    return not (cfg.drop_policy_lines and any(p in lowered for p in POLICY))


def c4_line_filter(text: str, cfg: C4Filter) -> str:
    """The text with the lines C4 would drop removed (blank lines between paragraphs kept)."""
    out: list[str] = []
    for line in text.split("\n"):
        stripped = line.strip()
        if not stripped:
            if out and out[-1]:
                out.append("")
        elif keep_line(stripped, cfg):
            out.append(stripped)
    return "\n".join(out).strip()


def count_sentences(text: str) -> int:
    return len(_SENTENCE_END.findall(text))
