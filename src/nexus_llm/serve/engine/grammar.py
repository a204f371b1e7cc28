"""``response_format`` (JSON mode and JSON schemas) through llguidance, a maintained constrained-decoding library.

llguidance (the library behind structured output in llama.cpp, vLLM and SGLang) compiles a JSON schema
into a grammar and, at each step, computes which tokens may come next; the engine masks every other
token before sampling. So an answer always parses, and validates against the schema when it ends
before ``max_tokens`` (a ``length`` finish can cut it short, as with any server).

Choices made here:

- whitespace between JSON tokens is not allowed (``whitespace_flexible: false``): compact output, and
  a model sampled at a high temperature cannot wander off into endless spaces and newlines;
- a schema is checked with ``jsonschema`` first (its ``check_schema`` names the problem, e.g.
  ``'strin' is not valid under any of the given schemas``), then compiled by llguidance, which refuses
  keywords it cannot enforce rather than ignoring them; both become a 400 naming the problem;
- a schema's size is bounded (``MAX_SCHEMA_BYTES``), and so is the grammar's complexity
  (llguidance's parser limits);
- compiled grammars are cached by schema text (an app sends the same schema again and again).

``llguidance.torch.apply_token_bitmask_inplace`` is not used: it runs through ``torch.compile``, which
on the first call compiles a kernel with a C++ toolchain for many seconds on a small CPU machine.
:func:`allowed_tokens` unpacks the bitmask with four tensor ops instead.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

import torch

MAX_SCHEMA_BYTES = 32 * 1024
"""Largest JSON schema (as JSON text) a request may send."""

_DEFAULTS = {"whitespace_flexible": False}


class GrammarError(ValueError):
    """A schema that cannot be used (invalid, unsupported or too large): the request gets a 400."""


class Grammar:
    """A compiled constraint; each request gets its own :meth:`matcher` (the parse state)."""

    def __init__(self, tokenizer: Any, grammar: str) -> None:
        self._tokenizer = tokenizer
        self._grammar = grammar

    def matcher(self):
        import llguidance

        return llguidance.LLMatcher(self._tokenizer, self._grammar, log_level=0)


class GrammarCompiler:
    """Compiles ``response_format`` values for one tokenizer (thread-safe; blocks, so call it off the loop)."""

    def __init__(self, hf_tokenizer: Any, vocab_size: int, cache_size: int = 64) -> None:
        self._hf = hf_tokenizer
        self._vocab = vocab_size
        self._tokenizer = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, Grammar] = OrderedDict()
        self._cache_size = cache_size

    def _lltokenizer(self):
        if self._tokenizer is None:
            import llguidance.hf

            # about a second: built on the first constrained request, then kept
            self._tokenizer = llguidance.hf.from_tokenizer(self._hf, n_vocab=self._vocab)
        return self._tokenizer

    def compile(self, schema: dict[str, Any] | bool | None) -> Grammar:
        """A grammar for JSON matching ``schema`` (None: any JSON object, OpenAI's ``json_object`` mode)."""
        import llguidance

        if schema is None:
            schema = {"type": "object"}
        text = json.dumps(schema, sort_keys=True)
        if len(text.encode()) > MAX_SCHEMA_BYTES:
            raise GrammarError(f"the JSON schema has {len(text.encode())} bytes; at most {MAX_SCHEMA_BYTES}")
        with self._lock:
            if text in self._cache:
                self._cache.move_to_end(text)
                return self._cache[text]
            _check_schema(schema)
            tokenizer = self._lltokenizer()
            try:
                grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=_DEFAULTS)
            except ValueError as err:
                raise GrammarError(f"invalid JSON schema: {err}") from None
            error = llguidance.LLMatcher.validate_grammar(grammar, tokenizer)
            if error:
                raise GrammarError(f"the JSON schema cannot be enforced: {_short(error)}")
            compiled = Grammar(tokenizer, grammar)
            self._cache[text] = compiled
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return compiled


def _check_schema(schema: Any) -> None:
    from jsonschema import exceptions, validators

    if not isinstance(schema, dict | bool):
        raise GrammarError("a JSON schema must be an object")
    if isinstance(schema, bool):
        return
    try:
        validators.validator_for(schema).check_schema(schema)
    except exceptions.SchemaError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        raise GrammarError(f"invalid JSON schema at {where}: {err.message}") from None


def _short(message: str, limit: int = 300) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 3] + "..."


def allowed_tokens(matchers: list[Any], vocab_size: int) -> torch.Tensor:
    """``[len(matchers), vocab_size]`` booleans: the tokens each matcher allows next."""
    import llguidance.torch

    words = (vocab_size + 31) // 32
    bitmask = torch.full((len(matchers), words), -1, dtype=torch.int32)
    for row, matcher in enumerate(matchers):
        llguidance.torch.fill_next_token_bitmask(matcher, bitmask, row)
    shifts = torch.arange(32, dtype=torch.int32)
    bits = (bitmask.unsqueeze(-1) >> shifts) & 1
    return bits.view(len(matchers), words * 32)[:, :vocab_size].bool()
