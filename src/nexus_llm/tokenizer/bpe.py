"""``nexus tokenizer train``: a byte-level BPE tokenizer, saved for ``AutoTokenizer.from_pretrained``.

Byte-level BPE (GPT-2/Llama-3 style) is lossless on any UTF-8 input, so no text is ever mapped to an
unknown token. The special tokens are reserved ids (pad, bos, eos first) that ordinary text can never
produce: encoding splits their literal strings like any other text (see :func:`load_encoder`).
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from nexus_llm import storage
from nexus_llm.tokenizer.config import TokenizerConfig
from nexus_llm.tokenizer.curated import count_rows, iter_texts, open_curated

TOKENIZER_FILE = "tokenizer.json"


def build_bpe(cfg: TokenizerConfig, texts) -> Any:
    """Train the raw ``tokenizers.Tokenizer`` on an iterator of texts."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=[cfg.pad_token, cfg.bos_token, cfg.eos_token, *cfg.extra_special_tokens],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def save_for_transformers(tok: Any, cfg: TokenizerConfig, out_dir: str) -> None:
    """Save as a ``PreTrainedTokenizerFast`` directory with special tokens and chat template."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=cfg.bos_token,
        eos_token=cfg.eos_token,
        pad_token=cfg.pad_token,
        additional_special_tokens=list(cfg.extra_special_tokens) or None,
        model_max_length=cfg.model_max_length,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = cfg.chat_template
    fast.save_pretrained(out_dir)


def run_tokenizer_train(cfg: TokenizerConfig, data_uri: str, out_uri: str) -> dict[str, Any]:
    """Train on curated data at ``data_uri``; write the tokenizer and its ``manifest.json`` (last)."""
    data = open_curated(data_uri)
    started = time.perf_counter()
    trained_bytes = 0
    trained_docs = 0

    def counted():
        nonlocal trained_bytes, trained_docs
        for text in iter_texts(data, cfg.max_train_bytes):
            trained_bytes += len(text.encode("utf-8"))
            trained_docs += 1
            yield text

    tok = build_bpe(cfg, counted())
    if trained_docs == 0:
        raise ValueError(f"{data_uri!r} holds no non-empty documents to train a tokenizer on")
    with tempfile.TemporaryDirectory(prefix="nexus-tokenizer-") as tmp:
        save_for_transformers(tok, cfg, tmp)
        clear_previous(out_uri)
        files = storage.upload_dir(tmp, out_uri)
    manifest = {
        "stage": "tokenizer",
        "tokenizer_sha256": storage.file_sha256(storage.join(out_uri, TOKENIZER_FILE)),
        "vocab_size": tok.get_vocab_size(),
        "special_tokens": {
            "pad": [cfg.pad_token, tok.token_to_id(cfg.pad_token)],
            "bos": [cfg.bos_token, tok.token_to_id(cfg.bos_token)],
            "eos": [cfg.eos_token, tok.token_to_id(cfg.eos_token)],
        },
        "input": {"uri": data_uri, "manifest_sha256": data.manifest_sha256, "documents": count_rows(data)},
        "trained_on": {"documents": trained_docs, "bytes": trained_bytes},
        "settings": cfg.model_dump(),
        "files": files,
        "seconds": round(time.perf_counter() - started, 3),
    }
    storage.write_manifest(out_uri, manifest)
    return manifest


def clear_previous(out_uri: str) -> None:
    """Forget an older tokenizer in ``out_uri`` before writing: its manifest first, so an interrupted
    rerun never looks complete, then the files it listed, so none stays stale beside the new ones."""
    old = storage.claim_output(out_uri, "tokenizer", "a tokenizer")
    for rel in old.get("files", []):
        storage.remove(storage.join(out_uri, rel))


def load_encoder(tokenizer_dir: str) -> Any:
    """The raw fast tokenizer for bulk encoding, with special-token strings treated as plain text.

    ``encode_special_tokens = True`` makes a literal ``"<|eos|>"`` in a document split into ordinary
    byte-level pieces instead of becoming the EOS id, so documents cannot forge document boundaries.
    """
    from tokenizers import Tokenizer

    path = storage.join(tokenizer_dir, TOKENIZER_FILE)
    try:
        tok = Tokenizer.from_str(storage.read_text(path))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} not found: {tokenizer_dir!r} is not a tokenizer directory. "
            "Run `nexus tokenizer train DATA -o DIR` first."
        ) from None
    tok.encode_special_tokens = True
    tok.no_truncation()
    tok.no_padding()
    return tok
