"""Energies far beyond exp's range (~1e9, as in a randomly initialised R-101 in eval mode, whose
features reach 1e5): the attention stays a convex combination of the values on each
position's criss-cross, forward and backward, on images and on clips."""
import pytest
import torch

from ccnet.layers import criss_cross_attention, criss_cross_attention_3d
from ccnet.layers.criss_cross_portable import criss_cross_portable, criss_cross_portable_3d


def inputs(shape, value_channels=8, scale=1e4):
    g = torch.Generator().manual_seed(0)
    query = (torch.randn(1, 64, *shape, generator=g) * scale).requires_grad_()
    key = (torch.randn(1, 64, *shape, generator=g) * scale).requires_grad_()
    value = torch.randn(1, value_channels, *shape, generator=g).requires_grad_()
    return query, key, value


@pytest.mark.parametrize(
    "attention, shape",
    [(criss_cross_attention, (8, 12)), (criss_cross_portable, (8, 12)),
     (criss_cross_attention_3d, (3, 6, 7)), (criss_cross_portable_3d, (3, 6, 7))],  # fmt: skip
    ids=["2d", "2d-portable", "3d", "3d-portable"],
)
def test_energies_of_1e9_give_a_convex_combination_and_finite_gradients(attention, shape):
    # scale 1e4 on 64 channels: energies ~ 1e8 * 8 = 8e8, their rounding ~ 100 >> exp's range (~88)
    query, key, value = inputs(shape)
    out = attention(query, key, value)
    assert torch.isfinite(out).all()
    # a convex combination of values lies within their range (+ float32 rounding of the sum)
    low, high = value.detach().amin(), value.detach().amax()
    assert (out >= low - 1e-5).all() and (out <= high + 1e-5).all()
    out.square().sum().backward()
    for t in (query, key, value):
        assert torch.isfinite(t.grad).all()
