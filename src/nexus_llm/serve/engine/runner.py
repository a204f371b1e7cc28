"""The model-runner seam under the batching engine: which tokens to run this step, and their logits.

The engine (:mod:`nexus_llm.serve.engine.batching`) decides *what* runs each step — one token for every
decoding sequence, and a chunk of the prompt of sequences still being prefilled — and a runner decides
*how*: it keeps each sequence's KV cache and returns the logits the engine asked for. Two runners:

- :class:`nexus_llm.serve.engine.llama.LlamaRunner`, the fast path for Llama-architecture models (Llama,
  SmolLM, Mistral without sliding windows, Qwen2): all the step's tokens go through the weights in one
  flat batch, with a slot KV cache, a prefix cache and LoRA adapters;
- :class:`HFRunner` below, for every other causal LM transformers can load: the model's own forward,
  one sequence at a time. Correct for any architecture, slow with many concurrent requests, and without
  prefix caching or adapters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch


@dataclass
class Work:
    """Tokens of one sequence to run this step.

    ``tokens`` start at position ``start`` (the number of tokens already in the sequence's cache).
    ``logits`` is ``"last"`` for the next-token logits only, ``"all"`` for every position (prompt
    logprobs), or ``"none"`` (a prompt chunk that is not the last one).
    """

    key: int
    tokens: list[int]
    start: int
    logits: Literal["last", "all", "none"] = "last"
    adapter: str | None = None


class Runner(Protocol):
    """What the engine needs from a model runner (see the module docstring)."""

    prefix_caching: bool
    """Whether :meth:`reuse_prefix` can find anything (else it always returns 0)."""

    def add(self, key: int, length: int) -> bool:
        """Reserve cache room for sequence ``key`` of up to ``length`` tokens; False when it does not fit
        now (the engine retries after other sequences finish)."""

    def remove(self, key: int) -> None:
        """Forget sequence ``key`` and free its cache."""

    def reuse_prefix(self, key: int, prompt: list[int]) -> int:
        """Fill ``key``'s cache with the longest cached prefix of ``prompt`` (leaving at least its last
        token to run); returns how many tokens were filled."""

    def remember_prefix(self, key: int, prompt: list[int]) -> None:
        """Offer ``key``'s freshly computed prompt cache to the prefix cache."""

    def forward(self, work: list[Work]) -> list[torch.Tensor | None]:
        """Run ``work``; per item its float32 logits (``[1, vocab]``, ``[len(tokens), vocab]`` or None)."""

    def fits(self, length: int) -> bool:
        """Whether a sequence of ``length`` tokens could ever fit (alone) in the cache budget."""


class HFRunner:
    """Any transformers causal LM, through its own forward and ``DynamicCache``, one sequence at a time.

    The generic fallback: exact for every architecture transformers supports (sliding windows included,
    as each sequence has its own cache), but each step runs the model once per sequence, so it is much
    slower than :class:`~nexus_llm.serve.engine.llama.LlamaRunner` under concurrency.
    """

    prefix_caching = False

    def __init__(self, model: Any) -> None:
        self.model = model
        self._caches: dict[int, Any] = {}

    def add(self, key: int, length: int) -> bool:
        from transformers import DynamicCache

        self._caches[key] = DynamicCache(config=self.model.config)
        return True

    def fits(self, length: int) -> bool:
        return True

    def remove(self, key: int) -> None:
        self._caches.pop(key, None)

    def reuse_prefix(self, key: int, prompt: list[int]) -> int:
        return 0

    def remember_prefix(self, key: int, prompt: list[int]) -> None:
        pass

    def forward(self, work: list[Work]) -> list[torch.Tensor | None]:
        out: list[torch.Tensor | None] = []
        device = self.model.device
        for item in work:
            ids = torch.tensor([item.tokens], dtype=torch.long, device=device)
            pos = torch.arange(item.start, item.start + len(item.tokens), device=device)[None]
            keep = 0 if item.logits == "all" else 1
            result = self.model(
                input_ids=ids,
                position_ids=pos,
                cache=self._caches[item.key],
                use_cache=True,
                logits_to_keep=keep,
            )
            out.append(None if item.logits == "none" else result.logits[0].float())
        return out
