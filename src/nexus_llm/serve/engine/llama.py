"""The fast path: a lean forward pass for Llama-architecture models, written for CPU serving.

Why not the transformers forward: on SmolLM2-135M (30 layers) with 2 cores, a decode step through
``LlamaForCausalLM`` spent about half its time outside the matrix multiplications (RMSNorm as six ops,
rotary embeddings, the KV cache growing by concatenation at every step, per-call weight reorders in
oneDNN, and a CPU flash-attention kernel that is slow for one query token). Measured on the development
machine, one thread, bf16, CPU time per decode step (``/tmp`` scripts, not kept; the machine was shared):

======================  ============  ============
                        1 sequence    16 sequences
======================  ============  ============
transformers forward    80 ms         145 ms
this module             37-41 ms      52-66 ms
======================  ============  ============

What makes the difference:

- **weights prepacked for oneDNN** once at load (``torch.ops.mkldnn._reorder_linear_weight`` and
  ``_linear_pointwise``, what ``torch.compile``'s freezing pass emits for CPU): ``F.linear`` on bf16
  reorders the weight on every call, which cost 2x at 1 row and 1.8x at 16 rows (all 211 linears of
  SmolLM2: 43 vs 21-30 ms at 1 row, 59 vs 32 ms at 16). Packing is checked against ``F.linear`` at
  load and skipped where it is unavailable (or on GPUs);
- **fused projections**: q, k and v are one matmul, gate and up another;
- **one flat batch per step**: the decode tokens of all running sequences and the prompt chunks of
  sequences being prefilled go through every weight matrix together (weights are read once per step,
  not once per sequence), and attention is done per sequence: batched for the single-token (decode)
  rows, per prompt chunk with ``scaled_dot_product_attention`` otherwise. This is what makes chunked
  prefill cheap: a long prompt is run a chunk per step alongside the running decodes;
- **a slot KV cache** (``[layers, k/v, slots, kv_heads, capacity, head_dim]``), written in place: no
  concatenation per step; a finished sequence's slot is refilled by moving the last one (one copy);
- **a prefix cache** (:class:`PrefixCache`): the KV of prompt prefixes seen before (a system prompt, a
  conversation's earlier turns) is copied in instead of recomputed.

Supported: ``model_type`` llama, mistral (without a sliding window) and qwen2 (without one), SiLU MLPs,
RMSNorm, rotary embeddings of any kind transformers' ``rotary_emb`` module computes (the tables are taken
from it). Anything else is served by :class:`nexus_llm.serve.engine.runner.HFRunner`. LoRA adapters (peft
format) are applied per sequence, so sequences of different adapters share a batch.
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from nexus_llm.serve.engine.native import kernels
from nexus_llm.serve.engine.runner import Work

log = logging.getLogger("nexus_llm.serve.engine.base")

SUPPORTED_TYPES = ("llama", "mistral", "qwen2")
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def unsupported_reason(model: Any) -> str | None:
    """Why :class:`LlamaRunner` cannot run ``model`` (None when it can)."""
    cfg = model.config
    kind = getattr(cfg, "model_type", None)
    if kind not in SUPPORTED_TYPES:
        return f"model_type {kind!r} is not one of {', '.join(SUPPORTED_TYPES)}"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"hidden_act {cfg.hidden_act!r} is not silu"
    if getattr(cfg, "sliding_window", None) is not None and getattr(cfg, "use_sliding_window", True):
        return "the model uses sliding-window attention"
    layer_types = set(getattr(cfg, "layer_types", None) or ["full_attention"])
    if layer_types != {"full_attention"}:
        return f"layer types {sorted(layer_types)} are not all full attention"
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "rotary_emb"):
        return "the model does not have the Llama module layout"
    attn = inner.layers[0].self_attn
    if abs(float(getattr(attn, "scaling", attn.head_dim**-0.5)) - attn.head_dim**-0.5) > 1e-9:
        return "attention scaling is not 1/sqrt(head_dim)"
    if getattr(model.lm_head, "bias", None) is not None:
        return "the output layer has a bias"
    try:  # _rope relies on transformers' rotate_half layout: each table's two halves are equal
        probe = torch.zeros(1, device=model.device)
        _, sin = inner.rotary_emb(probe, torch.arange(64, device=model.device)[None])
        half = sin.shape[-1] // 2
        if not torch.equal(sin[..., :half], sin[..., half:]):
            return "its rotary tables are not in transformers' rotate_half layout"
    except (RuntimeError, TypeError, ValueError) as exc:
        return f"its rotary embedding could not be computed ({exc})"
    return None


# ---------------------------------------------------------------- linear layers
def _can_pack(weight: torch.Tensor) -> bool:
    return (
        weight.device.type == "cpu"
        and weight.dtype in (torch.float32, torch.bfloat16)
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    )


def _onednn_pack(weight: torch.Tensor) -> torch.Tensor | None:
    """``weight`` (contiguous) prepacked for oneDNN's linear, probed once against ``F.linear``; None where
    it cannot be packed, or the ATen build or the CPU lacks the kernel for its dtype."""
    if not _can_pack(weight):
        return None
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, 16)
        probe = torch.randn(3, weight.shape[1], dtype=weight.dtype)
        got = torch.ops.mkldnn._linear_pointwise(probe, packed, None, "none", [], "")
    except (RuntimeError, AttributeError):  # an ATen build without the oneDNN ops
        return None
    want = F.linear(probe, weight)
    tol = 1e-2 if weight.dtype == torch.bfloat16 else 1e-3
    if not torch.allclose(got.float(), want.float(), rtol=tol, atol=tol * want.abs().max().item()):
        return None
    return packed


QUANT_MAX_ROWS = {"int4": 8, "bf16": 1, "int8": 2, "w8a8": 64}
"""Steps of at most this many tokens use the low-bit copy (see :class:`Linear`) unless
:func:`measure_low_bit_rows` measured the crossover on this CPU at load (the runner does, on CPU)."""

CALIBRATION_ROWS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)

INT4_GROUP = 32
"""Input columns per int4 scale and zero: the block size of llama.cpp's Q4_0/Q4_1 (so those import exactly)."""


