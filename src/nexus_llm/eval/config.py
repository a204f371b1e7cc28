"""The ``eval:`` section of ``nexus.yaml``.

Every field is also a ``nexus eval`` option; a value given on the command line wins over the file.
The defaults make a full evaluation of a small model on a laptop take seconds to minutes; ``limit`` and
``max_tokens`` cut it down further for a quick check.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from nexus_llm.configbase import StrictModel

DEFAULT_PROMPTS = [
    "The meaning of life is",
    "Once upon a time,",
    "The best way to learn a new language is",
]


class EvalConfig(StrictModel):
    """``nexus eval`` settings: held-out data, perplexity windows, lm-eval tasks, sample generations."""

    # --- inputs
    data: str | None = Field(
        None,
        description="held-out data: a token directory from `nexus data tokenize` (its `split` is used) or "
        "curated data (a directory of part-*.parquet with `text`); unset = the `tokens/` directory beside "
        "the model directory (the workspace layout), when there is one",
    )
    split: Literal["val", "train"] = Field("val", description="which split of a token directory to score")
    runs: str | None = Field(
        None,
        description="training run directory holding metrics.jsonl, for the loss curve in the report; "
        "unset = the `runs/` directory beside the model directory, when there is one",
    )
    # --- perplexity and bits per byte
    perplexity: bool = Field(True, description="score the held-out data (perplexity, bits per byte)")
    context_length: int | None = Field(
        None, ge=2, description="tokens per window; unset = the model's max_position_embeddings"
    )
    stride: int | None = Field(
        None,
        ge=1,
        description="tokens a window advances over a long document; every token after the first window "
        "keeps at least context_length - stride tokens of context; unset = context_length // 2",
    )
    first_token: Literal["auto", "bos", "eos"] = Field(
        "auto",
        description="the context token a document is scored after, so that its first token is predicted "
        "too: 'bos', 'eos' (the separator that precedes a document in packed training data), or 'auto' = "
        "bos when the tokenizer adds BOS when encoding, else eos",
    )
    batch_size: int = Field(8, ge=1, description="windows per forward pass (and lm-eval batch size)")
    limit: int | None = Field(
        None, ge=1, description="score at most this many documents, and this many examples per task"
    )
    max_tokens: int | None = Field(
        None, ge=1, description="score at most this many held-out tokens (whole documents in order)"
    )
    # --- lm-evaluation-harness
    tasks: list[str] = Field(
        default_factory=list,
        description="lm-eval tasks: built-in names (e.g. mrpc, glue, hellaswag), paths to task YAML files, "
        "or names of tasks defined in task_dirs",
    )
    task_dirs: list[str] = Field(
        default_factory=list, description="directories of task YAML files (e.g. examples/tasks)"
    )
    task_data: dict[str, str] = Field(
        default_factory=dict,
        description="task name -> local folder with that task's split files (train/validation/test "
        "parquet, jsonl or csv, as in the dataset repository), for offline machines",
    )
    num_fewshot: int | None = Field(None, ge=0, description="few-shot examples; unset = each task's own")
    bootstrap_iters: int = Field(
        0, ge=0, description="bootstrap iterations for metric standard errors (0 = none; lm-eval uses 100000)"
    )
    # --- sample generations
    prompts: list[str] = Field(default_factory=lambda: list(DEFAULT_PROMPTS))
    chat_prompts: list[str] = Field(
        default_factory=list,
        description="questions asked as user messages through the model's chat template (instruct models)",
    )
    max_new_tokens: int = Field(48, ge=1)
    temperature: float = Field(0.0, ge=0.0, description="0 = greedy decoding")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    # --- runtime
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto = float32 on CPU, the checkpoint's dtype on an accelerator"
    )
    seed: int = 0

    @field_validator("tasks", "prompts", "chat_prompts")
    @classmethod
    def _no_blank_entries(cls, value: list[str]) -> list[str]:
        if any(not v.strip() for v in value):
            raise ValueError("entries must be non-empty strings; remove the empty entry")
        return value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value not in ("auto", "cpu", "mps") and not value.startswith("cuda"):
            raise ValueError("use auto, cpu, cuda, cuda:N or mps")
        return value

    @model_validator(mode="after")
    def _stride_fits_context(self) -> EvalConfig:
        if self.context_length is not None and self.stride is not None and self.stride >= self.context_length:
            raise ValueError(
                f"stride ({self.stride}) must be smaller than context_length ({self.context_length}) so that "
                "every window keeps some context; try stride: context_length // 2"
            )
        return self
