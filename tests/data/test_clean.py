"""Cleaning keeps paragraphs, repairs Unicode and tidies whitespace."""

import random
import string

import ftfy
import pytest

from nexus_llm.data.clean import clean_text, needs_ftfy
from nexus_llm.data.config import CleanConfig

CFG = CleanConfig()


def test_paragraphs_and_lines_survive_while_spaces_collapse():
    text = "  Title  \r\n\r\nFirst   line\twith  tabs.\nSecond line.   \n\n\n\nNext paragraph.  "
    flat = CleanConfig(keep_indentation=False)
    assert clean_text(text, flat) == "Title\n\nFirst line with tabs.\nSecond line.\n\nNext paragraph."
    assert clean_text(text, CFG) == "  Title\n\nFirst line with tabs.\nSecond line.\n\nNext paragraph."


def test_indentation_of_code_and_config_is_kept():
    yaml_text = "\n\nserver:\n  listen:   8080\n  tls:\n    cert: /etc/ssl/cert.pem   \n\tdone\n"
    assert (
        clean_text(yaml_text, CFG) == "server:\n  listen: 8080\n  tls:\n    cert: /etc/ssl/cert.pem\n\tdone"
    )


def test_blank_line_runs_are_limited_by_setting():
    assert clean_text("a\n\n\n\nb", CleanConfig(max_blank_lines=2)) == "a\n\n\nb"
    assert clean_text("a\n\n\n\nb", CleanConfig(max_blank_lines=0)) == "a\nb"


def test_mojibake_is_repaired_and_unicode_normalized():
    broken = "The cafÃ© served crÃ¨me brÃ»lÃ©e."
    assert clean_text(broken, CFG) == "The café served crème brûlée."
    decomposed = "Cafe\u0301"  # e + combining acute
    assert clean_text(decomposed, CFG) == "Caf\u00e9"


def test_html_entities_and_control_characters_are_fixed():
    assert clean_text("Fish &amp; chips\x00 today", CFG) == "Fish & chips today"


def test_fix_unicode_can_be_turned_off():
    assert "Ã©" in clean_text("cafÃ©", CleanConfig(fix_unicode=False))


@pytest.mark.parametrize("seed", range(5))
def test_ascii_fast_path_gives_what_ftfy_would(seed):
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + " .,;:!?'\"()-\n\t<>/"
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200)))
        assert not needs_ftfy(text)
        assert ftfy.fix_text(text) == text.replace("\r\n", "\n") or "<" in text
