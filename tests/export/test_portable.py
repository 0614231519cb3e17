"""The portable (standard-ops) criss-cross formulation: exact, and the one traces and exports see."""
import pytest
import torch

import ccnet.layers.criss_cross as criss_cross_module
from ccnet.layers import (
    CrissCrossAttention,
    CrissCrossAttentionFunction,
    UnfaithfulExportError,
    criss_cross_attention,
    criss_cross_attention_3d,
    criss_cross_portable,
    criss_cross_portable_3d,
)
from tests.layers.brute_force import criss_cross_brute_force

# Sizes with lines of length 1 (1xW, Hx1, 1x1, T=1), odd and non-square ones.
SHAPES_2D = [(2, 3, 5, 4), (1, 4, 1, 7), (2, 2, 6, 1), (1, 1, 1, 1), (1, 3, 9, 13)]
SHAPES_3D = [(1, 3, 3, 4, 5), (2, 2, 1, 4, 3), (1, 3, 5, 1, 1), (1, 2, 1, 1, 1), (2, 2, 2, 3, 7)]
# Relative error bound between two float32 computations of the same softmax-weighted sums:
# a few float32 ulps (1.2e-7) per term over reductions of <= 20 terms, well below 1e-5.
FLOAT32_RTOL = 1e-5


def _qkv(shape, value_channels=5, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(shape, generator=g) * 2
    k = torch.randn(shape, generator=g)
    v = torch.randn((shape[0], value_channels) + tuple(shape[2:]), generator=g)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def _relative_error(actual, expected):
    return float((actual.double() - expected).abs().max() / expected.abs().max())


@pytest.mark.parametrize("shape", SHAPES_2D)
def test_portable_2d_equals_brute_force_and_the_eager_function(shape):
    q, k, v = _qkv(shape)
    expected, _ = criss_cross_brute_force(q, k, v)
    portable = criss_cross_portable(q, k, v)
    assert _relative_error(portable, expected) <= FLOAT32_RTOL
    assert _relative_error(portable, criss_cross_attention(q, k, v).double()) <= FLOAT32_RTOL


@pytest.mark.parametrize("shape", SHAPES_3D)
def test_portable_3d_equals_brute_force_and_the_eager_function(shape):
    q, k, v = _qkv(shape)
    expected, _ = criss_cross_brute_force(q, k, v)
    portable = criss_cross_portable_3d(q, k, v)
    assert _relative_error(portable, expected) <= FLOAT32_RTOL
    assert _relative_error(portable, criss_cross_attention_3d(q, k, v).double()) <= FLOAT32_RTOL


@pytest.mark.parametrize("fn,shape", [(criss_cross_portable, (1, 4, 6, 5)), (criss_cross_portable_3d, (1, 4, 3, 4, 5))])
def test_portable_float16_keeps_the_softmax_in_float32(fn, shape):
    q, k, v = _qkv(shape, dtype=torch.float16)
    # Energies of 900 + O(1): exact in float32 (products of float16 numbers), but float16's
    # spacing at 900 is 0.5, which would move the weights by up to 28%.
    q[:, 0], k[:, 0] = 30, 30
    out = fn(q, k, v)
    assert out.dtype == torch.float16
    expected, _ = criss_cross_brute_force(q, k, v)
    # Weights rounded to float16 (eps 9.8e-4) times |v| <= 4, summed over <= 12 terms: < 1e-2.
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-2)


def test_large_energies_stay_finite_in_the_portable_path():
    q, k, v = _qkv((1, 4, 5, 6))
    out = criss_cross_portable(q * 100, k * 100, v)
    expected, _ = criss_cross_brute_force(q * 100, k * 100, v)
    assert torch.isfinite(out).all()
    assert _relative_error(out, expected) <= FLOAT32_RTOL


def _traced_kinds(fn, *args):
    graph = torch.jit.trace(fn, args, check_trace=False).graph
    return {node.kind() for node in graph.nodes()}


def test_a_trace_records_only_standard_ops_and_no_self_mask_by_diag_or_inf():
    q, k, v = _qkv((1, 3, 5, 4))
    kinds = _traced_kinds(criss_cross_attention, q, k, v)
    assert "prim::PythonOp" not in kinds
    assert "aten::einsum" in kinds and "aten::arange" in kinds
    assert not kinds & {"aten::diag", "aten::eye", "aten::masked_fill", "aten::fill_", "aten::diagonal"}
    kinds_3d = _traced_kinds(criss_cross_attention_3d, *_qkv((1, 3, 2, 4, 3)))
    assert "prim::PythonOp" not in kinds_3d


def test_the_eager_path_still_uses_the_custom_function(monkeypatch):
    calls = []
    forward = CrissCrossAttentionFunction.forward
    monkeypatch.setattr(CrissCrossAttentionFunction, "forward", staticmethod(lambda ctx, *a: calls.append(1) or forward(ctx, *a)))
    criss_cross_attention(*_qkv((1, 3, 5, 4)))
    assert calls == [1]


def test_the_custom_function_refuses_to_be_traced():
    q, k, v = _qkv((1, 3, 5, 4))
    with pytest.raises(UnfaithfulExportError, match="criss_cross_attention"):
        torch.jit.trace(lambda *qkv: CrissCrossAttentionFunction.apply(*qkv), (q, k, v), check_trace=False)


def test_without_the_portable_switch_tracing_a_module_raises_instead_of_baking_a_constant(monkeypatch):
    monkeypatch.setattr(criss_cross_module, "is_exporting", lambda: False)
    block = CrissCrossAttention(8, 2).eval()
    with pytest.raises(UnfaithfulExportError, match="constant"):
        torch.jit.trace(block, (torch.randn(1, 8, 4, 5),), check_trace=False)
