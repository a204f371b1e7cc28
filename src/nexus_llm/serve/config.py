"""The ``serve:`` section of ``nexus.yaml`` (every ``nexus serve`` flag has a key here).

API keys are deliberately not a config key: secrets come from ``--api-key`` or ``NEXUS_API_KEYS`` (the
deploy stage passes them from Secrets Manager), never from a file that ends up in git.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from nexus_llm.configbase import StrictModel


class ServeConfig(StrictModel):
    """``nexus serve`` settings: limits, batching and observability."""

    host: str = Field("127.0.0.1", description="interface to bind; 0.0.0.0 inside a container")
    port: int = Field(8080, ge=1, le=65535)
    model_name: str | None = Field(
        None, description="name clients pass as `model` (default: the model directory's name)"
    )
    max_concurrent: int = Field(
        100,
        ge=1,
        le=100_000,
        description="requests admitted to the engine at once (batched or waiting in it)",
    )
    max_queue: int = Field(
        100, ge=0, le=100_000, description="requests waiting for an admission slot before 429s start"
    )
    queue_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="longest wait for an admission slot before a 429"
    )
    engine: Literal["auto", "builtin", "vllm"] = Field(
        "auto",
        description="auto = vLLM when it is installed and a CUDA GPU is visible, else the built-in engine",
    )
    max_batch_size: int = Field(
        64, ge=1, le=4096, description="sequences decoded together in one forward pass"
    )
    max_prefill_tokens: int = Field(
        256,
        ge=16,
        le=1_000_000,
        description="prompt tokens run per engine step (chunked prefill: a longer prompt takes several "
        "steps, interleaved with the running decodes)",
    )
    kv_cache_mb: int | None = Field(
        None, ge=16, description="KV cache budget in MiB (default: a quarter of the machine's memory)"
    )
    prefix_cache_mb: int = Field(
        256, ge=0, description="memory for cached prompt prefixes in MiB (0 turns prefix caching off)"
    )
    runner: Literal["auto", "llama", "hf"] = Field(
        "auto",
        description="built-in engine's model runner: auto = the fast Llama runner when the architecture "
        "allows, else transformers' forward (hf)",
    )
    lora: dict[str, str] = Field(
        default_factory=dict, description="LoRA adapters served beside the model: name -> peft directory"
    )
    max_tokens: int = Field(4096, ge=1, description="largest `max_tokens` a request may ask for")
    default_max_tokens: int = Field(
        256,
        ge=1,
        description="`max_tokens` of OpenAI requests that omit it (clamped to max_tokens and the context left)",
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="largest request body; larger gets 413")
    max_stop: int = Field(4, ge=0, le=64, description="most `stop` strings per request (OpenAI allows 4)")
    max_stop_chars: int = Field(256, ge=1, description="longest `stop` string")
    max_prompts: int = Field(16, ge=1, le=1024, description="most prompts in one /v1/completions request")
    max_n: int = Field(16, ge=1, le=128, description="most choices (`n`) per prompt")
    metrics_auth: bool = Field(False, description="require an API key on /metrics too")
    drain_timeout_s: float = Field(
        30.0, ge=0, le=3600, description="on SIGTERM, time in-flight requests get to finish"
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="weights dtype: auto = bfloat16 on CPUs with native bf16 (AVX512-BF16, AMX), else "
        "float32; the checkpoint's dtype on GPU",
    )
    threads: int | None = Field(
        None, ge=1, description="torch CPU threads (default: every usable core; OpenMP spins briefly)"
    )
    playground: bool = Field(True, description="serve the chat playground page at /")
    quantize: Literal["auto", "none", "int4", "int8", "w8a8"] = Field(
        "auto",
        description="low-bit weight copies for steps of few tokens (fast runner, CPU): auto = int4 where "
        "the weights are 4-bit already (an imported Q4 GGUF: the layers' weights lose nothing), with the "
        "output layer in 8-bit blocks as in llama.cpp's Q4 files; activations are rounded to 8 bits per block "
        "of 32 (the native AVX2 kernels, as llama.cpp does) or to bf16 (torch's kernel), and prompt scoring "
        "stays on the dense weights; else none. int4 / int8 = always (faster for one or a few streams, "
        "slightly less exact); w8a8 = int8 weights and per-token int8 activations (oneDNN; the fastest for "
        "many streams on CPUs with AVX-512 VNNI, at a measured accuracy cost); none = the dtype's weights only",
    )
    emf: bool = Field(True, description="one CloudWatch Embedded Metric Format JSON line per request")
    access_log: bool = Field(False, description="uvicorn's access log (EMF lines already cover requests)")
    model_cache_dir: str | None = Field(
        None,
        description="where s3:// models are downloaded (default $NEXUS_CACHE or ~/.cache/nexus_llm, /models: the cache train and eval share)",
    )
