"""Each filter is a pure function returning None (keep) or a reason named after its setting."""

import itertools

from nexus_llm.data.config import C4Filter, FiltersConfig, GopherQualityFilter, GopherRepetitionFilter
from nexus_llm.data.document import DocView
from nexus_llm.data.filters import (
    apply_filters,
    c4_line_filter,
    gopher_quality_filter,
    gopher_repetition_filter,
)
from nexus_llm.data.filters.gopher import duplicate_ngram_char_fraction, top_ngram_char_fraction

PROSE = (
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife. However little known the feelings or views of such a man may be on "
    "his first entering a neighbourhood, this truth is so well fixed in the minds of the surrounding "
    "families, that he is considered the rightful property of some one or other of their daughters. "
    "My dear Mr. Bennet, said his lady to him one day, have you heard that Netherfield Park is let at last?"
)
GQ = GopherQualityFilter()
GR = GopherRepetitionFilter()


def reason(text: str, cfg: FiltersConfig | None = None) -> str | None:
    return apply_filters(DocView(text), cfg or FiltersConfig())[1]


def test_clean_prose_passes_every_default_filter():
    assert reason(PROSE) is None


def test_length_rule_names_its_bound():
    assert reason("Too short.") == "length.min_chars"
    cfg = FiltersConfig.model_validate({"length": {"max_chars": 100}})
    assert reason(PROSE, cfg) == "length.max_chars"


def test_line_break_rule_counts_newlines_of_the_uncollapsed_text():
    # The guide collapsed whitespace before counting, so this rule could never fire there.
    poem = "\n".join(["Roses are red and the sky is blue"] * 3 + ["a", "b", "c", "d", "e", "f", "g", "h"] * 4)
    cfg = FiltersConfig.model_validate(
        {"gopher_quality": {"enabled": False}, "gopher_repetition": {"enabled": False}}
    )
    assert poem.count("\n") / len(poem) > 0.1
    assert reason(poem, cfg) == "line_breaks.max_ratio"


def test_gopher_quality_rules():
    assert gopher_quality_filter(DocView("the and of " * 10), GQ) == "gopher_quality.min_words"
    assert (
        gopher_quality_filter(DocView(" ".join(["a", "I", "to"] * 30)), GQ)
        == "gopher_quality.min_avg_word_length"
    )
    long_words = " ".join(["incomprehensibilities"] * 60) + " the and"
    assert gopher_quality_filter(DocView(long_words), GQ) == "gopher_quality.max_avg_word_length"
    hashtags = PROSE + " " + " ".join(["#tag"] * 20)
    assert gopher_quality_filter(DocView(hashtags), GQ) == "gopher_quality.max_symbol_word_ratio"
    bullets = "\n".join(f"- item number {i} of the list and the rest" for i in range(20))
    assert gopher_quality_filter(DocView(bullets), GQ) == "gopher_quality.max_bullet_lines_ratio"
    # one ellipsis per 9-word line stays under the symbol ratio (0.11 > 0.1 would trip it first)
    ellipsis = "\n".join(f"and then the long story number {i} goes on and on..." for i in range(20))
    assert gopher_quality_filter(DocView(ellipsis), GQ) == "gopher_quality.max_ellipsis_lines_ratio"
    numbers = " ".join(str(i) for i in range(1000, 1100)) + " the and of with that have be to"
    assert gopher_quality_filter(DocView(numbers), GQ) == "gopher_quality.min_alpha_words_ratio"
    no_stop = " ".join(["elephant", "giraffe", "zebra", "lion", "tiger"] * 12)
    assert gopher_quality_filter(DocView(no_stop), GQ) == "gopher_quality.min_stop_words"
    assert gopher_quality_filter(DocView(PROSE), GQ) is None


def test_gopher_repetition_rules():
    para = "This paragraph repeats itself many times over and over again for the spam."
    assert (
        gopher_repetition_filter(DocView("\n\n".join([para] * 5)), GR)
        == "gopher_repetition.max_dup_para_frac"
    )
    lines = "\n".join([PROSE] + ["Buy cheap watches now."] * 6)
    assert gopher_repetition_filter(DocView(lines), GR) == "gopher_repetition.max_dup_line_frac"
    one_line = PROSE + " " + " ".join(["the watch shop"] * 40)
    assert gopher_repetition_filter(DocView(one_line), GR).startswith(
        "gopher_repetition.max_top_ngram_char_frac"
    )
    assert gopher_repetition_filter(DocView(PROSE), GR) is None


def test_ngram_fractions_match_their_definitions():
    view = DocView("a b c a b c x")  # words of length 1: 7 characters
    # most frequent bigram "a b" occurs twice: 2 words x 2 occurrences = 4 of 7 characters
    assert abs(top_ngram_char_fraction(view, 2) - 4 / 7) < 1e-9
    # the repeated trigram "a b c" covers words 3..5: 3 of 7 characters
    assert abs(duplicate_ngram_char_fraction(view, 3) - 3 / 7) < 1e-9
    assert duplicate_ngram_char_fraction(DocView("one two three four five six"), 2) == 0.0


def test_duplicate_ngram_fraction_never_grows_with_n():
    import random

    rng = random.Random(3)
    for _ in range(50):
        view = DocView(" ".join(rng.choice("abcdef") for _ in range(80)))
        fracs = [duplicate_ngram_char_fraction(view, n) for n in range(5, 11)]
        assert all(a >= b for a, b in itertools.pairwise(fracs))


def test_c4_line_rules_edit_the_text_and_document_rules_drop_it():
    cfg = C4Filter(enabled=True)
    text = "Menu\nThis line ends well and has words.\nEnable javascript to see this page.\nno end here"
    assert c4_line_filter(text, cfg) == "This line ends well and has words."
    on = FiltersConfig.model_validate({"c4": {"enabled": True}})
    assert reason(PROSE + " Lorem ipsum dolor sit amet.", on) == "c4.drop_lorem_ipsum"
    assert reason(PROSE + " function() { return 1; }", on) == "c4.drop_curly_bracket"
    assert reason("One sentence only here, with enough words in it to pass the length check.", on) in (
        "c4.min_sentences",
        "gopher_quality.min_words",
    )
    six_sentences = PROSE + " She said it was. He did not answer. Mrs. Long had told her all about it."
    assert reason(six_sentences + "\nSee the privacy policy.", on) is None


def test_view_computes_words_once():
    view = DocView(PROSE)
    assert view.words is view.words
    assert view.ngram_hashes(5) is view.ngram_hashes(5)
    assert len(view.ngram_hashes(5)) == len(view.words) - 4


def test_empty_text_is_rejected_as_empty():
    assert reason("") == "clean.empty"
