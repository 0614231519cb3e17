"""fvcore counts the custom criss-cross op (1 per multiply-add) as a hand count says."""
import torch

from ccnet.layers import (
    CrissCrossAttention,
    CrissCrossAttention3d,
    NonLocalBlock,
    FlopCountAnalysis,
)


def _count(module, x):
    analysis = FlopCountAnalysis(module, x)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return analysis.total(), analysis.unsupported_ops()


def test_criss_cross_block_flops_by_hand():
    c, cq, h, w = 16, 4, 5, 6
    total, unsupported = _count(CrissCrossAttention(c, cq), torch.randn(2, c, h, w))
    projections = (2 * c * cq + c * c) * h * w
    attention = h * w * (h + w - 1) * (cq + c)  # each position: H+W-1 dot products + weighted sums
    assert total == 2 * (projections + attention)
    assert not any("PythonOp" in name for name in unsupported)


def test_criss_cross_3d_block_flops_by_hand():
    c, cq, t, h, w = 8, 2, 3, 4, 5
    total, _ = _count(CrissCrossAttention3d(c, cq), torch.randn(1, c, t, h, w))
    positions = t * h * w
    assert total == positions * (2 * c * cq + c * c) + positions * (t + h + w - 2) * (cq + c)


def test_non_local_block_flops_by_hand():
    c, ci, h, w = 8, 4, 3, 5
    total, _ = _count(NonLocalBlock(c, ci), torch.randn(1, c, h, w))
    p = h * w
    assert total == 3 * c * ci * p + p * p * ci + p * p * ci + ci * c * p
