"""The native CPU kernels (kernels/cpu.cpp) against references computed in torch."""

import pytest
import torch
import torch.nn.functional as F

from nexus_llm.serve.engine import native
from nexus_llm.serve.engine.llama import INT4_GROUP, Linear, _int4_pack, int4_groups, int8_blocks


@pytest.fixture(scope="module")
def kernels():
    reason = native.unavailable_reason()
    if reason:
        pytest.skip(f"native kernels unavailable: {reason}")
    built = native.kernels()
    assert built is not None, "the native kernels did not build: see the warning logged above"
    return built


def _quantized_activations(x: torch.Tensor) -> torch.Tensor:
    """What the kernels multiply by: x rounded to int8 per block of 32 with scale (block max) / 127."""
    m, k = x.shape
    blocks = x.view(m, k // INT4_GROUP, INT4_GROUP)
    scale = blocks.abs().amax(-1, keepdim=True) / 127
    codes = torch.where(scale > 0, blocks / scale.clamp(min=1e-30), torch.zeros_like(blocks)).round()
    return (codes * scale).view(m, k)


# 1-9 rows cover every tile size (4, 3, 2, 1) and their remainders; 96 columns are an odd block count
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 9])
@pytest.mark.parametrize("shape", [(40, 96), (130, 64)])
def test_q4_mm_is_the_dequantized_weights_times_the_block_quantized_activations(kernels, rows, shape):
    torch.manual_seed(rows)
    weight = torch.randn(*shape) * 0.05
    dequantized = int4_groups(weight)[3]
    packed = _int4_pack(weight, only_exact=False)
    assert packed is not None and len(packed) == 3  # the native layout
    x = torch.randn(rows, shape[1])
    got = kernels.q4_mm(x, *packed)
    want = F.linear(_quantized_activations(x), dequantized)
    torch.testing.assert_close(got, want, atol=1e-4 * want.abs().max().item(), rtol=1e-4)
    # and close to float32 activations: 8 bits per block of 32
    exact = F.linear(x, dequantized)
    assert (got - exact).norm() / exact.norm() < 0.02


@pytest.mark.parametrize("rows", [1, 4, 7])
def test_q8_mm_is_the_block_weights_times_the_block_quantized_activations(kernels, rows):
    torch.manual_seed(10 + rows)
    weight = torch.randn(70, 96) * 0.05
    codes, scale = int8_blocks(weight)
    assert codes.dtype == torch.int8 and int(codes.abs().max()) == 127
    dequantized = (codes.float().view(70, 3, 32) * scale[..., None]).view(70, 96)
    assert (dequantized - weight).abs().max() <= scale.max() / 2 + 1e-7  # round to nearest
    x = torch.randn(rows, 96)
    got = kernels.q8_mm(x, codes, scale)
    want = F.linear(_quantized_activations(x), dequantized)
    torch.testing.assert_close(got, want, atol=1e-4 * want.abs().max().item(), rtol=1e-4)


def test_zero_blocks_and_large_values_stay_finite(kernels):
    weight = torch.randn(16, 64) * 0.05
    packed = _int4_pack(weight, only_exact=False)
    x = torch.zeros(2, 64)
    x[1, 40] = 3e4  # one block all zero but one huge value; the other block all zero
    got = kernels.q4_mm(x, *packed)
    assert torch.isfinite(got).all()
    assert torch.equal(got[0], packed[2].sum(-1) * 0)  # zero activations: nothing, not NaN
    torch.testing.assert_close(got[1], F.linear(x[1:], int4_groups(weight)[3])[0], rtol=1e-3, atol=1e-2)


def test_bad_shapes_and_dtypes_are_errors_that_say_what_is_wrong(kernels):
    weight = torch.randn(8, 64)
    packed = _int4_pack(weight, only_exact=False)
    with pytest.raises(RuntimeError, match="multiple of 32"):
        kernels.q4_mm(torch.randn(1, 48), *packed)
    with pytest.raises(RuntimeError, match="float32"):
        kernels.q4_mm(torch.randn(1, 64, dtype=torch.float64), *packed)
    with pytest.raises(RuntimeError, match="wrong shape"):
        kernels.q4_mm(torch.randn(1, 96), *packed)
    codes, scale = int8_blocks(weight)
    with pytest.raises(RuntimeError, match="int8"):
        kernels.q8_mm(torch.randn(1, 64), codes.to(torch.uint8), scale)
    assert kernels.q8_mm(torch.randn(2, 64), codes, scale).shape == (2, 8)  # still works after the errors


