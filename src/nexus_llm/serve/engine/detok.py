"""Generated token ids to text deltas, with stop strings.

Incremental decoding is the tokenizers library's ``DecodeStream`` (it holds back bytes of a character
split across tokens). Stop strings are ours: text that could still grow into a stop string is held
back, so a stop string is never half-sent, and the text before a matched stop is released.
"""

from __future__ import annotations

from tokenizers.decoders import DecodeStream


class StopMatcher:
    """Finds the first stop string in a growing text and holds back possible starts of one."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Add text; return (text safe to send, whether a stop string was reached)."""
        if not self.stops:
            return text, False
        self.pending += text
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.pending = self.pending[: min(hits)], ""
            return out, True
        keep = self._held_suffix()
        out = self.pending[: len(self.pending) - keep]
        self.pending = self.pending[len(self.pending) - keep :]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out

    def _held_suffix(self) -> int:
        """Length of the longest suffix of the pending text that is a proper prefix of a stop string."""
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(self.pending)), best, -1):
                if self.pending.endswith(stop[:n]):
                    best = n
                    break
        return best


class TextStream:
    """Turns one request's generated ids into text deltas (``step``), stopping at stop strings."""

    def __init__(self, tokenizer, stops: tuple[str, ...] = ()) -> None:
        self._backend = getattr(tokenizer, "backend_tokenizer", None)
        self._tokenizer = tokenizer
        self._stream = DecodeStream(skip_special_tokens=True) if self._backend is not None else None
        self._ids: list[int] = []
        self._text = ""
        self.stops = StopMatcher(stops)

    def step(self, token_id: int) -> tuple[str, bool]:
        """Add one token; return (text to send now, whether a stop string ended the text)."""
        return self.stops.feed(self._decode(token_id))

    def flush(self) -> str:
        """Text still held back (the request ended for another reason)."""
        return self.stops.flush()

    def _decode(self, token_id: int) -> str:
        if self._stream is not None:
            return self._stream.step(self._backend, token_id) or ""
        # Slow (Python) tokenizers: decode everything, send what is new once it is whole characters.
        self._ids.append(token_id)
        text = self._tokenizer.decode(self._ids, skip_special_tokens=True)
        if text.endswith("\ufffd") or not text.startswith(self._text):
            return ""
        delta, self._text = text[len(self._text) :], text
        return delta
