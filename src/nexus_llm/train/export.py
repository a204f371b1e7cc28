"""The trained model as a plain Hugging Face directory: config, safetensors, tokenizer, generation config.

Nothing of ours is needed to load it: ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained``. LoRA adapters are merged into the weights first, so the directory is
a complete model, not an adapter that needs its base; the adapter itself is kept beside the weights in
``adapter/`` (peft's format, loadable with ``PeftModel.from_pretrained(base, "model/adapter")``), for
servers that apply adapters to a shared base. A fine-tuned model keeps its base model's generation
config (its EOS ids and sampling defaults); a model trained from scratch gets ours.
"""

from __future__ import annotations

import tempfile
from typing import Any

from nexus_llm import storage
from nexus_llm.configbase import ConfigError
from nexus_llm.modelinfo import context_length

GENERATION_DEFAULTS = {"do_sample": True, "temperature": 0.8, "top_p": 0.95, "max_new_tokens": 256}
STAGE = "train"
WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin*")
"""Weight files of any earlier export: a stale shard or index beside new weights changes what loads."""


def check_output_dir(output_dir: str) -> dict[str, Any]:
    """Refuse, before training, an output directory that holds another stage's output (it is cleared).

    Returns the directory's manifest (empty if none).
    """
    old = storage.read_manifest(output_dir) or {}
    stage = old.get("stage", STAGE)
    if stage != STAGE:
        raise ConfigError(
            f"train.output_dir {output_dir!r} holds the output of `{stage}`, which exporting would "
            "replace; choose another output directory"
        )
    return old


def _clear_previous(output_dir: str, old: dict[str, Any]) -> None:
    """Delete what an earlier export wrote (its listed files, and weights in any case)."""
    for rel in old.get("files", []) if old.get("stage") == STAGE else []:
        storage.remove(storage.join(output_dir, rel))
    fs, root = storage.get_fs(output_dir)
    for pattern in WEIGHT_PATTERNS:
        for path in fs.glob(f"{root.rstrip('/')}/{pattern}"):
            fs.rm(path)


ADAPTER_DIR = "adapter"


def _generation_config(cfg, base_dir: str | None):
    from transformers import GenerationConfig

    if base_dir is not None:
        try:
            return GenerationConfig.from_pretrained(base_dir)
        except OSError:
            pass  # the base had none: ours below
    return GenerationConfig(
        bos_token_id=cfg.bos_token_id,
        eos_token_id=cfg.eos_token_id,
        pad_token_id=cfg.pad_token_id if cfg.pad_token_id is not None else cfg.eos_token_id,
        **GENERATION_DEFAULTS,
    )


def export_model(
    accelerator,
    model,
    tokenizer_uri: str,
    output_dir: str,
    manifest: dict[str, Any],
    base_dir: str | None = None,
) -> dict[str, Any]:
    """Write the model directory, replacing an older export, and last its ``manifest.json``.

    Call on every process (ZeRO-3 / FSDP gather the weights collectively).
    """
    state_dict = accelerator.get_state_dict(model)  # gathers ZeRO-3 / FSDP shards
    if not accelerator.is_main_process:
        accelerator.wait_for_everyone()
        return manifest
    from transformers import AutoTokenizer

    old = check_output_dir(output_dir)
    storage.remove(storage.join(output_dir, storage.MANIFEST))  # first: never complete while replaced
    unwrapped = accelerator.unwrap_model(model)
    with tempfile.TemporaryDirectory(prefix="nexus-model-") as tmp:
        if hasattr(unwrapped, "merge_and_unload"):
            unwrapped.save_pretrained(f"{tmp}/{ADAPTER_DIR}")  # the adapter alone, before merging
            unwrapped, state_dict = unwrapped.merge_and_unload(), None
        unwrapped.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        with tempfile.TemporaryDirectory(prefix="nexus-tok-") as tok_tmp:
            tokenizer = AutoTokenizer.from_pretrained(storage.download_dir(tokenizer_uri, tok_tmp))
        cfg = unwrapped.config
        context = context_length(cfg, default=0)  # the exported tokenizer's model_max_length
        if context:  # the tokenizer's own default (2048, or "unlimited") does not know the model
            tokenizer.model_max_length = context
        tokenizer.save_pretrained(tmp)
        _generation_config(cfg, base_dir).save_pretrained(tmp)
        _clear_previous(output_dir, old)
        files = storage.upload_dir(tmp, output_dir)
    manifest = {**manifest, "files": files}
    storage.write_manifest(output_dir, manifest)
    accelerator.wait_for_everyone()
    return manifest
