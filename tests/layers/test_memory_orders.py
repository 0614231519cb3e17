"""The eager criss-cross attention on every memory order of its inputs (all permutations of the
dimensions, q / k / v each in its own), forward and backward, against the portable
formulation on contiguous copies: every packing path of :mod:`ccnet.layers.line_layout`."""
import itertools

import pytest
import torch

from ccnet.layers import criss_cross_attention, criss_cross_attention_3d
from ccnet.layers.criss_cross_portable import criss_cross_portable, criss_cross_portable_3d


def in_memory_order(x: torch.Tensor, order) -> torch.Tensor:
    """x's values, laid out in memory with dims ``order`` outermost first."""
    inverse = [order.index(d) for d in range(x.dim())]
    return x.permute(order).contiguous().permute(inverse)


def _check(eager, portable, shape, orders):
    g = torch.Generator().manual_seed(len(shape))
    q, k = (torch.randn(2, 3, *shape, generator=g, dtype=torch.float64) for _ in range(2))
    v = torch.randn(2, 4, *shape, generator=g, dtype=torch.float64)
    grad = torch.randn(2, 4, *shape, generator=g, dtype=torch.float64)
    expected_inputs = [t.clone().requires_grad_() for t in (q, k, v)]
    expected = portable(*expected_inputs)
    expected.backward(grad)
    for order_q, order_k, order_v in orders:
        inputs = [in_memory_order(t, o).requires_grad_() for t, o in ((q, order_q), (k, order_k), (v, order_v))]
        out = eager(*inputs)
        # float64, reductions over <= 11 terms: rounding ~1e-15; FLOAT64 tolerance of the suite
        torch.testing.assert_close(out, expected, atol=1e-12, rtol=0, msg=str((order_q, order_k, order_v)))
        out.backward(grad)
        for t, e in zip(inputs, expected_inputs):
            torch.testing.assert_close(t.grad, e.grad, atol=1e-12, rtol=0, msg=str((order_q, order_k, order_v)))


def test_2d_every_memory_order():
    orders = list(itertools.permutations(range(4)))  # 24
    # q, k and v in the same order, and v in every order against q / k in two fixed ones
    cases = [(o, o, o) for o in orders] + [(orders[0], orders[-1], o) for o in orders]
    _check(criss_cross_attention, criss_cross_portable, (5, 6), cases)


@pytest.mark.parametrize("part", range(4))
def test_3d_every_memory_order(part):
    orders = list(itertools.permutations(range(5)))[part::4]  # 120, in 4 parts
    cases = [(o, o, o) for o in orders] + [(orders[0], orders[-1], o) for o in orders[::5]]
    _check(criss_cross_attention_3d, criss_cross_portable_3d, (3, 4, 5), cases)
