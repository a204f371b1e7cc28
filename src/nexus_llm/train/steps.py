"""One optimizer step and one evaluation, with token-exact loss normalisation.

The loss of a step is the mean cross-entropy over every target token of the step, whatever the
micro-batching, gradient accumulation or number of processes: each micro-batch backpropagates its
*summed* token loss divided by the step's total target count (known in advance from the data: a text
window has ``seq_len`` targets, a chat row the assistant tokens its loss mask marks), times the factor
that undoes DDP's (and DeepSpeed's) gradient averaging.
Averaging per-micro-batch means instead weights short batches wrongly (the gradient accumulation bug
that transformers fixed in 4.46).
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from nexus_llm.train.data import Batch, TrainingData, slots, validation_indices


def _token_loss_sum(model, batch: Batch | None, seq_len: int, device) -> torch.Tensor:
    """Summed next-token loss of a batch (weighted by its loss mask, when it has one); for an empty slot,
    a zero that still touches every weight (so DDP's gradient all-reduce happens on every rank).

    ``use_cache=False``: training needs no KV cache, and transformers detects packed conversations from
    restarting position ids only without one (see :mod:`.data`)."""
    if batch is None:
        dummy = torch.zeros(1, seq_len, dtype=torch.long, device=device)
        return model(input_ids=dummy, use_cache=False).logits.sum() * 0.0
    t = batch.tensors(device)
    logits = model(input_ids=t["input_ids"], position_ids=t["position_ids"], use_cache=False).logits
    flat_logits, flat_targets = logits.float().flatten(0, 1), t["targets"].flatten()
    if t["weights"] is None:
        return F.cross_entropy(flat_logits, flat_targets, reduction="sum")
    losses = F.cross_entropy(flat_logits, flat_targets, reduction="none")
    return (losses * t["weights"].flatten()).sum()


def train_step(
    accelerator,
    model,
    optimizer,
    scheduler,
    data: TrainingData,
    chosen: np.ndarray,
    accum: int,
    grad_clip: float,
    gas_scaled: bool,
) -> tuple[float, float | None]:
    """Run forward/backward over this rank's share of ``chosen`` and step the optimizer.

    Returns (this rank's summed token loss, gradient norm before clipping).
    """
    world, rank = accelerator.num_processes, accelerator.process_index
    scale = world * (accum if gas_scaled else 1) / max(data.target_count(chosen), 1)
    local_sum = 0.0
    for m, idx in enumerate(slots(chosen, accum, world, rank)):
        sync = m == accum - 1
        with nullcontext() if sync or world == 1 else accelerator.no_sync(model):
            loss_sum = _token_loss_sum(
                model, data.batch(idx) if len(idx) else None, data.seq_len, accelerator.device
            )
            accelerator.backward(loss_sum * scale)
        local_sum += float(loss_sum.detach())
    grad_norm = None
    if grad_clip > 0:
        grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), grad_clip))
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return local_sum, grad_norm


@torch.no_grad()
def evaluate(accelerator, model, data: TrainingData, micro_batch: int, batches: int) -> float | None:
    """Mean validation loss per token over a fixed sample of the validation split (None when empty).

    The sample is ``batches × micro_batch`` sequences spread over the split, divided among the ranks;
    every rank runs the same number of forwards (sharded models need all ranks in each forward).
    """
    world, rank = accelerator.num_processes, accelerator.process_index
    total = min(len(data), batches * micro_batch)  # the same sample whatever the number of processes
    if total == 0:
        return None
    mine = validation_indices(len(data), total, world, rank)
    rounds = -(-((total + world - 1) // world) // micro_batch)
    model.eval()
    sums = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    for r in range(rounds):
        idx = mine[r * micro_batch : (r + 1) * micro_batch]
        loss = _token_loss_sum(model, data.batch(idx) if len(idx) else None, data.seq_len, accelerator.device)
        sums += torch.tensor(
            [float(loss), data.target_count(idx)], dtype=torch.float64, device=accelerator.device
        )
    model.train()
    sums = accelerator.reduce(sums, "sum") if world > 1 else sums
    return float(sums[0] / sums[1])