def test_linear_takes_the_native_path_for_few_rows_and_the_dense_weights_otherwise(kernels):
    torch.manual_seed(3)
    weight = int4_groups(torch.randn(64, 96) * 0.05)[3]  # 4-bit already: auto takes it
    lin = Linear(weight, quantize="auto")
    assert lin.low_bits == "int4" and len(lin.q4) == 3
    x = torch.randn(2, 96)
    assert torch.equal(lin.low(x), kernels.q4_mm(x, *lin.q4))
    lin.max_rows = 2
    four = torch.cat([x, x])
    assert torch.equal(lin(x), lin.low(x)) and torch.equal(lin(four), lin.dense(four))
    int8 = Linear(torch.randn(64, 96), quantize="int8")
    assert int8.low_bits == "int8" and int8.q8[1].shape == (64, 3)  # block scales: the native layout
    y = int8.low(x)
    assert (y - int8.dense(x)).norm() / int8.dense(x).norm() < 0.02


def test_the_kernels_can_be_turned_off(monkeypatch):
    monkeypatch.setenv(native.DISABLE_ENV, "0")
    assert native.unavailable_reason() == f"{native.DISABLE_ENV}=0"


@pytest.mark.parametrize("rows", [1, 3, 40])
def test_rms_norm_and_the_fused_residual_add_match_torch(kernels, rows):
    torch.manual_seed(rows)
    x, residual, weight = torch.randn(rows, 100), torch.randn(rows, 100), torch.rand(100) + 0.5
    want = F.rms_norm(x, (100,), weight, 1e-5)
    torch.testing.assert_close(kernels.rms_norm(x, weight, 1e-5), want, atol=1e-5, rtol=1e-5)
    summed = x + residual
    h = kernels.add_rms_norm_(x, residual, weight, 1e-5)  # x += residual, in place
    torch.testing.assert_close(x, summed, atol=0, rtol=0)
    torch.testing.assert_close(h, F.rms_norm(summed, (100,), weight, 1e-5), atol=1e-5, rtol=1e-5)
    with pytest.raises(RuntimeError, match="norm weight"):
        kernels.rms_norm(x, torch.ones(99), 1e-5)


def test_decode_attention_reads_each_rows_slot_up_to_its_own_length(kernels):
    torch.manual_seed(4)
    slots, kvh, cap, hd, groups = 5, 3, 40, 16, 3
    keys, values = torch.randn(slots, kvh, cap, hd), torch.randn(slots, kvh, cap, hd)
    rows_slots, lengths = torch.tensor([3, 0, 4]), torch.tensor([7, 40, 1])
    q = torch.randn(3, kvh, groups, hd)
    got = kernels.decode_attention(q, keys, values, rows_slots, lengths, hd**-0.5)
    for r in range(3):
        s, n = int(rows_slots[r]), int(lengths[r])
        # [kvh, groups, hd] queries over [kvh, n, hd] keys: the KV head's queries are its groups
        want = F.scaled_dot_product_attention(q[r], keys[s, :, :n], values[s, :, :n])
        torch.testing.assert_close(got[r].view(kvh, groups, hd), want, atol=1e-5, rtol=1e-5)
    with pytest.raises(RuntimeError, match="out of range"):
        kernels.decode_attention(q, keys, values, rows_slots, torch.tensor([7, 41, 1]), 1.0)
    with pytest.raises(RuntimeError, match="out of range"):
        kernels.decode_attention(q, keys, values, torch.tensor([3, 5, 4]), lengths, 1.0)
    with pytest.raises(RuntimeError, match="contiguous float32"):
        kernels.decode_attention(q.transpose(1, 2), keys, values, rows_slots, lengths, 1.0)
