"""Sample generations for a few prompts, stored with the results so a reader sees what the numbers mean."""

from __future__ import annotations

import time
from typing import Any


def generate_samples(
    model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int = 48,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    add_special_tokens: bool = True,
) -> list[dict[str, Any]]:
    """One completion per prompt, all prompts in one left-padded batch (greedy when temperature is 0)."""
    import torch

    if not prompts:
        return []
    torch.manual_seed(seed)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the right end of every row
    try:
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=add_special_tokens)
        enc = enc.to(model.device)
    finally:
        tokenizer.padding_side = side
    options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": tokenizer.pad_token_id}
    if temperature > 0:
        options.update(do_sample=True, temperature=temperature, top_p=top_p)
    else:
        options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**enc, **options)
    seconds = time.perf_counter() - start
    new = out[:, enc["input_ids"].shape[1] :]
    samples = []
    for prompt, row in zip(prompts, new, strict=True):
        ids = row.tolist()
        if tokenizer.eos_token_id in ids:
            ids = ids[: ids.index(tokenizer.eos_token_id)]
        samples.append(
            {
                "prompt": prompt,
                "completion": tokenizer.decode(ids, skip_special_tokens=True),
                "new_tokens": len(ids),
            }
        )
    for s in samples:
        s["batch_seconds"] = round(seconds, 3)
    return samples


def generate_chat_samples(
    model,
    tokenizer,
    questions: list[str],
    max_new_tokens: int = 48,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Answers to ``questions`` asked as user messages through the model's chat template (none without
    one), so an instruct model is evaluated the way it is used."""
    if not questions or not getattr(tokenizer, "chat_template", None):
        return []
    rendered = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
        )
        for q in questions
    ]
    samples = generate_samples(model, tokenizer, rendered, max_new_tokens, temperature, top_p, seed,
                               add_special_tokens=False)  # fmt: skip
    for sample, question in zip(samples, questions, strict=True):
        sample["prompt"] = question
    return samples
