"""Text deltas and stop strings: never half-send a stop string, release what cannot become one."""

from __future__ import annotations

from nexus_llm.serve.engine.detok import StopMatcher, TextStream


def test_stop_string_split_across_deltas_is_never_sent():
    m = StopMatcher(("STOP",))
    sent = []
    for piece in ["hello S", "T", "O", "P and more"]:
        text, hit = m.feed(piece)
        sent.append(text)
        if hit:
            break
    assert "".join(sent) == "hello " and hit


def test_held_back_prefix_is_released_when_it_turns_out_not_to_be_a_stop():
    m = StopMatcher(("END",))
    assert m.feed("foo E") == ("foo ", False)
    assert m.feed("Xbar") == ("EXbar", False)
    assert m.feed("EN") == ("", False)
    assert m.flush() == "EN"


def test_earliest_of_several_stops_wins():
    m = StopMatcher(("b", "xyz"))
    assert m.feed("axyzb") == ("a", True)


def test_text_stream_decodes_tokens_and_stops(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    ids = tok("Hello world! The quick brown fox.").input_ids
    stream = TextStream(tok)
    assert "".join(stream.step(i)[0] for i in ids) + stream.flush() == "Hello world! The quick brown fox."
    stream = TextStream(tok, ("brown",))
    out, hit = "", False
    for i in ids:
        text, hit = stream.step(i)
        out += text
        if hit:
            break
    assert hit and out == "Hello world! The quick "