def int4_groups(weight: torch.Tensor, group: int = INT4_GROUP):
    """Asymmetric 4-bit codes for ``weight`` [out, in] by groups of ``group`` input columns.

    Returns ``(codes, scale, low, dequantized, exact)``: codes 0..15 [out, in], per-group scale and
    minimum [out, in // group], the float32 weights the codes stand for [out, in], and whether they
    reproduce ``weight`` to its own rounding (the weights
    *are* 4-bit already, as after importing a Q4_0/Q4_1 GGUF: serving them as int4 loses nothing).
    A group's maximum error counts as rounding when it is under a tenth of a code step, or under the
    dtype's half-ulp of the group's largest weight (bf16 rounding of ``code * scale + low``).
    """
    n, k = weight.shape
    w = weight.float().view(n, k // group, group)
    low, high = w.amin(-1), w.amax(-1)
    scale = (high - low) / 15
    codes = ((w - low[..., None]) / scale.clamp(min=1e-12)[..., None]).round().clamp(0, 15)
    dequantized = codes * scale[..., None] + low[..., None]
    err = (dequantized - w).abs().amax(-1)
    ulp = torch.finfo(weight.dtype).eps if weight.dtype.is_floating_point else 0.0
    tolerance = torch.maximum(0.1 * scale, ulp * w.abs().amax(-1))
    exact = bool((err <= tolerance).all())
    return codes.view(n, k).to(torch.int32), scale, low, dequantized.view(n, k), exact


def _int4_pack(weight: torch.Tensor, only_exact: bool) -> tuple[torch.Tensor, ...] | None:
    """``weight`` packed for :func:`nexus_llm.serve.engine.native.kernels`' ``q4_mm`` (3 tensors) where
    the native kernels are built, else for ``torch.ops.aten._weight_int4pack_mm_for_cpu`` (2 tensors);
    None where neither is possible, or with ``only_exact`` where the weights are not 4-bit already."""
    n, k = weight.shape
    if weight.device.type != "cpu" or k % INT4_GROUP:
        return None
    native = kernels()
    op = getattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu", None)
    if native is None and (op is None or n % 2):
        return None
    codes, scale, low, dequantized, exact = int4_groups(weight)
    if only_exact and not exact:
        return None
    if native is not None:
        # llama.cpp's Q4_1 layout: byte j of a block holds code j (low nibble) and code j + 16 (high)
        c = codes.to(torch.uint8).view(n, k // INT4_GROUP, 2, INT4_GROUP // 2)
        nibbles = (c[:, :, 0] | (c[:, :, 1] << 4)).reshape(n, k // 2).contiguous()
        return nibbles, scale.float().contiguous(), low.float().contiguous()
    # the kernel computes (code - 8) * scale + zero; its vectorised path is bf16 (float32 activations take
    # a scalar one, 40x slower: 1.1 ms vs 29 us for a 960x576 matrix at one row on an Ice Lake Xeon), so
    # scales and activations are bf16 whatever the model's dtype (Linear converts around the call)
    zeros = low + 8 * scale
    scales_zeros = torch.stack([scale, zeros], -1).transpose(0, 1).contiguous().to(torch.bfloat16)
    try:
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 1)
        probe = torch.randn(3, k, dtype=torch.bfloat16)
        got = op(probe, packed, INT4_GROUP, scales_zeros).float()
    except RuntimeError:  # an ATen build without the CPU int4 kernels
        return None
    want = F.linear(probe.float(), dequantized)
    if not torch.allclose(got, want, rtol=1e-2, atol=1e-2 * want.abs().max().item()):
        return None
    return packed, scales_zeros


def int8_blocks(weight: torch.Tensor, group: int = INT4_GROUP) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 codes of ``weight`` [out, in] by blocks of ``group`` input columns, each with its own
    scale (its largest magnitude / 127): llama.cpp's Q8_0. Returns codes [out, in] and scales
    [out, in // group]."""
    n, k = weight.shape
    w = weight.float().view(n, k // group, group)
    scale = w.abs().amax(-1) / 127
    codes = (w / scale.clamp(min=1e-30)[..., None]).round().clamp(-127, 127).to(torch.int8)
    return codes.view(n, k).contiguous(), scale.contiguous()


def _int8_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 codes of ``weight`` [out, in] with one float32 scale per output channel (row)."""
    w = weight.float()
    scale = (w.abs().amax(dim=1) / 127).clamp(min=1e-8)
    return (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8), scale


def _bf16_pack(weight: torch.Tensor) -> torch.Tensor | None:
    """A bf16 copy of float32 ``weight`` prepacked for oneDNN, where ``weight`` holds bf16 values already
    (a bf16 checkpoint loaded as float32 on a CPU without bf16, or an imported GGUF's 8-bit output layer,
    dequantized to bf16): the copy loses nothing, and for a one-token step it reads half the bytes
    (SmolLM2's 49152x576 output layer: 3.7 ms instead of 5.7 on an Ice Lake Xeon; slower from 4 tokens on,
    which the runner measures at load). Activations are rounded to bf16, as int4's are."""
    if weight.dtype != torch.float32:
        return None
    half = weight.to(torch.bfloat16)
    if not torch.equal(half.float(), weight):
        return None
    return _onednn_pack(half.contiguous())  # probed: oneDNN may lack bf16 on an older (AVX2-only) CPU


@functools.cache
def _activation_levels() -> int:
    """w8a8's activation codes span -levels..levels. Without VNNI the int8 dot product goes through
    ``vpmaddubsw``, whose 16-bit sums of two products saturate for 8-bit activations
    (255 * 127 * 2 > 32767): activations then keep to 7 bits. (Read once: /proc/cpuinfo, not per matrix.)"""
    from nexus_llm.train.hardware import cpu_flags

    return 127 if cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"} else 63


def _w8a8_pack(weight: torch.Tensor):
    """``weight`` as int8 (symmetric, one scale per output channel) prepacked for oneDNN's int8 matmul
    (AVX-512 VNNI / AMX int8 dot products where the CPU has them), with its scales; None where the
    ATen build lacks the oneDNN quantized ops or their result does not match."""
    op = getattr(torch.ops.onednn, "qlinear_pointwise", None)
    if weight.device.type != "cpu" or op is None or not torch.backends.mkldnn.is_available():
        return None
    levels = _activation_levels()
    codes, scale = _int8_rows(weight)
    try:
        zero = torch.zeros(len(codes), dtype=torch.long)
        packed = (
            torch.ops.onednn.qlinear_prepack(codes, None),
            scale,
            zero,
            levels,
            torch.tensor(levels + 1.5),
        )
        probe = torch.randn(3, weight.shape[1])
        got = _w8a8_mm(probe, packed)
    except (RuntimeError, AttributeError):
        return None
    want = F.linear(probe, weight.float())
    if not torch.allclose(got, want, rtol=0.05, atol=0.05 * want.abs().max().item()):
        return None
    return packed


def _w8a8_mm(x: torch.Tensor, packed) -> torch.Tensor:
    """``x @ W.T`` with ``W`` int8 and ``x`` quantized to 8 bits per token on the fly.

    Each token (row) gets its own scale, its largest magnitude / 127, so a request's output does not
    depend on what else is in the batch, and one request's outlier activations do not coarsen the others'
    (one scale for the whole batch raised SmolLM2-135M's perplexity by 56% instead of 3%). oneDNN takes
    one scale per input, so the rows are scaled to [-127, 127] first and the result multiplied back:
    ``uint8 = trunc(x * 127 / peak + 128.5)`` rounds to nearest with zero point 128 (without VNNI 63 and
    64: 7 bits, see :func:`_w8a8_pack`).
    """
    weights, w_scale, w_zero, levels, half_up_zero = packed
    peak = x.abs().amax(dim=1, keepdim=True).float().clamp_(min=1e-12)
    codes = torch.addcmul(half_up_zero, x.float(), levels / peak).to(torch.uint8)
    y = torch.ops.onednn.qlinear_pointwise(
        codes, 1 / levels, levels + 1, weights, w_scale, w_zero, None, 1.0, 0, torch.float32, "none", [], ""
    )
    y = y.mul_(peak)
    return y if y.dtype == x.dtype else y.to(x.dtype)


class Linear:
    """``y = x @ W.T + b`` with ``W`` prepacked for oneDNN where that works (see the module docstring).

    A low-bit copy of ``W`` serves steps of few tokens (``QUANT_MAX_ROWS``), where a step only streams
    the weights through one or two cores and reading fewer bytes is what makes it faster; its kernels are
    slower than oneDNN's bf16 one on larger batches (``benchmarks/serve.py --kernels``), so those keep bf16.
    ``quantize``:

    - ``"auto"``: int4 where the weights are 4-bit already (:func:`int4_groups`), which loses nothing;
    - ``"int4"``: int4 always (asymmetric, groups of 32 input columns), through
      ``torch.ops.aten._weight_int4pack_mm_for_cpu``;
    - ``"int8"``: weight-only int8 (per output channel, symmetric), through ``torch._weight_int8pack_mm``;
    - ``"w8a8"``: as ``"auto"`` for the fewest rows, then int8 weights (per output channel) and
      activations (per token, dynamic) through oneDNN (:func:`_w8a8_mm`), up to ``w8a8_rows``: on CPUs
      without bf16 the fastest for batched decoding, but rounding the activations costs accuracy
      (docs/serve.md has the measured log-loss);
    - ``"none"``: bf16 (or the model's dtype) only.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        pack: bool = True,
        quantize: str = "none",
    ) -> None:
        self.out_features, self.in_features = weight.shape
        self.bias = bias.contiguous() if bias is not None else None
        self.weight = weight.contiguous()
        self.packed = _onednn_pack(self.weight) if pack else None
        self.q8: tuple[torch.Tensor, torch.Tensor] | None = None
        self.q4: tuple[torch.Tensor, torch.Tensor] | None = None
        self.w8a8 = None
        if quantize == "int8" and weight.device.type == "cpu":
            if kernels() is not None and self.in_features % INT4_GROUP == 0:  # blocks of 32, native
                self.q8 = int8_blocks(weight)
            else:  # one scale per output channel, torch's kernel
                q, scale = _int8_rows(weight)
                self.q8 = (q, scale.to(weight.dtype))
        elif quantize in ("int4", "auto", "w8a8"):
            # auto: only where the weights are 4-bit already. The kernels round their input activations
            # (native: to 8 bits per block of 32, as llama.cpp's Q4 matmuls do; torch's: to bf16), which
            # moves log-likelihoods slightly: the runner scores prompts (prompt logprobs) through the dense
            # weights
            self.q4 = _int4_pack(self.weight, only_exact=quantize != "int4")
        if quantize == "w8a8":
            self.w8a8 = _w8a8_pack(self.weight)
        self.b16: torch.Tensor | None = None
        if quantize == "auto" and self.q4 is None:
            self.b16 = _bf16_pack(self.weight)
        self.low_bits = (
            "int8"
            if self.q8 is not None
            else "int4"
            if self.q4 is not None
            else "w8a8"
            if self.w8a8
            else "bf16"
            if self.b16 is not None
            else None
        )
        self.max_rows = QUANT_MAX_ROWS.get(self.low_bits or "", 0)
        # w8a8 after int4: for steps of more than ``max_rows`` and at most ``w8a8_rows`` tokens
        self.w8a8_rows = QUANT_MAX_ROWS["w8a8"] if self.w8a8 and self.low_bits != "w8a8" else 0
        if self.packed is not None:
            self.weight = None  # the packed copy is the only one kept

    def __call__(self, x: torch.Tensor, exact: bool = False) -> torch.Tensor:
        """Through the low-bit copy for few rows (then w8a8 where it is the second tier), else (or when
        ``exact``) through the dense weights."""
        m = x.shape[0]
        if exact:
            return self.dense(x)
        if m <= self.max_rows:
            return self.low(x)
        if m <= self.w8a8_rows:
            return self.through_w8a8(x)
        return self.dense(x)

    def through_w8a8(self, x: torch.Tensor) -> torch.Tensor:
        """Through the w8a8 copy (``w8a8`` must be set)."""
        y = _w8a8_mm(x, self.w8a8)
        return y if self.bias is None else y + self.bias

    def low(self, x: torch.Tensor) -> torch.Tensor:
        """Through the low-bit copy (``low_bits`` must be set)."""
        if self.q4 is not None and len(self.q4) == 3:
            y = kernels().q4_mm(x.float().contiguous(), *self.q4)
            y = y if y.dtype == x.dtype else y.to(x.dtype)
        elif self.q4 is not None:
            xq = x if x.dtype == torch.bfloat16 else x.to(torch.bfloat16)
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(xq, self.q4[0], INT4_GROUP, self.q4[1])
            y = y if y.dtype == x.dtype else y.to(x.dtype)
        elif self.q8 is not None and self.q8[1].dim() == 2:  # blocks: the native kernel
            y = kernels().q8_mm(x.float().contiguous(), *self.q8)
            y = y if y.dtype == x.dtype else y.to(x.dtype)
        elif self.q8 is not None:
            y = torch._weight_int8pack_mm(x, *self.q8)
        elif self.b16 is not None:
            y = torch.ops.mkldnn._linear_pointwise(x.to(torch.bfloat16), self.b16, None, "none", [], "")
            y = y.to(x.dtype)
        else:
            return self.through_w8a8(x)
        return y if self.bias is None else y + self.bias

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """Through the model-dtype weights (prepacked for oneDNN where that worked)."""
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


def measure_low_bit_rows(
    linears: list[Linear], dtype: torch.dtype, rows=CALIBRATION_ROWS, fast: str = "low", slow: str = "dense"
) -> int:
    """The largest step (tokens) at which ``linears``' low-bit copies beat their dense weights, timed here.

    Where the crossover lies depends on the CPU more than on the model: with bf16 hardware (AVX512-BF16)
    the dense bf16 kernels win from about 8 tokens on (the fixed ``QUANT_MAX_ROWS`` measured there); on a
    CPU without it (an Ice Lake Xeon) the dense weights are float32, eight times int4's bytes, and this
    measured int4 faster up to 16 tokens on SmolLM2-135M. Each size runs every linear once through each
    path (best of two, after a warm-up); the search stops after the low-bit path lost at two sizes in a
    row. About a second for SmolLM2-135M. ``fast`` and ``slow`` name the two ``Linear`` methods compared
    (int4 against w8a8 is ``"low"`` against ``"through_w8a8"``).
    """
    import time

    def seconds(path: str, xs: dict[int, torch.Tensor]) -> float:
        best = float("inf")
        for _ in range(3):  # the first is a warm-up
            start = time.perf_counter()
            for lin in linears:
                getattr(lin, path)(xs[lin.in_features])
            best = min(best, time.perf_counter() - start)
        return best

    best, losses = 0, 0
    with torch.inference_mode():
        for m in rows:
            xs = {k: torch.randn(m, k, dtype=dtype) for k in {lin.in_features for lin in linears}}
            if seconds(fast, xs) < seconds(slow, xs):
                best, losses = m, 0
            else:
                losses += 1
                if losses == 2:
                    break
    return best


@dataclass
class _Layer:
    norm1: torch.Tensor
    norm2: torch.Tensor
    qkv: Linear
    o: Linear
    gate_up: Linear
    down: Linear


def all_linears(lm_head: Linear, layers: list[_Layer]) -> list[Linear]:
    """Every weight matrix of the runner: the output layer, then each layer's four."""
    return [lm_head] + [lin for layer in layers for lin in (layer.qkv, layer.o, layer.gate_up, layer.down)]


def _weights_note(linears: list[Linear], dtype: torch.dtype) -> str:
    """What the runner computes with, for the log: e.g. "int4 for steps of up to 8 tokens (210 of 211
    weight matrices), bfloat16 otherwise"."""
    base = str(dtype).removeprefix("torch.")
    tiers = []
    for kind in QUANT_MAX_ROWS:  # every low-bit kind
        own = [lin for lin in linears if lin.low_bits == kind]
        second = [lin for lin in linears if kind == "w8a8" and lin.w8a8_rows]
        if own or second:
            top = max([lin.max_rows for lin in own] + [lin.w8a8_rows for lin in second])
            tiers.append((kind, top, len(own) + len(second)))
    if not tiers:
        return base
    used = [f"{kind} for steps of up to {rows} tokens ({n} of {len(linears)} weight matrices)"
            for kind, rows, n in tiers if rows]  # fmt: skip
    unused = [f"{kind} copies of {n} of {len(linears)} weight matrices measured slower here"
              for kind, rows, n in tiers if not rows]  # fmt: skip
    if not used:
        return f"{base} ({'; '.join(unused)})"
    return "; ".join(used) + f", {base} otherwise" + (f" ({'; '.join(unused)})" if unused else "")


def _q8_head(head: Linear, weight: torch.Tensor) -> None:
    """Give the output layer an 8-bit block copy (llama.cpp's Q8_0) for steps of few tokens, where the
    native kernels are built. Measured on SmolLM2-135M (imported from its Q4_1 GGUF, whose output layer is
    Q8_0) on a 2-core AMD EPYC with AVX2: one token through the 49152x576 layer took 0.9 ms instead of
    4.4 ms in float32, and the perplexity of a 400-token text decoded token by token rose by 0.05% over
    the native int4 layers alone (docs/serve.md)."""
    if kernels() is None or head.in_features % INT4_GROUP or head.low_bits not in (None, "bf16"):
        return
    head.q8, head.b16 = int8_blocks(weight), None
    head.low_bits, head.max_rows = "int8", QUANT_MAX_ROWS["int8"]


def _bias(module) -> torch.Tensor | None:
    return None if module.bias is None else module.bias.detach()


# ---------------------------------------------------------------- LoRA adapters
@dataclass
class Adapter:
    """A LoRA adapter: per (layer, projection) the ``A`` [r, in] and ``B`` [out, r] matrices and the scale."""

    name: str
    path: str
    weights: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor, float]] = field(default_factory=dict)


def load_adapter(name: str, path: str, model: Any, dtype: torch.dtype) -> Adapter:
    """A peft LoRA adapter directory (``adapter_config.json`` + ``adapter_model.safetensors``).

    Only plain LoRA on the attention and MLP projections is supported (what ``nexus train`` and most
    fine-tunes produce); DoRA, embeddings, ``modules_to_save`` or other peft methods are refused by name.
    """
    import json
    import re
    from pathlib import Path

    from safetensors.torch import load_file

    root = Path(path)
    cfg_path = root / "adapter_config.json"
    if not cfg_path.is_file():
        raise ValueError(
            f"LoRA adapter {name!r}: {path} has no adapter_config.json (a peft adapter directory)"
        )
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"LoRA adapter {name!r}: peft_type {cfg.get('peft_type')!r} is not LORA")
    for key in ("use_dora", "modules_to_save"):
        if cfg.get(key):
            raise ValueError(f"LoRA adapter {name!r}: {key} is not supported by the server")
    if cfg.get("fan_in_fan_out"):
        raise ValueError(f"LoRA adapter {name!r}: fan_in_fan_out is not supported (not a Llama adapter)")
    files = [root / "adapter_model.safetensors"]
    if not files[0].is_file():
        raise ValueError(f"LoRA adapter {name!r}: {path} has no adapter_model.safetensors")
    tensors = load_file(str(files[0]))
    alpha_default = float(cfg.get("lora_alpha", cfg.get("r", 8)))
    pattern = re.compile(r"layers\.(\d+)\.(?:self_attn|mlp)\.(\w+_proj)\.lora_([AB])(?:\.\w+)?\.weight$")
    found: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        m = pattern.search(key)
        if m is None:
            raise ValueError(
                f"LoRA adapter {name!r}: unsupported weight {key!r} (only attention/MLP projections)"
            )
        found.setdefault((int(m.group(1)), m.group(2)), {})[m.group(3)] = value
    layers = model.model.layers
    adapter = Adapter(name, path)
    for (layer, proj), ab in sorted(found.items()):
        if layer >= len(layers) or proj not in PROJECTIONS or set(ab) != {"A", "B"}:
            raise ValueError(f"LoRA adapter {name!r}: layer {layer} {proj} does not match the base model")
        base = getattr(layers[layer].self_attn if proj in PROJECTIONS[:4] else layers[layer].mlp, proj)
        a, b = ab["A"], ab["B"]
        if a.shape[1] != base.in_features or b.shape[0] != base.out_features or a.shape[0] != b.shape[1]:
            raise ValueError(
                f"LoRA adapter {name!r}: layer {layer} {proj} has shapes {tuple(a.shape)} x {tuple(b.shape)}, "
                f"which do not fit the base model's {base.out_features}x{base.in_features}: another base model?"
            )
        rank = a.shape[0]  # peft's rank_pattern only changes this shape
        module = f"model.layers.{layer}.{'self_attn' if proj in PROJECTIONS[:4] else 'mlp'}.{proj}"
        alpha = alpha_default
        for key, value in (cfg.get("alpha_pattern") or {}).items():  # peft matches these against the name
            if re.search(rf"(^|\.){key}$", module):
                alpha = float(value)
        scale = alpha / (rank**0.5 if cfg.get("use_rslora") else rank)
        adapter.weights[(layer, proj)] = (a.to(dtype).contiguous(), b.to(dtype).contiguous(), scale)
    if not adapter.weights:
        raise ValueError(f"LoRA adapter {name!r}: {path} holds no LoRA weights")
    return adapter


# ---------------------------------------------------------------- caches
class PrefixCache:
    """KV of prompt prefixes already computed, by blocks of ``block`` tokens, least recently used first out.

    An entry is the KV of one prompt's first ``k * block`` tokens; every block boundary of it is indexed
    by a chained hash of the tokens up to there, so a later prompt finds the longest prefix it shares
    with any stored prompt. Matches are verified token for token (hashes only find candidates).
    """

    def __init__(self, block: int, budget_bytes: int) -> None:
        self.block = block
        self.budget = budget_bytes
        self.bytes = 0
        self._entries: OrderedDict[int, tuple[tuple[int, ...], torch.Tensor]] = OrderedDict()
        self._index: dict[int, tuple[int, int]] = {}  # boundary hash -> (entry id, tokens)
        self._next = 0
        self.hits = 0
        self.hit_tokens = 0

    def _hashes(self, tokens: list[int], limit: int) -> list[int]:
        out, h = [], 0
        for k in range(limit // self.block):
            h = hash((h, tuple(tokens[k * self.block : (k + 1) * self.block])))
            out.append(h)
        return out

    def lookup(self, tokens: list[int], limit: int) -> tuple[torch.Tensor, int] | None:
        """The stored KV ``[L, 2, kv_heads, n, head_dim]`` of the longest stored prefix of ``tokens[:limit]``."""
        for h in reversed(self._hashes(tokens, limit)):
            found = self._index.get(h)
            if found is None:
                continue
            entry_id, n = found
            stored, kv = self._entries[entry_id]
            if list(stored[:n]) != tokens[:n]:
                continue  # a hash collision
            self._entries.move_to_end(entry_id)
            self.hits += 1
            self.hit_tokens += n
            return kv, n
        return None

    def covered(self, tokens: list[int]) -> int:
        """How many leading tokens of ``tokens`` are stored already (whole blocks)."""
        for h in reversed(self._hashes(tokens, len(tokens))):
            if h in self._index:
                return self._index[h][1]
        return 0

    def store(self, tokens: list[int], kv: torch.Tensor) -> None:
        """Keep ``kv`` (the KV of ``tokens``, a whole number of blocks) and drop old entries over budget."""
        size = kv.numel() * kv.element_size()
        if size > self.budget or not tokens:
            return
        entry_id, self._next = self._next, self._next + 1
        self._entries[entry_id] = (tuple(tokens), kv)
        self.bytes += size
        for k, h in enumerate(self._hashes(tokens, len(tokens)), start=1):
            self._index[h] = (entry_id, k * self.block)
        while self.bytes > self.budget:
            old_id, (old_tokens, old_kv) = self._entries.popitem(last=False)
            self.bytes -= old_kv.numel() * old_kv.element_size()
            for h in self._hashes(list(old_tokens), len(old_tokens)):
                if self._index.get(h, (None,))[0] == old_id:
                    del self._index[h]

    def clear(self) -> None:
        self._entries.clear()
        self._index.clear()
        self.bytes = 0


class SlotCache:
    """One dense KV tensor ``[layers, 2, slots, kv_heads, capacity, head_dim]``; active slots are ``0..n-1``.

    Grows (by reallocation) to the slots and capacity the active sequences reserved, never past
    ``budget_bytes``; a sequence's tokens live in its slot's columns ``0..len-1``.
    """

    def __init__(self, layers: int, kv_heads: int, head_dim: int, dtype, device, budget_bytes: int) -> None:
        self.shape = (layers, 2, kv_heads, head_dim)
        self.dtype, self.device = dtype, device
        self.budget = budget_bytes
        self.token_bytes = layers * 2 * kv_heads * head_dim * torch.empty(0, dtype=dtype).element_size()
        self.data: torch.Tensor | None = None
        self.slots = 0
        self.capacity = 0

    def fits(self, slots: int, capacity: int) -> bool:
        return slots * _round_capacity(capacity) * self.token_bytes <= self.budget

    def ensure(self, slots: int, capacity: int) -> None:
        """Room for ``slots`` slots of ``capacity`` tokens (content of existing slots is kept)."""
        if slots <= self.slots and capacity <= self.capacity:
            return
        new_slots = max(slots, min(2 * self.slots, slots + 8)) if slots > self.slots else self.slots
        new_cap = max(_round_capacity(capacity), self.capacity)
        while new_slots > slots and not self.fits(new_slots, new_cap):
            new_slots -= 1
        layers, two, kvh, hd = self.shape
        data = torch.zeros((layers, two, new_slots, kvh, new_cap, hd), dtype=self.dtype, device=self.device)
        if self.data is not None:
            data[:, :, : self.slots, :, : self.capacity] = self.data
        self.data, self.slots, self.capacity = data, new_slots, new_cap

    def release(self) -> None:
        self.data, self.slots, self.capacity = None, 0, 0


def _round_capacity(n: int) -> int:
    return max(128, -(-n // 128) * 128)


# ---------------------------------------------------------------- the runner
class LlamaRunner:
    """The :class:`~nexus_llm.serve.engine.runner.Runner` for Llama-architecture models (module docstring)."""

    prefix_caching = True

    def __init__(
        self,
        model: Any,
        *,
        context_length: int,
        kv_budget_bytes: int,
        prefix_cache_bytes: int = 0,
        prefix_block: int = 16,
        adapters: dict[str, str] | None = None,
        quantize: str = "none",
    ) -> None:
        reason = unsupported_reason(model)
        if reason:
            raise ValueError(f"LlamaRunner cannot run this model: {reason}")
        cfg = model.config
        inner = model.model
        self.device = model.device
        self.dtype = next(model.parameters()).dtype
        attn = inner.layers[0].self_attn
        self.head_dim = attn.head_dim
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.groups = self.heads // self.kv_heads
        self.scale = self.head_dim**-0.5
        self.eps = inner.norm.variance_epsilon
        self.embed = inner.embed_tokens.weight.detach()
        self.norm = inner.norm.weight.detach()
        # the output layer is the most sensitive to rounding (llama.cpp keeps it at 6 bits or more): int4
        # only where it is 4-bit already
        self.lm_head = Linear(
            model.lm_head.weight.detach(), quantize="auto" if quantize == "int4" else quantize
        )
        self.layers = []
        for layer in inner.layers:
            a, mlp = layer.self_attn, layer.mlp
            qkv_bias = None
            if a.q_proj.bias is not None:
                qkv_bias = torch.cat([_bias(a.q_proj), _bias(a.k_proj), _bias(a.v_proj)])
            gate_up_bias = None
            if mlp.gate_proj.bias is not None:
                gate_up_bias = torch.cat([_bias(mlp.gate_proj), _bias(mlp.up_proj)])
            self.layers.append(
                _Layer(
                    norm1=layer.input_layernorm.weight.detach(),
                    norm2=layer.post_attention_layernorm.weight.detach(),
                    qkv=Linear(
                        torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]).detach(),
                        qkv_bias,
                        quantize=quantize,
                    ),
                    o=Linear(a.o_proj.weight.detach(), _bias(a.o_proj), quantize=quantize),
                    gate_up=Linear(
                        torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).detach(),
                        gate_up_bias,
                        quantize=quantize,
                    ),
                    down=Linear(mlp.down_proj.weight.detach(), _bias(mlp.down_proj), quantize=quantize),
                )
            )
        self.intermediate = self.layers[0].gate_up.out_features // 2
        if quantize == "auto" and any(layer.qkv.q4 is not None for layer in self.layers):
            # a 4-bit model (an imported Q4 GGUF): its output layer in 8-bit blocks too, as in llama.cpp's
            # own Q4 files (SmolLM2's GGUF holds it as Q8_0); see _q8_head
            _q8_head(self.lm_head, model.lm_head.weight.detach())
        linears = all_linears(self.lm_head, self.layers)
        if self.device.type == "cpu":  # where int4/int8 stops paying depends on the CPU
            tiered = [lin for lin in linears if lin.w8a8_rows]  # int4, then w8a8
            for kind in QUANT_MAX_ROWS:  # every low-bit kind
                group = [lin for lin in linears if lin.low_bits == kind and not lin.w8a8_rows]
                if group:
                    rows = measure_low_bit_rows(group, self.dtype)
                    for lin in group:
                        lin.max_rows = rows
                        if kind == "bf16" and not rows:  # never used: give its memory back
                            lin.b16, lin.low_bits = None, None
            if tiered:
                first = measure_low_bit_rows(tiered, self.dtype, slow="through_w8a8")
                larger = [m for m in CALIBRATION_ROWS if m > first]
                then = measure_low_bit_rows(tiered, self.dtype, larger, fast="through_w8a8")
                for lin in tiered:
                    lin.max_rows, lin.w8a8_rows = first, then
        self.weights_note = _weights_note(linears, self.dtype)
        # RMSNorm and one-token attention through the native kernels (float32 on a CPU: see native.py)
        self.native = kernels() if self.device.type == "cpu" and self.dtype == torch.float32 else None
        if self.native is not None and self.head_dim % 8:
            self.native = None
        self.packed = self.lm_head.packed is not None
        positions = torch.arange(context_length, device=self.device)[None]
        cos, sin = inner.rotary_emb(torch.zeros(1, dtype=self.dtype, device=self.device), positions)
        self.cos, sin = cos[0].to(self.dtype), sin[0].to(self.dtype)
        half = self.head_dim // 2
        self.sin_signed = torch.cat([-sin[:, :half], sin[:, half:]], dim=-1)
        self.context_length = context_length
        self.cache = SlotCache(len(self.layers), self.kv_heads, self.head_dim, self.dtype, self.device,
                               kv_budget_bytes)  # fmt: skip
        self.prefix = PrefixCache(prefix_block, prefix_cache_bytes) if prefix_cache_bytes > 0 else None
        self.prefix_caching = self.prefix is not None
        self._slot: dict[int, int] = {}  # key -> slot
        self._need: dict[int, int] = {}  # key -> reserved length
        self._keys: list[int] = []  # slot -> key
        self.adapters: dict[str, Adapter] = {}
        for name, path in (adapters or {}).items():
            self.adapters[name] = load_adapter(name, path, model, self.dtype)

    # -------------------------------------------------------------- slots
    def fits(self, length: int) -> bool:
        return self.cache.fits(1, length)

    def add(self, key: int, length: int) -> bool:
        slots = len(self._keys) + 1
        capacity = max([length, *self._need.values()])
        if not self.cache.fits(slots, capacity):
            return False
        self.cache.ensure(slots, capacity)
        self._slot[key] = len(self._keys)
        self._keys.append(key)
        self._need[key] = length
        return True

    def remove(self, key: int) -> None:
        slot = self._slot.pop(key, None)
        if slot is None:
            return
        self._need.pop(key)
        last = len(self._keys) - 1
        if slot != last:  # keep the active slots contiguous: the last one moves into the hole
            moved = self._keys[last]
            data = self.cache.data
            data[:, :, slot] = data[:, :, last]
            self._keys[slot] = moved
            self._slot[moved] = slot
        self._keys.pop()
        if not self._keys and self.cache.slots * self.cache.capacity * self.cache.token_bytes > 256 << 20:
            self.cache.release()  # idle: give a large cache back; a small one is kept for the next request

    # -------------------------------------------------------------- prefix cache
    def reuse_prefix(self, key: int, prompt: list[int]) -> int:
        if self.prefix is None:
            return 0
        found = self.prefix.lookup(prompt, len(prompt) - 1)
        if found is None:
            return 0
        kv, n = found
        self.cache.data[:, :, self._slot[key], :, :n] = kv[:, :, :, :n]
        return n

    def remember_prefix(self, key: int, prompt: list[int]) -> None:
        if self.prefix is None:
            return
        n = (len(prompt) // self.prefix.block) * self.prefix.block
        if n == 0 or self.prefix.covered(prompt[:n]) >= n:
            return
        kv = self.cache.data[:, :, self._slot[key], :, :n].clone()
        self.prefix.store(prompt[:n], kv)

    # -------------------------------------------------------------- forward
    def forward(self, work: list[Work]) -> list[torch.Tensor | None]:
        """Run every item's tokens through the model in one flat batch; see the module docstring."""
        order = sorted(range(len(work)), key=lambda i: (len(work[i].tokens) > 1, self._slot[work[i].key]))
        items = [work[i] for i in order]
        n_dec = sum(1 for w in items if len(w.tokens) == 1)
        dev = self.device
        ids, pos, slots = [], [], []
        for w in items:
            s = self._slot[w.key]
            ids.extend(w.tokens)
            pos.extend(range(w.start, w.start + len(w.tokens)))
            slots.extend([s] * len(w.tokens))
        ids_t = torch.tensor(ids, dtype=torch.long, device=dev)
        pos_t = torch.tensor(pos, dtype=torch.long, device=dev)
        cos, sin = self.cos.index_select(0, pos_t)[:, None], self.sin_signed.index_select(0, pos_t)[:, None]
        dec = self._decode_plan(items[:n_dec], dev)
        views = self._cache_views()
        # where each token's K/V rows go in a layer's flat [slots * kv_heads * capacity, head_dim] view
        cap, kvh = self.cache.capacity, self.kv_heads
        kv_rows = torch.tensor(
            [(s * kvh + h) * cap + p for s, p in zip(slots, pos, strict=True) for h in range(kvh)], device=dev
        )
        segments = []
        offset = n_dec
        for w in items[n_dec:]:
            segments.append((offset, len(w.tokens), self._slot[w.key], w.start))
            offset += len(w.tokens)
        lora = self._lora_plan(items)
        # a step that scores a prompt (prompt logprobs: lm-eval, ``echo``) runs on the dense weights, so
        # served log-likelihoods are the model's own, as ``nexus eval`` computes them in-process
        exact = any(w.logits == "all" for w in items)
        x = F.embedding(ids_t, self.embed)
        for index, layer in enumerate(self.layers):
            x = self._layer(index, layer, x, cos, sin, views[index], kv_rows, dec, segments, lora, exact)
        # logits only where the engine wants them
        rows: list[int] = []
        spans: list[tuple[int, int] | None] = []
        offset = 0
        for w in items:
            n = len(w.tokens)
            if w.logits == "none":
                spans.append(None)
            else:
                first = offset if w.logits == "all" else offset + n - 1
                spans.append((len(rows), offset + n - first))
                rows.extend(range(first, offset + n))
            offset += n
        results: list[torch.Tensor | None] = [None] * len(work)
        if rows:
            h = (
                x
                if len(rows) == x.shape[0]
                else x.index_select(0, torch.tensor(rows, dtype=torch.long, device=dev))
            )
            logits = self.lm_head(self._norm(h, self.norm), exact).float()
            for i, span in zip(order, spans, strict=True):
                if span is not None:
                    results[i] = logits[span[0] : span[0] + span[1]]
        return results

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self.native is not None:
            return self.native.rms_norm(x, weight, self.eps)
        return F.rms_norm(x, (x.shape[-1],), weight, self.eps)

    def _cache_views(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, its keys and values ``[slots, kv_heads, capacity, head_dim]`` (views of the cache,
        rebuilt only when the cache was reallocated: a select per layer and step is measurable)."""
        data = self.cache.data
        if getattr(self, "_views_of", None) is not data:
            self._views = [(data[i, 0], data[i, 1]) for i in range(len(self.layers))]
            self._views_of = data
        return self._views

    def _decode_plan(self, items: list[Work], dev):
        if not items:
            return None
        slots = [self._slot[w.key] for w in items]
        lengths = [w.start + 1 for w in items]
        width = max(lengths)
        if self.native is not None:  # the native kernel reads each row's own slot and length: no mask
            return slots[0], len(slots), torch.tensor(slots), width, torch.tensor(lengths)
        contiguous = slots == list(range(slots[0], slots[0] + len(slots)))
        index = None if contiguous else torch.tensor(slots, dtype=torch.long, device=dev)
        visible = None  # every row sees all ``width`` columns: no mask (the kernel is faster without)
        if min(lengths) != width:
            rows = torch.tensor(lengths, device=dev)
            visible = (torch.arange(width, device=dev)[None] < rows[:, None])[:, None, None, :]
        return slots[0], len(slots), index, width, visible

    def _lora_plan(self, items: list[Work]):
        """Per adapter in this step: the flat-batch rows of its sequences."""
        if not self.adapters:
            return []
        rows: dict[str, list[int]] = {}
        offset = 0
        for w in items:
            if w.adapter is not None:
                rows.setdefault(w.adapter, []).extend(range(offset, offset + len(w.tokens)))
            offset += len(w.tokens)
        return [
            (self.adapters[name], torch.tensor(r, dtype=torch.long, device=self.device))
            for name, r in rows.items()
        ]

    def _lora(self, lora, index: int, proj: str, x: torch.Tensor, out: torch.Tensor, start: int = 0) -> None:
        for adapter, rows in lora:
            ab = adapter.weights.get((index, proj))
            if ab is None:
                continue
            a, b, scale = ab
            delta = F.linear(F.linear(x.index_select(0, rows), a), b) * scale
            out[:, start : start + delta.shape[1]].index_add_(0, rows, delta)

    def _layer(self, index, layer: _Layer, x, cos, sin, kv, kv_rows, dec, segments, lora, exact=False):
        n = x.shape[0]
        hd, heads, kvh = self.head_dim, self.heads, self.kv_heads
        h = self._norm(x, layer.norm1)
        qkv = layer.qkv(h, exact)
        if lora:
            self._lora(lora, index, "q_proj", h, qkv, 0)
            self._lora(lora, index, "k_proj", h, qkv, heads * hd)
            self._lora(lora, index, "v_proj", h, qkv, (heads + kvh) * hd)
        qk = _rope(qkv[:, : (heads + kvh) * hd].view(n, heads + kvh, hd), cos, sin)  # q and k in one go
        q, k = qk[:, :heads], qk[:, heads:]
        v = qkv[:, (heads + kvh) * hd :].view(n, kvh, hd)
        keys, values = kv  # [slots, kvh, cap, hd]
        keys.view(-1, hd).index_copy_(0, kv_rows, k.reshape(-1, hd))
        values.view(-1, hd).index_copy_(0, kv_rows, v.reshape(-1, hd))
        out = None
        if segments:
            out = torch.empty((n, heads * hd), dtype=x.dtype, device=x.device)
        if dec is not None and self.native is not None:
            _, rows, slots, _, lengths = dec
            qd = q[:rows].contiguous().view(rows, kvh, self.groups, hd)  # q is a slice of q and k
            o = self.native.decode_attention(qd, keys, values, slots, lengths, self.scale)
            if out is None:
                out = o
            else:
                out[:rows] = o
        elif dec is not None:
            first, rows, sel, width, visible = dec
            if sel is None:
                kd, vd = keys[first : first + rows, :, :width], values[first : first + rows, :, :width]
            else:
                kd = keys[:, :, :width].index_select(0, sel)
                vd = values[:, :, :width].index_select(0, sel)
            # the query heads sharing a KV head are that head's "queries": no GQA expansion of K and V
            qd = q[:rows].view(rows, kvh, self.groups, hd)
            o = F.scaled_dot_product_attention(qd, kd, vd, attn_mask=visible).reshape(rows, heads * hd)
            if out is None:  # a decode-only step: the attention output is the whole output
                out = o
            else:
                out[:rows] = o
        for offset, length, slot, start in segments:
            qs = q[offset : offset + length].transpose(0, 1)[None]  # [1, heads, length, hd]
            end = start + length
            ks, vs = keys[slot : slot + 1, :, :end], values[slot : slot + 1, :, :end]
            if start == 0:
                o = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, enable_gqa=True)
            else:  # a later chunk: causal with the cached columns all visible
                allowed = torch.ones((length, end), dtype=torch.bool, device=x.device).tril(start)
                o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=allowed, enable_gqa=True)
            out[offset : offset + length] = o[0].transpose(0, 1).reshape(length, heads * hd)
        attn = layer.o(out, exact)
        if lora:
            self._lora(lora, index, "o_proj", out, attn)
        if self.native is not None:
            h = self.native.add_rms_norm_(x, attn, layer.norm2, self.eps)  # x += attn
        else:
            x = x + attn
            h = F.rms_norm(x, (x.shape[-1],), layer.norm2, self.eps)
        gate_up = layer.gate_up(h, exact)
        if lora:
            self._lora(lora, index, "gate_proj", h, gate_up, 0)
            self._lora(lora, index, "up_proj", h, gate_up, self.intermediate)
        act = F.silu(gate_up[:, : self.intermediate]) * gate_up[:, self.intermediate :]
        down = layer.down(act, exact)
        if lora:
            self._lora(lora, index, "down_proj", act, down)
        return x + down


def _rope(x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """Rotary embedding, transformers' ``rotate_half`` convention (first half, second half).

    ``x * cos + rotate_half(x) * sin`` in three operators instead of seven: with ``sin``'s halves equal
    (as transformers' tables are), ``rotate_half(x) * sin`` is ``roll(x, half) * [-sin, sin]``.
    """
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, -1), sin_signed)
