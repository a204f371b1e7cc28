"""Checkpoints: ``COMPLETE`` lists every file with its size; a checkpoint counts only when all are there."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
from transformers import LlamaConfig, LlamaForCausalLM

from nexus_llm.config import parse_config
from nexus_llm.train.checkpoint import COMPLETE, STATE, complete_checkpoints, save_checkpoint
from nexus_llm.train.distributed import build_accelerator


@pytest.fixture
def saved(tmp_path, caplog):
    """A real accelerate checkpoint of a tiny Llama with tied embeddings, and the log of saving it."""
    accelerator = build_accelerator(parse_config({}).train, "fp32")
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True)  # fmt: skip
    accelerator.prepare(LlamaForCausalLM(config))
    with caplog.at_level(logging.WARNING):
        uri = save_checkpoint(accelerator, str(tmp_path / "ckpt"), 3, {"step": 3}, str(tmp_path / "stage"), 2)
    return tmp_path / "ckpt", uri, caplog.text


def test_complete_lists_every_file_with_its_size(saved):
    root, uri, _ = saved
    marker = json.loads((root / "checkpoint-3" / COMPLETE).read_text())
    on_disk = {
        str(p.relative_to(root / "checkpoint-3")): p.stat().st_size
        for p in (root / "checkpoint-3").rglob("*")
        if p.is_file() and p.name != COMPLETE
    }
    assert marker["files"] == on_disk and marker["step"] == 3
    assert {"model.safetensors", STATE} <= set(marker["files"])
    assert complete_checkpoints(str(root)) == [(3, uri)]


def test_a_checkpoint_whose_files_arrived_partly_is_not_complete(saved):
    """SageMaker syncs the checkpoint directory file by file in no order: COMPLETE may come first."""
    root, uri, _ = saved
    source = root / "checkpoint-3"
    (root / "checkpoint-5").mkdir()
    shutil.copy(source / COMPLETE, root / "checkpoint-5" / COMPLETE)  # the marker alone
    shutil.copytree(source, root / "checkpoint-6")
    weights = root / "checkpoint-6" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # still being copied
    shutil.copytree(source, root / "checkpoint-7")
    (root / "checkpoint-7" / COMPLETE).write_text(json.dumps({"step": 7}))  # a bare marker proves nothing
    shutil.copytree(source, root / "checkpoint-8")
    assert complete_checkpoints(str(root)) == [(3, uri), (8, str(root / "checkpoint-8"))]


def test_saving_tied_embeddings_logs_no_shared_tensor_warning(saved):
    assert "Removed shared tensor" not in saved[2]


def test_other_shared_tensors_are_still_reported(caplog):
    from nexus_llm.train.checkpoint import quiet_tied_weights

    logger = logging.getLogger("accelerate.utils.other")
    with caplog.at_level(logging.WARNING), quiet_tied_weights():
        logger.warning("[RANK 0] Removed shared tensor {'lm_head.weight'} while saving. This should be OK")
        logger.warning("[RANK 0] Removed shared tensor {'decoder.proj.weight'} while saving. Check it")
    assert "lm_head" not in caplog.text and "decoder.proj.weight" in caplog.text
