"""Text cleaning that keeps paragraph structure: repair Unicode, normalize, tidy whitespace.

Unlike the guide's ``re.sub(r"\\s+", " ", text)``, newlines survive: paragraphs and lines are what
the line-level filters and a language model both need. Leading indentation survives too (by default):
code, YAML and nested lists mean something else without it.
"""

from __future__ import annotations

import re
import unicodedata

import ftfy

from nexus_llm.data.config import CleanConfig

_FTFY = ftfy.TextFixerConfig(explain=False, normalization=None)
# ASCII text that holds none of these is left unchanged by ftfy, so it can skip ftfy entirely
# (tests/data/test_clean.py checks this equivalence); most English text takes this fast path.
_FTFY_TRIGGERS = re.compile(r"[&\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_H_SPACE = re.compile(r"[^\S\n]+")
_INNER_SPACE = re.compile(r"(?<=\S)[^\S\n]+")  # a run of spaces after a non-space: not indentation
_ODD_SPACE = re.compile(r"  |[\t\x0b\x0c]")


def needs_ftfy(text: str) -> bool:
    return not text.isascii() or _FTFY_TRIGGERS.search(text) is not None


def clean_text(text: str, cfg: CleanConfig) -> str:
    """Cleaned text; may be empty when nothing but whitespace or control characters remains."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if cfg.fix_unicode and needs_ftfy(text):
        text = ftfy.fix_text(text, _FTFY)
    if cfg.normalization != "none" and not text.isascii():
        text = unicodedata.normalize(cfg.normalization, text)
    if cfg.collapse_spaces and (not text.isascii() or _ODD_SPACE.search(text)):
        # most text has single spaces only and skips this
        text = (_INNER_SPACE if cfg.keep_indentation else _H_SPACE).sub(" ", text)
    if cfg.keep_indentation or not cfg.collapse_spaces:
        lines = [line.rstrip() for line in text.split("\n")]
        return _limit_blank_lines(lines, cfg.max_blank_lines).strip("\n")
    lines = [line.strip() for line in text.split("\n")]
    return _limit_blank_lines(lines, cfg.max_blank_lines).strip()


def _limit_blank_lines(lines: list[str], max_blank: int) -> str:
    out: list[str] = []
    blank = 0
    for line in lines:
        if line:
            blank = 0
            out.append(line)
        else:
            blank += 1
            if blank <= max_blank:
                out.append(line)
    return "\n".join(out)
