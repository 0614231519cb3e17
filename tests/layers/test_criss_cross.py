"""The functional criss-cross attention against a brute-force dense masked softmax."""
import pytest
import torch

from ccnet.layers import (
    criss_cross_attention,
    criss_cross_attention_3d,
    criss_cross_dense_matrix,
    criss_cross_entropy,
    criss_cross_weights,
    non_local_attention,
)
from tests.conftest import load_tool
from tests.layers.brute_force import FLOAT64_ATOL, criss_cross_brute_force, criss_cross_mask, dense_brute_force

peers = load_tool("attention_peers")

SHAPES_2D = [(1, 3, 5, 4), (2, 4, 3, 7), (3, 2, 1, 6), (2, 2, 6, 1), (1, 1, 1, 1), (2, 5, 8, 8)]
SHAPES_3D = [(1, 3, 3, 4, 5), (2, 2, 1, 4, 3), (2, 3, 4, 1, 1), (1, 2, 1, 1, 1), (3, 2, 2, 3, 2)]


def _qkv(shape, value_channels=6, dtype=torch.float64, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    value_shape = (shape[0], value_channels) + tuple(shape[2:])
    q = torch.randn(shape, generator=g, dtype=dtype) * scale
    k = torch.randn(shape, generator=g, dtype=dtype) * scale
    v = torch.randn(value_shape, generator=g, dtype=dtype)
    return q, k, v


@pytest.mark.parametrize("shape", SHAPES_2D)
def test_2d_equals_brute_force(shape):
    q, k, v = _qkv(shape)
    expected, _ = criss_cross_brute_force(q, k, v)
    torch.testing.assert_close(criss_cross_attention(q, k, v), expected, rtol=0, atol=FLOAT64_ATOL)


@pytest.mark.parametrize("shape", SHAPES_3D)
def test_3d_equals_brute_force(shape):
    q, k, v = _qkv(shape)
    expected, _ = criss_cross_brute_force(q, k, v)
    torch.testing.assert_close(criss_cross_attention_3d(q, k, v), expected, rtol=0, atol=FLOAT64_ATOL)


def test_3d_with_one_frame_equals_2d():
    q, k, v = _qkv((2, 3, 1, 5, 4))
    out_3d = criss_cross_attention_3d(q, k, v)
    out_2d = criss_cross_attention(q[:, :, 0], k[:, :, 0], v[:, :, 0])
    torch.testing.assert_close(out_3d[:, :, 0], out_2d, rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (1, 2, 1, 3), (1, 2, 3, 1)])
@pytest.mark.parametrize("peer", ["criss_cross_straightforward", "criss_cross_mmcv"])
def test_benchmark_peers_equal_brute_force(shape, peer):
    q, k, v = _qkv(shape)
    expected, _ = criss_cross_brute_force(q, k, v)
    out = getattr(peers, peer)(q, k, v)
    torch.testing.assert_close(out, expected, rtol=0, atol=FLOAT64_ATOL)


def test_non_local_attention_equals_brute_force():
    q, k, v = _qkv((2, 3, 4, 5))
    expected = dense_brute_force(q, k, v)
    torch.testing.assert_close(non_local_attention(q, k, v), expected, rtol=0, atol=FLOAT64_ATOL)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 2, 1, 3), (1, 2, 3, 1), (1, 1, 1, 1)])
def test_weights_layout_and_dense_matrix(shape):
    q, k, _ = _qkv(shape)
    n, _, h, w = shape
    _, dense = criss_cross_brute_force(q, k, torch.zeros(n, 1, h, w, dtype=q.dtype))
    torch.testing.assert_close(criss_cross_dense_matrix(q, k), dense, rtol=0, atol=FLOAT64_ATOL)

    weights = criss_cross_weights(q, k)
    assert weights.shape == (n, h, w, h + w - 1)
    dense = dense.view(n, h, w, h, w)
    for y in range(h):
        for x in range(w):
            column = dense[:, y, x, :, x]  # (N, H): y' = 0..H-1
            row = dense[:, y, x, y, [x2 for x2 in range(w) if x2 != x]]
            expected = torch.cat([column, row], -1)
            torch.testing.assert_close(weights[:, y, x], expected, rtol=0, atol=FLOAT64_ATOL)


