"""The trained model as a plain Hugging Face directory: config, safetensors, tokenizer, generation config.

Nothing of ours is needed to load it: ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained``. LoRA adapters are merged into the weights first, so the directory is
a complete model, not an adapter that needs its base.
"""

from __future__ import annotations

import tempfile
from typing import Any

from nexus_llm import storage

GENERATION_DEFAULTS = {"do_sample": True, "temperature": 0.8, "top_p": 0.95, "max_new_tokens": 256}


def export_model(
    accelerator, model, tokenizer_uri: str, output_dir: str, manifest: dict[str, Any]
) -> dict[str, Any]:
    """Write the model directory and, last, its ``manifest.json`` (call on every process)."""
    state_dict = accelerator.get_state_dict(model)  # gathers ZeRO-3 / FSDP shards
    if not accelerator.is_main_process:
        accelerator.wait_for_everyone()
        return manifest
    from transformers import AutoTokenizer, GenerationConfig

    storage.remove(storage.join(output_dir, storage.MANIFEST))
    unwrapped = accelerator.unwrap_model(model)
    if hasattr(unwrapped, "merge_and_unload"):
        unwrapped, state_dict = unwrapped.merge_and_unload(), None
    with tempfile.TemporaryDirectory(prefix="nexus-model-") as tmp:
        unwrapped.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        with tempfile.TemporaryDirectory(prefix="nexus-tok-") as tok_tmp:
            tokenizer = AutoTokenizer.from_pretrained(storage.download_dir(tokenizer_uri, tok_tmp))
        tokenizer.save_pretrained(tmp)
        cfg = unwrapped.config
        GenerationConfig(
            bos_token_id=cfg.bos_token_id,
            eos_token_id=cfg.eos_token_id,
            pad_token_id=cfg.pad_token_id if cfg.pad_token_id is not None else cfg.eos_token_id,
            **GENERATION_DEFAULTS,
        ).save_pretrained(tmp)
        files = storage.upload_dir(tmp, output_dir)
    manifest = {**manifest, "files": files}
    storage.write_manifest(output_dir, manifest)
    accelerator.wait_for_everyone()
    return manifest
