"""Packing helpers and memory formats: every layout path gives the brute-force result."""
import itertools

import pytest
import torch

from ccnet.layers import criss_cross_attention, criss_cross_attention_3d
from ccnet.layers.line_layout import copy_permuted
from tests.layers.brute_force import FLOAT64_ATOL, criss_cross_brute_force


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_copy_permuted_equals_permute_contiguous(memory_format):
    x = torch.randn(2, 3, 4, 5).contiguous(memory_format=memory_format)
    for perm in itertools.permutations(range(1, 4)):
        target = [0, *perm]
        y = copy_permuted(x, target)
        assert y.is_contiguous()
        assert torch.equal(y, x.permute(target).contiguous())
        out = torch.empty_like(y)
        assert torch.equal(copy_permuted(x, target, out=out), y)


def _formats(x, spatial):
    cl = torch.channels_last if spatial == 2 else torch.channels_last_3d
    return {
        "contiguous": x.contiguous(),
        "channels_last": x.contiguous(memory_format=cl),
        "strided": x.transpose(-1, -2).contiguous().transpose(-1, -2),  # neither format
        # a channel slice of a bigger tensor: samples dense, batch stride larger
        "channel_slice": torch.cat([x, x[:, :2]], dim=1)[:, : x.shape[1]],
        "channel_slice_cl": torch.cat([x, x[:, :2]], dim=1)
        .contiguous(memory_format=cl)[:, : x.shape[1]],
    }


@pytest.mark.parametrize(
    "q_format,v_format",
    [
        ("channels_last", "channels_last"),
        ("contiguous", "channels_last"),
        ("channels_last", "contiguous"),
        ("strided", "strided"),
        ("channel_slice", "channel_slice"),
        ("channel_slice_cl", "channel_slice_cl"),
    ],
)
@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (1, 3, 2, 3, 4)])
def test_memory_formats_forward_backward(q_format, v_format, shape):
    spatial = len(shape) - 2
    fn = criss_cross_attention if spatial == 2 else criss_cross_attention_3d
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(2))
    v = torch.randn((shape[0], 6) + shape[2:], generator=g, dtype=torch.float64)
    upstream = torch.randn(v.shape, generator=g, dtype=torch.float64)
    leaves = [
        _formats(q, spatial)[q_format],
        _formats(k, spatial)[q_format],
        _formats(v, spatial)[v_format],
    ]
    leaves = [t.detach().requires_grad_() for t in leaves]
    ref = [t.detach().clone().requires_grad_() for t in (q, k, v)]

    out = fn(*leaves)
    expected = criss_cross_brute_force(*ref)[0]
    torch.testing.assert_close(out, expected, rtol=0, atol=FLOAT64_ATOL)
    if v_format.startswith("channels_last"):
        assert out.movedim(1, -1).is_contiguous()
    out.backward(upstream)
    expected.backward(upstream)
    for a, b in zip(leaves, ref):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=FLOAT64_ATOL)
