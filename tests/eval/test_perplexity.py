"""Perplexity and bits per byte: the window plan, and agreement with plain `transformers`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from nexus_llm.eval.perplexity import plan_windows, score_documents, with_context


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize(
    ("n", "context", "stride"), [(2, 4, 2), (10, 4, 2), (10, 4, 3), (100, 16, 1), (7, 32, 16)]
)
def test_every_token_after_the_context_token_is_predicted_exactly_once(n, context, stride):
    windows = plan_windows(n, context, stride)
    predicted = [t for w in windows for t in range(w.end - w.targets, w.end)]
    assert predicted == list(range(1, n))
    for w in windows:
        assert w.end - w.begin <= context
        assert w.targets <= w.end - w.begin - 1  # a target always has a position before it in its window
        if w.begin > 0:  # later windows keep at least context - stride tokens of context
            assert (w.end - w.targets) - w.begin >= context - stride


def test_stride_must_leave_context():
    with pytest.raises(ValueError, match="stride"):
        plan_windows(10, 4, 4)


def test_context_token_is_prepended_once():
    assert with_context(np.array([5, 6, 2]), 2).tolist() == [2, 5, 6, 2]
    assert with_context(np.array([1, 5, 6, 2]), 1).tolist() == [1, 5, 6, 2]


def test_short_documents_match_plain_transformers_summed_nll(model_and_tokenizer):
    """Documents that fit the context: one window each, batched with padding, vs one forward per document."""
    model, tok = model_and_tokenizer
    texts = ["The quick brown fox.", "A language model predicts the next token.", "Hi", "Curated data " * 5]
    docs = [np.array([*tok(t).input_ids, tok.eos_token_id]) for t in texts]
    scores = score_documents(model, docs, tok.eos_token_id, context=256, stride=128, batch_size=3)
    total, count = 0.0, 0
    for doc in docs:
        ids = torch.tensor([[tok.eos_token_id, *doc.tolist()]])
        with torch.no_grad():
            loss = model(input_ids=ids, labels=ids).loss.item()  # mean over the len - 1 shifted labels
        total += loss * (ids.shape[1] - 1)
        count += ids.shape[1] - 1
    assert scores.tokens == count
    assert scores.perplexity == pytest.approx(math.exp(total / count), rel=1e-4)
    assert scores.bits_per_byte(1000) == pytest.approx(total / (math.log(2) * 1000), rel=1e-4)


def test_long_document_matches_the_transformers_guide_strided_recipe(model_and_tokenizer):
    """A document 5x the context, scored with overlapping windows, vs the HF perplexity guide's loop."""
    model, tok = model_and_tokenizer
    text = "In the beginning was the word, and the word was a token. " * 12
    doc = np.array([*tok(text).input_ids, tok.eos_token_id])
    context, stride = 32, 12
    scores = score_documents(model, [doc], tok.eos_token_id, context, stride, batch_size=4)
    seq = torch.tensor([[tok.eos_token_id, *doc.tolist()]])
    nll, count, prev_end = 0.0, 0, 0
    for begin in range(0, seq.shape[1], stride):  # huggingface.co/docs/transformers/perplexity
        end = min(begin + context, seq.shape[1])
        trg_len = end - prev_end
        input_ids = seq[:, begin:end]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            loss = model(input_ids=input_ids, labels=target_ids).loss.item()
        valid = int((target_ids[:, 1:] != -100).sum())
        nll, count, prev_end = nll + loss * valid, count + valid, end
        if end == seq.shape[1]:
            break
    assert len(doc) > 4 * context
    assert scores.tokens == count == len(doc)
    assert scores.nll == pytest.approx(nll, rel=1e-4)


def test_token_weighting_differs_from_the_mean_of_document_perplexities():
    from nexus_llm.eval.perplexity import Scores

    s = Scores(doc_nll=np.array([2.0 * 100, 5.0 * 2]), doc_tokens=np.array([100, 2]))
    assert s.perplexity == pytest.approx(math.exp(210 / 102))
    assert s.mean_document_perplexity == pytest.approx((math.exp(2.0) + math.exp(5.0)) / 2)
