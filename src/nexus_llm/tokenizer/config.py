"""The ``tokenizer:`` and ``tokenize:`` sections of ``nexus.yaml``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from nexus_llm.configbase import StrictModel

DEFAULT_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


class TokenizerConfig(StrictModel):
    """``nexus tokenizer train``: a byte-level BPE tokenizer trained with Hugging Face ``tokenizers``."""

    vocab_size: int = Field(8192, ge=300, le=1 << 20, description="final vocabulary, special tokens included")
    min_frequency: int = Field(2, ge=1, description="a pair must occur this often to be merged")
    bos_token: str = "<|bos|>"
    eos_token: str = "<|eos|>"
    pad_token: str = "<|pad|>"
    extra_special_tokens: list[str] = Field(
        default_factory=list, description="more special tokens, e.g. role markers for chat fine-tuning"
    )
    max_train_bytes: int = Field(
        1 << 30,
        ge=1,
        description="train on at most this many bytes of text (read in input order); BPE gains little beyond ~1 GB",
    )
    model_max_length: int = Field(2048, ge=1, description="recorded in tokenizer_config.json")
    chat_template: str = Field(
        DEFAULT_CHAT_TEMPLATE, description="Jinja chat template stored with the tokenizer"
    )

    @model_validator(mode="after")
    def _distinct_specials(self) -> TokenizerConfig:
        specials = [self.pad_token, self.bos_token, self.eos_token, *self.extra_special_tokens]
        if len(set(specials)) != len(specials) or not all(specials):
            raise ValueError(
                "bos_token, eos_token, pad_token and extra_special_tokens must be distinct, non-empty strings"
            )
        return self


class TokenizeConfig(StrictModel):
    """``nexus data tokenize``: encode curated documents into packed token shards."""

    val_fraction: float = Field(
        0.01, ge=0.0, lt=1.0, description="fraction of documents (chosen by id hash) for validation"
    )
    split_seed: int = Field(0, ge=0, description="changes which documents go to validation")
    shard_tokens: int = Field(
        1 << 26, ge=1024, description="tokens per shard file (64 Mi tokens = 128 MiB as uint16)"
    )
    batch_rows: int = Field(1024, ge=1, description="documents encoded per batch (bounds memory)")
    dtype: Literal["auto", "uint16", "uint32"] = Field(
        "auto", description="token id type: auto = uint16 when the vocabulary fits, else uint32"
    )
    chat_inputs: list[str] = Field(
        default_factory=list,
        description="chat data for supervised fine-tuning: JSON lines of OpenAI-shaped "
        '{"messages": [...]}, rendered with the model\'s chat template, loss on assistant tokens only',
    )
    chat_val_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="fraction of chat records (by id) held out for validation"
    )
    threads: int = Field(
        0,
        ge=0,
        description="encoding threads: 0 = one per CPU core, 1 = serial; N > 1 sizes the tokenizers thread "
        "pool when tokenizing is its first use in the process (the pool is created once)",
    )
