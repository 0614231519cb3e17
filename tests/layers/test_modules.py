"""Attention modules: identity at init, reach of R=1 / R=2, 2D/3D consistency, non-local block."""
import pytest
import torch

from ccnet.layers import RCCA, RCCA3d, CrissCrossAttention, CrissCrossAttention3d, NonLocalBlock
from tests.layers.brute_force import FLOAT64_ATOL, criss_cross_brute_force, criss_cross_mask, dense_brute_force


@pytest.mark.parametrize(
    "module,shape",
    [
        (CrissCrossAttention(8), (2, 8, 5, 4)),
        (CrissCrossAttention3d(8), (2, 8, 3, 5, 4)),
        (NonLocalBlock(8), (2, 8, 5, 4)),
    ],
)
def test_fresh_block_is_identity(module, shape):
    x = torch.randn(shape)
    torch.testing.assert_close(module(x), x, rtol=0, atol=0)


def test_default_channels():
    cca = CrissCrossAttention(64)
    assert cca.query.out_channels == cca.key.out_channels == 8 and cca.value.out_channels == 64
    assert CrissCrossAttention(4).query.out_channels == 1
    assert NonLocalBlock(64).theta.out_channels == 32
    assert [n for n, _ in CrissCrossAttention3d(16).named_parameters()] == [
        n for n, _ in CrissCrossAttention(16).named_parameters()
    ]


def _randomise(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return module


def test_module_and_its_gradients_equal_brute_force():
    cca = _randomise(CrissCrossAttention(8, qk_channels=3)).double()
    x = torch.randn(2, 8, 4, 6, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, 8, 4, 6, dtype=torch.float64)

    out = cca(x)
    out.backward(upstream)
    grads = [x.grad] + [p.grad for p in cca.parameters()]
    x.grad = None
    cca.zero_grad(set_to_none=True)

    q, k, v = cca.query(x), cca.key(x), cca.value(x)
    expected = x + cca.gamma * criss_cross_brute_force(q, k, v)[0]
    expected.backward(upstream)
    torch.testing.assert_close(out, expected, rtol=0, atol=FLOAT64_ATOL)
    for got, want in zip(grads, [x.grad] + [p.grad for p in cca.parameters()]):
        torch.testing.assert_close(got, want, rtol=0, atol=FLOAT64_ATOL)


def test_non_local_block_equals_brute_force():
    nl = _randomise(NonLocalBlock(6, 4)).double()
    x = torch.randn(2, 6, 3, 5, dtype=torch.float64)
    expected = x + nl.out(dense_brute_force(nl.theta(x), nl.phi(x), nl.g(x)))
    torch.testing.assert_close(nl(x), expected, rtol=0, atol=FLOAT64_ATOL)


@pytest.mark.parametrize("recurrence", [1, 2])
def test_reach_of_recurrence(recurrence):
    """One output pixel depends on its criss-cross after R=1 and on every input pixel after R=2."""
    h, w, (y, x) = 5, 6, (1, 4)
    rcca = RCCA(4, 4, recurrence=recurrence, norm="")
    _randomise(rcca.attention)
    inp = torch.randn(1, 4, h, w, dtype=torch.float64, requires_grad=True)
    rcca.double().attend(inp)[0, :, y, x].sum().backward()
    reached = inp.grad.abs().sum(1)[0] > 0
    if recurrence == 1:
        expected = criss_cross_mask((h, w))[y * w + x].view(h, w)
    else:
        expected = torch.ones(h, w, dtype=torch.bool)
    assert torch.equal(reached, expected)


def test_rcca_shapes_and_recurrence_attribute():
    rcca = RCCA(6, 4, recurrence=2, norm="BN", out_channels=5)
    x = torch.randn(2, 6, 7, 3)
    assert rcca(x).shape == (2, 5, 7, 3)
    assert isinstance(rcca.attention, CrissCrossAttention)
    rcca.recurrence = 0
    rcca.eval()
    torch.testing.assert_close(rcca(x), rcca.project(rcca.reduce(x)))


@pytest.mark.parametrize("norm", ["BN", "GN", ""])
def test_rcca3d_with_one_frame_equals_rcca(norm):
    rcca = RCCA(32, 32, norm=norm)
    _randomise(rcca.attention)
    rcca3d = RCCA3d(32, 32, norm=norm)
    rcca3d.load_state_dict(rcca.state_dict())
    x = torch.randn(2, 32, 5, 4)
    # float32, the same ops per frame: eps 1.2e-7 x |out| <= 28 x ~3 layers = 1e-5 (measured 0).
    torch.testing.assert_close(rcca3d(x.unsqueeze(2))[:, :, 0], rcca(x), rtol=0, atol=1e-5)


def test_cca3d_equals_brute_force():
    cca = _randomise(CrissCrossAttention3d(8, qk_channels=2)).double()
    x = torch.randn(2, 8, 3, 4, 5, dtype=torch.float64)
    q, k, v = (
        torch.stack([conv(x[:, :, t]) for t in range(3)], dim=2)
        for conv in (cca.query, cca.key, cca.value)
    )
    expected = x + cca.gamma * criss_cross_brute_force(q, k, v)[0]
    torch.testing.assert_close(cca(x), expected, rtol=0, atol=FLOAT64_ATOL)