def test_two_passes_compose_as_dense_matrix_product():
    q1, k1, v = _qkv((2, 3, 4, 5), value_channels=4)
    q2, k2, _ = _qkv((2, 3, 4, 5), seed=1)
    twice = criss_cross_attention(q2, k2, criss_cross_attention(q1, k1, v))
    product = criss_cross_dense_matrix(q2, k2) @ criss_cross_dense_matrix(q1, k1)
    expected = (product @ v.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(v.shape)
    torch.testing.assert_close(twice, expected, rtol=0, atol=FLOAT64_ATOL)
    assert (product > 0).all()  # after two passes every position reaches every other


@pytest.mark.parametrize(
    "fn,shape", [(criss_cross_attention, (2, 2, 3, 4)), (criss_cross_attention_3d, (2, 2, 2, 3, 2))]
)
def test_gradcheck(fn, shape):
    q, k, v = (t.requires_grad_() for t in _qkv(shape, value_channels=3))
    assert torch.autograd.gradcheck(fn, (q, k, v))


def test_gradients_equal_brute_force_with_channels_last_and_strided_grad():
    q, k, v = _qkv((2, 3, 5, 4))
    v = v.contiguous(memory_format=torch.channels_last)
    grad = torch.randn(2, 6, 4, 5, dtype=v.dtype).transpose(2, 3)  # non-contiguous upstream grad
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    ref_leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = criss_cross_attention(*leaves)
    assert out.is_contiguous(memory_format=torch.channels_last)  # follows value's format
    out.backward(grad)
    criss_cross_brute_force(*ref_leaves)[0].backward(grad)
    for a, b in zip(leaves, ref_leaves):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=FLOAT64_ATOL)


def test_large_energies_stay_finite():
    # Energies of +-1e4: a naive exp overflows; max subtraction must keep the softmax exact.
    q, k, v = _qkv((1, 4, 6, 5), scale=50.0, dtype=torch.float32)
    for t in (q, k, v):
        t.requires_grad_()
    out = criss_cross_attention(q, k, v)
    out.sum().backward()
    assert all(torch.isfinite(t).all() for t in (out, q.grad, k.grad, v.grad))
    expected, _ = criss_cross_brute_force(q, k, v)
    # float32 vs float64: eps 1.2e-7 x |v| <= 4.1 x ~10 terms = 5e-6 (measured 0: one-hot weights).
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-5)


def _rounding_bounds(q, k, v, grad, u):
    """Worst-case errors of the autocast path when only the value products round (unit roundoff u).

    With energies and softmax in float32 (as documented), the output and grad_v round three
    times (weights to the autocast dtype, each axis' product, the sum of the axes):
    |err| <= 3u * sum_j w_pj |v_j|. grad_q / grad_k get the rounding of dw_pj = <g_p, v_j> and of
    its softmax correction: |err(de_pj)| <= 2u * w_pj (|dw_pj| + sum_j' w_pj' |dw_pj'|).
    Everything in float64 from the brute-force dense weights.
    """
    _, weights = criss_cross_brute_force(q, k, v)  # (N, P, P)
    qf, kf, vf, gf = (t.double().flatten(2) for t in (q, k, v, grad))
    out = 3 * u * torch.einsum("npj,ncj->ncp", weights, vf.abs())
    grad_v = 3 * u * torch.einsum("npj,ncp->ncj", weights, gf.abs())
    dw = torch.einsum("ncp,ncj->npj", gf, vf).abs()
    de = 2 * u * weights * (dw + (weights * dw).sum(-1, keepdim=True))
    grad_q = torch.einsum("npj,ncj->ncp", de, kf.abs())
    grad_k = torch.einsum("npj,ncp->ncj", de, qf.abs())
    return [b.reshape(t.shape) for b, t in zip((out, grad_q, grad_k, grad_v), (v, q, k, v))]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    "fn,shape", [(criss_cross_attention, (2, 4, 6, 5)), (criss_cross_attention_3d, (1, 4, 3, 4, 5))]
)
def test_autocast_cpu(dtype, fn, shape):
    # Energies of std ~8 (scale 2, 4 channels): rounding them to bfloat16 (a softmax in bfloat16)
    # moves the weights by ~3%, far outside the bounds below (0.4% per rounding for bfloat16).
    q, k, v = _qkv(shape, value_channels=8, dtype=torch.float32, scale=2.0)
    grad = torch.randn(v.shape, generator=torch.Generator().manual_seed(3)).to(dtype).float()
    for t in (q, k, v):
        t.requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        out = fn(q, k, v)
    assert out.dtype == dtype
    out.float().backward(grad)

    # The float64 reference at the values autocast really multiplies (v rounded to dtype).
    leaves = [t.detach().double().requires_grad_() for t in (q, k, v.to(dtype))]
    expected, _ = criss_cross_brute_force(*leaves)
    expected.backward(grad.double())
    u = torch.finfo(dtype).eps / 2  # unit roundoff: 2^-8 bfloat16, 2^-11 float16
    bounds = _rounding_bounds(*leaves, grad, u)
    # float32 slack: eps 1.2e-7 x values ~4 x reductions of ~10 terms.
    slack = 1e-5
    for name, got, want, bound in zip(
        ("output", "grad q", "grad k", "grad v"), (out, q.grad, k.grad, v.grad), (expected, *(t.grad for t in leaves)), bounds
    ):
        error = (got.double() - want).abs()
        assert (error <= bound + slack).all(), f"{name}: error exceeds the rounding bound by {(error - bound).max():.3g}"


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "fn,shape", [(criss_cross_attention, (2, 4, 9, 7)), (criss_cross_attention_3d, (2, 4, 3, 5, 6))]
)
def test_cuda_equals_cpu(dtype, fn, shape):
    q, k, v = _qkv(shape, value_channels=8, dtype=torch.float32)
    expected = fn(q, k, v)
    qc, kc, vc = (t.cuda().requires_grad_() for t in (q, k, v))
    with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        out = fn(qc, kc, vc)
    out.float().sum().backward()
    assert all(torch.isfinite(t).all() for t in (out, qc.grad, kc.grad, vc.grad))
    # Not measured here (no GPU): float32 eps x |v| <= 4 x ~20 terms = 1e-5; fp16/bf16 values
    # products ~10 unit roundoffs x |v|. test_autocast_cpu bounds the CPU path tightly.
    tol = 1e-5 if dtype == torch.float32 else 5e-2
    torch.testing.assert_close(out.float().cpu(), expected, rtol=0, atol=tol)


def test_bad_shapes_are_named():
    q, k, v = _qkv((1, 2, 3, 4))
    with pytest.raises(ValueError, match="value"):
        criss_cross_attention(q, k, v[:, :, :2])
    with pytest.raises(ValueError, match="query"):
        criss_cross_attention(q[0], k, v)
    with pytest.raises(ValueError, match="5-D"):
        criss_cross_attention_3d(q, k, v)


@pytest.mark.parametrize("shape", SHAPES_2D + SHAPES_3D)
def test_entropy_equals_brute_force(shape):
    q, k, v = _qkv(shape, scale=1.5)
    _, weights = criss_cross_brute_force(q, k, v)  # (N, P, P), zero off the criss-cross
    attended = criss_cross_mask(shape[2:]).sum(-1).double()  # positions each position sees
    entropy = -(weights * weights.clamp_min(1e-300).log()).sum(-1)
    expected = torch.where(attended > 1, entropy / attended.log().clamp_min(1e-300), torch.zeros_like(entropy))
    got = criss_cross_entropy(q, k)
    assert got.shape == (shape[0],) + tuple(shape[2:])
    torch.testing.assert_close(got.flatten(1), expected, rtol=1e-9, atol=1e-9)


def test_entropy_is_one_for_uniform_and_small_for_peaked_attention():
    q = torch.zeros(2, 3, 4, 5, 6)
    assert torch.allclose(criss_cross_entropy(q, q), torch.ones(2, 4, 5, 6))
    k = torch.randn(2, 3, 4, 5, 6)
    assert criss_cross_entropy(k * 100, k).mean() < 0.1  # huge energies: nearly one-hot
